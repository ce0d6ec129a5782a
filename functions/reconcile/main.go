// Command reconcile is the reconcile Lambda function (provided.al2023, `bootstrap`):
// wiring only; the logic is in internal/reconcile.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

func main() {
	log := wiring.Logger(os.Stdout, os.Getenv)
	deps, err := wiring.Load(context.Background(), "reconcile", log)
	if err != nil {
		lambda.Start(wiring.ColdStartFailed(log, err))
		return
	}
	if deps.RulesErr != nil {
		log.Error("invalid rules document", "error", deps.RulesErr.Error())
	} else {
		log.Info("rules loaded", "rules", deps.Rules.String())
	}
	lambda.Start(deps.Reconciler(os.Getenv, os.Stdout).Handle)
}
