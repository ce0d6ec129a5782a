package backfill

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// A reconcile run is the scheduled repair of everything in scope, spread over Lambda
// through three queues, each consumed by the replicate function with its own
// concurrency:
//
//  1. The backfill function (the schedule's target) checks that the previous run has
//     ended — the reconcile and copy queues are empty — then lists the source's
//     repositories a page at a time and sends one reconcile item per repository in scope
//     to the reconcile queue (FanOut). If its time runs short, the rest of the listing
//     goes as one scan item.
//  2. Reconcile items are list calls only, so their queue runs wide (tens of invocations
//     at once): a repository item lists the source repository and every destination,
//     plans by diff and sends each image to copy as a work item to the copy queue; if
//     its time runs short, the rest of its plan goes back as the same item with a cursor.
//     A repository of any size makes progress and is acknowledged, never cycling into
//     the dead-letter queue. A scan item continues the listing.
//  3. Work items are copies, and copies write manifests, which a destination accepts at
//     its PutImage quota (10 per second per account and region by default) whoever
//     calls. The copy queue runs narrow (CopyConcurrency invocations), and each
//     invocation's engine starts at its share of the quota and adapts to throttling (see
//     copyengine's pacer): the quota is shared, not multiplied by the fleet.
//
// No function sends messages to itself in a loop: the chain is schedule → backfill →
// reconcile queue → replicate (→ reconcile queue, for a scan or a repository's rest →
// replicate) → copy queue → replicate, which never enqueues. Lambda stops a
// Lambda→SQS→Lambda chain after about 16 invocations unless the function's
// RecursiveLoop is Allow ("Use Lambda recursive loop detection to prevent infinite
// loops", https://docs.aws.amazon.com/lambda/latest/dg/invocation-recursion.html); the
// deepest chain here is a scan continued a few times for a registry of ~100,000
// repositories, so the template keeps the default (Terminate), which also stops a loop
// nobody intended.

// FanOutResult is what one FanOut call did.
type FanOutResult struct {
	RepositoriesInScope int    `json:"repositoriesInScope"`
	Enqueued            int    `json:"enqueued"`
	Failed              int    `json:"failed"`
	ScanContinued       bool   `json:"scanContinued,omitempty"` // the rest of the listing went as a scan item
	Last                string `json:"-"`
}

// reconcileResponse completes a backfill response in reconcile mode.
func (b *Backfill) reconcile(ctx context.Context, req Request, start time.Time) (*Response, error) {
	if b.ReconcileQueueURL == "" || b.workQueue() == "" || b.Queue == nil {
		return nil, errors.New("backfill request: mode: reconcile needs RECONCILE_QUEUE_URL and COPY_QUEUE_URL (or REPLICATION_QUEUE_URL)")
	}
	doc, err := b.Rules.Narrow(req.Repositories, req.Tags)
	if err != nil {
		return nil, fmt.Errorf("backfill request: %w", err)
	}
	resp := &Response{Mode: ModeReconcile, Run: start.UTC().Truncate(time.Second).Format(time.RFC3339)}
	mr := b.recorder()
	// The previous run has ended when nothing of it is left in the reconcile and copy
	// queues (a manual backfill's work items count too: they compete for the same quota).
	pending, err := b.queued(ctx)
	switch {
	case err != nil:
		b.log().Warn("reconcile: could not tell whether the previous run ended", "error", err.Error())
	case pending > 0:
		resp.PreviousRunIncomplete = true
		b.log().Warn("reconcile: the previous run has not ended; starting this one anyway", "messagesLeft", pending)
	}
	if mr != nil {
		mr.Add("ReconcileOverrun", metrics.Count, boolFloat(resp.PreviousRunIncomplete))
	}
	srcAccount := b.SourceAccountID
	if srcAccount == "" {
		if srcAccount, err = SourceAccount(ctx, b.Resolver, doc); err != nil {
			return nil, err
		}
	}
	item := ecrevent.Reconcile{Run: resp.Run, Source: ecrevent.SourceRegistry{AccountID: srcAccount, Region: b.SourceRegion},
		Scope: ecrevent.Scope{Repositories: req.Repositories, Tags: req.Tags}}
	if !req.Since.IsZero() {
		item.Scope.Since = &req.Since
	}
	out, err := b.FanOut(ctx, item, "")
	if err != nil {
		return nil, err
	}
	resp.RepositoriesScanned, resp.Enqueued, resp.Failed = out.RepositoriesInScope, out.Enqueued, out.Failed
	resp.ScanContinued = out.ScanContinued
	resp.DurationMs = b.now().Sub(start).Milliseconds()
	b.log().Info("reconcile run started", "run", resp.Run, "repositoriesInScope", out.RepositoriesInScope, "enqueued", out.Enqueued,
		"failed", out.Failed, "scanContinued", out.ScanContinued, "previousRunIncomplete", resp.PreviousRunIncomplete, "durationMs", resp.DurationMs)
	if mr != nil {
		mr.Add("RepositoriesInScope", metrics.Count, float64(out.RepositoriesInScope))
		b.flush(mr)
	}
	return resp, nil
}

