// Command ecr-replicator runs the replication engine from a laptop or CI, and the local
// sandbox that emulates AWS accounts on 127.0.0.1. See `ecr-replicator --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ecr-replicator/ecr-replicator/internal/cli"
	"github.com/ecr-replicator/ecr-replicator/internal/gate/verify"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

func main() {
	// Run as a function's bootstrap (the demo, where the bootstraps are not built),
	// verifying promotion gates' signatures as the replicate function does.
	if name := os.Getenv(wiring.EnvServe); name != "" {
		wiring.Start(name, os.Getenv, verify.ForLambda)
		return
	}
	// The first Ctrl-C (or SIGTERM) cancels the run, which then reports what is done and
	// what is left and exits 130 (143 for SIGTERM, the cause it is cancelled with: 128 +
	// the signal, as a shell reports a process the signal ended); a second one ends the
	// process at once.
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		if sig == syscall.SIGTERM {
			cancel(cli.ErrTerminated)
			return
		}
		cancel(nil)
	}()
	os.Exit(cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
