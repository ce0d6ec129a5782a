package eventhandler

import (
	"context"
	"fmt"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/gate"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/sqssend"
)

// Promotion gates (docs/PROMOTION.md). A copy to a gated destination is decided first,
// from what the source registry holds:
//   - pass: copied as any other;
//   - held (its signature or its scan may still come): reported "held" and re-checked —
//     a work item with the hold's attempt count goes to the copy queue with a delay, and
//     comes back as a gated job — until it passes or its wait ends and it is blocked.
//     A held copy is never a failure: it is not redelivered by SQS, so it never cycles
//     into the dead-letter queue; only a re-check that cannot be sent is, as any
//     retryable failure;
//   - blocked: reported with the reason (log line, GateBlocked metric by rule and
//     reason, result event) and not copied.
//
// Triggers re-decide sooner: a scan ending ("ECR Image Scan", "Inspector2 Scan") or a
// signature pushed (a cosign sha256-<hex>.sig tag, a digest-only push of a referrer)
// re-decides the gated copies of the image it is about — tagged, or the recent indexes
// listing it as a platform. A trigger reports what it copies or blocks; an image still
// held waits for its own re-check.

// Gate is what the handler asks of promotion gates: *gate.Gate.
type Gate interface {
	Decide(ctx context.Context, img gate.Image, reqs []*rules.Require) ([]gate.Decision, error)
	Lookup(ctx context.Context, img gate.Image) (gate.Lookup, error)
	Parents(ctx context.Context, img gate.Image, since time.Time) ([]gate.Lookup, error)
}

// HoldQueue is where the re-checks of held copies go (the copy queue).
type HoldQueue struct {
	Sender *sqssend.Sender
	URL    string
}

// Outcomes of a gated copy that copied nothing.
const (
	Held    destinations.Outcome = "held"
	Blocked destinations.Outcome = "blocked"
)

// CodeNoGate is the failure of a gated copy in a handler built without a gate.
const CodeNoGate = "GateNotConfigured"

// gated decides each target of a gated job, copies those that pass, re-checks the held
// ones (not for a trigger: its image's own re-check does) and reports the blocked ones.
func (h *Handler) gated(ctx context.Context, run Copier, j *job) []destinations.Result {
	return h.gatedWith(ctx, h.c.Gate, run, j)
}

func (h *Handler) gatedWith(ctx context.Context, g Gate, run Copier, j *job) []destinations.Result {
	out := make([]destinations.Result, len(j.targets))
	if h.c.Gate == nil {
		for i, t := range j.targets {
			out[i] = gateResult(j, t, destinations.Failed, CodeNoGate, "the destination has a promotion gate, and this handler has no gate to decide it")
		}
		return out
	}
	var reqs []*rules.Require
	index := make([]int, len(j.targets))
	for i, t := range j.targets {
		index[i] = len(reqs)
		for k, r := range reqs {
			if r == t.Require {
				index[i] = k
			}
		}
		if index[i] == len(reqs) {
			reqs = append(reqs, t.Require)
		}
	}
	ds, err := g.Decide(ctx, gate.Image{Repo: j.src.Repo, Digest: j.src.Digest}, reqs)
	if err != nil {
		for i, t := range j.targets {
			out[i] = destinations.Result{CopyResult: destinations.CopyResult{Digest: j.src.Digest, Tag: j.src.Tag}, Rule: t.Rule, Destination: t.Repo()}
			out[i].Outcome, out[i].Err = destinations.Failed, fmt.Errorf("deciding the promotion gate: %w", err)
			out[i].Code, out[i].Retryable = destinations.Classify(err)
		}
		return out
	}
	var pass []rules.Target
	var passAt []int
	for i, t := range j.targets {
		switch d := ds[index[i]]; d.Verdict {
		case gate.Pass:
			pass, passAt = append(pass, t), append(passAt, i)
		case gate.Hold:
			out[i] = h.hold(ctx, j, t, d)
		default:
			out[i] = gateResult(j, t, Blocked, d.Code, d.Reason)
		}
	}
	if len(pass) > 0 {
		for k, r := range run.Replicate(ctx, j.src, pass) {
			out[passAt[k]] = r
		}
	}
	return out
}

// gateResult is the result of a gated copy that copied nothing.
func gateResult(j *job, t rules.Target, o destinations.Outcome, code, reason string) destinations.Result {
	return destinations.Result{
		CopyResult: destinations.CopyResult{Outcome: o, Digest: j.src.Digest, Tag: j.src.Tag, Reason: reason},
		Rule:       t.Rule, Destination: t.Repo(), Code: code,
	}
}

