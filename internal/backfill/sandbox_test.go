package backfill_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

const extID = sandboxtest.ExternalID

type env struct {
	sb       *sandbox.Sandbox
	ctx      context.Context
	src      aws.Config // source account user (the replicator)
	dst      aws.Config // destination role
	host     string     // source registry host
	auth     authn.Authenticator
	doc      *rules.Document
	resolver *ecraccess.Resolver
	w        *sandboxtest.World
}

// start starts the two-account sandbox; cfg may change its layout (sandboxtest.Deployed),
// in which case e.dst is the destination account's admin, since the deployed destination
// role trusts only the function role.
func start(t *testing.T, rulesYAML string, cfg ...func(*sandbox.Config)) *env {
	t.Helper()
	w := sandboxtest.Start(t, cfg...)
	e := &env{sb: w.SB, ctx: w.Ctx, host: w.Source.Host, auth: w.Source.Auth, w: w}
	e.src = w.Config(t, sandbox.SourceAccount, sandbox.SourceUser)
	provider := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(e.src), w.DestinationRoleARN(), func(o *stscreds.AssumeRoleOptions) {
		o.ExternalID = aws.String(extID)
	})
	e.dst = e.src.Copy()
	e.dst.Credentials = aws.NewCredentialsCache(provider)
	if len(cfg) > 0 {
		e.dst = w.Dest.Config // the deployed destination role trusts only the function role
	}
	if rulesYAML == "" {
		rulesYAML = defaultRules
	}
	rulesYAML = strings.NewReplacer("ROLE", w.DestinationRoleARN(), "EXTID", extID).Replace(rulesYAML)
	var err error
	if e.doc, err = rules.Parse([]byte(rulesYAML)); err != nil {
		t.Fatal(err)
	}
	e.resolver = ecraccess.NewResolver(e.src, ecraccess.WithSessionName("ecr-replicator-backfill-test"))
	return e
}

const defaultRules = `
rules:
  - name: all
    repositories: ["**"]
    destinations:
      - accountId: "222222222222"
        region: us-east-1
        roleArn: ROLE
        externalId: EXTID
        repositoryPrefix: mirror/
        createRepository: true
`

func (e *env) backfill() *backfill.Backfill {
	replicator := destinations.New(e.resolver, copyengine.New())
	return &backfill.Backfill{
		Rules:           e.doc,
		Resolver:        e.resolver,
		SourceAccountID: sandbox.SourceAccount,
		SourceRegion:    sandbox.DefaultRegion,
		Start:           func() backfill.Copier { return replicator.Start() },
		Log:             slog.New(slog.DiscardHandler),
	}
}

// seed creates repos, each with n tagged images v0..v(n-1): one pushed through the
// registry, the others PutImage'd manifests differing by an annotation (one API call
// each, sharing the blobs).
func (e *env) seed(t *testing.T, repos []string, n int) {
	t.Helper()
	client := ecr.NewFromConfig(e.src)
	base, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	m, err := base.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := base.MediaType()
	var wg sync.WaitGroup
	errs := make(chan error, len(repos))
	for _, repo := range repos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := client.CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)}); err != nil {
				errs <- err
				return
			}
			r, _ := name.ParseReference(e.host + "/" + repo + ":v0")
			if err := remote.Write(r, base, remote.WithAuth(e.auth), remote.WithContext(e.ctx)); err != nil {
				errs <- err
				return
			}
			for i := 1; i < n; i++ {
				mm := *m
				mm.Annotations = map[string]string{"n": fmt.Sprint(i), "repo": repo}
				raw, _ := json.Marshal(mm)
				if _, err := client.PutImage(e.ctx, &ecr.PutImageInput{RepositoryName: aws.String(repo), ImageManifest: aws.String(string(raw)),
					ImageManifestMediaType: aws.String(string(mt)), ImageTag: aws.String(fmt.Sprintf("v%d", i))}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// images returns tag → digest and the digest set of a repository.
func images(t *testing.T, ctx context.Context, cfg aws.Config, repo string) (map[string]string, map[string]bool) {
	t.Helper()
	tags, digests := map[string]string{}, map[string]bool{}
	p := ecr.NewDescribeImagesPaginator(ecr.NewFromConfig(cfg), &ecr.DescribeImagesInput{RepositoryName: aws.String(repo)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("DescribeImages %s: %v", repo, err)
		}
		for _, d := range out.ImageDetails {
			digests[*d.ImageDigest] = true
			for _, tg := range d.ImageTags {
				tags[tg] = *d.ImageDigest
			}
		}
	}
	return tags, digests
}

func count(entries []sandbox.Entry, keep func(sandbox.Entry) bool) int {
	return len(sandbox.Filter(entries, keep))
}

func registryRequests(entries []sandbox.Entry) int {
	return count(entries, func(en sandbox.Entry) bool { return en.Service == "registry" })
}

func repoNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s/app-%02d", prefix, i)
	}
	return out
}

