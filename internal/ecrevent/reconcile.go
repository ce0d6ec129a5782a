package ecrevent

import (
	"fmt"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// ReconcileKind tells a reconcile item apart from work items and EventBridge events.
// Version 2 continues a repository scan by page token (version 1 by name, which assumed
// an order ECR does not document); version-1 items are still accepted (a version-1 scan
// item starts its listing again: duplicates, never a loss).
const (
	ReconcileKind    = "ecr-replicator/reconcile"
	ReconcileVersion = 2
)

// Bounds of a reconcile item's fields.
const (
	// MaxHops bounds a chain of continuations (a scan continued page after page, a
	// repository continued by cursor or retried): a registry of 100,000 repositories is
	// 100 pages, a repository of 100,000 images a few tens of continuations. An item past
	// it is refused: the chain is looping.
	MaxHops = 1000
	// MaxAttempts bounds the retries of one item a function schedules itself (with a
	// delay) before it leaves the item to SQS's redelivery and redrive.
	MaxAttempts = 5
	maxCursor   = 1024 // a work item's key: a digest, a destination and a tag
	maxToken    = 4096 // a DescribeRepositories nextToken (opaque; guess: AWS documents no length)
	// maxDestinations bounds the registries a repository item is limited to: every
	// account and region a rules document names, in the worst case.
	maxDestinations = 1000
)

// Reconcile is one piece of a distributed reconcile run, sent through the reconcile
// queue: either one source repository to plan by diff and bring in sync (Repository),
// or one page of the source's repository listing to fan out (Scan). Its JSON form is:
//
//	{"kind":"ecr-replicator/reconcile","version":2,"run":"2026-12-01T10:00:00Z",
//	 "source":{"accountId":"111111111111","region":"us-east-1"},
//	 "repository":"team-a/app",
//	 "scope":{"repositories":["team-a/*"],"tags":["v*"]},
//	 "createdAt":"2026-12-01T10:00:03Z"}
//
// or, instead of "repository", "scan":{"token":"…","skip":40,"next":"team-b/web"}. A
// repository item whose plan did not fit one invocation comes back with "cursor"; one
// retried after a failure with "attempt" and, when only some destinations failed,
// "destinations". Unknown fields are rejected, as for work items.
type Reconcile struct {
	Kind       string         `json:"kind"`
	Version    int            `json:"version"`
	Run        string         `json:"run"` // the run's id: when its trigger started it (RFC 3339)
	Source     SourceRegistry `json:"source"`
	Repository string         `json:"repository,omitempty"`
	// Cursor, in a repository item, is where its plan continues: the key of the last
	// work item a previous invocation sent.
	Cursor string `json:"cursor,omitempty"`
	// Destinations, in a repository item, limits it to the destinations in these
	// registries (the ones a retry is for); empty: every destination of the rules.
	Destinations []SourceRegistry `json:"destinations,omitempty"`
	Scan         *Scan            `json:"scan,omitempty"`
	Scope        Scope            `json:"scope"`
	// Attempt is how many times this item's work was retried after a failure.
	Attempt int `json:"attempt,omitempty"`
	// Hops is how many continuations led to this item (0: sent by the trigger or a scan).
	Hops      int       `json:"hops,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// SourceRegistry names a registry: the source of a reconcile run, or a destination a
// repository item is limited to.
type SourceRegistry struct {
	AccountID string `json:"accountId"`
	Region    string `json:"region"`
}

// Scan is one page of the source's repository listing to fan out. ECR documents no order
// for DescribeRepositories, only nextToken to continue
// (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DescribeRepositories.html),
// so a scan continues at a page: the page's token, and how much of it was done.
type Scan struct {
	// Token is the nextToken that lists the page ("": the first page).
	Token string `json:"token,omitempty"`
	// Skip is how many repositories of the page were already fanned out; Next the name
	// of the one at Skip then, so a resumed page that changed is noticed.
	Skip int    `json:"skip,omitempty"`
	Next string `json:"next,omitempty"`
	// After is version 1's continuation by name; it is read as "from the first page".
	After string `json:"after,omitempty"`
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
	if r.Version != ReconcileVersion && r.Version != 1 {
		return malformed("version", "%d is not supported (want %d)", r.Version, ReconcileVersion)
	}
	if _, err := time.Parse(time.RFC3339, r.Run); err != nil {
		return malformed("run", "%s is not an RFC 3339 timestamp", ecrname.Quote(r.Run))
	}
	if err := validRegistry("source", r.Source); err != nil {
		return err
	}
	if err := r.validateTarget(); err != nil {
		return err
	}
	switch {
	case r.Attempt < 0 || r.Attempt > MaxAttempts:
		return malformed("attempt", "%d is not between 0 and %d", r.Attempt, MaxAttempts)
	case r.Hops < 0 || r.Hops > MaxHops:
		return malformed("hops", "%d is not between 0 and %d (a chain of continuations that long is looping)", r.Hops, MaxHops)
	case len(r.Scope.Repositories) > 100 || len(r.Scope.Tags) > 100:
		return malformed("scope", "more than 100 globs")
	case r.CreatedAt.IsZero():
		return malformed("createdAt", "required")
	}
	return nil
}

// validateTarget checks what the item is about: a repository, or a scan page.
func (r *Reconcile) validateTarget() error {
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
		if len(r.Destinations) > maxDestinations {
			return malformed("destinations", "more than %d registries", maxDestinations)
		}
		for i, d := range r.Destinations {
			if err := validRegistry(fmt.Sprintf("destinations[%d]", i), d); err != nil {
				return err
			}
		}
		return nil
	case r.Cursor != "" || len(r.Destinations) > 0:
		return malformed("cursor", "only a repository item has a cursor or destinations")
	}
	sc := r.Scan
	switch {
	case len(sc.Token) > maxToken:
		return malformed("scan.token", "longer than %d characters", maxToken)
	case sc.Skip < 0 || sc.Skip > 1000:
		return malformed("scan.skip", "%d is not between 0 and 1000 (a page's size)", sc.Skip)
	case (sc.Skip == 0) != (sc.Next == ""):
		return malformed("scan.next", "required with skip, and only then")
	}
	for field, name := range map[string]string{"scan.next": sc.Next, "scan.after": sc.After} {
		if name == "" {
			continue
		}
		if err := ecrname.Repository(name); err != nil {
			return malformed(field, "%v", err)
		}
	}
	return nil
}

func validRegistry(field string, r SourceRegistry) error {
	if err := ecrname.AccountID(r.AccountID); err != nil {
		return malformed(field+".accountId", "%v", err)
	}
	if err := ecrname.Region(r.Region); err != nil {
		return malformed(field+".region", "%v", err)
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
		page := "the first page"
		if r.Scan.Token != "" {
			page = "a later page"
		}
		return fmt.Sprintf("reconcile run %s: scan %s/%s, %s from %d", r.Run, r.Source.AccountID, r.Source.Region, page, r.Scan.Skip)
	}
	return fmt.Sprintf("reconcile run %s: %s/%s/%s", r.Run, r.Source.AccountID, r.Source.Region, r.Repository)
}
