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
	src      destinations.Source
	eventID  string
	at       time.Time // event time, for latency
	workItem bool      // a backfill or reconcile work item: at is when it was enqueued
	targets  []rules.Target
	messages []int // indexes into the batch
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
	delete      bool
	src         ecrname.Repo
	digest, tag string
	dst         ecrname.Repo
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
		j, err := h.planMessage(m, own)
		if err != nil {
			h.notPlanned(&p, i, m, err, mr)
			continue
		}
		if j == nil {
			p.ignored++
			continue
		}
		var fresh []rules.Target
		for _, t := range j.targets {
			k := jobKey{delete: j.delete, src: j.src.Repo, digest: j.src.Digest, tag: j.src.Tag, dst: t.Repo()}
			if prev, ok := seen[k]; ok {
				prev.messages = appendUnique(prev.messages, i)
				p.duplicates++
				continue
			}
			fresh = append(fresh, t)
			seen[k] = j
		}
		if len(fresh) == 0 {
			continue
		}
		j.targets, j.messages = fresh, []int{i}
		p.jobs = append(p.jobs, j)
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

func appendUnique(s []int, v int) []int {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// planMessage parses one message into its job: nil job and nil error when it is ignored
// (logged here), an error when it is a permanent failure.
func (h *Handler) planMessage(m message, own *ownSource) (*job, error) {
	msg, err := ecrevent.Parse(m.body)
	if err != nil {
		return nil, err
	}
	switch msg.Kind {
	case ecrevent.KindWorkItem:
		j, err := h.planWorkItem(msg.WorkItem)
		if err == nil {
			err = own.refuse(j.src.Repo.Registry, j.targets)
		}
		if err != nil && !errors.Is(err, ErrNoRuleAllows) {
			err = fmt.Errorf("work item %s: %w", msg.WorkItem.String(), err)
		}
		return j, err
	case ecrevent.KindReconcile:
		return nil, fmt.Errorf("%w: a reconcile item: reconcile items are ReconcileFunction's, not this function's (is the reconcile queue mapped to the wrong function?)", ecrevent.ErrMalformed)
	case ecrevent.KindImageAction:
	default:
		return nil, fmt.Errorf("%w: unknown message kind", ecrevent.ErrMalformed)
	}
	a := msg.Image
	if msg.Class == ecrevent.Ignored {
		attrs := []any{"message_id", m.id, "reason", msg.IgnoredReason}
		if a != nil {
			attrs = append(attrs, "event_id", a.EventID, "repository", a.Repository, "digest", a.Digest, "tag", a.Tag, "action_type", a.ActionType)
		}
		h.c.Log.Info("event ignored", attrs...)
		return nil, nil
	}
	j := &job{
		delete:  msg.Class == ecrevent.Delete,
		src:     destinations.Source{Repo: a.Repo(), Digest: a.Digest, Tag: a.Tag},
		eventID: a.EventID,
		at:      a.Time,
	}
	ok, invalid := rules.Split(h.c.Rules.Targets(a.Repository, a.Tag))
	for _, t := range append(ok, invalid...) {
		if !j.delete || t.MirrorDeletes {
			j.targets = append(j.targets, t)
		}
	}
	if len(j.targets) == 0 {
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
	if err := own.refuse(a.Repo().Registry, j.targets); err != nil {
		return nil, fmt.Errorf("event %s (%s %s@%s): %w", a.EventID, a.ActionType, a.Repository, a.Digest, err)
	}
	return j, nil
}

// planWorkItem accepts a backfill work item only for a destination the rules give its
// source.
func (h *Handler) planWorkItem(w *ecrevent.WorkItem) (*job, error) {
	j := &job{
		delete:  w.Action == ecrevent.WorkDelete,
		src:     destinations.Source{Repo: w.Source.Repo(), Digest: w.Source.Digest, Tag: w.Source.Tag},
		eventID: "work-item:" + w.Rule,
		at:      w.CreatedAt,
	}
	j.workItem = true
	if w.Run != "" {
		j.eventID = "reconcile:" + w.Run // as the run's reconcile items: one filter finds both
	}
	want := w.Destination.Repo()
	for _, t := range h.c.Rules.Targets(w.Source.Repository, w.Source.Tag) {
		if t.Repo() == want && (!j.delete || t.MirrorDeletes) {
			j.targets = []rules.Target{t}
			return j, nil
		}
	}
	return nil, fmt.Errorf("%w: %s (%s)", ErrNoRuleAllows, want, w.String())
}
