// Package backfill migrates whole repositories: it plans by diff (source listings
// against destination listings, ECR API only), then reports the plan (dry run), sends
// work items to the copy queue (enqueue) or copies them here (inline), stopping before
// the deadline and handing back a continuation token. Its planning (Plan, Images,
// ListDestinations, WorkItem) is also what the scheduled reconcile (internal/reconcile)
// plans each repository with.
package backfill

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/deadline"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/sqssend"
)

// PutImageQuota is ECR's default rate of manifest writes (PutImage) per second per
// account and region; the response estimates remaining work at this rate.
const PutImageQuota = 10

// MaxPlanItems is how many work items a dry run returns.
const MaxPlanItems = 100

// maxFailures bounds the failure reasons returned.
const maxFailures = 100

// Copier copies images to their destinations for one invocation: a *destinations.Batch.
type Copier interface {
	Replicate(ctx context.Context, src destinations.Image, targets []rules.Target) []destinations.Result
}

// Backfill plans and runs backfills. Fields are set once; Invoke is safe to call again
// (a warm Lambda reuses it).
type Backfill struct {
	Rules    *rules.Document
	RulesErr error // an invalid rules document: every invocation fails with it
	Resolver *ecraccess.Resolver
	// SourceAccountID and SourceRegion name the source registry. An empty
	// SourceAccountID is source.roleArn's account, or the caller's (SourceAccount).
	SourceAccountID string
	SourceRegion    string
	// Start begins the batch an inline backfill copies with ((*destinations.Replicator).Start).
	Start func() Copier
	// Sender sends work items (enqueue mode).
	Sender *sqssend.Sender
	// CopyQueueURL (COPY_QUEUE_URL) is where work items go in enqueue mode: the queue
	// whose consumers are few enough to share the destinations' PutImage quota.
	// Empty: QueueURL.
	CopyQueueURL string
	QueueURL     string // REPLICATION_QUEUE_URL; with no queue, the default mode is inline
	// Concurrency bounds inline copies in flight (default 8).
	Concurrency int
	// Time divides each invocation's time (deadline.Options: the soft stop, after which
	// no work starts, and the reserve kept to answer; zero: the defaults).
	Time deadline.Options
	Log  *slog.Logger
	// EMF, when set, receives each invocation's metrics (CloudWatch Embedded Metric
	// Format, namespace Namespace), written once at its end.
	EMF       io.Writer
	Namespace string
	Now       func() time.Time
	// Listed, when set, is told each source repository's images as listed, before they
	// are planned (the CLI finds the rules that select nothing). Called from one
	// goroutine at a time.
	Listed func(repository string, images []Image)
	// NoMountingEstimate leaves Response.Mounting out of a dry run (and the manifest reads
	// it takes): for a plan that is copied right after (the CLI's sync).
	NoMountingEstimate bool
	// Gate decides promotion gates (gate.go); nil: gated copies go to the copy queue.
	Gate Gate
	// GateSettled, when set, is told each copy of an inline run that its promotion gate
	// settled without a copy: held, blocked, or its decision failed (Verdict "failed")
	// (the CLI accounts for every copy it planned). Called with the run's lock held.
	GateSettled func(w Work, v GateVerdict)
}

// Failure is one thing that went wrong.
type Failure struct {
	Repository  string `json:"repository,omitempty"`
	Destination string `json:"destination,omitempty"`
	Digest      string `json:"digest,omitempty"`
	Tag         string `json:"tag,omitempty"`
	Reason      string `json:"reason"`
	// Code is the error code of a listing or copy that failed (AccessDenied, …), when known.
	Code string `json:"code,omitempty"`
}

// RepositoryPlan is the plan of one source repository to one destination repository.
type RepositoryPlan struct {
	Repository  string `json:"repository"`
	Destination string `json:"destination"` // accountId/region/repository
	TargetTotals
}