// hold reports a held copy and sends its re-check; a re-check that cannot be sent fails
// the job's message, which SQS redelivers (the decision is then made again).
func (h *Handler) hold(ctx context.Context, j *job, t rules.Target, d gate.Decision) destinations.Result {
	res := gateResult(j, t, Held, d.Code, d.Reason)
	if j.trigger {
		return res // not reported: the image's own re-check continues
	}
	if j.reconciled {
		// Every reconcile run finds a held image again: a chain of re-checks per run would
		// fork one per run for the same image. Its push's re-checks continue, and the next
		// run decides it again.
		res.Reason += "; decided again by its re-checks, triggers and the next reconcile run"
		return res
	}
	attempt, eventID := 1, j.eventID
	if j.hold != nil {
		attempt, eventID = j.hold.Attempt+1, j.hold.EventID
	}
	if limit := holdAttempts(t.Require); attempt > limit {
		res.Outcome, res.Reason = Blocked, fmt.Sprintf("%s; re-checked %d times", d.Reason, limit)
		res.Code = map[string]string{gate.CodeSignatureMissing: gate.CodeSignatureTimeout, gate.CodeScanPending: gate.CodeScanTimeout}[d.Code]
		return res
	}
	if h.c.Holds == nil {
		res.Reason += "; no re-check queue here: its next trigger or the reconcile decides it again"
		return res
	}
	now := h.c.Now()
	delay := recheckDelay(now, d)
	body, err := ecrevent.Marshal(ecrevent.WorkItem{
		Action: ecrevent.WorkCopy, Rule: t.Rule, Reason: "held: " + d.Code, CreatedAt: now.UTC().Truncate(time.Second),
		Source:      ecrevent.ImageRef{AccountID: j.src.Repo.AccountID, Region: j.src.Repo.Region, Repository: j.src.Repo.Name, Digest: j.src.Digest, Tag: j.src.Tag},
		Destination: ecrevent.RefTo(t.Repo()),
		Hold:        &ecrevent.Hold{Attempt: attempt, Reason: d.Code, EventID: eventID},
	})
	if err == nil {
		err = h.c.Holds.Sender.Send(ctx, h.c.Holds.URL, []sqssend.Message{{Body: string(body), Delay: delay}})[0]
	}
	if err != nil {
		res.Outcome, res.Err = destinations.Failed, fmt.Errorf("sending the re-check of a held copy: %w", err)
		res.Code, res.Retryable = destinations.Classify(err)
		return res
	}
	res.Reason = fmt.Sprintf("%s; re-checked in %s (re-check %d), blocked if still undecided after %s", d.Reason, delay, attempt, d.Until.UTC().Format(time.RFC3339))
	return res
}

// recheckDelay is when a held copy is decided again: a tenth of its wait (within SQS's
// 1 s to 15 min of delay), and no later than just after the wait ends, so that the
// last re-check blocks it.
func recheckDelay(now time.Time, d gate.Decision) time.Duration {
	left := d.Until.Sub(now) + time.Second
	return min(max(min(recheckStep(d.Until.Sub(d.PushedAt)), left), time.Second), sqssend.MaxDelay).Round(time.Second)
}

// recheckStep is the spacing of the re-checks of a hold of a wait.
func recheckStep(wait time.Duration) time.Duration {
	return min(max(wait/10, time.Second), sqssend.MaxDelay).Round(time.Second)
}

// holdAttempts bounds the re-checks of a hold by req whatever the clocks say, derived
// from its waits: a hold may change its reason (held for its signature, then for its
// scan), each reason's wait, measured from the push, re-checked every recheckStep of it
// and once just after it ends — so enough re-checks to reach the end of both waits, and
// never more than ecrevent.MaxHoldAttempts (two day-long waits re-checked every 15 min).
func holdAttempts(req *rules.Require) int {
	n := 0
	for _, w := range []time.Duration{req.SignatureWait(), req.ScanWait()} {
		if w > 0 {
			n += int((w+recheckStep(w)-1)/recheckStep(w)) + 2
		}
	}
	return min(max(n, 1), ecrevent.MaxHoldAttempts)
}

