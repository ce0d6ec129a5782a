// Command backfill is the backfill Lambda function: it plans replication by diff and
// enqueues or copies the missing images (internal/backfill).
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

func main() {
	log := wiring.Logger(os.Stdout, os.Getenv)
	deps, err := wiring.Load(context.Background(), "backfill", log)
	if err != nil {
		log.Error("backfill: startup failed", "error", err)
		os.Exit(1)
	}
	lambda.Start(backfill.FromDeps(deps, os.Getenv, os.Stdout).Handle)
}
