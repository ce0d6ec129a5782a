package ecrevent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// Work item discriminator and format version. The kind field tells a work
// item apart from an EventBridge event (docs/CONTRACT.md, "Backfill").
const (
	WorkItemKind    = "ecr-replicator/work-item"
	WorkItemVersion = 1
)

// Work item actions.
const (
	WorkCopy   = "copy"
	WorkDelete = "delete"
)

// WorkItem is one copy or delete that the backfill or a reconcile run found,
// sent through the copy queue. Its JSON form is:
//
//	{"kind":"ecr-replicator/work-item","version":1,"action":"copy",
//	 "rule":"prod",
//	 "source":{"accountId":"111111111111","region":"us-east-1",
//	           "repository":"team-a/app","digest":"sha256:…","tag":"v1"},
//	 "destination":{"accountId":"222222222222","region":"eu-west-1",
//	                "repository":"mirror/team-a/app"},
//	 "reason":"missing digest","createdAt":"2026-01-02T03:04:05Z"}
//
// Unknown fields are rejected: we produce this format ourselves, so an
// unknown field means a version mismatch, not an AWS addition.
type WorkItem struct {
	Kind        string        `json:"kind"`
	Version     int           `json:"version"`
	Action      string        `json:"action"` // WorkCopy or WorkDelete
	Rule        string        `json:"rule"`   // name of the rule that produced it
	Source      ImageRef      `json:"source"`
	Destination RepositoryRef `json:"destination"`
	Reason      string        `json:"reason,omitempty"` // why the backfill or the reconcile queued it, for logs
	// Run is the reconcile run that found the work (RFC 3339), if one did: the copy's log
	// line says so (event_id "reconcile:<run>").
	Run string `json:"run,omitempty"`
	// Hold, when set, makes the item the re-check of a copy a promotion gate held
	// (docs/PROMOTION.md): it is decided again, and copied, held again or blocked.
	Hold      *Hold     `json:"hold,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// Hold is what a re-check carries of the hold it continues.
type Hold struct {
	// Attempt counts the re-checks (1: the first).
	Attempt int `json:"attempt"`
	// Reason is the code the image was held for (SignatureMissing, ScanPending), for logs.
	Reason string `json:"reason,omitempty"`
	// EventID is the push event that was held, so that its log lines are found together.
	EventID string `json:"eventId,omitempty"`
}

// MaxHoldAttempts bounds a hold's re-checks, whatever the clocks say: a gate holds for
// its signature and then its scan, each wait at most a day, re-checked every tenth of
// it but at least 15 min apart (SQS's longest delay): 2 × (96 + 2) (docs/PROMOTION.md).
// The replicate function derives each hold's own bound from its waits.
const MaxHoldAttempts = 200

// ImageRef names an image: a digest in a repository, optionally a tag.
type ImageRef struct {
	AccountID  string `json:"accountId"`
	Region     string `json:"region"`
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	Tag        string `json:"tag,omitempty"`
}

// RepositoryRef names a repository in a registry.
type RepositoryRef struct {
	AccountID  string `json:"accountId"`
	Region     string `json:"region"`
	Repository string `json:"repository"`
}

// maxReason bounds free text; a guess, nothing needs more.
const maxReason = 1024

// Validate checks every field; errors name the field and wrap
// ErrMalformed.
func (w *WorkItem) Validate() error {
	if w.Kind != WorkItemKind {
		return malformed("kind", "%s is not %q", ecrname.Quote(w.Kind), WorkItemKind)
	}
	if w.Version != WorkItemVersion {
		return malformed("version", "%d is not supported (want %d)", w.Version, WorkItemVersion)
	}
	if w.Action != WorkCopy && w.Action != WorkDelete {
		return malformed("action", "%s is neither %q nor %q", ecrname.Quote(w.Action), WorkCopy, WorkDelete)
	}
	if w.Rule == "" {
		return malformed("rule", "required")
	}
	if len(w.Rule) > 64 {
		return malformed("rule", "%s is longer than 64 characters", ecrname.Quote(w.Rule))
	}
	checks := []struct {
		field string
		err   error
	}{
		{"source.accountId", ecrname.AccountID(w.Source.AccountID)},
		{"source.region", ecrname.Region(w.Source.Region)},
		{"source.repository", ecrname.Repository(w.Source.Repository)},
		{"source.digest", ecrname.Digest(w.Source.Digest)},
		{"destination.accountId", ecrname.AccountID(w.Destination.AccountID)},
		{"destination.region", ecrname.Region(w.Destination.Region)},
		{"destination.repository", ecrname.Repository(w.Destination.Repository)},
	}
	for _, c := range checks {
		if c.err != nil {
			return malformed(c.field, "%v", c.err)
		}
	}
	if w.Source.Tag != "" {
		if err := ecrname.Tag(w.Source.Tag); err != nil {
			return malformed("source.tag", "%v", err)
		}
	}
	if len(w.Reason) > maxReason {
		return malformed("reason", "longer than %d bytes", maxReason)
	}
	if _, err := time.Parse(time.RFC3339, w.Run); w.Run != "" && err != nil {
		return malformed("run", "%s is not an RFC 3339 timestamp", ecrname.Quote(w.Run))
	}
	if w.CreatedAt.IsZero() {
		return malformed("createdAt", "required")
	}
	if h := w.Hold; h != nil {
		switch {
		case w.Action != WorkCopy:
			return malformed("hold", "only a copy is held")
		case h.Attempt < 1 || h.Attempt > MaxHoldAttempts:
			return malformed("hold.attempt", "%d is not between 1 and %d", h.Attempt, MaxHoldAttempts)
		case len(h.Reason) > 64 || len(h.EventID) > 256:
			return malformed("hold", "reason or eventId too long")
		}
	}
	return nil
}

// Marshal validates w and returns its JSON form. Kind and Version are
// filled in when zero.
func Marshal(w WorkItem) ([]byte, error) {
	if w.Kind == "" {
		w.Kind = WorkItemKind
	}
	if w.Version == 0 {
		w.Version = WorkItemVersion
	}
	return marshalValid(&w)
}

// marshalValid returns v's JSON form if v is valid.
func marshalValid(v interface{ Validate() error }) ([]byte, error) {
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// decodeStrict decodes body into v, refusing unknown fields by name (what names the
// message kind in the error).
func decodeStrict(body []byte, what string, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
			return malformed(what, "unknown field %s", strings.TrimPrefix(msg, "json: unknown field "))
		}
		return jsonError("", err)
	}
	return nil
}

// rawWorkItem decodes createdAt as a string so a bad timestamp is reported
// by field name.
type rawWorkItem struct {
	WorkItem
	CreatedAt *string `json:"createdAt"`
}

func parseWorkItem(body []byte) (Message, error) {
	var raw rawWorkItem
	if err := decodeStrict(body, "work item", &raw); err != nil {
		return Message{}, err
	}
	w := raw.WorkItem
	if raw.CreatedAt != nil {
		t, err := time.Parse(time.RFC3339, *raw.CreatedAt)
		if err != nil {
			return Message{}, malformed("createdAt", "%s is not an RFC 3339 timestamp", ecrname.Quote(*raw.CreatedAt))
		}
		w.CreatedAt = t
	}
	if err := w.Validate(); err != nil {
		return Message{}, err
	}
	class := Push
	if w.Action == WorkDelete {
		class = Delete
	}
	return Message{Kind: KindWorkItem, Class: class, WorkItem: &w}, nil
}

// String identifies the work item in logs.
func (w *WorkItem) String() string {
	return fmt.Sprintf("%s %s/%s/%s@%s -> %s/%s/%s (rule %s)", w.Action,
		w.Source.AccountID, w.Source.Region, w.Source.Repository, w.Source.Digest,
		w.Destination.AccountID, w.Destination.Region, w.Destination.Repository, w.Rule)
}

// Repo is the image's repository.
func (r ImageRef) Repo() ecrname.Repo {
	return ecrname.Repo{Registry: ecrname.Registry{AccountID: r.AccountID, Region: r.Region}, Name: r.Repository}
}

// Repo is the repository.
func (r RepositoryRef) Repo() ecrname.Repo {
	return ecrname.Repo{Registry: ecrname.Registry{AccountID: r.AccountID, Region: r.Region}, Name: r.Repository}
}

// RefTo is the RepositoryRef of a repository.
func RefTo(r ecrname.Repo) RepositoryRef {
	return RepositoryRef{AccountID: r.AccountID, Region: r.Region, Repository: r.Name}
}
