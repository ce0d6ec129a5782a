package cli

import (
	"context"
	"fmt"
	"sync"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// codeNotAttempted is the error code of a copy a sync did not attempt: the copy before it
// in its group (every tag of one image to one repository, made in sequence) failed with
// an error another run may not have, and the backfill leaves the rest of the group for
// its next run, which, on the command line, is the user's rerun.
const codeNotAttempted = "NOT_ATTEMPTED"

// syncCopies records what each copy of a sync did (every result, for the JSON document
// and the totals) and which copies were asked for.
type syncCopies struct {
	mu    sync.Mutex
	items []item
	asked map[string]bool // copyKey of each copy the backfill started
}

// copyKey names one copy to make: source repository, digest, tag, destination repository.
func copyKey(repo, digest, tag, dest string) string {
	return repo + "@" + digest + ":" + tag + ">" + dest
}

// record adds one result (nil: none, a copy cut by Ctrl-C) of a copy asked for.
func (c *syncCopies) record(key string, it *item) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.asked == nil {
		c.asked = map[string]bool{}
	}
	c.asked[key] = true
	if it != nil {
		c.items = append(c.items, *it)
	}
}

// gateSettled records a copy the promotion gate settled without copying it: held or
// blocked (its state, and why), or failed when the decision could not be made.
func (c *syncCopies) gateSettled(source ecrname.Registry) func(w backfill.Work, v backfill.GateVerdict) {
	return func(w backfill.Work, v backfill.GateVerdict) {
		dest := repoRef(w.Target.Repo())
		it := item{Source: repoRef(ecrname.Repo{Registry: source, Name: w.Repository}), Destination: dest, Tag: w.Tag, Digest: w.Digest,
			State: v.Verdict, Reason: v.Code + ": " + v.Reason, BytesCopied: ptr(int64(0))}
		if v.Verdict != stateHeld && v.Verdict != stateBlocked {
			it.State, it.Reason, it.Error = stateFailed, "", &errorJSON{Code: v.Code, Message: v.Reason}
		}
		c.record(copyKey(w.Repository, w.Digest, w.Tag, dest), &it)
	}
}

// bytesCopied is what every copy uploaded, a failed one's too: the sum of the items'
// bytesCopied, as copy counts it.
func (c *syncCopies) bytesCopied() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, it := range c.items {
		if it.BytesCopied != nil {
			n += *it.BytesCopied
		}
	}
	return n
}

// failed counts the failed copies recorded.
func (c *syncCopies) failed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, it := range c.items {
		if destinations.Outcome(it.State).Failure() {
			n++
		}
	}
	return n
}

// notAttempted records, as failed with codeNotAttempted, each copy of the plan the run
// never started, and returns them as result lines' results.
func (c *syncCopies) notAttempted(source ecrname.Registry, work []backfill.Work) []imageResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []imageResult
	for i := range work {
		w := &work[i]
		dest := repoRef(w.Target.Repo())
		if c.asked[copyKey(w.Repository, w.Digest, w.Tag, dest)] {
			continue
		}
		res := imageResult{Source: repoRef(ecrname.Repo{Registry: source, Name: w.Repository}), Destination: w.Target.Repo().String(), Tag: w.Tag, Digest: w.Digest,
			Outcome: string(destinations.Failed), Code: codeNotAttempted, Message: c.notAttemptedMessage(dest, w.Digest)}
		it := res.item(false)
		it.Destination, it.BytesCopied = dest, ptr(int64(0))
		c.items = append(c.items, it)
		out = append(out, res)
	}
	return out
}

// notAttemptedMessage says why a copy was not attempted: the failure of the copy before
// it in its group (the same image to the same repository), when recorded.
func (c *syncCopies) notAttemptedMessage(dest, digest string) string {
	after := "after a copy of the same image failed"
	for _, it := range c.items {
		if it.Destination == dest && it.Digest == digest && it.Error != nil {
			what := "tag " + it.Tag
			if it.Tag == "" {
				what = shortDigest(digest)
			}
			after = fmt.Sprintf("after %s of the same image failed (%s)", what, it.Error.Code)
			break
		}
	}
	return "not attempted " + after + ": an image's copies to one repository are made in sequence; rerun to resume"
}

// progressRun reports each copy of a run to the progress display (its result line
// printed as it finishes) and records it.
type progressRun struct {
	a      *app
	run    *destinations.Batch
	prog   *progress
	copies *syncCopies
}

func (p *progressRun) Replicate(ctx context.Context, src destinations.Image, targets []rules.Target) []destinations.Result {
	if p.prog != nil {
		p.prog.itemStarted()
	}
	results := p.run.Replicate(ctx, src, targets)
	for i, r := range results {
		res := imageResult{Source: repoRef(src.Repo), Destination: r.Destination.String(), Tag: r.Tag, Digest: r.Digest, Outcome: string(r.Outcome),
			Reason: r.Reason, BytesCopied: r.BytesCopied, Code: r.Code, Err: r.Err}
		if r.Err != nil {
			// Both repositories by registry host: explainCopy names the registry that refused.
			res.Code, res.Message = explainCopy(copyFailure{err: r.Err, source: repoRef(src.Repo), destination: repoRef(r.Destination), tag: r.Tag, digest: r.Digest, destECR: true})
		}
		cut := ctx.Err() != nil && r.Outcome == destinations.Failed // Ctrl-C, not a result
		var it *item
		if !cut {
			x := res.item(p.a.debug)
			x.Destination = repoRef(r.Destination)
			it = &x
		}
		dest := r.Destination
		if i < len(targets) {
			dest = targets[i].Repo()
		}
		p.copies.record(copyKey(src.Repo.Name, src.Digest, src.Tag, repoRef(dest)), it)
		if p.prog != nil {
			line := ""
			if !cut && (!p.a.quiet || res.failed()) {
				line = res.line(p.a)
			}
			p.prog.itemDone(r.BytesCopied, line)
		}
	}
	return results
}