// Response is the backfill result. Totals count copies: one (digest, tag, destination)
// each, so an image with two tags going to two destinations counts four.
type Response struct {
	Mode                string `json:"mode"` // dryRun, enqueue or inline
	RepositoriesScanned int    `json:"repositoriesScanned"`
	ImagesSeen          int    `json:"imagesSeen"`
	SkippedBeforeSince  int    `json:"skippedBeforeSince,omitempty"`
	// ArchivedAtSource counts source images in the archive storage class (ARCHIVED, or
	// ACTIVATING while restored): they cannot be pulled, so they are not copied; the
	// first run after their restore copies what the destinations lack.
	ArchivedAtSource int `json:"archivedAtSource,omitempty"`
	InSync           int `json:"inSync"`
	// Drift is the work found (copies missing or wrong at a destination) in the scanned
	// repositories.
	Drift    int `json:"drift"`
	Enqueued int `json:"enqueued"`
	// Copied is work that wrote to a destination (content or a tag); Skipped is work
	// that needed no write when its turn came (already there, or the source moved on).
	Copied      int       `json:"copied"`
	Skipped     int       `json:"skipped"`
	Failed      int       `json:"failed"`
	Failures    []Failure `json:"failures,omitempty"`
	BytesCopied int64     `json:"bytesCopied"`
	// BytesMounted: layers inline copies mounted from another repository of the
	// destination registry instead of uploading them; BytesMountable: layers they uploaded
	// that another repository there held (mounted, had the registry blob mounting enabled).
	BytesMounted   int64 `json:"bytesMounted,omitempty"`
	BytesMountable int64 `json:"bytesMountable,omitempty"`
	// ReferrersRefused: referrers gated inline copies left out, being runnable
	// (docs/PROMOTION.md).
	ReferrersRefused int `json:"referrersRefused,omitempty"`
	// Remaining is work found but neither enqueued nor copied by this invocation.
	Remaining int `json:"remaining"`
	// Held and Blocked count the copies promotion gates held or blocked (in a dry run:
	// would, now); Gated names the first of them (docs/PROMOTION.md).
	Held    int     `json:"held,omitempty"`
	Blocked int     `json:"blocked,omitempty"`
	Gated   []Gated `json:"gated,omitempty"`
	// Unplanned counts the copies the rules ask for at destinations that could not be
	// listed (each such destination is also in Failures): neither in sync nor drift.
	Unplanned int `json:"unplanned,omitempty"`
	// EstimatedSecondsAtQuota is how long the outstanding work known to this invocation
	// (remaining, plus enqueued not yet consumed) takes at ECR's default PutImage quota
	// of 10 per second per destination account and region; destinations run in
	// parallel, so it is the slowest one's. Repositories beyond the continuation token
	// are not yet counted.
	EstimatedSecondsAtQuota float64 `json:"estimatedSecondsAtQuota"`
	// Mounting: dry run only, per destination registry that the copies upload into two or
	// more repositories of: what blob mounting saves there, or would (mounting.go).
	Mounting []Mounting `json:"mounting,omitempty"`
	// Plan and WorkItems: dry run only (the first MaxPlanItems items).
	Plan              []RepositoryPlan    `json:"plan,omitempty"`
	WorkItems         []ecrevent.WorkItem `json:"workItems,omitempty"`
	ContinuationToken string              `json:"continuationToken,omitempty"`
	DurationMs        int64               `json:"durationMs"`

	// Work is, in a dry run, every work item found (the answer carries the first
	// MaxPlanItems as WorkItems): what Execute copies.
	Work   []Work           `json:"-"`
	source ecrname.Registry // the source registry the plan was made of
}

func (r *Response) fail(f Failure) {
	r.Failed++
	if len(r.Failures) < maxFailures {
		r.Failures = append(r.Failures, f)
	}
}

func (b *Backfill) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b *Backfill) log() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.New(slog.DiscardHandler)
}
