// Package demo runs the whole product on one machine, with no AWS account and no Docker:
// a sandbox with a source and a destination account; older images pushed into the
// source; then the push path deployed as template.yaml deploys it (internal/tooling/sandbox/stack:
// the ImageActionRule sends ECR's push events to the ReplicationQueue, whose event source
// invokes the replicate function's real bootstrap under the Lambda Runtime Interface
// Emulator, one emulator per execution environment); pushes made as a user makes them
// (go-containerregistry's remote.Write and remote.WriteIndex, which crane uses, and the
// ECR API's PutImage moving a tag) that arrive in the destination by themselves; the
// backfill function for what was pushed before; and a before/after table of digests per
// tag.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/rulesource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/lambdarun"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventsource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/sign"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/signin"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/stack"
)

// ReplicaTimeout bounds the wait for each push's replica in the destination.
const ReplicaTimeout = 60 * time.Second

// RulesParameter is the Systems Manager parameter the demo keeps its rules in.
const RulesParameter = "/ecr-replicator/rules"

// Binaries are what the demo runs: the two functions' bootstraps (built for this host)
// and the Runtime Interface Emulator.
type Binaries struct {
	Replicate, Backfill, RIE string
	// Serve: the bootstraps are this program, told which function to be by
	// wiring.EnvServe (Locate).
	Serve bool
}

// BinariesIn names the binaries `make demo` builds into dir.
func BinariesIn(dir string) Binaries {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs // the emulator runs in another working directory
	}
	return Binaries{
		Replicate: filepath.Join(dir, "replicate-bootstrap"),
		Backfill:  filepath.Join(dir, "backfill-bootstrap"),
		RIE:       filepath.Join(dir, "aws-lambda-rie"),
	}
}

// Check reports the first missing binary.
func (b Binaries) Check() error {
	for _, p := range []string{b.Replicate, b.Backfill, b.RIE} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s is missing (run `make demo`, which builds it): %w", p, err)
		}
	}
	return nil
}

// Row is one tag of the before/after table.
type Row struct {
	Repository, Tag, Source, Before, After, Via string
}

// OK says the destination ended with the source's digest.
func (r Row) OK() bool { return r.After == r.Source }

// What the COPIED BY column says.
const (
	viaPush     = "replicate (push events)"
	viaBackfill = "backfill"
)

