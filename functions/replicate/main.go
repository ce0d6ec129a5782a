// Command replicate is the replicate Lambda function (provided.al2023, `bootstrap`):
// wiring only; the logic is in internal/eventhandler.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

func main() {
	log := wiring.Logger(os.Stdout, os.Getenv)
	deps, err := wiring.Load(context.Background(), "replicate", log)
	if err != nil {
		lambda.Start(wiring.ColdStartFailed(log, err))
		return
	}
	lambda.Start(deps.Serve(os.Getenv, os.Stdout, func(d *wiring.Deps) wiring.HandlerFunc {
		return d.Handler(os.Getenv, os.Stdout).Handle
	}))
}
