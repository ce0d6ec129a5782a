package ecrevent

import (
	"fmt"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// ReconcileKind tells a reconcile item apart from work items and EventBridge events.
const (
	ReconcileKind    = "ecr-replicator/reconcile"
	ReconcileVersion = 1
)

// Reconcile is one piece of a distributed reconcile run, sent through the reconcile
// queue: either one source repository to plan by diff and bring in sync (Repository),
// or the rest of the source's repository list to fan out (Scan, after a repository
// name). Its JSON form is:
//
//	{"kind":"ecr-replicator/reconcile","version":1,"run":"2026-12-01T10:00:00Z",
//	 "source":{"accountId":"111111111111","region":"us-east-1"},
//	 "repository":"team-a/app",
//	 "scope":{"repositories":["team-a/*"],"tags":["v*"]},
//	 "createdAt":"2026-12-01T10:00:03Z"}
//
// or, instead of "repository", "scan":{"after":"team-a/app"}. A repository item whose
// plan did not fit one invocation comes back with "cursor". Unknown fields are rejected,
// as for work items.
type Reconcile struct {
	Kind       string         `json:"kind"`
	Version    int            `json:"version"`
	Run        string         `json:"run"` // the run's id: when its trigger started it (RFC 3339)
	Source     SourceRegistry `json:"source"`
	Repository string         `json:"repository,omitempty"`
	// Cursor, in a repository item, is where its plan continues: the key of the last
	// work item a previous invocation sent.
	Cursor    string    `json:"cursor,omitempty"`
	Scan      *Scan     `json:"scan,omitempty"`
	Scope     Scope     `json:"scope"`
	CreatedAt time.Time `json:"createdAt"`
}

// maxCursor bounds a cursor: a work item's key is a digest, a destination and a tag.
const maxCursor = 1024

// SourceRegistry names the source registry of a reconcile run.
type SourceRegistry struct {
	AccountID string `json:"accountId"`
	Region    string `json:"region"`
}

// Scan continues a repository listing after a name.
type Scan struct {
	After string `json:"after"`
}

// Scope narrows a run, as a backfill request does.
type Scope struct {
	Repositories []string   `json:"repositories,omitempty"`
	Tags         []string   `json:"tags,omitempty"`
	Since        *time.Time `json:"since,omitempty"`
}

// Registry is the source registry.
func (r *Reconcile) Registry() ecrname.Registry {
	return ecrname.Registry{AccountID: r.Source.AccountID, Region: r.Source.Region}
}

// Validate checks every field; errors name the field and wrap ErrMalformed.
func (r *Reconcile) Validate() error {
	if r.Kind != ReconcileKind {
		return malformed("kind", "%s is not %q", ecrname.Quote(r.Kind), ReconcileKind)
	}
	if r.Version != ReconcileVersion {
		return malformed("version", "%d is not supported (want %d)", r.Version, ReconcileVersion)
	}
	if _, err := time.Parse(time.RFC3339, r.Run); err != nil {
		return malformed("run", "%s is not an RFC 3339 timestamp", ecrname.Quote(r.Run))
	}
	if err := ecrname.AccountID(r.Source.AccountID); err != nil {
		return malformed("source.accountId", "%v", err)
	}
	if err := ecrname.Region(r.Source.Region); err != nil {
		return malformed("source.region", "%v", err)
	}
	switch {
	case (r.Repository == "") == (r.Scan == nil):
		return malformed("repository", "exactly one of repository and scan is required")
	case r.Repository != "":
		if err := ecrname.Repository(r.Repository); err != nil {
			return malformed("repository", "%v", err)
		}
		if len(r.Cursor) > maxCursor {
			return malformed("cursor", "longer than %d characters", maxCursor)
		}
	case r.Cursor != "":
		return malformed("cursor", "only a repository item has one")
	case r.Scan.After != "":
		if err := ecrname.Repository(r.Scan.After); err != nil {
			return malformed("scan.after", "%v", err)
		}
	}
	if len(r.Scope.Repositories) > 100 || len(r.Scope.Tags) > 100 {
		return malformed("scope", "more than 100 globs")
	}
	if r.CreatedAt.IsZero() {
		return malformed("createdAt", "required")
	}
	return nil
}

// MarshalReconcile validates r and returns its JSON form; Kind and Version are filled in
// when zero.
func MarshalReconcile(r Reconcile) ([]byte, error) {
	if r.Kind == "" {
		r.Kind = ReconcileKind
	}
	if r.Version == 0 {
		r.Version = ReconcileVersion
	}
	return marshalValid(&r)
}

func parseReconcile(body []byte) (Message, error) {
	var r Reconcile
	if err := decodeStrict(body, "reconcile item", &r); err != nil {
		return Message{}, err
	}
	if err := r.Validate(); err != nil {
		return Message{}, err
	}
	return Message{Kind: KindReconcile, Class: Push, Reconcile: &r}, nil
}

// String identifies the item in logs.
func (r *Reconcile) String() string {
	if r.Scan != nil {
		return fmt.Sprintf("reconcile run %s: scan %s/%s after %q", r.Run, r.Source.AccountID, r.Source.Region, r.Scan.After)
	}
	return fmt.Sprintf("reconcile run %s: %s/%s/%s", r.Run, r.Source.AccountID, r.Source.Region, r.Repository)
}
