package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/aws/aws-lambda-go/events"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/deadline"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

func isBatch(payload []byte) bool {
	var probe struct {
		Records json.RawMessage `json:"Records"`
	}
	return json.Unmarshal(payload, &probe) == nil && len(probe.Records) > 0 && string(probe.Records) != "null"
}

// Codes of failures the reconcile reports that carry no AWS code of their own.
const (
	CodeMalformed     = "Malformed"     // a message that is not a valid reconcile item
	CodeForeignSource = "ForeignSource" // an item naming another registry than the function's source
	CodeInvalidTarget = "InvalidDestination"
)

// invocation is one invocation's shared state: its time, its metrics.
type invocation struct {
	time deadline.Budget
	mr   *metrics.Recorder
	// late is the invocation's context cut halfway through the reserve: what hands an
	// item's rest on (its continuations) is sent under it, after the work (cut at the hard
	// stop) and before the answer.
	late context.Context

	mu       sync.Mutex
	reported map[string]int // permanent failures reported, by message ID
}

// failures is how many permanent failures were reported for a message.
func (inv *invocation) failures(messageID string) int {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.reported[messageID]
}

// batch handles an SQS batch: each item is done, reported as a permanent failure, or
// listed in batchItemFailures for SQS to redeliver.
func (r *Reconciler) batch(ctx context.Context, payload []byte) (events.SQSEventResponse, error) {
	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	var sqsEvent events.SQSEvent
	if err := json.Unmarshal(payload, &sqsEvent); err != nil {
		return resp, fmt.Errorf("malformed SQS batch: %w", err)
	}
	inv := &invocation{time: deadline.New(ctx, r.c.Now(), r.c.Time), mr: r.recorder(), reported: map[string]int{}}
	defer r.flush(inv.mr)
	workCtx, cancel := inv.time.Work(ctx)
	defer cancel()
	late, cancelLate := inv.time.Late(ctx)
	defer cancelLate()
	inv.late = late
	var mu sync.Mutex
	g := new(errgroup.Group)
	g.SetLimit(r.c.Parallel)
	for _, rec := range sqsEvent.Records {
		g.Go(func() error {
			if err := r.message(workCtx, inv, rec); err != nil {
				mu.Lock()
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
				mu.Unlock()
			}
			return nil
		})
	}
	g.Wait()
	return resp, nil
}

// errRedeliver is the answer for a message SQS must deliver again.
var errRedeliver = errors.New("redeliver")

// errReported marks a part of an item that failed for good and was reported already.
var errReported = errors.New("reported")

// message handles one record: nil when it is done or reported for good, errRedeliver
// when SQS must deliver it again.
func (r *Reconciler) message(ctx context.Context, inv *invocation, rec events.SQSMessage) error {
	if ctx.Err() != nil {
		return errRedeliver // not started before the hard stop
	}
	msg, err := ecrevent.Parse([]byte(rec.Body))
	if err == nil && msg.Kind != ecrevent.KindReconcile {
		err = fmt.Errorf("%w: a %s, not a reconcile item (is another queue mapped to this function?)", ecrevent.ErrMalformed, msg.Kind)
	}
	if err != nil {
		r.report(inv, failure{messageID: rec.MessageId, code: CodeMalformed, err: err})
		return nil
	}
	item := msg.Reconcile
	src, err := r.sourceRegistry(ctx)
	if err != nil {
		return r.unsettled(inv, item, rec.MessageId, err)
	}
	if item.Registry() != src {
		// A message is a claim: this function reconciles its own source only.
		r.report(inv, failure{messageID: rec.MessageId, item: item, code: CodeForeignSource,
			err: fmt.Errorf("the item names source %s; this function reconciles %s", item.Registry(), src)})
		return nil
	}
	if item.Scan != nil {
		return r.scan(ctx, inv, rec.MessageId, item)
	}
	return r.repository(ctx, inv, rec.MessageId, item)
}

// unsettled answers an item that failed before it did anything: a failure that may pass
// is redelivered by SQS; one that cannot is reported.
func (r *Reconciler) unsettled(inv *invocation, item *ecrevent.Reconcile, messageID string, err error) error {
	code, retryable := classify(err)
	if retryable {
		r.c.Log.Warn("reconcile item not done (will be redelivered)", "message_id", messageID, "item", item.String(), "error", err.Error(), "error_code", code)
		return errRedeliver
	}
	r.report(inv, failure{messageID: messageID, item: item, code: code, err: err})
	return nil
}

// classify is retry.Classify with a code for errors that carry none.
func classify(err error) (string, bool) {
	code, retryable := retry.Classify(err)
	if code == "" {
		code = "Unknown"
	}
	return code, retryable
}

// failure is a permanent failure to report.
type failure struct {
	messageID   string
	item        *ecrevent.Reconcile
	destination string
	code        string
	err         error
}

// report logs a permanent failure and counts it in ReconcileFailures (alarmed), once
// in all and once by code.
func (r *Reconciler) report(inv *invocation, f failure) {
	attrs := []any{"message_id", f.messageID, "error_code", f.code, "error", f.err.Error()}
	if f.item != nil {
		attrs = append(attrs, "run", f.item.Run, "item", f.item.String())
		if f.item.Repository != "" {
			attrs = append(attrs, "repository", f.item.Repository)
		}
	}
	if f.destination != "" {
		attrs = append(attrs, "destination", f.destination)
	}
	r.c.Log.Error("reconcile failure (permanent, reported)", attrs...)
	inv.mu.Lock()
	inv.reported[f.messageID]++
	inv.mu.Unlock()
	if inv.mr != nil {
		inv.mr.Add("ReconcileFailures", metrics.Count, 1)
		inv.mr.Add("ReconcileFailures", metrics.Count, 1, "Code", f.code)
	}
}