// queued is how many messages the reconcile and copy queues hold: visible, in flight,
// delayed.
func (b *Backfill) queued(ctx context.Context) (int, error) {
	n := 0
	for _, q := range []string{b.ReconcileQueueURL, b.workQueue()} {
		out, err := b.Queue.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
		if err != nil {
			return 0, ecraccess.WrapAWS("sqs:GetQueueAttributes", err)
		}
		for _, v := range out.Attributes {
			c, _ := strconv.Atoi(v)
			n += c
		}
	}
	return n, nil
}

// FanOut lists the source's repositories after `after` (a page of 1,000 at a time) and
// sends one reconcile item per repository in scope, 10 per SendMessageBatch, pages sent
// while the next is listed. When time runs short (the margin before ctx's deadline), the
// rest of the listing goes as one scan item, and a consumer continues it.
func (b *Backfill) FanOut(ctx context.Context, item ecrevent.Reconcile, after string) (FanOutResult, error) {
	var res FanOutResult
	doc, err := b.Rules.Narrow(item.Scope.Repositories, item.Scope.Tags)
	if err != nil {
		return res, fmt.Errorf("reconcile scope: %w", err)
	}
	src, err := b.Resolver.Registry(ctx, ecraccess.Access{AccountID: item.Source.AccountID, Region: item.Source.Region, RoleARN: doc.SourceRoleARN()})
	if err != nil {
		return res, err
	}
	stopAt := b.stopAt(ctx)
	var (
		mu   sync.Mutex
		send errgroup.Group
	)
	send.SetLimit(4)
	p := ecr.NewDescribeRepositoriesPaginator(src.API(), &ecr.DescribeRepositoriesInput{RegistryId: aws.String(item.Source.AccountID), MaxResults: aws.Int32(1000)})
	for p.HasMorePages() {
		if !stopAt.IsZero() && !b.now().Before(stopAt) {
			send.Wait()
			res.ScanContinued = true
			scan := item
			scan.Repository, scan.Scan = "", &ecrevent.Scan{After: res.Last}
			if err := b.sendReconcile(ctx, []ecrevent.Reconcile{scan}); err != nil {
				return res, err
			}
			return res, nil
		}
		out, err := p.NextPage(ctx)
		if err != nil {
			send.Wait()
			return res, ecraccess.WrapAWS("ecr:DescribeRepositories", err)
		}
		var names []string
		for _, r := range out.Repositories {
			if n := aws.ToString(r.RepositoryName); n > after && doc.RepositoryInScope(n) {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		if len(names) == 0 {
			continue
		}
		res.RepositoriesInScope += len(names)
		res.Last = max(res.Last, names[len(names)-1])
		for start := 0; start < len(names); start += 10 {
			batch := names[start:min(start+10, len(names))]
			send.Go(func() error {
				items := make([]ecrevent.Reconcile, len(batch))
				for i, n := range batch {
					items[i] = item
					items[i].Repository, items[i].Scan = n, nil
				}
				err := b.sendReconcile(ctx, items)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					res.Failed += len(batch)
					b.log().Error("reconcile: items not sent", "repositories", batch, "error", err.Error())
					return nil
				}
				res.Enqueued += len(batch)
				return nil
			})
		}
	}
	send.Wait()
	return res, nil
}

// sendReconcile sends up to 10 reconcile items in one SendMessageBatch, retried
// (entries refused without the sender's fault included).
func (b *Backfill) sendReconcile(ctx context.Context, items []ecrevent.Reconcile) error {
	now := b.now().UTC().Truncate(time.Second)
	var entries []sqstypes.SendMessageBatchRequestEntry
	for i := range items {
		items[i].CreatedAt = now
		body, err := ecrevent.MarshalReconcile(items[i])
		if err != nil {
			return err
		}
		entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(string(body))})
	}
	return retry.Do(ctx, b.Retry, func(ctx context.Context) error {
		out, err := b.Queue.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(b.ReconcileQueueURL), Entries: entries})
		if err != nil {
			return ecraccess.WrapAWS("sqs:SendMessageBatch", err)
		}
		if len(out.Failed) == 0 {
			return nil
		}
		failed := map[string]bool{}
		for _, f := range out.Failed {
			if f.SenderFault {
				return fmt.Errorf("sqs:SendMessageBatch refused a reconcile item: %s: %s", aws.ToString(f.Code), aws.ToString(f.Message))
			}
			failed[aws.ToString(f.Id)] = true
		}
		var again []sqstypes.SendMessageBatchRequestEntry
		for _, e := range entries {
			if failed[aws.ToString(e.Id)] {
				again = append(again, e)
			}
		}
		entries = again
		return unsent(out, entries)
	})
}

