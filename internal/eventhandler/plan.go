package eventhandler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// ErrNoRuleAllows is the permanent failure of a work item whose destination is not a
// target of the rules for its source.
var ErrNoRuleAllows = errors.New("work item names a destination no rule allows")

type message struct {
	id   string // SQS messageId; "" when invoked directly
	body []byte
}

// job is one image action to one set of targets; several messages may share it.
type job struct {
	delete   bool
	src      destinations.Image
	eventID  string
	at       time.Time // event time, for latency
	workItem bool      // a backfill or reconcile work item: at is when it was enqueued
	targets  []rules.Target
	messages []int // indexes into the batch
	// gated: the targets have promotion gates, decided before the copy (gate.go).
	gated bool
	// trigger: no copy of its own: re-decide the gated copies of the image src names
	// (referrer: src is a pushed manifest, whose subject that image is).
	trigger, referrer bool
	// hold is the hold a re-check continues.
	hold *ecrevent.Hold
	// reconciled: a reconcile run's work item (not a re-check): a hold starts no re-checks,
	// the next run decides again (gate.go).
	reconciled bool
}

// plan is what an invocation will do: the jobs, and what it will not do and why.
type plan struct {
	jobs       []*job
	ignored    int
	malformed  []Problem
	duplicates int
	unsettled  []int // messages that could not be checked now: left for redelivery
}

// jobKey identifies one action on one image at one destination: the same key in one
// batch is done once.
type jobKey struct {
	delete, trigger bool
	src             ecrname.Repo
	digest, tag     string
	dst             ecrname.Repo
}

// plan parses the messages into jobs, deduplicated per (action, image, destination).
// Malformed messages, messages naming another source registry than the function's and
// messages no rule allows are permanent failures, acknowledged and reported with their
// code; ignored ones are logged.
func (h *Handler) plan(ctx context.Context, msgs []message, mr *metrics.Recorder) plan {
	var p plan
	seen := map[jobKey]*job{}
	own := &ownSource{ctx: ctx, get: h.c.Source}
	for i, m := range msgs {
		js, err := h.planMessage(m, own)
		if err != nil {
			h.notPlanned(&p, i, m, err, mr)
			continue
		}
		if len(js) == 0 {
			p.ignored++
			continue
		}
		for _, j := range js {
			p.add(j, i, seen)
		}
	}
	return p
}

// notPlanned reports a message that is not acted on: a permanent failure, or one that
// could not be checked now (left for redelivery).
func (h *Handler) notPlanned(p *plan, i int, m message, err error, mr *metrics.Recorder) {
	code, unsettled := problemCode(err)
	if unsettled {
		h.c.Log.Warn("message not checked: the function's source registry is unknown (will retry)", "message_id", m.id, "error_code", code, "error", err.Error())
		p.unsettled = append(p.unsettled, i)
	} else {
		h.c.Log.Error("message not processed (permanent failure, acknowledged)", "message_id", m.id, "error_code", code, "error", err.Error())
		p.malformed = append(p.malformed, Problem{MessageID: m.id, Code: code, Error: err.Error()})
	}
	if mr != nil {
		mr.Add("ReplicationFailures", metrics.Count, 1, "Reason", code)
	}
}

// add adds a message's job, less the (action, image, destination) earlier jobs of the
// batch already do.
func (p *plan) add(j *job, msg int, seen map[jobKey]*job) {
	if j.trigger {
		k := jobKey{trigger: true, src: j.src.Repo, digest: j.src.Digest}
		if prev, ok := seen[k]; ok {
			prev.messages = appendUnique(prev.messages, msg)
			p.duplicates++
			return
		}
		seen[k] = j
		j.messages = []int{msg}
		p.jobs = append(p.jobs, j)
		return
	}
	var fresh []rules.Target
	for _, t := range j.targets {
		k := jobKey{delete: j.delete, src: j.src.Repo, digest: j.src.Digest, tag: j.src.Tag, dst: t.Repo()}
		if prev, ok := seen[k]; ok {
			prev.messages = appendUnique(prev.messages, msg)
			p.duplicates++
			continue
		}
		fresh = append(fresh, t)
		seen[k] = j
	}
	if len(fresh) == 0 {
		return
	}
	j.targets, j.messages = fresh, []int{msg}
	p.jobs = append(p.jobs, j)
}