// Run runs the demo, printing what happens to w, and returns the final table.
func Run(ctx context.Context, bins Binaries, w io.Writer) ([]Row, error) {
	if err := bins.Check(); err != nil {
		return nil, err
	}
	start := time.Now()
	var outMu sync.Mutex // the event source reports invocations from its own goroutines
	step := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(w, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	const extID = "demo-external-id"
	sb, err := sandbox.New(sandbox.TwoAccounts(extID))
	if err != nil {
		return nil, err
	}
	defer sb.Close()
	env, err := sandbox.ClientEnv(sb, sandbox.DefaultRegion, extID)
	if err != nil {
		return nil, err
	}
	for k, v := range env {
		os.Setenv(k, v)
	}
	step("sandbox up: source account %s, destination account %s (role %s), AWS APIs at %s",
		sandbox.SourceAccount, sandbox.DestinationAccount, sandbox.DestinationRole, sb.APIURL())

	src, err := newSide(ctx, sb, sandbox.SourceAccount)
	if err != nil {
		return nil, err
	}
	dst, err := newSide(ctx, sb, sandbox.DestinationAccount)
	if err != nil {
		return nil, err
	}

	// Images that exist before replication is deployed: their push events reach no rule,
	// so only a backfill copies them. latest is moved later, by the API.
	for _, repo := range []string{"team-a/app", "team-a/worker"} {
		if _, err := src.API.CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)}); err != nil {
			return nil, err
		}
	}
	old := map[string]map[string]v1.Hash{"team-a/app": {}, "team-a/worker": {}}
	for _, p := range []struct{ repo, tag string }{{"team-a/app", "v0.9.0"}, {"team-a/worker", "v1"}, {"team-a/worker", "v2"}} {
		img, _ := random.Image(64<<10, 3)
		d, err := src.push(p.repo, p.tag, img)
		if err != nil {
			return nil, err
		}
		old[p.repo][p.tag] = d
		if p.tag == "v0.9.0" {
			if _, err := src.push(p.repo, "latest", img); err != nil {
				return nil, err
			}
		}
	}
	step("pushed 3 older images into the source (team-a/app:v0.9.0, also tagged latest; team-a/worker:v1, v2): nothing listens yet")

	before, err := dst.snapshot(ctx, []string{"mirror/team-a/app", "mirror/team-a/worker"})
	if err != nil {
		return nil, err
	}

	// The push path, as template.yaml deploys it, at its defaults, with promotion gates.
	// The older pushes' events are delivered first (to no rule): a loaded machine would
	// otherwise deliver them after the rule exists.
	if err := sb.WaitEventsDelivered(ctx); err != nil {
		return nil, err
	}
	st, err := stack.Deploy(ctx, sb, stack.Options{PromotionGates: true})
	if err != nil {
		return nil, err
	}
	release, err := sign.NewKey()
	if err != nil {
		return nil, err
	}
	releasePEM, err := release.PublicPEM()
	if err != nil {
		return nil, err
	}
	if err := sb.SetScanPolicy(sandbox.SourceAccount, sandbox.DefaultRegion, scanPolicy()); err != nil {
		return nil, err
	}
	// The rules, as a platform team keeps them: a Systems Manager parameter the functions
	// read (template.yaml's RulesParameterName).
	dest := func(prefix string) string {
		return fmt.Sprintf("{accountId: %q, region: %s, roleArn: %s, externalId: %s, repositoryPrefix: %s}",
			sandbox.DestinationAccount, sandbox.DefaultRegion, sandbox.RoleARN(sandbox.DestinationAccount, sandbox.DestinationRole), extID, prefix)
	}
	rules := "rules:\n  - name: demo\n    repositories: [\"team-a/**\"]\n    destinations:\n      - " + dest("mirror/") + "\n" + gateRule(releasePEM, dest("prod/"))
	version, err := sb.PutParameter(sandbox.SourceAccount, sandbox.DefaultRegion, RulesParameter, rules, "", false)
	if err != nil {
		return nil, err
	}
	step("rules document in the source account's Parameter Store: %s (version %d), read by the functions at cold start", RulesParameter, version)
	fnEnv := map[string]string{rulesource.EnvParameter: RulesParameter, "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull}
	for k, v := range env {
		fnEnv[k] = v
	}
	dir, err := os.MkdirTemp("", "ecr-replicator-demo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	replicateEnv := map[string]string{}
	for _, m := range []map[string]string{fnEnv, st.FunctionEnv()} {
		for k, v := range m {
			replicateEnv[k] = v
		}
	}
	pool := lambdarun.NewPool(bins.RIE, bins.Replicate, dir, "ecr-replicator-replicate", bins.serveEnv("replicate", replicateEnv))
	defer pool.Stop()
	envs := eventsource.NewEnvironments(func() (eventsource.Handler, error) {
		f, err := pool.New()
		if err != nil {
			return nil, err
		}
		return f, nil
	})
	var invMu sync.Mutex
	var invocations, messages, failed int
	mapping := stack.Mapping{
		Invoke: envs.Invoke,
		OnInvoke: func(inv eventsource.Invocation) {
			invMu.Lock()
			invocations++
			messages += len(inv.Records)
			failed += len(inv.Failed)
			invMu.Unlock()
			answer := compact(inv.Response)
			if inv.Err != nil {
				answer = "error: " + inv.Err.Error()
			}
			step("  replicate invocation: %s in %d ms -> %s", describeBatch(inv.Records), inv.Duration.Milliseconds(), answer)
		},
	}
	es, stopPushes, err := st.Start(ctx, mapping)
	if err != nil {
		return nil, err
	}
	defer stopPushes()
	cs, stopCopies, err := st.StartCopyQueue(ctx, mapping)
	if err != nil {
		return nil, err
	}
	defer stopCopies()
	stopEvents := func() error {
		return errors.Join(stopPushes(), stopCopies())
	}
	bdir := filepath.Join(dir, "backfill")
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		return nil, err
	}
	backfill, err := lambdarun.Start(bins.RIE, bins.Backfill, bdir, "ecr-replicator-backfill", bins.serveEnv("backfill", fnEnv))
	if err != nil {
		return nil, err
	}
	defer backfill.Stop()
	step("deployed the push path as template.yaml does: %s (ECR pushes) -> %s (dead-letter queue after %d receives) -> event source (batches of up to %d, up to %d at once) -> replicate function's bootstrap under the Lambda Runtime Interface Emulator, one per execution environment",
		stack.RuleName, stack.QueueName, stack.MaxReceiveCount, stack.BatchSize, stack.MaximumConcurrency)

	// Pushes as users make them; each arrives in the destination by itself.
	idle := func() error { return st.WaitIdle(ctx, es, cs) }
	img, err := random.Image(256<<10, 2)
	if err != nil {
		return nil, err
	}
	imgDigest, _ := img.Digest()
	mark := sb.AccessLogMark()
	if err := src.write("team-a/worker", "v3", img); err != nil {
		return nil, err
	}
	pushedAt := time.Now()
	step("pushed team-a/worker:v3, an image, with go-containerregistry's remote.Write (as crane push does)")
	if err := awaitReplica(ctx, sb, dst, idle, mark, pushedAt, "team-a/worker", "v3", imgDigest.String(), step); err != nil {
		return nil, err
	}

	idx, platforms, err := multiPlatformIndex()
	if err != nil {
		return nil, err
	}
	idxDigest, _ := idx.Digest()
	mark = sb.AccessLogMark()
	if err := src.write("team-a/app", "v1.0.0", idx); err != nil {
		return nil, err
	}
	pushedAt = time.Now()
	step("pushed team-a/app:v1.0.0, a %d-platform index (%s), with remote.WriteIndex: the platforms by digest, then the index (%d push events)",
		len(platforms), strings.Join(platforms, ", "), len(platforms)+1)
	if err := awaitReplica(ctx, sb, dst, idle, mark, pushedAt, "team-a/app", "v1.0.0", idxDigest.String(), step); err != nil {
		return nil, err
	}

	mark = sb.AccessLogMark()
	if err := src.retag(ctx, "team-a/app", "v1.0.0", "latest"); err != nil {
		return nil, err
	}
	pushedAt = time.Now()
	step("moved team-a/app:latest from v0.9.0 to v1.0.0 with the ECR API (BatchGetImage, then PutImage with the tag)")
	if err := awaitReplica(ctx, sb, dst, idle, mark, pushedAt, "team-a/app", "latest", idxDigest.String(), step); err != nil {
		return nil, err
	}
	gd := &gateDemo{src: src, dst: dst, key: release, pool: pool, step: step}
	step("a promotion gate on %s: to prod/ only when signed by the release key and scanned with nothing CRITICAL (docs/PROMOTION.md)", gatedRepositories)
	if err := gd.run(ctx); err != nil {
		return nil, err
	}
	if err := idle(); err != nil {
		return nil, fmt.Errorf("waiting for the queues: %w", err)
	}
	if err := stopEvents(); err != nil {
		return nil, err
	}
	dead, err := st.DeadLetters(ctx)
	if err != nil {
		return nil, err
	}
	invMu.Lock()
	step("queue drained: %d events in %d invocations, %d execution environments, %d messages failed; %d in the dead-letter queue",
		messages, invocations, envs.Made(), failed, dead)
	invMu.Unlock()

	out, err := backfill.Invoke(ctx, []byte(`{"mode":"inline","repositories":["team-a/**"]}`))
	if err != nil {
		return nil, fmt.Errorf("backfill function: %w", err)
	}
	step("backfill (inline) answered %s", summarizeBackfill(out, false))
	out, err = backfill.Invoke(ctx, []byte(`{"dryRun":true,"repositories":["team-a/**"]}`))
	if err != nil {
		return nil, fmt.Errorf("backfill function: %w", err)
	}
	step("backfill again (dry run): %s", summarizeBackfill(out, true))

	after, err := dst.snapshot(ctx, []string{"mirror/team-a/app", "mirror/team-a/worker"})
	if err != nil {
		return nil, err
	}
	srcTags, err := src.snapshot(ctx, []string{"team-a/app", "team-a/worker"})
	if err != nil {
		return nil, err
	}
	var rows []Row
	for key, d := range srcTags {
		repo, tag, _ := strings.Cut(key, ":")
		via := viaPush
		if _, ok := old[repo][tag]; ok {
			via = viaBackfill
		}
		rows = append(rows, Row{Repository: repo, Tag: tag, Source: d, Before: before["mirror/"+key], After: after["mirror/"+key], Via: via})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Repository+":"+rows[i].Tag < rows[j].Repository+":"+rows[j].Tag })
	outMu.Lock()
	fmt.Fprintln(w)
	PrintTable(w, rows)
	outMu.Unlock()
	step("done; stopping the functions and the sandbox")
	return rows, nil
}

