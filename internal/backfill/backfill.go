// Package backfill migrates whole repositories: it plans by diff (source listings
// against destination listings, ECR API only), then reports the plan (dry run), sends
// work items to the copy queue (enqueue) or copies them here (inline), stopping before
// the deadline and handing back a continuation token. Its planning (Plan, Images,
// ListDestinations, WorkItem) is also what the scheduled reconcile (internal/reconcile)
// plans each repository with.
package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/deadline"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
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
	// Start begins the run an inline backfill copies with ((*destinations.Replicator).Start).
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

// invocation is the state of one invocation (Invoke, Execute).
type invocation struct {
	b          *Backfill
	srcAccount string
	srcRegion  string
	doc        *rules.Document
	req        Request
	mode       string
	time       deadline.Budget
	resp       *Response
	outstand   map[ecrname.Registry]int // outstanding copies per destination registry
	copies     Copier
	uploads    []upload // dry run: the planned copies that upload (mounting.go)
	// from is the position the run continues from; at maxStalls, retryable copy failures
	// are final (see inline).
	from position
	mu   sync.Mutex
}

// Invoke executes one backfill invocation.
func (b *Backfill) Invoke(ctx context.Context, req Request) (*Response, error) {
	start := b.now()
	if req.Mode == ModeReconcile {
		return nil, errors.New("backfill request: mode: reconcile runs are ReconcileFunction's: invoke it with the same scope ({\"repositories\": […], \"tags\": […], \"since\": …})")
	}
	r, pos, err := b.newInvocation(ctx, req)
	if err != nil {
		return nil, err
	}
	// The destinations' sessions (AssumeRole) are opened while the source is being
	// listed, not after: an in-sync run is a few list calls, and each round trip counts.
	defer b.warmDestinations(ctx, r.doc)()
	if err := r.scan(ctx, pos); err != nil {
		return nil, err
	}
	if r.mode == "dryRun" && !b.NoMountingEstimate {
		r.resp.Mounting = r.planMounting(ctx)
	}
	return b.finish(r, start), nil
}

// Execute copies the work a dry run planned (plan.Work), inline, as an inline run would
// have — without listing anything again — and returns the plan's totals with what the
// copies did.
func (b *Backfill) Execute(ctx context.Context, plan *Response) *Response {
	start := b.now()
	resp := *plan
	resp.Mode, resp.Plan, resp.WorkItems, resp.Work, resp.Mounting = ModeInline, nil, nil, nil, nil
	resp.Held, resp.Blocked, resp.Gated = 0, 0, nil // decided again as each copy's turn comes
	resp.Remaining, resp.ContinuationToken = len(plan.Work), ""
	r := &invocation{b: b, mode: ModeInline, resp: &resp, outstand: map[ecrname.Registry]int{}, srcAccount: plan.source.AccountID, srcRegion: plan.source.Region}
	r.time = deadline.New(ctx, b.now(), b.Time)
	r.copies = b.Start()
	for i := range plan.Work {
		r.outstanding(&plan.Work[i], 1)
	}
	if cursor, done := r.inline(ctx, plan.Work, ""); !done {
		resp.ContinuationToken = r.token(position{After: cursor})
	}
	return b.finish(r, start)
}

// newInvocation validates a request and sets up its run: the narrowed rules, the mode, the
// position to resume at.
func (b *Backfill) newInvocation(ctx context.Context, req Request) (*invocation, position, error) {
	var pos position
	if b.Rules == nil {
		return nil, pos, errors.New("backfill: no rules document")
	}
	doc, err := b.Rules.Narrow(req.Repositories, req.Tags)
	if err != nil {
		return nil, pos, fmt.Errorf("backfill request: %w", err)
	}
	mode := req.Mode
	if mode == "" {
		mode = ModeInline
		if b.workQueue() != "" {
			mode = ModeEnqueue
		}
	}
	if mode == ModeEnqueue && !req.DryRun && (b.workQueue() == "" || b.Sender == nil) {
		return nil, pos, errors.New("backfill request: mode: enqueue needs COPY_QUEUE_URL or REPLICATION_QUEUE_URL")
	}
	if req.DryRun {
		mode = "dryRun"
	}
	if req.ContinuationToken != "" {
		if pos, err = decodeToken(req.ContinuationToken); err != nil {
			return nil, pos, fmt.Errorf("backfill request: continuationToken: %w", err)
		}
	}
	r := &invocation{b: b, doc: doc, req: req, mode: mode, resp: &Response{Mode: mode}, outstand: map[ecrname.Registry]int{}, srcRegion: b.SourceRegion, from: pos}
	r.time = deadline.New(ctx, b.now(), b.Time)
	if mode == ModeInline {
		r.copies = b.Start()
	}
	return r, pos, nil
}

