package sandboxtest

import (
	"os"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// ReplicateHandler builds the replicate function's handler from deps as
// functions/replicate's main does; c supplies the rest (logger, metrics, events).
func ReplicateHandler(deps *wiring.Deps, c eventhandler.Config) *eventhandler.Handler {
	c.Rules, c.RulesErr = deps.Rules, deps.RulesErr
	if c.Log == nil {
		c.Log = deps.Log
	}
	if deps.Replicator != nil {
		c.Start = func() eventhandler.Run { return deps.Replicator.Start() }
	}
	return eventhandler.New(c)
}

// BackfillFunction builds the backfill function from deps and the environment as
// functions/backfill's main does (getenv nil: os.Getenv).
func BackfillFunction(deps *wiring.Deps, getenv func(string) string) *backfill.Backfill {
	if getenv == nil {
		getenv = os.Getenv
	}
	b := &backfill.Backfill{
		Rules: deps.Rules, RulesErr: deps.RulesErr, Resolver: deps.Resolver, SourceRegion: deps.AWS.Region, Log: deps.Log,
		QueueURL: getenv(backfill.EnvQueueURL),
	}
	if deps.Replicator != nil {
		b.Start = func() backfill.Run { return deps.Replicator.Start() }
	}
	if b.QueueURL != "" {
		b.Queue = sqs.NewFromConfig(deps.AWS)
	}
	if n, err := strconv.Atoi(getenv(backfill.EnvConcurrency)); err == nil && n > 0 {
		b.Concurrency = n
	}
	return b
}
