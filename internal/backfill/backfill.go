// Package backfill migrates whole repositories: it plans by diff (source listings
// against destination listings, ECR API only), then reports the plan (dry run), sends
// work items to the replication queue (enqueue) or copies them here (inline), stopping
// before the deadline and handing back a continuation token. Run on a schedule it is the
// reconciler: the work it finds is drift.
package backfill

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// PutImageQuota is ECR's default rate of manifest writes (PutImage) per second per
// account and region; the response estimates remaining work at this rate.
const PutImageQuota = 10

// MaxPlanItems is how many work items a dry run returns.
const MaxPlanItems = 100

// maxFailures bounds the failure reasons returned.
const maxFailures = 100

// Run copies images to their destinations for one invocation: a *destinations.Run.
type Run interface {
	Replicate(ctx context.Context, src destinations.Source, targets []rules.Target) []destinations.Result
}

// Queue is the part of the SQS client the enqueue and reconcile modes use.
type Queue interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// Backfill plans and runs backfills. Fields are set once; Run is safe to call again
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
	Start func() Run
	Queue Queue
	// CopyQueueURL (COPY_QUEUE_URL) is where work items go — enqueue mode and reconcile
	// runs: the queue whose consumers are few enough to share the destinations' PutImage
	// quota (see reconcile.go). Empty: QueueURL.
	CopyQueueURL string
	QueueURL     string // REPLICATION_QUEUE_URL; with no queue, the default mode is inline
	// ReconcileQueueURL (RECONCILE_QUEUE_URL), when set, makes reconcile the default
	// mode: the run fans out over the reconcile queue (see reconcile.go).
	ReconcileQueueURL string
	// Concurrency bounds inline copies in flight (default 8).
	Concurrency int
	// Margin is how long before the context deadline to stop taking work. Zero: a fifth
	// of the time left at the start, at most 30 seconds.
	Margin time.Duration
	// Reserve is how long before the context deadline copies in flight are cut, so the
	// answer (and its continuation token) is delivered. Zero: a twentieth of the time
	// left at the start, at least 1 s and at most 10 s.
	Reserve time.Duration
	// Retry is how SendMessageBatch calls (and the entries SQS refused) are retried.
	Retry retry.Policy
	Log   *slog.Logger
	// EMF, when set, receives each invocation's metrics (CloudWatch Embedded Metric
	// Format, namespace Namespace), written once at its end.
	EMF       io.Writer
	Namespace string
	Now       func() time.Time
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
	Mode string `json:"mode"` // dryRun, enqueue, inline or reconcile
	// Run identifies a reconcile run (its start, RFC 3339); PreviousRunIncomplete says
	// the previous one had not ended when it started; ScanContinued that the listing
	// goes on in a scan item.
	Run                   string `json:"run,omitempty"`
	PreviousRunIncomplete bool   `json:"previousRunIncomplete,omitempty"`
	ScanContinued         bool   `json:"scanContinued,omitempty"`
	RepositoriesScanned   int    `json:"repositoriesScanned"`
	ImagesSeen            int    `json:"imagesSeen"`
	SkippedBeforeSince    int    `json:"skippedBeforeSince,omitempty"`
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
	// Remaining is work found but neither enqueued nor copied by this invocation.
	Remaining int `json:"remaining"`
	// Unplanned counts the copies the rules ask for at destinations that could not be
	// listed (each such destination is also in Failures): neither in sync nor drift.
	Unplanned int `json:"unplanned,omitempty"`
	// EstimatedSecondsAtQuota is how long the outstanding work known to this invocation
	// (remaining, plus enqueued not yet consumed) takes at ECR's default PutImage quota
	// of 10 per second per destination account and region; destinations run in
	// parallel, so it is the slowest one's. Repositories beyond the continuation token
	// are not yet counted.
	EstimatedSecondsAtQuota float64 `json:"estimatedSecondsAtQuota"`
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

// run is the state of one invocation.
type run struct {
	b          *Backfill
	srcAccount string
	srcRegion  string
	doc        *rules.Document
	req        Request
	mode       string
	stopAt     time.Time
	resp       *Response
	outstand   map[ecrname.Registry]int // outstanding copies per destination registry
	copies     Run
	// from is the position the run continues from; at maxStalls, retryable copy failures
	// are final (see inline).
	from    position
	mu      sync.Mutex
	sendErr error // the first SendMessageBatch failure (after retries)
}

