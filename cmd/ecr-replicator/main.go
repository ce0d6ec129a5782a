// Command ecr-replicator runs the replication engine from a laptop or CI, and the local
// sandbox that emulates AWS accounts on 127.0.0.1. See `ecr-replicator --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ecr-replicator/ecr-replicator/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
