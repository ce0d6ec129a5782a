// Command replicate is the replicate Lambda function (provided.al2023, `bootstrap`):
// wiring only; the logic is in internal/replicator.
package main

import (
	"context"
	"encoding/json"
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
		log.Error("cold start failed", "error", err.Error())
		lambda.Start(func(context.Context, json.RawMessage) (any, error) { return nil, err })
		return
	}
	if deps.RulesErr != nil {
		log.Error("invalid rules document", "error", deps.RulesErr.Error())
	} else {
		log.Info("rules loaded", "rules", deps.Rules.String())
	}
	cfg := eventhandler.Config{
		Rules:     deps.Rules,
		RulesErr:  deps.RulesErr,
		NewMirror: func() eventhandler.Mirror { return deps.NewMirror(0) },
		Log:       log,
		Metrics:   metrics.New(os.Stdout, metrics.Namespace(os.Getenv)),
	}
	if bus := os.Getenv(eventhandler.EnvResultEventBus); bus != "" {
		cfg.Events, cfg.EventBus = eventbridge.NewFromConfig(deps.AWS), bus
	}
	lambda.Start(eventhandler.New(cfg).Handle)
}
