// Command backfill is the backfill Lambda function (provided.al2023, `bootstrap`):
// wiring only; the logic is in internal/backfill.
package main

import (
	"context"
	"os"
	"strconv"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

func main() {
	log := wiring.Logger(os.Stdout, os.Getenv)
	deps, err := wiring.Load(context.Background(), "backfill", log)
	if err != nil {
		lambda.Start(wiring.ColdStartFailed(log, err))
		return
	}
	b := &backfill.Backfill{
		Rules: deps.Rules, RulesErr: deps.RulesErr, Resolver: deps.Resolver, SourceRegion: deps.AWS.Region, Log: log,
		QueueURL: os.Getenv(backfill.EnvQueueURL),
		EMF:      os.Stdout, Namespace: metrics.Namespace(os.Getenv),
	}
	if deps.RulesErr != nil {
		log.Error("invalid rules document", "error", deps.RulesErr.Error())
	} else {
		log.Info("rules loaded", "rules", deps.Rules.String())
		b.Start = func() backfill.Run { return deps.Replicator.Start() }
	}
	if b.QueueURL != "" {
		b.Queue = sqs.NewFromConfig(deps.AWS)
	}
	if n, err := strconv.Atoi(os.Getenv(backfill.EnvConcurrency)); err == nil && n > 0 {
		b.Concurrency = n
	}
	lambda.Start(b.Handle)
}
