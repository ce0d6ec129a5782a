package backfill

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/ecr"

	"github.com/ecr-replicator/ecr-replicator/internal/deadline"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

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
	src, err := b.Resolver.Client(ctx, ecraccess.SourceAccess(ecrname.Registry{AccountID: r.srcAccount, Region: b.SourceRegion}, r.doc.SourceRoleARN()))
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

func (r *invocation) timeUp() bool { return r.time.SoftStopped(r.b.now()) }

// token is the continuation token for p, counting the runs in a row that ended where
// this one started.
func (r *invocation) token(p position) string {
	if p.Repository == r.from.Repository && p.After == r.from.After {
		p.Stalls = r.from.Stalls + 1
	}
	return encodeToken(p)
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

func (r *invocation) outstanding(w *Work, n int) {
	r.mu.Lock()
	r.outstand[w.Target.Destination.Registry()] += n
	r.mu.Unlock()
}

// failed records w as failed, for reason (code: its error code, when it has one).
func (r *invocation) failed(w *Work, reason, code string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resp.Remaining--
	r.outstand[w.Target.Destination.Registry()]--
	r.resp.fail(Failure{Repository: w.Repository, Destination: w.Target.Repo().String(), Digest: w.Digest, Tag: w.Tag, Reason: reason, Code: code})
}