// awaitReplica waits (at most ReplicaTimeout) until the destination's mirror of repo has
// tag at digest, then until the queue is idle (so that the invocations this push caused
// are reported first), and says how long after pushedAt the replica was written: the
// destination's write of the tag in the sandbox's access log (entries after mark), or
// when the poll saw it if the log has no such write.
func awaitReplica(ctx context.Context, sb *sandbox.Sandbox, dst *side, idle func() error, mark int, pushedAt time.Time, repo, tag, digest string, step func(string, ...any)) error {
	seen, err := dst.waitFor(ctx, "mirror/"+repo, tag, digest, ReplicaTimeout)
	if err != nil {
		return fmt.Errorf("no replica of %s:%s: %w", repo, tag, err)
	}
	if at, ok := tagWrite(sb.AccessLogSince(mark), sandbox.DestinationAccount, "mirror/"+repo, tag); ok {
		seen = at
	}
	if err := idle(); err != nil {
		return fmt.Errorf("waiting for the queue: %w", err)
	}
	step("  -> mirror/%s:%s in the destination, %.2f s after the push", repo, tag, seen.Sub(pushedAt).Seconds())
	return nil
}

// tagWrite finds the first accepted write of tag to repository in account: a registry
// manifest PUT by tag, or PutImage with the tag.
func tagWrite(entries []sandbox.Entry, account, repository, tag string) (time.Time, bool) {
	for _, e := range entries {
		if e.Account != account || e.Repository != repository || e.Status >= 300 {
			continue
		}
		if (e.Operation == "PUT manifest" || e.Operation == "PutImage") && slices.Contains(strings.Split(e.Reference, ","), tag) {
			return e.Time, true
		}
	}
	return time.Time{}, false
}

