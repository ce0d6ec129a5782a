// Package eventhandler is the replicate function's logic, plain Go so it can be tested
// without Lambda: it takes a raw invocation payload (an SQS batch, a direct EventBridge
// "ECR Image Action" event or a work item from a backfill or a reconcile), works out
// where each image goes from the rules (plan), replicates or deletes through its
// destinations (execute), and reports through logs, EMF metrics, optional result events
// and the invocation's answer (report).
package eventhandler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/ecr-replicator/ecr-replicator/internal/deadline"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// EnvResultEventBus names the EventBridge bus result events go to (unset: none).
const EnvResultEventBus = "RESULT_EVENT_BUS"

// Result event envelope.
const (
	ResultSource     = "ecr-replicator"
	ResultDetailType = "ECR Image Replication"
)

// EventPublisher is the part of the EventBridge client result events need.
type EventPublisher interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// Copier is one invocation's replication work (copies and mirrored deletes): a *destinations.Batch.
type Copier interface {
	Replicate(ctx context.Context, src destinations.Image, targets []rules.Target) []destinations.Result
	Delete(ctx context.Context, src destinations.Image, targets []rules.Target) []destinations.Result
}

// Config is what a Handler is built from.
type Config struct {
	Rules    *rules.Document
	RulesErr error // an invalid rules document: every invocation fails with it
	// Source answers the function's own source registry (asked at most once per
	// invocation, so it should cache): an event or work item naming another is refused
	// (ForeignSource). Required: without it every invocation fails.
	Source func(context.Context) (ecrname.Registry, error)
	// Start begins an invocation's batch: (*destinations.Replicator).Start, long-lived
	// behind it (engine, limiters, credentials), the batch holding what one invocation
	// caches.
	Start func() Copier
	Log   *slog.Logger // default: discard
	// EMF, when set, receives the invocation's metrics (CloudWatch Embedded Metric
	// Format, namespace Namespace), written once at its end.
	EMF       io.Writer
	Namespace string
	// Events and EventBus enable result events (both needed).
	Events   EventPublisher
	EventBus string
	// Parallel bounds how many images are processed at once (default 4).
	Parallel int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Reserve is the time kept back before the invocation's deadline to answer: copies
	// still running then are cut and their messages listed in batchItemFailures, and
	// images not started are left for redelivery, so that the partial-batch answer is
	// delivered (internal/deadline says why). Zero: deadline's default.
	Reserve time.Duration
	// Gate decides promotion gates (gate.go, docs/PROMOTION.md); nil: a gated copy fails
	// for good, reported with CodeNoGate.
	Gate Gate
	// Holds is where held copies' re-checks go; nil: a held copy is reported and waits
	// for its next trigger or the reconcile.
	Holds *HoldQueue
}

// Handler handles invocations. It is safe for concurrent use: each invocation has its
// own run and metrics.
type Handler struct{ c Config }

// New returns a Handler.
func New(c Config) *Handler {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Parallel <= 0 {
		c.Parallel = 4
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Handler{c: c}
}

// Handle answers one invocation: an SQS batch (payload with "Records") gets an
// events.SQSEventResponse listing the retryable failures; anything else is one direct
// event or work item and gets a Summary, with an error only when something retryable
// failed. An invalid rules document fails every invocation.
func (h *Handler) Handle(ctx context.Context, payload json.RawMessage) (any, error) {
	if err := rules.Usable(h.c.Rules, h.c.RulesErr); err != nil {
		h.c.Log.Error("the rules document cannot be used; fix the configuration (the rules document or its parameter)", "error", err.Error())
		return nil, err
	}
	if h.c.Source == nil {
		return nil, errors.New("configuration error: no source registry to check messages against")
	}
	var probe struct {
		Records json.RawMessage `json:"Records"`
	}
	_ = json.Unmarshal(payload, &probe) // a body that is not an object is a malformed event below
	if len(probe.Records) == 0 || string(probe.Records) == "null" {
		out := h.invoke(ctx, []message{{body: payload}})
		if out.summary.Retryable > 0 {
			b, _ := json.Marshal(out.summary)
			return nil, fmt.Errorf("%d retryable replication failure(s): %s", out.summary.Retryable, b)
		}
		return out.summary, nil
	}
	var batch events.SQSEvent
	if err := json.Unmarshal(payload, &batch); err != nil {
		return nil, fmt.Errorf("malformed SQS batch: %w", err)
	}
	msgs := make([]message, len(batch.Records))
	for i, r := range batch.Records {
		msgs[i] = message{id: r.MessageId, body: []byte(r.Body)}
	}
	out := h.invoke(ctx, msgs)
	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	for _, id := range out.retry {
		resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: id})
	}
	return resp, nil
}

// invoke is one invocation: plan, execute, report.
func (h *Handler) invoke(ctx context.Context, msgs []message) invocation {
	var mr *metrics.Recorder
	if h.c.EMF != nil {
		mr = metrics.New(h.c.EMF, h.c.Namespace)
	}
	// The work ends at the reserve; result events, after it, within its first half.
	budget := deadline.New(ctx, h.c.Now(), deadline.Options{Reserve: h.c.Reserve})
	pubCtx, cancel := budget.Late(ctx)
	defer cancel()
	p := h.plan(ctx, msgs, mr)
	results := h.execute(ctx, budget, p.jobs)
	out := h.report(ctx, p, results, msgs, mr)
	h.publish(pubCtx, out.summary.Results)
	if mr != nil {
		if err := mr.Flush(); err != nil {
			h.c.Log.Warn("writing metrics", "error", err.Error())
		}
	}
	return out
}

// invocation is what an invocation answers: the summary, and the SQS messages to retry.
type invocation struct {
	summary Summary
	retry   []string
}