// Reconcile handles one reconcile item in the replicate function: a scan item continues
// the listing (FanOut); a repository item is planned by diff and its work sent to the
// copy queue, from its cursor on, until the soft stop (Margin before ctx's deadline); the
// rest goes back to the reconcile queue as the same item with a new cursor, so the item
// is done either way. An error is the item's failure (retry.Classify says whether to
// redeliver it).
func (b *Backfill) Reconcile(ctx context.Context, item *ecrevent.Reconcile) error {
	if item.Scan != nil {
		_, err := b.FanOut(ctx, *item, item.Scan.After)
		return err
	}
	start := b.now()
	req := Request{Repositories: item.Scope.Repositories, Tags: item.Scope.Tags, Mode: ModeEnqueue}
	if item.Scope.Since != nil {
		req.Since = *item.Scope.Since
	}
	doc, err := b.Rules.Narrow(req.Repositories, req.Tags)
	if err != nil {
		return fmt.Errorf("reconcile scope: %w", err)
	}
	if b.workQueue() == "" || b.Queue == nil {
		return errors.New("reconcile item: needs COPY_QUEUE_URL (or REPLICATION_QUEUE_URL)")
	}
	if !doc.RepositoryInScope(item.Repository) {
		return nil // the rules changed since the item was sent
	}
	r := &run{b: b, doc: doc, req: req, mode: ModeEnqueue, resp: &Response{Mode: ModeReconcile, Run: item.Run},
		outstand: map[ecrname.Registry]int{}, srcAccount: item.Source.AccountID, srcRegion: item.Source.Region}
	r.stopAt = b.stopAt(ctx)
	src, err := b.Resolver.Registry(ctx, ecraccess.Access{AccountID: item.Source.AccountID, Region: item.Source.Region, RoleARN: doc.SourceRoleARN()})
	if err != nil {
		return err
	}
	last, done := r.repository(ctx, src.API(), item.Repository, item.Cursor)
	resp := r.resp
	if !done && r.sendErr == nil {
		rest := *item
		rest.Cursor = last
		if err := b.sendReconcile(ctx, []ecrevent.Reconcile{rest}); err != nil {
			// What was sent stays sent; the redelivered item plans it again, and copies
			// of what the destination has are skipped.
			return err
		}
		resp.Remaining = 0
	}
	resp.DurationMs = b.now().Sub(start).Milliseconds()
	b.log().Info("reconcile repository", "run", item.Run, "repository", item.Repository, "imagesSeen", resp.ImagesSeen,
		"inSync", resp.InSync, "drift", resp.Drift, "enqueued", resp.Enqueued, "failed", resp.Failed,
		"continued", !done, "durationMs", resp.DurationMs)
	if mr := b.recorder(); mr != nil {
		mr.Add("RepositoriesReconciled", metrics.Count, 1)
		mr.Add("Drift", metrics.Count, float64(resp.Drift))
		mr.Add("ImagesEnqueued", metrics.Count, float64(resp.Enqueued))
		mr.Add("BackfillFailures", metrics.Count, float64(resp.Failed))
		b.flush(mr)
	}
	// Work the copy queue did not take: the item's failure, redelivered if SQS's was
	// transient (the redelivery plans again and sends what is still missing).
	return r.sendErr
}

func (b *Backfill) recorder() *metrics.Recorder {
	if b.EMF == nil {
		return nil
	}
	return metrics.New(b.EMF, b.Namespace)
}

func (b *Backfill) flush(mr *metrics.Recorder) {
	if err := mr.Flush(); err != nil {
		b.log().Warn("writing metrics", "error", err.Error())
	}
}

func boolFloat(v bool) float64 {
	if v {
		return 1
	}
	return 0
}
