package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// pageSize is DescribeRepositories' largest page.
const pageSize = 1000

// page is one page of the repository listing: names in ECR's order.
type page struct {
	names []string
	next  string // nextToken of the page after; "": the last page
}

// scan handles a scan item: one page of the listing, fanned out as repository items
// from where the item starts, then the scan of the next page.
func (r *Reconciler) scan(ctx context.Context, inv *invocation, messageID string, item *ecrevent.Reconcile) error {
	doc, err := r.c.Rules.Narrow(item.Scope.Repositories, item.Scope.Tags)
	if err != nil {
		r.report(inv, failure{messageID: messageID, item: item, code: CodeMalformed, err: fmt.Errorf("reconcile scope: %w", err)})
		return nil
	}
	p, err := r.listPage(ctx, doc, item)
	if err != nil {
		return r.retryOrReport(ctx, inv, messageID, item, err)
	}
	start := resumeAt(p.names, item.Scan)
	var repos []ecrevent.Reconcile
	var at []int // repos[k] is p.names[at[k]]
	for i := start; i < len(p.names); i++ {
		if doc.RepositoryInScope(p.names[i]) {
			repo := *item
			repo.Scan, repo.Repository, repo.Attempt, repo.Hops = nil, p.names[i], 0, 0
			repos, at = append(repos, repo), append(at, i)
		}
	}
	sent, unsent, sendErr := r.fanOut(ctx, inv, messageID, item, repos)
	var conts []continuation
	switch {
	case unsent < len(repos):
		// The rest of this page in another item — later after a failure, at once when time
		// ran out; it continues the listing when it is done.
		rest := *item
		rest.Scan = &ecrevent.Scan{Token: item.Scan.Token}
		if at[unsent] > 0 {
			rest.Scan.Skip, rest.Scan.Next = at[unsent], p.names[at[unsent]]
		}
		if sendErr != nil {
			conts = append(conts, r.retryOf(rest, sendErr))
		} else {
			rest.Hops++
			conts = append(conts, continuation{item: rest})
		}
	case p.next != "":
		next := *item
		next.Scan, next.Attempt, next.Hops = &ecrevent.Scan{Token: p.next}, 0, item.Hops+1
		conts = append(conts, continuation{item: next})
	}
	r.c.Log.Info("reconcile scan page", "run", item.Run, "message_id", messageID, "repositories", len(p.names),
		"resumedAt", start, "inScope", len(repos), "sent", sent, "unsent", len(repos)-unsent, "lastPage", p.next == "")
	if inv.mr != nil {
		inv.mr.Add("RepositoriesInScope", metrics.Count, float64(sent))
	}
	return r.continueWith(ctx, inv, messageID, item, conts)
}

// fanOut sends repository items sendChunk at a time and stops at the first chunk with
// an item that may still be sent, or at the soft stop (after one chunk at least: a page
// always moves on): it answers how many were sent, the index of the first item not sent
// (len(repos) when all were settled) and, when a failure stopped it, that item's error.
// Stopping there bounds what its retry sends again to the chunk's later batches.
func (r *Reconciler) fanOut(ctx context.Context, inv *invocation, messageID string, item *ecrevent.Reconcile, repos []ecrevent.Reconcile) (sent, unsent int, err error) {
	for start := 0; start < len(repos); start += sendChunk {
		if start > 0 && inv.time.SoftStopped(r.c.Now()) {
			return sent, start, nil
		}
		chunk := repos[start:min(start+sendChunk, len(repos))]
		errs := r.sendItems(ctx, chunk, nil)
		n, k := r.settleSends(inv, messageID, item, errs)
		sent += n
		if k < len(chunk) {
			return sent, start + k, errs[k]
		}
	}
	return sent, len(repos), nil
}

// listPage lists the page item.Scan names.
func (r *Reconciler) listPage(ctx context.Context, doc *rules.Document, item *ecrevent.Reconcile) (page, error) {
	src, err := r.registry(ctx, doc, item.Registry())
	if err != nil {
		return page{}, err
	}
	in := &ecr.DescribeRepositoriesInput{RegistryId: aws.String(item.Source.AccountID), MaxResults: aws.Int32(pageSize)}
	if item.Scan.Token != "" {
		in.NextToken = aws.String(item.Scan.Token)
	}
	out, err := src.API().DescribeRepositories(ctx, in)
	if err != nil {
		err = ecraccess.WrapAWS("ecr:DescribeRepositories", err)
		var ae *ecraccess.Error
		if item.Scan.Token != "" && errors.As(err, &ae) && ae.Code == ecraccess.CodeInvalidParameter {
			// A token ECR no longer accepts (expired: its life is not documented) cannot
			// be continued; the listing cannot be resumed elsewhere without an order.
			err = fmt.Errorf("the listing cannot continue: ECR refused the page token (the rest of the registry is left for the next run): %w", err)
		}
		return page{}, err
	}
	p := page{next: aws.ToString(out.NextToken)}
	for _, repo := range out.Repositories {
		p.names = append(p.names, aws.ToString(repo.RepositoryName))
	}
	return p, nil
}

