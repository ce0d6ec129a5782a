// Package reconcile is the reconcile function: the scheduled repair of everything in
// scope, spread over Lambda through two queues. ECR's events are best effort, and
// images pushed before a rule existed have none; a run finds and repairs the drift.
//
//  1. The trigger (the schedule's target, or an operator's invocation with a scope)
//     checks that the previous run has ended — the reconcile and copy queues are empty —
//     and sends one scan item: the first page of the source's repository listing.
//  2. A scan item lists its page (DescribeRepositories, 1,000 names), sends one
//     repository item per repository in scope, then the scan item of the next page (by
//     the page's nextToken: ECR documents no order for the listing, only the token).
//  3. A repository item lists the source repository and each of its destinations
//     (DescribeImages, through list-only sessions of the destination roles), plans by
//     diff, and sends each copy to make as a work item to the copy queue, which the
//     replicate function consumes few at a time so that the destinations' PutImage
//     quota is shared. A plan that does not fit one invocation continues by cursor.
//
// Nothing is acknowledged that was not done. A failure that may pass (throttling, a 5xx,
// a reset connection) is retried: an item's rest is sent again with a delay (attempt,
// from the first thing not done, so what was done is not done twice); when even that
// cannot be sent, or after MaxAttempts, the message is answered as failed and SQS
// redelivers it, then moves it to the dead-letter queue. A failure that cannot pass
// (access denied, an invalid page token) is reported with its code: ReconcileFailures,
// which the template alarms on, and an error log line naming the run. See
// docs/RELIABILITY.md.
//
// The function sends to the queue it consumes: the chains are bounded by construction
// (a listing ends; cursors advance; attempts are counted) and by MaxHops, which every
// continuation counts, so the template sets RecursiveLoop to Allow for this function
// only ("Use Lambda recursive loop detection to prevent infinite loops",
// https://docs.aws.amazon.com/lambda/latest/dg/invocation-recursion.html).
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ecr-replicator/ecr-replicator/internal/deadline"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/sqssend"
)

// QueueAttributes is the part of the SQS client the trigger uses to see whether the
// previous run has ended.
type QueueAttributes interface {
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// Config is what a Reconciler is built from.
type Config struct {
	Rules    *rules.Document
	RulesErr error // an invalid rules document: every invocation fails with it
	Resolver *ecraccess.Resolver
	// SourceAccountID and SourceRegion name the source registry. An empty
	// SourceAccountID is source.roleArn's account, or the caller's.
	SourceAccountID string
	SourceRegion    string
	Sender          *sqssend.Sender
	Queues          QueueAttributes
	// ReconcileQueueURL receives scan and repository items; CopyQueueURL work items.
	ReconcileQueueURL string
	CopyQueueURL      string
	// Time divides each invocation's time (zero: deadline's defaults).
	Time deadline.Options
	// RetryDelay is the delay of an item's first retry; each later one doubles, up to
	// SQS's 15 minutes (default 30 s).
	RetryDelay time.Duration
	// Parallel bounds the items of one batch handled at once (default 10: a batch).
	Parallel int
	Log      *slog.Logger
	// EMF, when set, receives each invocation's metrics (namespace Namespace).
	EMF       io.Writer
	Namespace string
	Now       func() time.Time
}

// Reconciler handles the reconcile function's invocations. It is safe for concurrent
// use and long-lived (a warm function keeps its credentials).
type Reconciler struct {
	c Config

	mu  sync.Mutex // guards src
	src ecrname.Registry
}

// New returns a Reconciler.
func New(c Config) *Reconciler {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = 30 * time.Second
	}
	if c.Parallel <= 0 {
		c.Parallel = 10
	}
	return &Reconciler{c: c}
}

// Handle answers one invocation: an SQS batch of reconcile items gets the partial-batch
// response (the items to redeliver); anything else is a trigger, answered with the run it
// started, or an error (Lambda then retries the asynchronous invocation).
func (r *Reconciler) Handle(ctx context.Context, payload json.RawMessage) (any, error) {
	if err := rules.Usable(r.c.Rules, r.c.RulesErr); err != nil {
		r.c.Log.Error("the rules document cannot be used; fix the configuration (the rules document or its parameter)", "error", err.Error())
		return nil, err
	}
	if r.c.ReconcileQueueURL == "" || r.c.CopyQueueURL == "" || r.c.Sender == nil {
		return nil, errors.New("configuration error: the reconcile needs RECONCILE_QUEUE_URL and COPY_QUEUE_URL")
	}
	if isBatch(payload) {
		return r.batch(ctx, payload)
	}
	return r.Trigger(ctx, payload)
}

// sourceRegistry is the registry the rules read from: its account is the configured one,
// source.roleArn's, or the caller's (asked once).
func (r *Reconciler) sourceRegistry(ctx context.Context) (ecrname.Registry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.src.AccountID != "" {
		return r.src, nil
	}
	acct := r.c.SourceAccountID
	if acct == "" {
		var err error
		if acct, err = destinations.SourceAccount(ctx, r.c.Resolver, r.c.Rules.SourceRoleARN()); err != nil {
			return ecrname.Registry{}, err
		}
	}
	r.src = ecrname.Registry{AccountID: acct, Region: r.c.SourceRegion}
	return r.src, nil
}

// registry is the source registry's API access.
func (r *Reconciler) registry(ctx context.Context, doc *rules.Document, src ecrname.Registry) (*ecraccess.Client, error) {
	// A source role (source.roleArn) is assumed list-only too: the reconcile never reads
	// an image, only listings.
	a := ecraccess.SourceAccess(src, doc.SourceRoleARN())
	a.ListOnly = true
	return r.c.Resolver.Client(ctx, a)
}

func (r *Reconciler) recorder() *metrics.Recorder {
	if r.c.EMF == nil {
		return nil
	}
	return metrics.New(r.c.EMF, r.c.Namespace)
}

func (r *Reconciler) flush(mr *metrics.Recorder) {
	if mr == nil {
		return
	}
	if err := mr.Flush(); err != nil {
		r.c.Log.Warn("writing metrics", "error", err.Error())
	}
}

// retryDelay is the delay before attempt (1: the first retry).
func (r *Reconciler) retryDelay(attempt int) time.Duration {
	d := r.c.RetryDelay
	for i := 1; i < attempt && d < sqssend.MaxDelay; i++ {
		d *= 2
	}
	return min(d, sqssend.MaxDelay)
}