func TestDryRunCountsPagesNotImages(t *testing.T) {
	e := start(t, "")
	repos := repoNames("team", 20)
	e.seed(t, repos, 50)
	mark := e.sb.AccessLogMark()
	resp, err := e.backfill().Invoke(e.ctx, backfill.Request{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	log := e.sb.AccessLogSince(mark)
	if resp.RepositoriesScanned != 20 || resp.ImagesSeen != 1000 || resp.Drift != 1000 || resp.InSync != 0 || resp.Failed != 0 {
		t.Fatalf("totals: %+v", resp)
	}
	if resp.ContinuationToken != "" || resp.Enqueued != 0 || resp.Copied != 0 {
		t.Fatalf("dry run acted or continues: %+v", resp)
	}
	if len(resp.Plan) != 20 || resp.Plan[0].Work != 50 || !resp.Plan[0].CreateRepository || resp.Plan[0].Destination != "222222222222/us-east-1/mirror/team/app-00" {
		t.Fatalf("plan: %+v", resp.Plan)
	}
	if len(resp.WorkItems) != backfill.MaxPlanItems {
		t.Fatalf("work items: %d", len(resp.WorkItems))
	}
	if resp.EstimatedSecondsAtQuota != 100 {
		t.Fatalf("estimate %v, want 1000 items / 10 per second", resp.EstimatedSecondsAtQuota)
	}
	// One DescribeImages page per source repository (50 images fit a 1000-image page)
	// and one per destination (not found).
	const pages = 1
	// Each page is one call; the SDK may retry a call after a transport error under
	// load (seen once under -race), which the sandbox logs twice: tolerate a few.
	diCalls := sandbox.Filter(log, func(en sandbox.Entry) bool { return en.Operation == "DescribeImages" })
	di := len(diCalls)
	pagesSeen := map[string]bool{}
	for _, en := range diCalls {
		pagesSeen[en.Account+"/"+en.Repository] = true
	}
	if len(pagesSeen) != 2*len(repos)*pages || di > 2*len(repos)*pages+3 {
		for _, en := range log {
			t.Logf("%s %s %s %s %d %s", en.Time.Format(time.StampMicro), en.Operation, en.Account, en.Repository, en.Status, en.ErrorCode)
		}
		t.Fatalf("DescribeImages calls = %d over %d repositories, want %d pages", di, len(pagesSeen), 2*len(repos)*pages)
	}
	if n := registryRequests(log); n != 0 {
		t.Fatalf("registry requests during a dry run: %d", n)
	}
	t.Logf("dry run: %d API calls (%d DescribeImages) for 1000 images", len(log), di)

	// Narrowing: one repository, tags v1*; since in the future skips everything.
	resp, err = e.backfill().Invoke(e.ctx, backfill.Request{DryRun: true, Repositories: []string{"team/app-03"}, Tags: []string{"v1*"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.RepositoriesScanned != 1 || resp.Drift != 11 { // v1, v10..v19
		t.Fatalf("narrowed: %+v", resp)
	}
	resp, err = e.backfill().Invoke(e.ctx, backfill.Request{DryRun: true, Since: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Drift != 0 || resp.SkippedBeforeSince != 1000 {
		t.Fatalf("since: %+v", resp)
	}
}

// pushExtras adds an index (two children) and a digest-only image to repo.
func (e *env) pushExtras(t *testing.T, repo string) {
	t.Helper()
	idx, err := random.Index(256, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(e.host + "/" + repo + ":multi")
	if err := remote.WriteIndex(r, idx, remote.WithAuth(e.auth), remote.WithContext(e.ctx)); err != nil {
		t.Fatal(err)
	}
	img, _ := random.Image(256, 1)
	d, _ := img.Digest()
	r, _ = name.ParseReference(e.host + "/" + repo + "@" + d.String())
	if err := remote.Write(r, img, remote.WithAuth(e.auth), remote.WithContext(e.ctx)); err != nil {
		t.Fatal(err)
	}
}

func (e *env) assertMirrored(t *testing.T, repos []string) {
	t.Helper()
	for _, repo := range repos {
		st, sd := images(t, e.ctx, e.src, repo)
		dt, dd := images(t, e.ctx, e.dst, "mirror/"+repo)
		if fmt.Sprint(st) != fmt.Sprint(dt) || fmt.Sprint(sd) != fmt.Sprint(dd) {
			t.Fatalf("%s: destination differs\nsource tags %v\ndest tags   %v\nsource digests %d, dest %d", repo, st, dt, len(sd), len(dd))
		}
	}
}

func TestInlineCopyConverges(t *testing.T) {
	e := start(t, "")
	repos := repoNames("svc", 3)
	e.seed(t, repos, 6)
	e.pushExtras(t, repos[0])
	resp, err := e.backfill().Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline})
	if err != nil {
		t.Fatal(err)
	}
	// 18 tagged + "multi" + 2 children + 1 digest-only.
	if resp.Drift != 22 || resp.Copied != 22 || resp.Failed != 0 || resp.ContinuationToken != "" || resp.Remaining != 0 || resp.BytesCopied == 0 {
		t.Fatalf("first run: %+v", resp)
	}
	e.assertMirrored(t, repos)

	mark := e.sb.AccessLogMark()
	resp, err = e.backfill().Invoke(e.ctx, backfill.Request{})
	if err != nil {
		t.Fatal(err)
	}
	log := e.sb.AccessLogSince(mark)
	if resp.Drift != 0 || resp.Copied != 0 || resp.InSync != 22 || resp.EstimatedSecondsAtQuota != 0 {
		t.Fatalf("second run: %+v", resp)
	}
	if n := registryRequests(log); n != 0 {
		t.Fatalf("second run made %d registry requests", n)
	}
	// Drift: a tag moved at the source is found and repaired.
	client := ecr.NewFromConfig(e.src)
	bg, err := client.BatchGetImage(e.ctx, &ecr.BatchGetImageInput{RepositoryName: aws.String(repos[1]), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("v2")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.PutImage(e.ctx, &ecr.PutImageInput{RepositoryName: aws.String(repos[1]), ImageManifest: bg.Images[0].ImageManifest, ImageTag: aws.String("v1")}); err != nil {
		t.Fatal(err)
	}
	resp, err = e.backfill().Invoke(e.ctx, backfill.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Drift != 1 || resp.Copied != 1 {
		t.Fatalf("drift run: %+v", resp)
	}
	e.assertMirrored(t, repos)
}

// slow delays every copy, so a short deadline interrupts the run.
type slow struct {
	backfill.Copier
	d time.Duration
}

func (s slow) Replicate(ctx context.Context, src destinations.Image, targets []rules.Target) []destinations.Result {
	time.Sleep(s.d)
	return s.Copier.Replicate(ctx, src, targets)
}

func TestDeadlineContinuation(t *testing.T) {
	e := start(t, "")
	repos := repoNames("big", 4)
	e.seed(t, repos, 10)
	b := e.backfill()
	inner := b.Start
	b.Start = func() backfill.Copier { return slow{inner(), 100 * time.Millisecond} }
	b.Concurrency = 2
	b.Time.Margin = 300 * time.Millisecond
	ctx, cancel := context.WithDeadline(e.ctx, time.Now().Add(1200*time.Millisecond))
	defer cancel()
	resp, err := b.Invoke(ctx, backfill.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ContinuationToken == "" || resp.Copied == 0 || resp.Copied >= 40 || resp.Failed != 0 {
		t.Fatalf("short deadline: %+v", resp)
	}
	if ctx.Err() != nil {
		t.Fatalf("the run overran its deadline")
	}
	total, runs := resp.Copied, 1
	token := resp.ContinuationToken
	for token != "" {
		if runs++; runs > 10 {
			t.Fatal("no convergence after 10 continuations")
		}
		resp, err = b.Invoke(e.ctx, backfill.Request{ContinuationToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Failed != 0 {
			t.Fatalf("continuation: %+v", resp)
		}
		total += resp.Copied
		token = resp.ContinuationToken
	}
	if total != 40 {
		t.Fatalf("copied %d in %d runs, want 40", total, runs)
	}
	e.assertMirrored(t, repos)
	resp, err = e.backfill().Invoke(e.ctx, backfill.Request{})
	if err != nil || resp.Drift != 0 {
		t.Fatalf("fresh run: %+v %v", resp, err)
	}
}

// TestDryRunFigures measures a dry run over 1,000 images in 10 repositories.
func TestDryRunFigures(t *testing.T) {
	e := start(t, "")
	repos := repoNames("fig", 10)
	e.seed(t, repos, 100)
	mark := e.sb.AccessLogMark()
	began := time.Now()
	resp, err := e.backfill().Invoke(e.ctx, backfill.Request{DryRun: true})
	wall := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	log := e.sb.AccessLogSince(mark)
	ops := map[string]int{}
	for _, en := range log {
		ops[en.Service+":"+en.Operation]++
	}
	if resp.ImagesSeen != 1000 || registryRequests(log) != 0 {
		t.Fatalf("%+v", resp)
	}
	t.Logf("dry run over %d images in %d repositories: %d API calls %v, wall time %v", resp.ImagesSeen, resp.RepositoriesScanned, len(log), ops, wall)
	var buf bytes.Buffer
	json.NewEncoder(&buf).Encode(resp)
	if !strings.Contains(buf.String(), `"estimatedSecondsAtQuota":100`) {
		t.Fatalf("response JSON: %s", buf.String())
	}
}

// TestInlineCopyCutAtHardStop: a copy in flight when time runs out must not overrun
// the invocation (Lambda would discard the answer, and its continuation token with it),
// and the work it was doing must stay in the continuation, not be skipped by it.
func TestInlineCopyCutAtHardStop(t *testing.T) {
	e := start(t, "")
	repos := repoNames("cut", 2)
	e.seed(t, repos, 3)
	fault, err := e.sb.ArmRegistryFault(sandbox.RegistryFault{Account: sandbox.DestinationAccount, Repository: "mirror/" + repos[0],
		Step: sandbox.StepUploadPUT, Fault: sandbox.FaultSlow, Delay: time.Minute, Count: -1})
	if err != nil {
		t.Fatal(err)
	}
	b := e.backfill()
	b.Time.Margin = 2 * time.Second
	deadline := time.Now().Add(5 * time.Second)
	ctx, cancel := context.WithDeadline(e.ctx, deadline)
	defer cancel()
	resp, err := b.Invoke(ctx, backfill.Request{Mode: backfill.ModeInline})
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the run answered %v after its deadline: %+v", time.Since(deadline), resp)
	}
	if resp.ContinuationToken == "" || resp.Remaining == 0 {
		t.Fatalf("a cut copy left no continuation: %+v", resp)
	}
	fault.Disarm()
	for runs := 1; resp.ContinuationToken != ""; runs++ {
		if runs > 5 {
			t.Fatal("no convergence after 5 continuations")
		}
		if resp, err = b.Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline, ContinuationToken: resp.ContinuationToken}); err != nil {
			t.Fatal(err)
		}
	}
	e.assertMirrored(t, repos)
}

// TestInlineCountsOnlyWhatWasWritten: a copy the destination refuses (an IMMUTABLE tag
// on another digest) is a failure, and work that needed no write is skipped — neither
// counts as copied.
func TestInlineCountsOnlyWhatWasWritten(t *testing.T) {
	e := start(t, "")
	repos := repoNames("count", 1)
	e.seed(t, repos, 3)
	// The destination has v1 on another digest, and its repository is IMMUTABLE.
	e.w.Dest.CreateRepository(t, e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/" + repos[0]),
		ImageTagMutability: ecrtypes.ImageTagMutabilityImmutable, Tags: sandboxtest.Owned()})
	other, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	e.w.Dest.Push(t, "mirror/"+repos[0], "v1", other)
	resp, err := e.backfill().Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Drift != 3 || resp.Copied != 2 || resp.Failed != 1 || !strings.Contains(resp.Failures[0].Reason, "conflict") {
		t.Fatalf("copied %d, failed %d (drift %d): %+v", resp.Copied, resp.Failed, resp.Drift, resp)
	}
}

// TestInlineRetryableFailureIsNotPassed: an inline copy that fails retryably (the
// destination keeps answering 503 past the engine's retries; a layer that does not fit
// what is left of the run) is reported and left for the continuation, which does not
// move past it. It was counted finished, the continuation moved past it, and the backfill
// answered "done" with the image missing. A position that makes no progress in three runs
// in a row lets its retryable failures go as failures, so they cannot hold a caller
// looping on the token forever.
func TestInlineRetryableFailureIsNotPassed(t *testing.T) {
	e := start(t, "")
	repos := repoNames("retry", 1)
	e.seed(t, repos, 3)
	fault, err := e.sb.ArmRegistryFault(sandbox.RegistryFault{Account: sandbox.DestinationAccount, Repository: "mirror/" + repos[0],
		Step: sandbox.StepUploadPUT, Status: 503, Count: -1})
	if err != nil {
		t.Fatal(err)
	}
	b := e.backfill()
	replicator := destinations.New(e.resolver, copyengine.New(copyengine.WithRetry(retry.Policy{Attempts: 2, Initial: time.Millisecond, Max: 5 * time.Millisecond})))
	b.Start = func() backfill.Copier { return replicator.Start() }
	resp, err := b.Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ContinuationToken == "" || resp.Failed == 0 || resp.Remaining == 0 {
		t.Fatalf("retryable failures: token %q, failed %d, remaining %d; want them reported and left for the continuation: %+v",
			resp.ContinuationToken, resp.Failed, resp.Remaining, resp)
	}
	runs := 1
	for ; resp.ContinuationToken != ""; runs++ {
		if runs > 5 {
			t.Fatal("the continuation never ends while the failure persists")
		}
		if resp, err = b.Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline, ContinuationToken: resp.ContinuationToken}); err != nil {
			t.Fatal(err)
		}
	}
	if resp.Failed == 0 || !strings.Contains(resp.Failures[0].Reason, "UNAVAILABLE") {
		t.Fatalf("the last run passed the failures without reporting them: %+v", resp)
	}
	fault.Disarm()
	if resp, err = b.Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline}); err != nil || resp.ContinuationToken != "" {
		t.Fatalf("after the fault: %v %+v", err, resp)
	}
	e.assertMirrored(t, repos)
	t.Logf("persistent 503: %d runs until the position gave up (failures reported); after the fault, one run copied all", runs)
}

// archive moves an image of cfg's registry to the archive storage class (or back).
func archive(t *testing.T, ctx context.Context, cfg aws.Config, repo, tag string, target ecrtypes.TargetStorageClass) {
	t.Helper()
	if _, err := ecr.NewFromConfig(cfg).UpdateImageStorageClass(ctx, &ecr.UpdateImageStorageClassInput{RepositoryName: aws.String(repo),
		ImageId: &ecrtypes.ImageIdentifier{ImageTag: aws.String(tag)}, TargetStorageClass: target}); err != nil {
		t.Fatal(err)
	}
}

// TestArchivedImagesInThePlan: DescribeImages lists only ACTIVE images unless asked
// (DescribeImagesFilter.imageStatus). An image the destination's lifecycle archived is
// present there — ARCHIVED or being restored (ACTIVATING) — not drift: it was invisible
// to the plan, and every reconcile pushed it again, restoring it from the archive at the
// destination's expense. An image archived at the source cannot be pulled: it is not
// work, and the plan counts it (archivedAtSource).
func TestArchivedImagesInThePlan(t *testing.T) {
	e := start(t, "")
	repos := repoNames("cold", 1)
	e.seed(t, repos, 3)
	if resp, err := e.backfill().Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline}); err != nil || resp.Copied != 3 {
		t.Fatalf("first run: %v %+v", err, resp)
	}
	dst := e.w.Dest.Config
	archive(t, e.ctx, dst, "mirror/"+repos[0], "v0", ecrtypes.TargetStorageClassArchive)
	archive(t, e.ctx, dst, "mirror/"+repos[0], "v1", ecrtypes.TargetStorageClassArchive)
	archive(t, e.ctx, dst, "mirror/"+repos[0], "v1", ecrtypes.TargetStorageClassStandard) // ACTIVATING
	mark := e.sb.AccessLogMark()
	resp, err := e.backfill().Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline})
	if err != nil {
		t.Fatal(err)
	}
	puts := count(e.sb.AccessLogSince(mark), func(en sandbox.Entry) bool {
		return en.Account == sandbox.DestinationAccount && en.Action == "ecr:PutImage"
	})
	if resp.Drift != 0 || resp.InSync != 3 || puts != 0 {
		t.Fatalf("archived destination images: drift %d, in sync %d, %d manifests written (restoring them): %+v", resp.Drift, resp.InSync, puts, resp)
	}
	st := imageStatuses(t, e.ctx, dst, "mirror/"+repos[0])
	if st["v0"] != ecrtypes.ImageStatusArchived || st["v1"] != ecrtypes.ImageStatusActivating {
		t.Fatalf("destination statuses %v: the run restored them", st)
	}

	// Archived at the source, missing at the destination: reported, not copied.
	e.seed(t, repoNames("frozen", 1), 2)
	archive(t, e.ctx, e.src, "frozen/app-00", "v1", ecrtypes.TargetStorageClassArchive)
	resp, err = e.backfill().Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline, Repositories: []string{"frozen/**"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Drift != 1 || resp.Copied != 1 || resp.Failed != 0 || resp.ArchivedAtSource != 1 {
		t.Fatalf("archived source image: %+v", resp)
	}
}

func imageStatuses(t *testing.T, ctx context.Context, cfg aws.Config, repo string) map[string]ecrtypes.ImageStatus {
	t.Helper()
	out, err := ecr.NewFromConfig(cfg).DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String(repo),
		Filter: &ecrtypes.DescribeImagesFilter{ImageStatus: ecrtypes.ImageStatusFilterAny}})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]ecrtypes.ImageStatus{}
	for _, d := range out.ImageDetails {
		for _, tag := range d.ImageTags {
			m[tag] = d.ImageStatus
		}
	}
	return m
}