// resumeAt is where a page resumes: at Skip when the name there is still Next, at Next
// wherever it moved (repositories created or deleted since), else from the start
// (duplicates of the page's items, never a loss).
func resumeAt(names []string, sc *ecrevent.Scan) int {
	if sc.Skip == 0 {
		return 0
	}
	if sc.Skip < len(names) && names[sc.Skip] == sc.Next {
		return sc.Skip
	}
	for i, n := range names {
		if n == sc.Next {
			return i
		}
	}
	return 0
}

// settleSends reports the items SQS refused for good before the first one that may
// still be sent, and answers how many were sent and the index of that first unsent one
// (len(errs) when every item was settled).
func (r *Reconciler) settleSends(inv *invocation, messageID string, item *ecrevent.Reconcile, errs []error) (sent, unsent int) {
	unsent = len(errs)
	for i, err := range errs {
		if err == nil {
			sent++
			continue
		}
		if err == errReported {
			continue
		}
		if _, retryable := classify(err); retryable {
			unsent = i
			break
		}
		code, _ := classify(err)
		r.report(inv, failure{messageID: messageID, item: item, code: code, err: fmt.Errorf("an item was not sent: %w", err)})
	}
	return sent, unsent
}

// continuation is an item that carries on another's work, delayed when it is a retry.
type continuation struct {
	item  ecrevent.Reconcile
	delay time.Duration
}

// retryOf is the retry of item (the next attempt, after a delay) for err.
func (r *Reconciler) retryOf(item ecrevent.Reconcile, err error) continuation {
	item.Attempt++
	item.Hops++
	code, _ := classify(err)
	r.c.Log.Warn("reconcile item retried later", "run", item.Run, "item", item.String(), "attempt", item.Attempt, "error", err.Error(), "error_code", code)
	return continuation{item: item, delay: r.retryDelay(item.Attempt)}
}

// retryOrReport answers an item that failed before it sent anything: a failure that may
// pass is retried (the item again, later), one that cannot is reported.
func (r *Reconciler) retryOrReport(ctx context.Context, inv *invocation, messageID string, item *ecrevent.Reconcile, err error) error {
	if _, retryable := classify(err); !retryable {
		return r.unsettled(inv, item, messageID, err)
	}
	return r.continueWith(ctx, inv, messageID, item, []continuation{r.retryOf(*item, err)})
}

// continueWith sends an item's continuations. The item is done when they are sent;
// otherwise — or when a retry would pass MaxAttempts or a chain MaxHops — SQS must
// deliver the item again (errRedeliver): what it did is then done again, which is
// bounded by one item's work and harmless (copies of what a destination has are
// skipped).
func (r *Reconciler) continueWith(ctx context.Context, inv *invocation, messageID string, item *ecrevent.Reconcile, conts []continuation) error {
	if len(conts) == 0 {
		return nil
	}
	items := make([]ecrevent.Reconcile, len(conts))
	delays := make([]time.Duration, len(conts))
	for i, c := range conts {
		if c.item.Attempt > ecrevent.MaxAttempts || c.item.Hops > ecrevent.MaxHops {
			r.c.Log.Warn("reconcile item left to SQS: out of attempts or hops", "message_id", messageID, "run", item.Run, "item", item.String(),
				"attempt", c.item.Attempt, "hops", c.item.Hops)
			return errRedeliver
		}
		items[i], delays[i] = c.item, c.delay
		if c.delay > 0 && inv.mr != nil {
			inv.mr.Add("ReconcileRetries", metrics.Count, 1)
		}
	}
	for i, err := range r.sendItems(inv.late, items, delays) {
		if err != nil {
			code, _ := classify(err)
			r.c.Log.Warn("reconcile continuation not sent; the item will be redelivered", "message_id", messageID, "run", item.Run,
				"item", items[i].String(), "error", err.Error(), "error_code", code)
			return errRedeliver
		}
	}
	return nil
}
