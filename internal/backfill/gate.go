package backfill

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/gate"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/sqssend"
)

// Promotion gates (docs/PROMOTION.md) in a backfill. Planning is by listing, as for any
// copy; what a gated copy needs is decided before it is made:
//   - with a Gate (the CLI): inline copies are decided first — passed ones copied, held
//     and blocked ones counted (Held, Blocked) and named (Gated) — and a dry run says
//     what each gated copy would be now;
//   - without one (the backfill function, which does not link the verifiers): inline
//     runs send gated copies to the copy queue, where the replicate function decides
//     them; with no queue they fail (CodeNoGate). Enqueued work is always decided there.
// A gated destination gets tagged images only; a cosign signature tag goes with its
// image, whose copy brings it.

// Gate decides promotion gates: *gate.Gate.
type Gate interface {
	Decide(ctx context.Context, img gate.Image, reqs []*rules.Require) ([]gate.Decision, error)
}

// CodeNoGate fails a gated copy an inline backfill can neither decide nor send on.
const CodeNoGate = "GateNotConfigured"

// GateVerdict is what a promotion gate decided of a copy.
type GateVerdict struct {
	Verdict string `json:"verdict"` // pass, held, blocked
	Code    string `json:"code,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// retryable: the decision could not be made for now (Verdict "failed").
	retryable bool
}

// Gated is a copy a promotion gate held or blocked (in a dry run: would, now).
type Gated struct {
	Repository  string `json:"repository"`
	Destination string `json:"destination"`
	Digest      string `json:"digest"`
	Tag         string `json:"tag,omitempty"`
	GateVerdict
}

// gatedTags records a tag of a gated target's image, which a cosign tag of the image
// goes with.
func (x *expander) gatedTags(digest, tag string, t rules.Target) {
	if x.gatedSubjects == nil {
		x.gatedSubjects = map[string][]Candidate{}
	}
	x.gatedSubjects[digest] = appendTarget(x.gatedSubjects[digest], Candidate{Digest: digest, Tag: tag, Target: t})
}

// gatedCosignTags turns the cosign tags of gated targets into copies of their subject
// under one of its tags (missing when the destination lacks the cosign tag); a signature
// whose image goes nowhere goes nowhere either.
func (x *expander) gatedCosignTags() {
	for _, c := range x.cosign {
		subject, _ := rules.CosignSubject(c.Tag)
		for _, via := range x.gatedSubjects[subject] {
			if via.Target.Repo() == c.Target.Repo() {
				c.Subject, c.SubjectTag = via.Digest, via.Tag
				x.ex.Candidates = append(x.ex.Candidates, c)
				break
			}
		}
	}
}

// decideGates decides the gated work of a dry run (each digest and requirement once),
// recording each verdict on its work item.
func (r *invocation) decideGates(ctx context.Context, repo string, work []Work) {
	if r.b.Gate == nil {
		return
	}
	type key struct {
		digest string
		req    *rules.Require
	}
	verdicts := map[key]*GateVerdict{}
	var mu sync.Mutex
	eg := new(errgroup.Group)
	eg.SetLimit(8)
	for i := range work {
		w := &work[i]
		if !w.Target.Gated() {
			continue
		}
		k := key{w.Digest, w.Target.Require}
		mu.Lock()
		_, seen := verdicts[k]
		if !seen {
			verdicts[k] = &GateVerdict{}
		}
		mu.Unlock()
		if seen {
			continue
		}
		eg.Go(func() error {
			v := r.decide(ctx, repo, w)
			mu.Lock()
			*verdicts[k] = v
			mu.Unlock()
			return nil
		})
	}
	eg.Wait()
	for i := range work {
		w := &work[i]
		if v := verdicts[key{w.Digest, w.Target.Require}]; w.Target.Gated() && v != nil {
			w.Gate = v
			r.gated(w, *v)
		}
	}
}

// decide decides one gated copy; a decision that could not be made is a failure.
func (r *invocation) decide(ctx context.Context, repo string, w *Work) GateVerdict {
	img := gate.Image{Repo: ecrname.Repo{Registry: ecrname.Registry{AccountID: r.srcAccount, Region: r.srcRegion}, Name: repo}, Digest: w.Digest}
	ds, err := r.b.Gate.Decide(ctx, img, []*rules.Require{w.Target.Require})
	if err != nil {
		code, retryable := retry.Classify(err)
		return GateVerdict{Verdict: "failed", Code: code, Reason: "deciding the promotion gate: " + err.Error(), retryable: retryable}
	}
	return GateVerdict{Verdict: string(ds[0].Verdict), Code: ds[0].Code, Reason: ds[0].Reason}
}

// gated counts a held or blocked copy.
func (r *invocation) gated(w *Work, v GateVerdict) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch gate.Verdict(v.Verdict) {
	case gate.Hold:
		r.resp.Held++
	case gate.Block:
		r.resp.Blocked++
	default:
		return
	}
	if r.mode == ModeInline {
		r.tellSettled(w, v)
	}
	if len(r.resp.Gated) < maxFailures {
		r.resp.Gated = append(r.resp.Gated, Gated{Repository: w.Repository, Destination: w.Target.Repo().String(), Digest: w.Digest, Tag: w.Tag, GateVerdict: v})
	}
}

// gateGroup settles a group of gated work an inline run does not copy: held or blocked
// (with a Gate), or sent to the copy queue (without one). It says whether the group was
// settled, and how many of its items are finished; not settled: it passed, copy it. A
// decision that failed retryably is left for the continuation, as a copy that did
// (copyGroup).
func (r *invocation) gateGroup(ctx context.Context, g []Work, stuck string) (int, bool) {
	if r.b.Gate == nil {
		r.sendGated(ctx, g)
		return len(g), true
	}
	v := r.decide(ctx, g[0].Repository, &g[0])
	switch gate.Verdict(v.Verdict) {
	case gate.Pass:
		return 0, false
	case gate.Hold, gate.Block:
		for i := range g {
			r.gated(&g[i], v)
			r.settled(&g[i])
		}
		return len(g), true
	}
	w := &g[0]
	switch {
	case v.retryable && ctx.Err() != nil && w.Key() != stuck:
		return 0, true // cut at the hard stop: left for the continuation
	case v.retryable && ctx.Err() == nil && r.from.Stalls < maxStalls:
		v.Reason += " (retryable: left for the continuation)"
		r.mu.Lock()
		r.resp.fail(Failure{Repository: w.Repository, Destination: w.Target.Repo().String(), Digest: w.Digest, Tag: w.Tag, Reason: v.Reason, Code: v.Code})
		r.tellSettled(w, v)
		r.mu.Unlock()
		return 0, true
	}
	for i := range g {
		r.failed(&g[i], v.Reason, v.Code)
		r.mu.Lock()
		r.tellSettled(&g[i], v)
		r.mu.Unlock()
	}
	return len(g), true
}

// tellSettled tells Backfill.GateSettled of a copy settled without a copy; r.mu is held.
func (r *invocation) tellSettled(w *Work, v GateVerdict) {
	if r.b.GateSettled != nil {
		r.b.GateSettled(*w, v)
	}
}

// settled takes a work item off what remains.
func (r *invocation) settled(w *Work) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resp.Remaining--
	r.outstand[w.Target.Destination.Registry()]--
}

// sendGated sends gated work to the copy queue for the replicate function to decide.
func (r *invocation) sendGated(ctx context.Context, g []Work) {
	if r.b.Sender == nil || r.b.workQueue() == "" {
		for i := range g {
			r.failed(&g[i], "the destination has a promotion gate, which this backfill can neither decide nor send to the replicate function (no copy queue)", CodeNoGate)
		}
		return
	}
	msgs := make([]sqssend.Message, len(g))
	for i := range g {
		body, err := ecrevent.Marshal(r.workItem(&g[i]))
		if err != nil {
			r.failed(&g[i], "work item: "+err.Error(), "")
			return
		}
		msgs[i] = sqssend.Message{Body: string(body)}
	}
	for i, err := range r.b.Sender.Send(ctx, r.b.workQueue(), msgs) {
		if err != nil {
			code, _ := retry.Classify(err)
			r.failed(&g[i], fmt.Sprintf("sending the gated copy to the replicate function: %v", err), code)
			continue
		}
		r.mu.Lock()
		r.resp.Enqueued++
		r.mu.Unlock()
		r.settled(&g[i])
	}
}