// Run executes one backfill invocation.
func (b *Backfill) Run(ctx context.Context, req Request) (*Response, error) {
	start := b.now()
	if req.Mode == ModeReconcile || (req.Mode == "" && !req.DryRun && b.ReconcileQueueURL != "") {
		return b.reconcile(ctx, req, start)
	}
	r, pos, err := b.newRun(ctx, req)
	if err != nil {
		return nil, err
	}
	// The destinations' sessions (AssumeRole) are opened while the source is being
	// listed, not after: an in-sync run is a few list calls, and each round trip counts.
	defer b.warmDestinations(ctx, r.doc)()
	if err := r.scan(ctx, pos); err != nil {
		return nil, err
	}
	return b.finish(r, start), nil
}

// Execute copies the work a dry run planned (plan.Work), inline, as an inline run would
// have — without listing anything again — and returns the plan's totals with what the
// copies did.
func (b *Backfill) Execute(ctx context.Context, plan *Response) *Response {
	start := b.now()
	resp := *plan
	resp.Mode, resp.Plan, resp.WorkItems, resp.Work = ModeInline, nil, nil, nil
	resp.Remaining, resp.ContinuationToken = len(plan.Work), ""
	r := &run{b: b, mode: ModeInline, resp: &resp, outstand: map[ecrname.Registry]int{}, srcAccount: plan.source.AccountID, srcRegion: plan.source.Region}
	r.stopAt = b.stopAt(ctx)
	r.copies = b.Start()
	for i := range plan.Work {
		r.outstanding(&plan.Work[i], 1)
	}
	if cursor, done := r.inline(ctx, plan.Work, ""); !done {
		resp.ContinuationToken = r.token(position{After: cursor})
	}
	return b.finish(r, start)
}

