package reconcile

import (
	"context"
	"fmt"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/sqssend"
)

// sendChunk is how many work items go out per round: as many batches as the sender
// sends at once, so that a failure re-sends at most the few batches after it.
const sendChunk = 4 * sqssend.MaxBatch

// repository handles a repository item: it lists the source repository and its
// destinations, plans by diff and sends the work from the item's cursor, until done or
// the soft stop; the rest, and destinations that could not be listed, continue in items
// of their own.
func (r *Reconciler) repository(ctx context.Context, inv *invocation, messageID string, item *ecrevent.Reconcile) error {
	doc, err := r.c.Rules.Narrow(item.Scope.Repositories, item.Scope.Tags)
	if err != nil {
		r.report(inv, failure{messageID: messageID, item: item, code: CodeMalformed, err: fmt.Errorf("reconcile scope: %w", err)})
		return nil
	}
	if !doc.RepositoryInScope(item.Repository) {
		r.c.Log.Info("reconcile repository out of scope now (the rules changed)", "run", item.Run, "repository", item.Repository)
		return nil
	}
	p, err := r.plan(ctx, doc, item)
	if err != nil {
		return r.retryOrReport(ctx, inv, messageID, item, err)
	}
	if p.missing {
		r.c.Log.Info("reconcile repository deleted since it was listed", "run", item.Run, "repository", item.Repository)
		return nil
	}
	retryRegs, listed, listErr := r.destinationFailures(inv, messageID, item, p)
	s := r.sendWork(ctx, inv, messageID, item, backfill.After(p.diff.Work, item.Cursor))
	var conts []continuation
	if !s.done {
		rest := *item
		rest.Cursor = s.cursor
		if len(retryRegs) > 0 {
			rest.Destinations = listed
		}
		if s.err != nil {
			conts = append(conts, r.retryOf(rest, s.err))
		} else {
			rest.Hops++
			conts = append(conts, continuation{item: rest})
		}
	}
	if len(retryRegs) > 0 {
		again := *item
		again.Cursor, again.Destinations = "", retryRegs
		conts = append(conts, r.retryOf(again, listErr))
	}
	r.logRepository(inv, item, p, s, len(conts) == 0 && inv.failures(messageID) == 0)
	return r.continueWith(ctx, inv, messageID, item, conts)
}

// repositoryPlan is what one repository item found.
type repositoryPlan struct {
	missing  bool // the source repository does not exist (any more)
	ex       backfill.Expansion
	diff     backfill.Diff
	listings map[ecrname.Repo]*backfill.Listing
}

// plan lists the source repository and, at once, its destinations (list-only sessions
// of their roles), and diffs them. An error is the source listing's.
func (r *Reconciler) plan(ctx context.Context, doc *rules.Document, item *ecrevent.Reconcile) (repositoryPlan, error) {
	var p repositoryPlan
	src, err := r.registry(ctx, doc, item.Registry())
	if err != nil {
		return p, err
	}
	targets := limitTo(doc.RepositoryTargets(item.Repository), item.Destinations)
	wait := backfill.ListDestinations(ctx, r.c.Resolver, targets, true)
	imgs, found, err := backfill.Images(ctx, src.API(), item.Source.AccountID, item.Repository)
	p.listings = wait()
	if err != nil || !found {
		p.missing = err == nil
		return p, err
	}
	var since time.Time
	if item.Scope.Since != nil {
		since = *item.Scope.Since
	}
	p.ex = backfill.Expand(doc, item.Repository, imgs, since)
	p.ex.Candidates = limitCandidates(p.ex.Candidates, item.Destinations)
	p.diff = backfill.DiffRepository(item.Repository, p.ex.Candidates, p.listings)
	return p, nil
}

// limitTo keeps the targets in the given registries (all of them when none is given).
func limitTo(ts []rules.Target, regs []ecrevent.SourceRegistry) []rules.Target {
	if len(regs) == 0 {
		return ts
	}
	var out []rules.Target
	for _, t := range ts {
		if inRegistries(t.Destination.Registry(), regs) {
			out = append(out, t)
		}
	}
	return out
}

func limitCandidates(cs []backfill.Candidate, regs []ecrevent.SourceRegistry) []backfill.Candidate {
	if len(regs) == 0 {
		return cs
	}
	out := cs[:0:0]
	for _, c := range cs {
		if inRegistries(c.Target.Destination.Registry(), regs) {
			out = append(out, c)
		}
	}
	return out
}

func inRegistries(reg ecrname.Registry, regs []ecrevent.SourceRegistry) bool {
	for _, x := range regs {
		if x.AccountID == reg.AccountID && x.Region == reg.Region {
			return true
		}
	}
	return false
}

