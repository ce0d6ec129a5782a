// Command replicate is the replicate Lambda function (provided.al2023, `bootstrap`):
// wiring only; the logic is in internal/eventhandler.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

func main() {
	log := wiring.Logger(os.Stdout, os.Getenv)
	deps, err := wiring.Load(context.Background(), "replicate", log)
	if err != nil {
		lambda.Start(wiring.ColdStartFailed(log, err))
		return
	}
	cfg := eventhandler.Config{
		Rules: deps.Rules, RulesErr: deps.RulesErr, Log: log,
		EMF: os.Stdout, Namespace: metrics.Namespace(os.Getenv),
	}
	if deps.RulesErr != nil {
		log.Error("invalid rules document", "error", deps.RulesErr.Error())
	} else {
		log.Info("rules loaded", "rules", deps.Rules.String())
		cfg.Start = func() eventhandler.Run { return deps.Replicator.Start() }
	}
	if bus := os.Getenv(eventhandler.EnvResultEventBus); bus != "" {
		cfg.Events, cfg.EventBus = eventbridge.NewFromConfig(deps.AWS), bus
	}
	lambda.Start(eventhandler.New(cfg).Handle)
}
