// Command ecr-replicator runs the replication engine from a laptop or CI, and the local
// sandbox that emulates AWS accounts on 127.0.0.1. See `ecr-replicator --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ecr-replicator/ecr-replicator/internal/cli"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

func main() {
	// Run as a function's bootstrap (the demo, where the bootstraps are not built).
	if name := os.Getenv(wiring.EnvServe); name != "" {
		wiring.Start(name)
		return
	}
	// The first Ctrl-C (or SIGTERM) cancels the run, which then reports what is done and
	// what is left and exits 130; a second one ends the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