// describeBatch names the events of an invocation's records: repository:tag, or
// repository@digest for a push by digest.
func describeBatch(recs []eventsource.Record) string {
	var names []string
	for _, r := range recs {
		var ev struct {
			DetailType string `json:"detail-type"`
			Detail     struct {
				Repository string `json:"repository-name"`
				Digest     string `json:"image-digest"`
				Action     string `json:"action-type"`
				Tag        string `json:"image-tag"`
			} `json:"detail"`
			// A work item: a held copy's re-check ("source" is an object there, a string
			// in an event).
			Source json.RawMessage        `json:"source"`
			Hold   *struct{ Attempt int } `json:"hold"`
		}
		if json.Unmarshal([]byte(r.Body), &ev) != nil {
			names = append(names, "(unreadable)")
			continue
		}
		ref := ev.Detail.Repository + ":" + ev.Detail.Tag
		switch {
		case ev.Hold != nil:
			var src struct{ Repository, Tag string }
			json.Unmarshal(ev.Source, &src)
			ref = fmt.Sprintf("re-check %d of the held %s:%s", ev.Hold.Attempt, src.Repository, src.Tag)
		case ev.DetailType == "ECR Image Scan":
			ref = "scan complete for " + ev.Detail.Repository + "@" + shortDigest(ev.Detail.Digest)
		case ev.Detail.Tag == "":
			ref = ev.Detail.Repository + "@" + shortDigest(ev.Detail.Digest)
		}
		names = append(names, ref)
	}
	noun := "events"
	if len(recs) == 1 {
		noun = "event"
	}
	return fmt.Sprintf("%d %s (%s)", len(recs), noun, strings.Join(names, ", "))
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// PrintTable prints the before/after table.
func PrintTable(w io.Writer, rows []Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE IMAGE\tSOURCE DIGEST\tDESTINATION BEFORE\tDESTINATION AFTER\tCOPIED BY\tMATCH")
	short := func(d string) string {
		if d == "" {
			return "-"
		}
		return d[:19]
	}
	for _, r := range rows {
		ok := "yes"
		if !r.OK() {
			ok = "NO"
		}
		fmt.Fprintf(tw, "%s:%s\t%s\t%s\t%s\t%s\t%s\n", r.Repository, r.Tag, short(r.Source), short(r.Before), short(r.After), r.Via, ok)
	}
	tw.Flush()
}

// side is one account's registry as its admin sees it.
type side struct{ *signin.Registry }

func newSide(ctx context.Context, sb *sandbox.Sandbox, account string) (*side, error) {
	reg, err := signin.Login(ctx, sb, account)
	if err != nil {
		return nil, err
	}
	return &side{reg}, nil
}

func (s *side) push(repo, tag string, t remote.Taggable) (v1.Hash, error) {
	var d v1.Hash
	switch x := t.(type) {
	case v1.ImageIndex:
		d, _ = x.Digest()
	case v1.Image:
		d, _ = x.Digest()
	}
	ref := s.Host + "/" + repo + "@" + d.String()
	if tag != "" {
		ref = s.Host + "/" + repo + ":" + tag
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return d, err
	}
	return d, remote.Push(r, t, remote.WithAuth(s.Auth))
}

// write pushes an image with remote.Write, or an index with remote.WriteIndex, by tag:
// what crane push does (children by digest first, then the index).
func (s *side) write(repo, tag string, t remote.Taggable) error {
	ref, err := name.ParseReference(s.Host + "/" + repo + ":" + tag)
	if err != nil {
		return err
	}
	switch x := t.(type) {
	case v1.ImageIndex:
		return remote.WriteIndex(ref, x, remote.WithAuth(s.Auth))
	case v1.Image:
		return remote.Write(ref, x, remote.WithAuth(s.Auth))
	}
	return fmt.Errorf("cannot push a %T", t)
}

// retag points tag at what from points at, with the ECR API as the user guide's
// "Retagging an image" does: BatchGetImage the manifest, PutImage it with the new tag
// (https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-retag.html).
func (s *side) retag(ctx context.Context, repo, from, tag string) error {
	got, err := s.API.BatchGetImage(ctx, &ecr.BatchGetImageInput{
		RepositoryName: aws.String(repo), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String(from)}},
		AcceptedMediaTypes: []string{string(types.OCIImageIndex), string(types.OCIManifestSchema1), string(types.DockerManifestList), string(types.DockerManifestSchema2)},
	})
	if err != nil {
		return err
	}
	if len(got.Images) != 1 {
		return fmt.Errorf("BatchGetImage %s:%s: %d images, failures %v", repo, from, len(got.Images), got.Failures)
	}
	im := got.Images[0]
	_, err = s.API.PutImage(ctx, &ecr.PutImageInput{
		RepositoryName: aws.String(repo), ImageManifest: im.ImageManifest, ImageManifestMediaType: im.ImageManifestMediaType, ImageTag: aws.String(tag),
	})
	return err
}