// newRun validates a request and sets up its run: the narrowed rules, the mode, the
// position to resume at.
func (b *Backfill) newRun(ctx context.Context, req Request) (*run, position, error) {
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
	if mode == ModeEnqueue && !req.DryRun && (b.workQueue() == "" || b.Queue == nil) {
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
	r := &run{b: b, doc: doc, req: req, mode: mode, resp: &Response{Mode: mode}, outstand: map[ecrname.Registry]int{}, srcRegion: b.SourceRegion, from: pos}
	r.stopAt = b.stopAt(ctx)
	if mode == ModeInline {
		r.copies = b.Start()
	}
	return r, pos, nil
}

// scan lists the source's repositories in scope and plans and acts on each from pos,
// until done or time is up (then the response carries the continuation token).
func (r *run) scan(ctx context.Context, pos position) error {
	b := r.b
	r.srcAccount = b.SourceAccountID
	if r.srcAccount == "" {
		var err error
		if r.srcAccount, err = SourceAccount(ctx, b.Resolver, r.doc); err != nil {
			return err
		}
	}
	src, err := b.Resolver.Registry(ctx, ecraccess.Access{AccountID: r.srcAccount, Region: b.SourceRegion, RoleARN: r.doc.SourceRoleARN()})
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
func (b *Backfill) finish(r *run, start time.Time) *Response {
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

func (b *Backfill) stopAt(ctx context.Context) time.Time {
	dl, ok := ctx.Deadline()
	if !ok {
		return time.Time{}
	}
	margin := b.Margin
	if margin <= 0 {
		margin = min(30*time.Second, dl.Sub(b.now())/5)
	}
	return dl.Add(-margin)
}

func (r *run) timeUp() bool { return !r.stopAt.IsZero() && !r.b.now().Before(r.stopAt) }

// token is the continuation token for p, counting the runs in a row that ended where
// this one started.
func (r *run) token(p position) string {
	if p.Repository == r.from.Repository && p.After == r.from.After {
		p.Stalls = r.from.Stalls + 1
	}
	return encodeToken(p)
}

// SourceAccount is source.roleArn's account when the rules name one, or the caller's
// (asked once per Resolver).
func SourceAccount(ctx context.Context, resolver *ecraccess.Resolver, doc *rules.Document) (string, error) {
	if arn := doc.SourceRoleARN(); arn != "" {
		acct, err := ecrname.RoleAccount(arn)
		if err != nil {
			return "", fmt.Errorf("source.roleArn: %w", err)
		}
		return acct, nil
	}
	return resolver.CallerAccount(ctx)
}

// warmDestinations starts resolving every destination of the rules in the background
// (ecraccess.Resolver.Warm) and returns a function that waits for that to end.
func (b *Backfill) warmDestinations(ctx context.Context, doc *rules.Document) (wait func()) {
	var wg sync.WaitGroup
	seen := map[ecraccess.Access]bool{}
	for _, rule := range doc.Rules {
		for _, d := range rule.Destinations {
			a := d.Access()
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
func (r *run) listRepositories(ctx context.Context, api *ecr.Client) ([]string, error) {
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

// describeImages lists every image of a repository, in every storage status: without the
// filter DescribeImages lists ACTIVE images only (DescribeImagesFilter,
// https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DescribeImagesFilter.html).
// found is false when the repository does not exist.
func describeImages(ctx context.Context, api *ecr.Client, registryID, repo string) (imgs []Image, found bool, err error) {
	p := ecr.NewDescribeImagesPaginator(api, &ecr.DescribeImagesInput{RegistryId: aws.String(registryID), RepositoryName: aws.String(repo), MaxResults: aws.Int32(1000),
		Filter: &ecrtypes.DescribeImagesFilter{ImageStatus: ecrtypes.ImageStatusFilterAny}})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		var nf *ecrtypes.RepositoryNotFoundException
		if errors.As(err, &nf) {
			return nil, false, nil
		}
		if err != nil {
			return nil, true, err
		}
		for _, d := range out.ImageDetails {
			imgs = append(imgs, Image{
				Digest: aws.ToString(d.ImageDigest), Tags: d.ImageTags, PushedAt: aws.ToTime(d.ImagePushedAt),
				MediaType: aws.ToString(d.ImageManifestMediaType), ArtifactMediaType: aws.ToString(d.ArtifactMediaType),
				Subject: aws.ToString(d.SubjectManifestDigest), Status: string(d.ImageStatus),
			})
		}
	}
	return imgs, true, nil
}

// listDestinations lists, concurrently, every destination repository of targets; wait
// returns the listings by destination repository (an entry with Err: not listed; none:
// the repository does not exist).
func listDestinations(ctx context.Context, resolver *ecraccess.Resolver, targets []rules.Target) (wait func() map[ecrname.Repo]*Listing) {
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
			reg, err := resolver.Registry(ctx, t.Destination.Access())
			var (
				imgs  []Image
				found bool
			)
			if err == nil {
				imgs, found, err = describeImages(ctx, reg.API(), t.Destination.AccountID, t.Repository)
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
func (r *run) repository(ctx context.Context, api *ecr.Client, repo, cursor string) (string, bool) {
	resp := r.resp
	// Every destination a rule could send this repository to is listed while the source
	// is described: one round trip instead of two. A destination no image turns out to
	// need costs one unneeded list call.
	listings := listDestinations(ctx, r.b.Resolver, r.doc.RepositoryTargets(repo))
	imgs, found, err := describeImages(ctx, api, r.srcAccount, repo)
	dests := listings()
	if err == nil && !found {
		return "", true // deleted since it was listed
	}
	if err != nil {
		resp.fail(Failure{Repository: repo, Reason: "ecr:DescribeImages: " + err.Error(), Code: ecraccess.ErrorCode(err)})
		return "", true
	}
	ex, diff := Plan(r.doc, repo, imgs, r.req.Since, dests)
	r.account(repo, ex, diff, dests)
	if r.mode == "dryRun" {
		r.describe(repo, diff)
		return "", true
	}
	work := after(diff.Work, cursor)
	resp.Remaining += len(work)
	for i := range work {
		r.outstanding(&work[i], 1)
	}
	if r.mode == ModeEnqueue {
		return r.enqueue(ctx, work, r.b.workQueue())
	}
	return r.inline(ctx, work, cursor)
}

// account adds one repository's plan to the response's totals and failures.
func (r *run) account(repo string, ex Expansion, diff Diff, dests map[ecrname.Repo]*Listing) {
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
			resp.fail(Failure{Repository: repo, Destination: t.Repo().String(), Reason: "listing the destination: " + l.Err.Error(), Code: ecraccess.ErrorCode(l.Err)})
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
func (r *run) describe(repo string, diff Diff) {
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

func (r *run) outstanding(w *Work, n int) {
	r.mu.Lock()
	r.outstand[w.Target.Destination.Registry()] += n
	r.mu.Unlock()
}

func (r *run) workItem(w *Work) ecrevent.WorkItem {
	return ecrevent.WorkItem{
		Kind: ecrevent.WorkItemKind, Version: ecrevent.WorkItemVersion, Action: ecrevent.WorkCopy, Rule: w.Target.Rule,
		Source:      ecrevent.ImageRef{AccountID: r.srcAccount, Region: r.srcRegion, Repository: w.Repository, Digest: w.Digest, Tag: w.Tag},
		Destination: ecrevent.RefTo(w.Target.Repo()),
		Reason:      "backfill: " + w.Reason,
		Run:         r.resp.Run,
		CreatedAt:   r.b.now().UTC().Truncate(time.Second),
	}
}

// workQueue is the queue work items go to.
func (b *Backfill) workQueue() string {
	if b.CopyQueueURL != "" {
		return b.CopyQueueURL
	}
	return b.QueueURL
}

// enqueue sends work in batches of 10 (SendMessageBatch's limit), until time is up —
// at least one batch, so a continuation always moves on.
func (r *run) enqueue(ctx context.Context, work []Work, queueURL string) (string, bool) {
	last := ""
	for start := 0; start < len(work); start += 10 {
		if start > 0 && r.timeUp() {
			return last, false
		}
		batch := work[start:min(start+10, len(work))]
		r.sendBatch(ctx, batch, queueURL)
		last = batch[len(batch)-1].key()
	}
	return last, true
}

// sendBatch sends one batch of work items. A call that fails retryably, and the entries
// SQS refused without blaming the sender, are sent again with the backfill's retry
// policy; the rest are reported as failed.
func (r *run) sendBatch(ctx context.Context, batch []Work, queueURL string) {
	pending := map[string]*Work{}
	var entries []sqstypes.SendMessageBatchRequestEntry
	for i := range batch {
		w := &batch[i]
		body, err := ecrevent.Marshal(r.workItem(w))
		if err != nil {
			r.failed(w, "work item: "+err.Error())
			continue
		}
		id := strconv.Itoa(i)
		pending[id] = w
		entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(id), MessageBody: aws.String(string(body))})
	}
	err := retry.Do(ctx, r.b.Retry, func(ctx context.Context) error {
		out, err := r.b.Queue.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries})
		if err != nil {
			return ecraccess.WrapAWS("sqs:SendMessageBatch", err)
		}
		entries = r.sent(out, entries, pending)
		if len(entries) > 0 {
			return unsent(out, entries)
		}
		return nil
	})
	if err != nil {
		r.mu.Lock()
		r.sendErr = cmp.Or(r.sendErr, err)
		r.mu.Unlock()
		for _, e := range entries {
			if w := pending[aws.ToString(e.Id)]; w != nil {
				r.failed(w, err.Error())
			}
		}
	}
}

// sent counts what SQS accepted, fails what it refused blaming the sender, and returns
// the entries to send again (refused otherwise, or neither accepted nor refused).
func (r *run) sent(out *sqs.SendMessageBatchOutput, entries []sqstypes.SendMessageBatchRequestEntry, pending map[string]*Work) []sqstypes.SendMessageBatchRequestEntry {
	for _, ok := range out.Successful {
		if pending[aws.ToString(ok.Id)] != nil {
			r.mu.Lock()
			r.resp.Enqueued++
			r.resp.Remaining--
			r.mu.Unlock()
			delete(pending, aws.ToString(ok.Id))
		}
	}
	refused := map[string]sqstypes.BatchResultErrorEntry{}
	for _, f := range out.Failed {
		refused[aws.ToString(f.Id)] = f
	}
	var again []sqstypes.SendMessageBatchRequestEntry
	for _, e := range entries {
		id := aws.ToString(e.Id)
		w := pending[id]
		if w == nil {
			continue
		}
		if f, ok := refused[id]; ok && f.SenderFault {
			r.failed(w, "sqs:SendMessageBatch: "+aws.ToString(f.Code)+": "+aws.ToString(f.Message))
			delete(pending, id)
			continue
		}
		again = append(again, e)
	}
	return again
}

// unsent is the retryable error of entries SQS did not accept, with its reasons.
func unsent(out *sqs.SendMessageBatchOutput, entries []sqstypes.SendMessageBatchRequestEntry) error {
	why := map[string]bool{}
	for _, f := range out.Failed {
		for _, e := range entries {
			if aws.ToString(f.Id) == aws.ToString(e.Id) {
				why[aws.ToString(f.Code)+": "+aws.ToString(f.Message)] = true
			}
		}
	}
	return &unsentError{n: len(entries), why: slices.Sorted(maps.Keys(why))}
}

// unsentError: SQS did not accept some entries of a batch, without blaming the sender
// (SenderFault false: its side failed), so they are sent again.
type unsentError struct {
	n   int
	why []string // SQS's codes and messages
}

func (e *unsentError) Error() string {
	return fmt.Sprintf("sqs:SendMessageBatch: %d entries not accepted (%s)", e.n, strings.Join(e.why, "; "))
}
func (e *unsentError) ErrorCode() string { return "InternalError" }
func (e *unsentError) Retryable() bool   { return true }

func (r *run) failed(w *Work, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resp.Remaining--
	r.outstand[w.Target.Destination.Registry()]--
	r.resp.fail(Failure{Repository: w.Repository, Destination: w.Target.Repo().String(), Digest: w.Digest, Tag: w.Tag, Reason: reason})
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
func (r *run) inline(ctx context.Context, work []Work, cursor string) (string, bool) {
	n := r.b.Concurrency
	if n <= 0 {
		n = 8
	}
	copyCtx, cancel := r.b.copyContext(ctx)
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
				finished[k] = r.copyGroup(copyCtx, groups[k])
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
			cursor = g[finished[k]-1].key()
		}
		if finished[k] < len(g) {
			return cursor, false
		}
	}
	return cursor, true
}

// copyContext is ctx cut short by the reserve.
func (b *Backfill) copyContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	reserve := b.Reserve
	if reserve <= 0 {
		reserve = min(max(dl.Sub(b.now())/20, time.Second), 10*time.Second)
	}
	return context.WithDeadline(ctx, dl.Add(-reserve))
}

// copyGroup copies one group's items in order and returns how many are finished; it
// stops at an item cut by ctx, which stays remaining.
func (r *run) copyGroup(ctx context.Context, g []Work) int {
	for i := range g {
		w := &g[i]
		src := destinations.Source{Repo: ecrname.Repo{Registry: ecrname.Registry{AccountID: r.srcAccount, Region: r.srcRegion}, Name: w.Repository}, Digest: w.Digest, Tag: w.Tag}
		res := r.copies.Replicate(ctx, src, []rules.Target{w.Target})
		if len(res) != 1 {
			r.failed(w, fmt.Sprintf("replicator returned %d results for one target", len(res)))
			continue
		}
		x := res[0]
		if x.Outcome == copyengine.Failed && x.Retryable && ctx.Err() != nil {
			return i // cut at the hard stop: left for the continuation
		}
		if x.Outcome == copyengine.Failed && x.Retryable && r.from.Stalls < maxStalls {
			// Another run may succeed (throttling, a layer that needs a whole run:
			// NO_TIME_LEFT): reported, and left for the continuation, which does not move
			// past it (until it has stalled there maxStalls times).
			reason := x.Reason
			if x.Err != nil {
				reason = x.Err.Error()
			}
			r.mu.Lock()
			r.resp.fail(Failure{Repository: w.Repository, Destination: w.Target.Repo().String(), Digest: w.Digest, Tag: w.Tag,
				Reason: reason + " (retryable: left for the continuation)", Code: x.Code})
			r.mu.Unlock()
			return i
		}
		if x.Outcome.Failure() || x.Err != nil {
			reason := x.Reason
			if x.Err != nil {
				reason = x.Err.Error()
			}
			if x.Outcome != copyengine.Failed {
				reason = string(x.Outcome) + ": " + reason
			}
			r.failed(w, reason)
			continue
		}
		r.mu.Lock()
		switch x.Outcome {
		case copyengine.Copied, copyengine.TagUpdated:
			r.resp.Copied++
		default: // already-present, skipped
			r.resp.Skipped++
		}
		r.resp.Remaining--
		r.resp.BytesCopied += x.BytesCopied
		r.outstand[w.Target.Destination.Registry()]--
		r.mu.Unlock()
	}
	return len(g)
}

// report writes the totals as one JSON log line and records the metrics.
func (b *Backfill) report(resp *Response, mr *metrics.Recorder) {
	b.log().Info("backfill totals",
		"mode", resp.Mode, "repositoriesScanned", resp.RepositoriesScanned, "imagesSeen", resp.ImagesSeen,
		"skippedBeforeSince", resp.SkippedBeforeSince, "archivedAtSource", resp.ArchivedAtSource, "inSync", resp.InSync, "drift", resp.Drift,
		"enqueued", resp.Enqueued, "copied", resp.Copied, "skipped", resp.Skipped, "failed", resp.Failed, "bytesCopied", resp.BytesCopied,
		"remaining", resp.Remaining, "estimatedSecondsAtQuota", resp.EstimatedSecondsAtQuota,
		"continues", resp.ContinuationToken != "", "durationMs", resp.DurationMs)
	if m := mr; m != nil {
		m.Add("Drift", metrics.Count, float64(resp.Drift))
		m.Add("ImagesEnqueued", metrics.Count, float64(resp.Enqueued))
		m.Add("ImagesCopied", metrics.Count, float64(resp.Copied))
		m.Add("BackfillFailures", metrics.Count, float64(resp.Failed))
		m.Add("BytesCopied", metrics.Bytes, float64(resp.BytesCopied))
	}
}
