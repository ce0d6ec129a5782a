package backfill

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// Environment variables read by FromDeps.
const (
	EnvQueueURL    = "REPLICATION_QUEUE_URL"
	EnvConcurrency = "BACKFILL_CONCURRENCY" // inline copies in flight (default 8)
)

// Handler is the Lambda entry point: it parses the request, runs the backfill and
// flushes the metrics.
type Handler struct {
	deps *wiring.Deps
	b    *Backfill
	out  io.Writer // EMF destination (stdout in Lambda)
	ns   string
}

// FromDeps builds the handler from the shared dependencies and the environment. EMF
// lines go to emf (os.Stdout in Lambda).
func FromDeps(deps *wiring.Deps, getenv func(string) string, emf io.Writer) *Handler {
	b := &Backfill{
		Rules:         deps.Rules,
		Resolver:      deps.Resolver,
		SourceRegion:  deps.AWS.Region,
		NewReplicator: func() Replicator { return deps.NewMirror(0) },
		QueueURL:      getenv(EnvQueueURL),
		Log:           deps.Log,
	}
	if b.QueueURL != "" {
		b.Queue = sqs.NewFromConfig(deps.AWS)
	}
	if n, err := strconv.Atoi(getenv(EnvConcurrency)); err == nil && n > 0 {
		b.Concurrency = n
	}
	return &Handler{deps: deps, b: b, out: emf, ns: metrics.Namespace(getenv)}
}

// Backfill returns the configured backfill (tests adjust Margin, Concurrency).
func (h *Handler) Backfill() *Backfill { return h.b }

// Handle is the Lambda handler. An invalid request or rules document is an error; the
// outcome of the work, failures included, is the response.
func (h *Handler) Handle(ctx context.Context, payload json.RawMessage) (*Response, error) {
	if h.deps.RulesErr != nil {
		return nil, h.deps.RulesErr
	}
	req, err := ParseRequest(payload)
	if err != nil {
		return nil, err
	}
	// Bad globs are rejected here, before any network call.
	if _, err := h.deps.Rules.Narrow(req.Repositories, req.Tags); err != nil {
		return nil, fmt.Errorf("backfill request: %w", err)
	}
	b := *h.b // per invocation: its own metrics recorder
	rec := metrics.New(h.out, h.ns)
	b.Metrics = rec
	resp, err := b.Run(ctx, req)
	if ferr := rec.Flush(); ferr != nil {
		h.b.log().Warn("writing metrics", "error", ferr)
	}
	return resp, err
}