// TestBlobMountingInThePlanAndTheCopies: images of several repositories sharing a base,
// planned into one destination registry. The dry run says what blob mounting would save
// there while the registry has it off, and that it is on once enabled; the inline copies
// then move the base once and mount it everywhere else.
func TestBlobMountingInThePlanAndTheCopies(t *testing.T) {
	e := start(t, "")
	repos := repoNames("shared", 5)
	base, _ := random.Image(64<<10, 2)
	var baseSize int64
	layers, _ := base.Layers()
	for _, l := range layers {
		n, _ := l.Size()
		baseSize += n
	}
	for _, repo := range repos {
		if _, err := ecr.NewFromConfig(e.src).CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)}); err != nil {
			t.Fatal(err)
		}
		own, _ := random.Layer(512, "application/vnd.oci.image.layer.v1.tar")
		img, _ := mutate.AppendLayers(base, own)
		ref, _ := name.ParseReference(e.host + "/" + repo + ":v1")
		if err := remote.Write(ref, img, remote.WithAuth(e.auth)); err != nil {
			t.Fatal(err)
		}
	}
	plan := func() backfill.Mounting {
		t.Helper()
		resp, err := e.backfill().Invoke(e.ctx, backfill.Request{DryRun: true})
		if err != nil || len(resp.Mounting) != 1 {
			t.Fatalf("dry run: %+v %v", resp, err)
		}
		return resp.Mounting[0]
	}
	m := plan()
	if m.Registry != "222222222222/us-east-1" || m.BlobMounting != "DISABLED" || m.BytesMountable != int64(len(repos)-1)*baseSize || m.ImagesRead != len(repos) || m.Partial {
		t.Fatalf("mounting off: %+v, want DISABLED and %d bytes mountable", m, int64(len(repos)-1)*baseSize)
	}
	if _, err := ecr.NewFromConfig(e.w.Dest.Config).PutAccountSetting(e.ctx, &ecr.PutAccountSettingInput{Name: aws.String("BLOB_MOUNTING"), Value: aws.String("ENABLED")}); err != nil {
		t.Fatal(err)
	}
	e.resolver = ecraccess.NewResolver(e.src) // a new process: the setting asked afresh
	if m := plan(); m.BlobMounting != "ENABLED" || m.BytesMountable != int64(len(repos)-1)*baseSize {
		t.Fatalf("mounting on: %+v", m)
	}
	mark := e.sb.AccessLogMark()
	resp, err := e.backfill().Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline})
	if err != nil || resp.Copied != len(repos) || resp.Failed != 0 {
		t.Fatalf("inline: %+v %v", resp, err)
	}
	var uploaded int64
	for _, en := range e.sb.AccessLogSince(mark) {
		if en.Account == sandbox.DestinationAccount && en.Operation == "PUT upload" {
			uploaded += en.Bytes
		}
	}
	t.Logf("inline backfill of %d images sharing a %d-byte base: %d bytes uploaded, %d mounted", len(repos), baseSize, resp.BytesCopied, resp.BytesMounted)
	if resp.BytesMounted != int64(len(repos)-1)*baseSize || uploaded > baseSize+baseSize/2 {
		t.Fatalf("inline copies: %d bytes mounted, %d uploaded; want the base uploaded once (%d) and mounted %d times", resp.BytesMounted, uploaded, baseSize, len(repos)-1)
	}
	e.assertMirrored(t, repos)
}