func appendUnique(s []int, v int) []int {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// planMessage parses one message into its jobs: none and nil error when it is ignored
// (logged here), an error when it is a permanent failure (or, for a message that could
// not be checked, one problemCode calls unsettled). A push may make two: the copy to its
// destinations without a gate, and the gated copy (or the trigger) to the others.
func (h *Handler) planMessage(m message, own *ownSource) ([]*job, error) {
	msg, err := ecrevent.Parse(m.body)
	if err != nil {
		return nil, err
	}
	if msg.Class == ecrevent.Ignored {
		h.ignored(m, &msg)
		return nil, nil
	}
	switch msg.Kind {
	case ecrevent.KindWorkItem:
		return h.planWork(msg.WorkItem, own)
	case ecrevent.KindImageScan:
		return h.planScan(m, msg.ImageScan, own)
	case ecrevent.KindReconcile:
		return nil, fmt.Errorf("%w: a reconcile item: reconcile items are ReconcileFunction's, not this function's (is the reconcile queue mapped to the wrong function?)", ecrevent.ErrMalformed)
	case ecrevent.KindImageAction:
		return h.planImageAction(m, &msg, own)
	}
	return nil, fmt.Errorf("%w: unknown message kind", ecrevent.ErrMalformed)
}

// planWork is a work item's job, refused when it names another source registry.
func (h *Handler) planWork(w *ecrevent.WorkItem, own *ownSource) ([]*job, error) {
	j, err := h.planWorkItem(w)
	if err == nil {
		err = own.refuse(j.src.Repo.Registry, j.targets)
	}
	if err != nil && !errors.Is(err, ErrNoRuleAllows) {
		err = fmt.Errorf("work item %s: %w", w.String(), err)
	}
	if err != nil {
		return nil, err
	}
	return []*job{j}, nil
}

// ignored logs a message that is well-formed but asks nothing of this function.
func (h *Handler) ignored(m message, msg *ecrevent.Message) {
	attrs := []any{"message_id", m.id, "kind", msg.Kind.String(), "reason", msg.IgnoredReason}
	if a := msg.Image; a != nil {
		attrs = append(attrs, "event_id", a.EventID, "repository", a.Repository, "digest", a.Digest, "tag", a.Tag, "action_type", a.ActionType)
	}
	h.c.Log.Info("event ignored", attrs...)
}

// planImageAction is the jobs of an ECR image action (push, delete).
func (h *Handler) planImageAction(m message, msg *ecrevent.Message, own *ownSource) ([]*job, error) {
	a := msg.Image
	j := &job{
		delete:  msg.Class == ecrevent.Delete,
		src:     destinations.Image{Repo: a.Repo(), Digest: a.Digest, Tag: a.Tag},
		eventID: a.EventID,
		at:      a.Time,
	}
	g := *j
	g.gated = true
	ok, invalid := rules.Split(h.c.Rules.Targets(a.Repository, a.Tag))
	for _, t := range append(ok, invalid...) {
		switch {
		case j.delete && !t.MirrorDeletes:
		case !j.delete && t.Gated() && t.Err == nil:
			g.targets = append(g.targets, t)
		default:
			j.targets = append(j.targets, t)
		}
	}
	var jobs []*job
	if len(j.targets) > 0 {
		jobs = append(jobs, j)
	}
	trigger := h.planTrigger(a)
	if trigger != nil {
		jobs = append(jobs, trigger)
	} else if len(g.targets) > 0 {
		jobs = append(jobs, &g)
	}
	if len(jobs) == 0 {
		reason := "no rule selects this repository and tag"
		switch {
		case j.delete:
			reason = "no rule mirrors deletes for this repository and tag"
		case a.Tag == "":
			reason = "no rule selects this digest-only image (untagged: false, or no rule for the repository)"
		}
		h.c.Log.Info("event ignored", "message_id", m.id, "event_id", a.EventID, "repository", a.Repository, "digest", a.Digest, "tag", a.Tag, "action_type", a.ActionType, "reason", reason)
		return nil, nil
	}
	refused := own.refuse(a.Repo().Registry, append(j.targets[:len(j.targets):len(j.targets)], g.targets...))
	if trigger != nil {
		refused = own.check(a.Repo().Registry) // a trigger reads the registry the event names
	}
	if refused != nil {
		return nil, fmt.Errorf("event %s (%s %s@%s): %w", a.EventID, a.ActionType, a.Repository, a.Digest, refused)
	}
	return jobs, nil
}

// planWorkItem accepts a work item (the backfill's or a reconcile run's) only for a
// destination the rules give its source.
func (h *Handler) planWorkItem(w *ecrevent.WorkItem) (*job, error) {
	j := &job{
		delete:  w.Action == ecrevent.WorkDelete,
		src:     destinations.Image{Repo: w.Source.Repo(), Digest: w.Source.Digest, Tag: w.Source.Tag},
		eventID: "work-item:" + w.Rule,
		at:      w.CreatedAt,
	}
	j.workItem = true
	if w.Run != "" {
		j.eventID = "reconcile:" + w.Run // as the run's reconcile items: one filter finds both
		j.reconciled = w.Hold == nil
	}
	if w.Hold != nil {
		j.hold, j.eventID = w.Hold, w.Hold.EventID // the held push's id: its re-checks are found with it
	}
	want := w.Destination.Repo()
	for _, t := range h.c.Rules.Targets(w.Source.Repository, w.Source.Tag) {
		if t.Repo() == want && (!j.delete || t.MirrorDeletes) {
			j.targets = []rules.Target{t}
			j.gated = !j.delete && t.Gated()
			if w.Hold != nil && !j.gated {
				j.hold = nil // the rules changed: the destination has no gate any more, copy
			}
			return j, nil
		}
	}
	return nil, fmt.Errorf("%w: %s (%s)", ErrNoRuleAllows, want, w.String())
}
