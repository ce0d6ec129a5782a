package backfill

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// inline copies work with bounded concurrency, in groups (every tag of one digest to one
// destination, in sequence). Digest-only work goes first and is finished before tagged
// work starts, so children and referrers land before what points at them. It stops
// taking groups when time is up, and cuts the copies still running at the hard stop
// (ctx's deadline less the reserve) so the answer is delivered in time.
//
// It returns the cursor to continue after — the end of the longest run of work, from the
// start, that is finished (copied, skipped or failed for good) — and whether all of it
// is. Groups that finished after an unfinished one are done again on continuation,
// which costs a HEAD each: copies are idempotent.
func (r *invocation) inline(ctx context.Context, work []Work, cursor string) (string, bool) {
	n := r.b.Concurrency
	if n <= 0 {
		n = 8
	}
	copyCtx, cancel := r.time.Work(ctx)
	defer cancel()
	var groups [][]Work
	for i := 0; i < len(work); {
		j := i + 1
		for j < len(work) && work[j].groupKey() == work[i].groupKey() {
			j++
		}
		groups = append(groups, work[i:j])
		i = j
	}
	phase := func(g []Work) bool { return g[0].Tag != "" }
	// The item the position has stalled at (maxStalls runs in a row ended before it): cut
	// at the hard stop once more, it goes as a failure and the continuation moves on.
	var stuck string
	if len(work) > 0 && r.from.Stalls >= maxStalls && work[0].Repository == r.from.Repository && cursor == r.from.After {
		stuck = work[0].Key()
	}
	finished := make([]int, len(groups)) // per group: how many of its items, from the first, are finished
	for i := 0; i < len(groups); {
		j := i
		for j < len(groups) && phase(groups[j]) == phase(groups[i]) {
			j++
		}
		eg := new(errgroup.Group)
		eg.SetLimit(n)
		for k := i; k < j; k++ {
			if r.timeUp() || copyCtx.Err() != nil {
				break
			}
			eg.Go(func() error {
				finished[k] = r.copyGroup(copyCtx, groups[k], stuck)
				return nil
			})
		}
		eg.Wait()
		if r.timeUp() || copyCtx.Err() != nil {
			break
		}
		i = j
	}
	for k, g := range groups {
		if finished[k] > 0 {
			cursor = g[finished[k]-1].Key()
		}
		if finished[k] < len(g) {
			return cursor, false
		}
	}
	return cursor, true
}

// copyGroup copies one group's items in order and returns how many are finished. The
// tags of one digest may reach one destination by rules with different gates (v* signed,
// dev-* not): each run of items sharing a requirement is decided on its own, never on
// another item's gate.
func (r *invocation) copyGroup(ctx context.Context, g []Work, stuck string) int {
	done := 0
	for len(g) > 0 {
		n := 1
		for n < len(g) && g[n].Target.Require == g[0].Target.Require {
			n++
		}
		k := r.copySameGate(ctx, g[:n], stuck)
		done += k
		if k < n {
			return done
		}
		g = g[n:]
	}
	return done
}

// copySameGate copies items of one group sharing one gate (or none) in order and returns
// how many are finished; it stops at an item cut by ctx, which stays remaining — unless it
// is the item the position has stalled at (stuck), which is reported as failed with its
// code.
func (r *invocation) copySameGate(ctx context.Context, g []Work, stuck string) int {
	if g[0].Target.Gated() {
		if n, settled := r.gateGroup(ctx, g, stuck); settled {
			return n
		}
	}
	for i := range g {
		w := &g[i]
		src := destinations.Image{Repo: ecrname.Repo{Registry: ecrname.Registry{AccountID: r.srcAccount, Region: r.srcRegion}, Name: w.Repository}, Digest: w.Digest, Tag: w.Tag}
		res := r.copies.Replicate(ctx, src, []rules.Target{w.Target})
		if len(res) != 1 {
			r.failed(w, fmt.Sprintf("replicator returned %d results for one target", len(res)), "")
			continue
		}
		x := res[0]
		if x.Outcome == destinations.Failed && x.Retryable && ctx.Err() != nil {
			if w.Key() != stuck {
				return i // cut at the hard stop: left for the continuation
			}
			r.failed(w, fmt.Sprintf("%s (cut at the hard stop in %d runs in a row: given up)", errText(x), maxStalls+1), x.Code)
			return i + 1
		}
		if x.Outcome == destinations.Failed && x.Retryable && r.from.Stalls < maxStalls {
			// Another run may succeed (throttling, a layer that needs a whole run:
			// NO_TIME_LEFT): reported, and left for the continuation, which does not move
			// past it (until it has stalled there maxStalls times).
			r.mu.Lock()
			r.resp.fail(Failure{Repository: w.Repository, Destination: w.Target.Repo().String(), Digest: w.Digest, Tag: w.Tag,
				Reason: errText(x) + " (retryable: left for the continuation)", Code: x.Code})
			r.mu.Unlock()
			return i
		}
		if x.Outcome.Failure() || x.Err != nil {
			reason := errText(x)
			if x.Outcome != destinations.Failed {
				reason = string(x.Outcome) + ": " + reason
			}
			r.failed(w, reason, x.Code)
			continue
		}
		r.mu.Lock()
		switch x.Outcome {
		case destinations.Copied, destinations.TagUpdated:
			r.resp.Copied++
		default: // already-present, skipped
			r.resp.Skipped++
		}
		r.resp.Remaining--
		r.resp.BytesCopied += x.BytesCopied
		r.resp.BytesMounted += x.BytesMounted
		r.resp.BytesMountable += x.BytesMountable
		r.resp.ReferrersRefused += x.ReferrersRefused
		r.outstand[w.Target.Destination.Registry()]--
		r.mu.Unlock()
	}
	return len(g)
}

// errText is what a copy's result says went wrong.
func errText(x destinations.Result) string {
	if x.Err != nil {
		return x.Err.Error()
	}
	return x.Reason
}