// trigger re-decides the gated copies of the image a trigger is about: its tags (the
// subject's, for a signature), or the recent indexes listing it as a platform.
func (h *Handler) trigger(ctx context.Context, run Copier, j *job) []destinations.Result {
	if h.c.Gate == nil {
		return nil
	}
	subjects, err := h.subjects(ctx, j)
	if err != nil {
		r := destinations.Result{CopyResult: destinations.CopyResult{Outcome: destinations.Failed, Digest: j.src.Digest, Err: fmt.Errorf("finding what the trigger re-decides: %w", err)}}
		r.Code, r.Retryable = destinations.Classify(err)
		return []destinations.Result{r}
	}
	var out []destinations.Result
	memo := &memoGate{Gate: h.c.Gate, decided: map[string][]gate.Decision{}}
	for _, s := range subjects {
		for _, tag := range s.Tags {
			var targets []rules.Target
			for _, t := range h.c.Rules.Targets(j.src.Repo.Name, tag) {
				if t.Gated() && t.Err == nil {
					targets = append(targets, t)
				}
			}
			if len(targets) == 0 {
				continue
			}
			sj := &job{gated: true, trigger: true, eventID: j.eventID, at: j.at, messages: j.messages, targets: targets,
				src: destinations.Image{Repo: j.src.Repo, Digest: s.Digest, Tag: tag}}
			for _, r := range h.gatedWith(ctx, memo, run, sj) {
				if r.Outcome == Held {
					h.c.Log.Info("promotion gate re-decided on a trigger: still held (its re-check continues)", "event_id", j.eventID,
						"repository", j.src.Repo.Name, "digest", s.Digest, "tag", tag, "destination", r.Destination.String(), "reason", r.Code+": "+r.Reason)
					continue
				}
				out = append(out, r)
			}
		}
	}
	return out
}

// subjects are the tagged images a trigger re-decides. A digest-only push is a trigger
// only when the pushed manifest is a referrer (a signature): then its subject is. A
// subject (or a scanned image) without tags is a platform: the recent indexes listing it.
func (h *Handler) subjects(ctx context.Context, j *job) ([]gate.Lookup, error) {
	img := gate.Image{Repo: j.src.Repo, Digest: j.src.Digest}
	l, err := h.c.Gate.Lookup(ctx, img)
	if err != nil || !l.Found {
		return nil, err
	}
	if j.referrer {
		if l.Subject == "" {
			return nil, nil // an untagged image or a platform, pushed: nothing waits for it
		}
		img.Digest = l.Subject
		if l, err = h.c.Gate.Lookup(ctx, img); err != nil || !l.Found {
			return nil, err
		}
	}
	if len(l.Tags) > 0 {
		return []gate.Lookup{l}, nil
	}
	return h.c.Gate.Parents(ctx, img, h.c.Now().Add(-rules.MaxWait))
}

// planTrigger is the trigger a push makes in a gated repository: a cosign signature tag
// re-decides the image it signs; a digest-only push, the subject of what was pushed when
// it is a referrer (read from the source, not from the event). nil: no trigger.
func (h *Handler) planTrigger(a *ecrevent.ImageAction) *job {
	if a.ActionType != ecrevent.ActionPush || !h.c.Rules.Gated(a.Repository) {
		return nil
	}
	j := &job{trigger: true, eventID: a.EventID, at: a.Time, src: destinations.Image{Repo: a.Repo(), Digest: a.Digest}}
	if subject, ok := rules.CosignSubject(a.Tag); ok {
		j.src.Digest = subject
		return j
	}
	if a.Tag != "" {
		return nil
	}
	j.referrer = true
	return j
}

// planScan is the trigger of a scan-complete event, in a gated repository. The event is
// a claim too: one naming another registry than the function's source is refused, since
// the trigger reads the registry it names.
func (h *Handler) planScan(m message, s *ecrevent.ImageScan, own *ownSource) ([]*job, error) {
	if !h.c.Rules.Gated(s.Repository) {
		h.c.Log.Info("event ignored", "message_id", m.id, "event_id", s.EventID, "repository", s.Repository, "digest", s.Digest,
			"reason", "a scan ended in a repository no rule gates")
		return nil, nil
	}
	if err := own.check(s.Repo().Registry); err != nil {
		return nil, fmt.Errorf("scan event %s (%s@%s): %w", s.EventID, s.Repository, s.Digest, err)
	}
	return []*job{{trigger: true, eventID: s.EventID, at: s.Time, src: destinations.Image{Repo: s.Repo(), Digest: s.Digest}}}, nil
}

// memoGate decides each image and set of requirements once for a trigger, however many
// tags of the image it re-decides.
type memoGate struct {
	Gate
	decided map[string][]gate.Decision
}

func (m *memoGate) Decide(ctx context.Context, img gate.Image, reqs []*rules.Require) ([]gate.Decision, error) {
	k := img.Digest
	for _, r := range reqs {
		k += fmt.Sprintf(" %p", r)
	}
	if ds, ok := m.decided[k]; ok {
		return ds, nil
	}
	ds, err := m.Gate.Decide(ctx, img, reqs)
	if err == nil {
		m.decided[k] = ds
	}
	return ds, err
}