// destinationFailures reports the destinations that cannot be planned for good (an
// invalid name, a denial) and answers the registries to retry (a listing failure that
// may pass, with the first such error) and those listed.
func (r *Reconciler) destinationFailures(inv *invocation, messageID string, item *ecrevent.Reconcile, p repositoryPlan) (retry, listed []ecrevent.SourceRegistry, first error) {
	for _, reason := range p.ex.Invalid {
		r.report(inv, failure{messageID: messageID, item: item, code: CodeInvalidTarget, err: fmt.Errorf("%s", reason)})
	}
	seen := map[ecrname.Registry]bool{}
	for _, t := range p.ex.Targets {
		reg := t.Destination.Registry()
		l := p.listings[t.Repo()]
		if l == nil || l.Err == nil {
			if !seen[reg] {
				seen[reg] = true
				listed = append(listed, ecrevent.SourceRegistry{AccountID: reg.AccountID, Region: reg.Region})
			}
			continue
		}
		code, retryable := classify(l.Err)
		if !retryable {
			r.report(inv, failure{messageID: messageID, item: item, destination: t.Repo().String(), code: code,
				err: fmt.Errorf("listing the destination: %w", l.Err)})
			continue
		}
		if first == nil {
			first = l.Err
		}
		retry = appendRegistry(retry, reg)
	}
	// A registry with one listed and one failed repository is retried whole: keep it out
	// of the listed ones, so that the rest of the plan does not go twice.
	var onlyListed []ecrevent.SourceRegistry
	for _, l := range listed {
		if !inRegistries(ecrname.Registry{AccountID: l.AccountID, Region: l.Region}, retry) {
			onlyListed = append(onlyListed, l)
		}
	}
	return retry, onlyListed, first
}

func appendRegistry(regs []ecrevent.SourceRegistry, reg ecrname.Registry) []ecrevent.SourceRegistry {
	if inRegistries(reg, regs) {
		return regs
	}
	return append(regs, ecrevent.SourceRegistry{AccountID: reg.AccountID, Region: reg.Region})
}

// sendResult is what sendWork did.
type sendResult struct {
	sent   int
	done   bool   // every item of the work was settled (sent, or reported for good)
	cursor string // when not done: the key of the last item settled in order
	err    error  // when not done because of a failure: the first item's that may pass
}

// sendWork sends work as work items to the copy queue, sendChunk at a time, until all
// of it is settled, the soft stop passes (after at least one chunk: a continuation always
// moves on) or an item fails in a way that may pass.
func (r *Reconciler) sendWork(ctx context.Context, inv *invocation, messageID string, item *ecrevent.Reconcile, work []backfill.Work) sendResult {
	res := sendResult{cursor: item.Cursor}
	for start := 0; start < len(work); start += sendChunk {
		if start > 0 && inv.time.SoftStopped(r.c.Now()) {
			return res
		}
		chunk := work[start:min(start+sendChunk, len(work))]
		errs := r.sendChunk(ctx, inv, messageID, item, chunk)
		sent, unsent := r.settleSends(inv, messageID, item, errs)
		res.sent += sent
		if unsent < len(chunk) {
			if unsent > 0 {
				res.cursor = chunk[unsent-1].Key()
			}
			res.err = errs[unsent]
			return res
		}
		res.cursor = chunk[len(chunk)-1].Key()
	}
	res.done, res.cursor = true, ""
	return res
}

// sendChunk sends work items and answers per item; an item that cannot be marshalled
// (our own, invalid: a bug) is reported here and answered errReported.
func (r *Reconciler) sendChunk(ctx context.Context, inv *invocation, messageID string, item *ecrevent.Reconcile, chunk []backfill.Work) []error {
	errs := make([]error, len(chunk))
	var msgs []sqssend.Message
	var index []int
	for i := range chunk {
		body, err := ecrevent.Marshal(backfill.WorkItem(&chunk[i], item.Registry(), item.Run, r.c.Now()))
		if err != nil {
			r.report(inv, failure{messageID: messageID, item: item, code: CodeMalformed, err: err})
			errs[i] = errReported
			continue
		}
		msgs, index = append(msgs, sqssend.Message{Body: string(body)}), append(index, i)
	}
	for k, err := range r.c.Sender.Send(ctx, r.c.CopyQueueURL, msgs) {
		errs[index[k]] = err
	}
	return errs
}

// logRepository writes the item's log line and metrics.
func (r *Reconciler) logRepository(inv *invocation, item *ecrevent.Reconcile, p repositoryPlan, s sendResult, complete bool) {
	// Gated drift is decided where it is copied: the replicate function holds or blocks
	// it and reports it with this run's id (docs/PROMOTION.md).
	gated := 0
	for i := range p.diff.Work {
		if p.diff.Work[i].Target.Gated() {
			gated++
		}
	}
	r.c.Log.Info("reconcile repository", "run", item.Run, "repository", item.Repository, "imagesSeen", p.ex.ImagesSeen,
		"inSync", p.diff.InSync, "drift", len(p.diff.Work), "gated", gated, "unplanned", p.diff.Unplanned, "enqueued", s.sent,
		"continued", !s.done, "complete", complete, "attempt", item.Attempt)
	if inv.mr == nil {
		return
	}
	if complete {
		inv.mr.Add("RepositoriesReconciled", metrics.Count, 1)
	}
	if item.Cursor == "" && len(item.Destinations) == 0 {
		inv.mr.Add("Drift", metrics.Count, float64(len(p.diff.Work))) // once per plan of the whole repository
	}
	inv.mr.Add("ImagesEnqueued", metrics.Count, float64(s.sent))
}