// scan lists the source's repositories in scope and plans and acts on each from pos,
// until done or time is up (then the response carries the continuation token).
func (r *invocation) scan(ctx context.Context, pos position) error {
	b := r.b
	r.srcAccount = b.SourceAccountID
	if r.srcAccount == "" {
		var err error
		if r.srcAccount, err = destinations.SourceAccount(ctx, b.Resolver, r.doc.SourceRoleARN()); err != nil {
			return err
		}
	}
	src, err := b.Resolver.Registry(ctx, destinations.SourceAccess(ecrname.Registry{AccountID: r.srcAccount, Region: b.SourceRegion}, r.doc.SourceRoleARN()))
	if err != nil {
		return err
	}
	repos, err := r.listRepositories(ctx, src.API())
	if err != nil {
		return err
	}
	startIdx := 0
	if r.req.ContinuationToken != "" {
		// Resume at the named repository, or where it would sort if it is gone.
		startIdx = sort.SearchStrings(repos, pos.Repository)
		if startIdx >= len(repos) || repos[startIdx] != pos.Repository {
			pos.After = ""
		}
	}
	for i := startIdx; i < len(repos); i++ {
		cursor := ""
		if i == startIdx {
			cursor = pos.After
		}
		if r.timeUp() {
			r.resp.ContinuationToken = r.token(position{RepoIndex: i, Repository: repos[i], After: cursor})
			break
		}
		r.resp.source = ecrname.Registry{AccountID: r.srcAccount, Region: b.SourceRegion}
		last, done := r.repository(ctx, src.API(), repos[i], cursor)
		if !done {
			r.resp.ContinuationToken = r.token(position{RepoIndex: i, Repository: repos[i], After: last})
			break
		}
	}
	return nil
}

