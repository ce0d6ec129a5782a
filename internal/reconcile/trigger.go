package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/sqssend"
)

// Request is what starts a run: every field optional. The schedule delivers its
// "Scheduled Event" (the run is then named after the event's time, so Lambda's retries
// of the invocation belong to the same run); an operator may narrow a run by hand:
//
//	{"repositories": ["team-a/*"], "tags": ["v*"], "since": "2026-01-01T00:00:00Z"}
type Request struct {
	Repositories []string   `json:"repositories,omitempty"`
	Tags         []string   `json:"tags,omitempty"`
	Since        *time.Time `json:"since,omitempty"`
	// Time is a scheduled event's time.
	Time time.Time `json:"-"`
}

// ParseRequest decodes a trigger strictly (an unknown field is an error naming it), or
// an EventBridge "Scheduled Event"
// (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-run-lambda-schedule.html).
func ParseRequest(payload []byte) (Request, error) {
	var req Request
	payload = bytes.TrimSpace(payload)
	if len(payload) == 0 || string(payload) == "null" {
		return req, nil
	}
	var probe struct {
		Source     string    `json:"source"`
		DetailType string    `json:"detail-type"`
		Time       time.Time `json:"time"`
	}
	if json.Unmarshal(payload, &probe) == nil && probe.Source == "aws.events" && probe.DetailType == "Scheduled Event" {
		req.Time = probe.Time
		return req, nil
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
			return req, fmt.Errorf("reconcile request: unknown field %s (want repositories, tags, since)", strings.TrimPrefix(msg, "json: unknown field "))
		}
		return req, fmt.Errorf("reconcile request: %v", err)
	}
	if dec.More() {
		return req, fmt.Errorf("reconcile request: trailing data after the JSON object")
	}
	return req, nil
}

// Started is the trigger's answer.
type Started struct {
	Run string `json:"run"`
	// PreviousRunIncomplete: the reconcile or copy queue still held work when this run
	// started (ReconcileOverrun, alarmed).
	PreviousRunIncomplete bool   `json:"previousRunIncomplete,omitempty"`
	Source                string `json:"source"` // account/region
}

// Trigger starts a run: it sends the scan item of the first page. An error — the run
// did not start — fails the invocation, and Lambda retries it.
func (r *Reconciler) Trigger(ctx context.Context, payload []byte) (*Started, error) {
	req, err := ParseRequest(payload)
	if err != nil {
		return nil, err
	}
	if _, err := r.c.Rules.Narrow(req.Repositories, req.Tags); err != nil {
		return nil, fmt.Errorf("reconcile request: %w", err)
	}
	started := req.Time
	if started.IsZero() {
		started = r.c.Now()
	}
	src, err := r.sourceRegistry(ctx)
	if err != nil {
		return nil, err
	}
	out := &Started{Run: started.UTC().Truncate(time.Second).Format(time.RFC3339), Source: src.String()}
	mr := r.recorder()
	defer r.flush(mr)
	out.PreviousRunIncomplete = r.previousRunIncomplete(ctx)
	if mr != nil {
		mr.Add("ReconcileOverrun", metrics.Count, boolFloat(out.PreviousRunIncomplete))
	}
	item := ecrevent.Reconcile{Run: out.Run, Source: ecrevent.SourceRegistry{AccountID: src.AccountID, Region: src.Region},
		Scan: &ecrevent.Scan{}, Scope: ecrevent.Scope{Repositories: req.Repositories, Tags: req.Tags, Since: req.Since}}
	if err := r.sendItems(ctx, []ecrevent.Reconcile{item}, nil)[0]; err != nil {
		code, _ := classify(err)
		r.c.Log.Error("reconcile run not started: its first scan item was not sent (the invocation fails, and Lambda retries it)",
			"run", out.Run, "error", err.Error(), "error_code", code)
		return nil, fmt.Errorf("reconcile run %s not started: %w", out.Run, err)
	}
	r.c.Log.Info("reconcile run started", "run", out.Run, "source", out.Source, "previousRunIncomplete", out.PreviousRunIncomplete,
		"repositories", req.Repositories, "tags", req.Tags)
	return out, nil
}

// previousRunIncomplete reports whether the reconcile or copy queue holds anything
// (visible, in flight or delayed): the previous run, or a backfill, has not ended. A
// failure to tell is logged and read as "ended": it must not stop this run.
func (r *Reconciler) previousRunIncomplete(ctx context.Context) bool {
	if r.c.Queues == nil {
		return false
	}
	for _, q := range []string{r.c.ReconcileQueueURL, r.c.CopyQueueURL} {
		out, err := r.c.Queues.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
		if err != nil {
			err = ecraccess.WrapAWS("sqs:GetQueueAttributes", err)
			r.c.Log.Warn("reconcile: could not tell whether the previous run ended", "queue", q, "error", err.Error())
			continue
		}
		for _, v := range out.Attributes {
			if n, _ := strconv.Atoi(v); n > 0 {
				r.c.Log.Warn("reconcile: the previous run has not ended; starting this one anyway", "queue", q)
				return true
			}
		}
	}
	return false
}

// sendItems sends reconcile items (with their delays, when delays is not nil) to the
// reconcile queue and answers per item.
func (r *Reconciler) sendItems(ctx context.Context, items []ecrevent.Reconcile, delays []time.Duration) []error {
	now := r.c.Now().UTC().Truncate(time.Second)
	errs := make([]error, len(items))
	var msgs []sqssend.Message
	var index []int // msgs[k] is items[index[k]]
	for i := range items {
		items[i].CreatedAt = now
		body, err := ecrevent.MarshalReconcile(items[i])
		if err != nil {
			errs[i] = err // our own item is invalid: a bug, reported with ErrMalformed's text
			continue
		}
		m := sqssend.Message{Body: string(body)}
		if delays != nil {
			m.Delay = delays[i]
		}
		msgs, index = append(msgs, m), append(index, i)
	}
	for k, err := range r.c.Sender.Send(ctx, r.c.ReconcileQueueURL, msgs) {
		errs[index[k]] = err
	}
	return errs
}

func boolFloat(v bool) float64 {
	if v {
		return 1
	}
	return 0
}
