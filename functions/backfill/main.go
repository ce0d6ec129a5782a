// Command backfill is the backfill Lambda function (provided.al2023, `bootstrap`):
// wiring only; the logic is in internal/backfill.
package main

import (
	"context"
	"encoding/json"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

func main() {
	log := wiring.Logger(os.Stdout, os.Getenv)
	deps, err := wiring.Load(context.Background(), "backfill", log)
	if err != nil {
		lambda.Start(wiring.ColdStartFailed(log, err))
		return
	}
	lambda.Start(deps.Serve(os.Getenv, os.Stdout, func(d *wiring.Deps) wiring.HandlerFunc {
		b := d.Backfill(os.Getenv, os.Stdout)
		return func(ctx context.Context, payload json.RawMessage) (any, error) { return b.Handle(ctx, payload) }
	}))
}