// finish completes the response's totals and reports them (a log line, the metrics).
func (b *Backfill) finish(r *invocation, start time.Time) *Response {
	resp := r.resp
	busiest := 0
	for _, n := range r.outstand {
		busiest = max(busiest, n)
	}
	resp.EstimatedSecondsAtQuota = float64(busiest) / PutImageQuota
	resp.DurationMs = b.now().Sub(start).Milliseconds()
	var mr *metrics.Recorder
	if b.EMF != nil {
		mr = metrics.New(b.EMF, b.Namespace)
	}
	b.report(resp, mr)
	if mr != nil {
		if err := mr.Flush(); err != nil {
			b.log().Warn("writing metrics", "error", err.Error())
		}
	}
	return resp
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

func (r *invocation) timeUp() bool { return r.time.SoftStopped(r.b.now()) }

// token is the continuation token for p, counting the runs in a row that ended where
// this one started.
func (r *invocation) token(p position) string {
	if p.Repository == r.from.Repository && p.After == r.from.After {
		p.Stalls = r.from.Stalls + 1
	}
	return encodeToken(p)
}

// warmDestinations starts resolving every destination of the rules in the background
// (ecraccess.Resolver.Warm) and returns a function that waits for that to end.
func (b *Backfill) warmDestinations(ctx context.Context, doc *rules.Document) (wait func()) {
	var wg sync.WaitGroup
	seen := map[ecraccess.Access]bool{}
	for _, rule := range doc.Rules {
		for _, d := range rule.Destinations {
			a := destinations.DestinationAccess(d)
			if seen[a] {
				continue
			}
			seen[a] = true
			wg.Go(func() { b.Resolver.Warm(ctx, a) })
		}
	}
	return wg.Wait
}

// listRepositories returns the in-scope source repositories, sorted by name.
func (r *invocation) listRepositories(ctx context.Context, api *ecr.Client) ([]string, error) {
	var names []string
	p := ecr.NewDescribeRepositoriesPaginator(api, &ecr.DescribeRepositoriesInput{RegistryId: aws.String(r.srcAccount), MaxResults: aws.Int32(1000)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ecr:DescribeRepositories in %s/%s: %w", r.srcAccount, r.b.SourceRegion, err)
		}
		for _, repo := range out.Repositories {
			if n := aws.ToString(repo.RepositoryName); r.doc.RepositoryInScope(n) {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// Images lists every image of a repository (ecr:DescribeImages), in every storage
// status: without the filter DescribeImages lists ACTIVE images only
// (DescribeImagesFilter, https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DescribeImagesFilter.html).
// found is false when the repository does not exist; an error is classified
// (ecraccess.WrapAWS).
func Images(ctx context.Context, api ecr.DescribeImagesAPIClient, registryID, repo string) (imgs []Image, found bool, err error) {
	p := ecr.NewDescribeImagesPaginator(api, &ecr.DescribeImagesInput{RegistryId: aws.String(registryID), RepositoryName: aws.String(repo), MaxResults: aws.Int32(1000),
		Filter: &ecrtypes.DescribeImagesFilter{ImageStatus: ecrtypes.ImageStatusFilterAny}})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		var nf *ecrtypes.RepositoryNotFoundException
		if errors.As(err, &nf) {
			return nil, false, nil
		}
		if err != nil {
			return nil, true, ecraccess.WrapAWS("ecr:DescribeImages", err)
		}
		for _, d := range out.ImageDetails {
			imgs = append(imgs, Image{
				Digest: aws.ToString(d.ImageDigest), Tags: d.ImageTags, PushedAt: aws.ToTime(d.ImagePushedAt),
				MediaType: aws.ToString(d.ImageManifestMediaType), ArtifactMediaType: aws.ToString(d.ArtifactMediaType),
				Subject: aws.ToString(d.SubjectManifestDigest), Size: aws.ToInt64(d.ImageSizeInBytes), Status: string(d.ImageStatus),
			})
		}
	}
	return imgs, true, nil
}

// ListDestinations lists, concurrently, every destination repository of targets; wait
// returns the listings by destination repository (an entry with Err: not listed; none:
// the repository does not exist). listOnly resolves the destinations' roles to sessions
// that may only list (ecraccess.Access.ListOnly).
func ListDestinations(ctx context.Context, resolver *ecraccess.Resolver, targets []rules.Target, listOnly bool) (wait func() map[ecrname.Repo]*Listing) {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		out = make(map[ecrname.Repo]*Listing, len(targets))
	)
	for _, t := range targets {
		if t.Err != nil {
			continue // reported by Expand if an image needs it
		}
		wg.Go(func() {
			a := destinations.DestinationAccess(t.Destination)
			a.ListOnly = listOnly
			reg, err := resolver.Registry(ctx, a)
			var (
				imgs  []Image
				found bool
			)
			if err == nil {
				imgs, found, err = Images(ctx, reg.API(), t.Destination.AccountID, t.Repository)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				out[t.Repo()] = &Listing{Err: err}
			case found:
				out[t.Repo()] = listingOf(imgs)
			}
		})
	}
	return func() map[ecrname.Repo]*Listing {
		wg.Wait()
		return out
	}
}

func listingOf(imgs []Image) *Listing {
	l := &Listing{Exists: true, Digests: make(map[string]bool, len(imgs)), Tags: make(map[string]string, len(imgs))}
	for _, img := range imgs {
		l.Digests[img.Digest] = true
		for _, t := range img.Tags {
			l.Tags[t] = img.Digest
		}
	}
	return l
}

// repository plans one source repository (Plan, over the listings of its source and
// every destination) and acts on its work after cursor. It returns the key of the last
// work item handled and whether the repository is done.
func (r *invocation) repository(ctx context.Context, api *ecr.Client, repo, cursor string) (string, bool) {
	resp := r.resp
	// Every destination a rule could send this repository to is listed while the source
	// is described: one round trip instead of two. A destination no image turns out to
	// need costs one unneeded list call.
	listings := ListDestinations(ctx, r.b.Resolver, r.doc.RepositoryTargets(repo), false)
	imgs, found, err := Images(ctx, api, r.srcAccount, repo)
	dests := listings()
	if err == nil && !found {
		return "", true // deleted since it was listed
	}
	if err != nil {
		code, _ := retry.Classify(err)
		resp.fail(Failure{Repository: repo, Reason: err.Error(), Code: code})
		return "", true
	}
	if r.b.Listed != nil {
		r.b.Listed(repo, imgs)
	}
	ex, diff := Plan(r.doc, repo, imgs, r.req.Since, dests)
	r.account(repo, ex, diff, dests)
	if r.mode == "dryRun" {
		r.decideGates(ctx, repo, diff.Work)
		r.describe(repo, diff)
		r.noteUploads(diff.Work, dests)
		return "", true
	}
	work := After(diff.Work, cursor)
	resp.Remaining += len(work)
	for i := range work {
		r.outstanding(&work[i], 1)
	}
	if r.mode == ModeEnqueue {
		return r.enqueue(ctx, work)
	}
	return r.inline(ctx, work, cursor)
}

// account adds one repository's plan to the response's totals and failures.
func (r *invocation) account(repo string, ex Expansion, diff Diff, dests map[ecrname.Repo]*Listing) {
	resp := r.resp
	resp.RepositoriesScanned++
	resp.ImagesSeen += ex.ImagesSeen
	resp.SkippedBeforeSince += ex.SkippedBefore
	resp.ArchivedAtSource += ex.Archived
	for _, reason := range ex.Invalid {
		resp.fail(Failure{Repository: repo, Reason: reason})
	}
	for _, t := range ex.Targets {
		if l := dests[t.Repo()]; l != nil && l.Err != nil {
			code, _ := retry.Classify(l.Err)
			resp.fail(Failure{Repository: repo, Destination: t.Repo().String(), Reason: "listing the destination: " + l.Err.Error(), Code: code})
		}
	}
	resp.Unplanned += diff.Unplanned
	resp.InSync += diff.InSync
	resp.Drift += len(diff.Work)
	if len(diff.Work) > 0 {
		r.b.log().Info("backfill drift", "repository", repo, "work", len(diff.Work), "inSync", diff.InSync)
	}
}

// describe adds one repository's plan to a dry run's answer.
func (r *invocation) describe(repo string, diff Diff) {
	resp := r.resp
	dsts := make([]ecrname.Repo, 0, len(diff.PerTarget))
	for k := range diff.PerTarget {
		dsts = append(dsts, k)
	}
	sort.Slice(dsts, func(i, j int) bool { return dsts[i].String() < dsts[j].String() })
	for _, k := range dsts {
		resp.Plan = append(resp.Plan, RepositoryPlan{Repository: repo, Destination: k.String(), TargetTotals: *diff.PerTarget[k]})
	}
	resp.Remaining += len(diff.Work)
	resp.Work = append(resp.Work, diff.Work...)
	for i := range diff.Work {
		r.outstanding(&diff.Work[i], 1)
		if len(resp.WorkItems) < MaxPlanItems {
			resp.WorkItems = append(resp.WorkItems, r.workItem(&diff.Work[i]))
		}
	}
}

func (r *invocation) outstanding(w *Work, n int) {
	r.mu.Lock()
	r.outstand[w.Target.Destination.Registry()] += n
	r.mu.Unlock()
}

func (r *invocation) workItem(w *Work) ecrevent.WorkItem {
	return WorkItem(w, ecrname.Registry{AccountID: r.srcAccount, Region: r.srcRegion}, "", r.b.now())
}

// WorkItem is the work item that asks the replicate function to make w's copy: from
// the source registry, found by the reconcile run run ("": a backfill).
func WorkItem(w *Work, source ecrname.Registry, run string, now time.Time) ecrevent.WorkItem {
	reason := "backfill: " + w.Reason
	if run != "" {
		reason = "reconcile: " + w.Reason
	}
	return ecrevent.WorkItem{
		Kind: ecrevent.WorkItemKind, Version: ecrevent.WorkItemVersion, Action: ecrevent.WorkCopy, Rule: w.Target.Rule,
		Source:      ecrevent.ImageRef{AccountID: source.AccountID, Region: source.Region, Repository: w.Repository, Digest: w.Digest, Tag: w.Tag},
		Destination: ecrevent.RefTo(w.Target.Repo()),
		Reason:      reason,
		Run:         run,
		CreatedAt:   now.UTC().Truncate(time.Second),
	}
}

// workQueue is the queue work items go to.
func (b *Backfill) workQueue() string {
	if b.CopyQueueURL != "" {
		return b.CopyQueueURL
	}
	return b.QueueURL
}

// enqueueChunk is how much work one Send carries: ten batches, sent a few at once.
const enqueueChunk = 10 * sqssend.MaxBatch

// enqueue sends work as work items until time is up — at least one chunk, so a
// continuation always moves on. What SQS did not take is a failure in the response
// (with SQS's code); an on-demand backfill is rerun with its continuation token.
func (r *invocation) enqueue(ctx context.Context, work []Work) (string, bool) {
	last := ""
	for start := 0; start < len(work); start += enqueueChunk {
		if start > 0 && r.timeUp() {
			return last, false
		}
		chunk := work[start:min(start+enqueueChunk, len(work))]
		msgs := make([]sqssend.Message, 0, len(chunk))
		sent := make([]*Work, 0, len(chunk))
		for i := range chunk {
			body, err := ecrevent.Marshal(r.workItem(&chunk[i]))
			if err != nil {
				r.failed(&chunk[i], "work item: "+err.Error(), "")
				continue
			}
			msgs, sent = append(msgs, sqssend.Message{Body: string(body)}), append(sent, &chunk[i])
		}
		for i, err := range r.b.Sender.Send(ctx, r.b.workQueue(), msgs) {
			if err != nil {
				code, _ := retry.Classify(err)
				r.failed(sent[i], err.Error(), code)
				continue
			}
			r.mu.Lock()
			r.resp.Enqueued++
			r.resp.Remaining--
			r.mu.Unlock()
		}
		last = chunk[len(chunk)-1].Key()
	}
	return last, true
}

// failed records w as failed, for reason (code: its error code, when it has one).
func (r *invocation) failed(w *Work, reason, code string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resp.Remaining--
	r.outstand[w.Target.Destination.Registry()]--
	r.resp.fail(Failure{Repository: w.Repository, Destination: w.Target.Repo().String(), Digest: w.Digest, Tag: w.Tag, Reason: reason, Code: code})
}

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

// copyGroup copies one group's items in order and returns how many are finished; it
// stops at an item cut by ctx, which stays remaining — unless it is the item the position
// has stalled at (stuck), which is reported as failed with its code.
func (r *invocation) copyGroup(ctx context.Context, g []Work, stuck string) int {
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

// report writes the totals as one JSON log line and records the metrics.
func (b *Backfill) report(resp *Response, mr *metrics.Recorder) {
	b.log().Info("backfill totals",
		"mode", resp.Mode, "repositoriesScanned", resp.RepositoriesScanned, "imagesSeen", resp.ImagesSeen,
		"skippedBeforeSince", resp.SkippedBeforeSince, "archivedAtSource", resp.ArchivedAtSource, "inSync", resp.InSync, "drift", resp.Drift,
		"enqueued", resp.Enqueued, "copied", resp.Copied, "skipped", resp.Skipped, "failed", resp.Failed, "bytesCopied", resp.BytesCopied,
		"bytesMounted", resp.BytesMounted, "bytesMountable", resp.BytesMountable,
		"remaining", resp.Remaining, "estimatedSecondsAtQuota", resp.EstimatedSecondsAtQuota,
		"continues", resp.ContinuationToken != "", "durationMs", resp.DurationMs)
	for _, m := range resp.Mounting {
		b.log().Info("blob mounting", "registry", m.Registry, "blobMounting", m.BlobMounting, "bytesMountable", m.BytesMountable,
			"imagesRead", m.ImagesRead, "partial", m.Partial, "reason", m.Reason)
	}
	if m := mr; m != nil {
		// Not Drift and ImagesEnqueued: those are the reconcile's, on the dashboard.
		m.Add("BackfillDrift", metrics.Count, float64(resp.Drift))
		m.Add("BackfillImagesEnqueued", metrics.Count, float64(resp.Enqueued))
		m.Add("ImagesCopied", metrics.Count, float64(resp.Copied))
		m.Add("BackfillFailures", metrics.Count, float64(resp.Failed))
		m.Add("BytesCopied", metrics.Bytes, float64(resp.BytesCopied))
		m.Add("BytesMounted", metrics.Bytes, float64(resp.BytesMounted))
	}
}