// waitFor polls until repo:tag is digest, for at most timeout, and returns when it saw it.
func (s *side) waitFor(ctx context.Context, repo, tag, digest string, timeout time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last := "not found"
	for {
		out, err := s.API.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String(repo), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String(tag)}}})
		var nf1 *ecrtypes.RepositoryNotFoundException
		var nf2 *ecrtypes.ImageNotFoundException
		switch {
		case err == nil && len(out.ImageDetails) == 1 && aws.ToString(out.ImageDetails[0].ImageDigest) == digest:
			return time.Now(), nil
		case err == nil && len(out.ImageDetails) == 1:
			last = "at " + aws.ToString(out.ImageDetails[0].ImageDigest)
		case err != nil && !errors.As(err, &nf1) && !errors.As(err, &nf2) && ctx.Err() == nil:
			return time.Time{}, err
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s:%s still %s after %v", repo, tag, last, timeout)
		case <-tick.C:
		}
	}
}

// snapshot maps "repo:tag" to digest for the given repositories (missing ones: none).
func (s *side) snapshot(ctx context.Context, repos []string) (map[string]string, error) {
	out := map[string]string{}
	for _, repo := range repos {
		p := ecr.NewListImagesPaginator(s.API, &ecr.ListImagesInput{RepositoryName: aws.String(repo)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				if strings.Contains(err.Error(), "RepositoryNotFoundException") {
					break
				}
				return nil, err
			}
			for _, id := range page.ImageIds {
				if id.ImageTag != nil {
					out[repo+":"+aws.ToString(id.ImageTag)] = aws.ToString(id.ImageDigest)
				}
			}
		}
	}
	return out, nil
}

// multiPlatformIndex builds an OCI index of four platform images.
func multiPlatformIndex() (v1.ImageIndex, []string, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var names []string
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}, {OS: "linux", Architecture: "arm", Variant: "v7"}, {OS: "linux", Architecture: "s390x"}} {
		img, err := random.Image(32<<10, 2)
		if err != nil {
			return nil, nil, err
		}
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		pc := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &pc}})
		names = append(names, strings.TrimSuffix(p.OS+"/"+p.Architecture+"/"+p.Variant, "/"))
	}
	return idx, names, nil
}

func compact(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// summarizeBackfill says what a backfill answered, counting what it counts: images are
// the source's digests it looked at; copies are one per tag (or untagged image) and
// destination, and they are what is in sync, drifted or copied.
func summarizeBackfill(b []byte, dryRun bool) string {
	var r struct {
		RepositoriesScanned, ImagesSeen, InSync, Drift, Copied, Failed, Unplanned int
	}
	if json.Unmarshal(b, &r) != nil {
		return compact(b)
	}
	s := fmt.Sprintf("%d repositories, %d images; %d copies (one per tag, or untagged image, and destination): ",
		r.RepositoriesScanned, r.ImagesSeen, r.InSync+r.Drift+r.Unplanned)
	if dryRun {
		return s + fmt.Sprintf("%d in sync, %d to copy", r.InSync, r.Drift)
	}
	return s + fmt.Sprintf("%d already in sync, %d copied, %d failed", r.InSync, r.Copied, r.Failed)
}
