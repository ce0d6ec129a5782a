package destinations_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

const extID = sandboxtest.ExternalID

// world is a sandbox with a logged-in client on each side, and a Mirror running as the
// source account's replicator user.
type world struct {
	sb       *sandbox.Sandbox
	ctx      context.Context
	srcCfg   aws.Config // the source account's replicator user
	dstCfg   aws.Config // the destination account's admin, for checking
	srcHost  string
	srcAuth  authn.Authenticator
	dstHost  string
	dstAuth  authn.Authenticator
	resolver *ecraccess.Resolver
}

func newWorld(t *testing.T, cfg ...func(*sandbox.Config)) *world {
	t.Helper()
	sw := sandboxtest.Start(t, cfg...)
	w := &world{sb: sw.SB, ctx: sw.Ctx, dstCfg: sw.Dest.Config, srcHost: sw.Source.Host, srcAuth: sw.Source.Auth, dstHost: sw.Dest.Host, dstAuth: sw.Dest.Auth}
	w.srcCfg = sw.Config(t, sandbox.SourceAccount, sandbox.SourceUser)
	w.resolver = ecraccess.NewResolver(w.srcCfg, ecraccess.WithSessionName("ecr-replicator-test"), ecraccess.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	return w
}

// mirror starts a run of a replicator with short waits.
func (w *world) mirror() *destinations.Batch {
	return destinations.New(w.resolver, copyengine.New(copyengine.WithRetry(retry.Policy{Attempts: 3, Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond}))).Start()
}

// srcRepo is a source repository of the sandbox.
func srcRepo(name string) ecrname.Repo {
	return ecrname.Repo{Registry: ecrname.Registry{AccountID: sandbox.SourceAccount, Region: sandbox.DefaultRegion}, Name: name}
}

func (w *world) createSourceRepo(t *testing.T, in *ecr.CreateRepositoryInput) {
	t.Helper()
	if _, err := ecr.NewFromConfig(w.srcCfg).CreateRepository(w.ctx, in); err != nil {
		t.Fatal(err)
	}
}

func (w *world) push(t *testing.T, repo, tag string, img v1.Image) v1.Hash {
	t.Helper()
	if err := remote.Write(w.ref(t, w.srcHost, repo, tag), img, remote.WithAuth(w.srcAuth)); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d
}

func (w *world) ref(t *testing.T, host, repo, tagOrDigest string) name.Reference {
	t.Helper()
	return sandboxtest.Side{Host: host}.Ref(t, repo, tagOrDigest)
}

// destDigest is what the destination answers for a tag or digest ("" when absent).
func (w *world) destDigest(t *testing.T, repo, tagOrDigest string) string {
	t.Helper()
	d, err := remote.Head(w.ref(t, w.dstHost, repo, tagOrDigest), remote.WithAuth(w.dstAuth))
	if err != nil {
		return ""
	}
	return d.Digest.String()
}

func target(prefix string) rules.Target {
	return rules.Target{
		Rule: "test",
		Destination: rules.Destination{
			AccountID: sandbox.DestinationAccount, Region: sandbox.DefaultRegion,
			RoleARN:    sandbox.RoleARN(sandbox.DestinationAccount, sandbox.DestinationRole),
			ExternalID: extID, RepositoryPrefix: prefix, CreateRepository: true,
		},
		Referrers: true,
	}
}

func targetFor(prefix, repo string) rules.Target {
	t := target(prefix)
	t.Repository = prefix + repo
	return t
}

func one(t *testing.T, rs []destinations.Result) destinations.Result {
	t.Helper()
	if len(rs) != 1 {
		t.Fatalf("%d results, want 1", len(rs))
	}
	return rs[0]
}

func TestReplicateImageIndexAndReferrers(t *testing.T) {
	w := newWorld(t)
	w.createSourceRepo(t, &ecr.CreateRepositoryInput{
		RepositoryName:                     aws.String("team-a/app"),
		ImageTagMutability:                 ecrtypes.ImageTagMutabilityImmutableWithExclusion,
		ImageTagMutabilityExclusionFilters: []ecrtypes.ImageTagMutabilityExclusionFilter{{FilterType: ecrtypes.ImageTagMutabilityExclusionFilterTypeWildcard, Filter: aws.String("latest")}},
		ImageScanningConfiguration:         &ecrtypes.ImageScanningConfiguration{ScanOnPush: true},
		EncryptionConfiguration:            &ecrtypes.EncryptionConfiguration{EncryptionType: ecrtypes.EncryptionTypeKms},
	})
	img, _ := random.Image(4096, 3)
	imgDigest := w.push(t, "team-a/app", "v1", img)
	idx, _ := random.Index(2048, 2, 4)
	if err := remote.WriteIndex(w.ref(t, w.srcHost, "team-a/app", "v2"), idx, remote.WithAuth(w.srcAuth)); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	// An SBOM artifact referring to v1, and a cosign-style signature tag.
	sbom := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), "application/spdx+json")
	sbom = mutate.Subject(sbom, v1.Descriptor{MediaType: types.DockerManifestSchema2, Digest: imgDigest, Size: mustSize(img)}).(v1.Image)
	sbomDigest, _ := sbom.Digest()
	if err := remote.Write(w.ref(t, w.srcHost, "team-a/app", sbomDigest.String()), sbom, remote.WithAuth(w.srcAuth)); err != nil {
		t.Fatal(err)
	}
	sig, _ := random.Image(256, 1)
	sigTag := "sha256-" + imgDigest.Hex + ".sig"
	sigDigest := w.push(t, "team-a/app", sigTag, sig)

	m := w.mirror()
	mark := w.sb.AccessLogMark()
	tg := targetFor("mirror/", "team-a/app")
	r := one(t, m.Replicate(w.ctx, destinations.Image{Repo: srcRepo("team-a/app"), Digest: imgDigest.String(), Tag: "v1"}, []rules.Target{tg}))
	if r.Outcome != destinations.Copied || r.Err != nil || !r.Created {
		t.Fatalf("image: %+v", r)
	}
	r = one(t, m.Replicate(w.ctx, destinations.Image{Repo: srcRepo("team-a/app"), Digest: idxDigest.String(), Tag: "v2"}, []rules.Target{tg}))
	if r.Outcome != destinations.Copied || r.Err != nil {
		t.Fatalf("index: %+v", r)
	}
	replicated := w.sb.AccessLogSince(mark)
	for ref, want := range map[string]v1.Hash{"v1": imgDigest, "v2": idxDigest, sbomDigest.String(): sbomDigest, sigTag: sigDigest} {
		if got := w.destDigest(t, "mirror/team-a/app", ref); got != want.String() {
			t.Errorf("destination %s = %q, want %s", ref, got, want)
		}
	}
	children, _ := idx.IndexManifest()
	for _, c := range children.Manifests {
		if got := w.destDigest(t, "mirror/team-a/app", c.Digest.String()); got != c.Digest.String() {
			t.Errorf("index child %s missing in the destination", c.Digest)
		}
	}

	// The created repository mirrors the source's settings; encryption stays KMS with the
	// destination's own managed key.
	out, err := ecr.NewFromConfig(w.dstCfg).DescribeRepositories(w.ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"mirror/team-a/app"}})
	if err != nil {
		t.Fatal(err)
	}
	repo := out.Repositories[0]
	if repo.ImageTagMutability != ecrtypes.ImageTagMutabilityImmutableWithExclusion || len(repo.ImageTagMutabilityExclusionFilters) != 1 ||
		!repo.ImageScanningConfiguration.ScanOnPush || repo.EncryptionConfiguration.EncryptionType != ecrtypes.EncryptionTypeKms {
		t.Errorf("created repository settings: %+v", repo)
	}

	// Every write into the destination was made with the assumed destination role.
	for _, e := range replicated {
		if e.Account != sandbox.DestinationAccount || e.Service == "sts" || (e.Operation == "GET ping" && e.Status == http.StatusUnauthorized) {
			continue
		}
		if !strings.HasPrefix(e.Principal, "arn:aws:sts::222222222222:assumed-role/ecr-replicator-destination/ecr-replicator-test-") {
			t.Errorf("destination request %s %s by %q, want the assumed role", e.Service, e.Operation, e.Principal)
		}
	}
	assumes := sandbox.Filter(replicated, func(e sandbox.Entry) bool { return e.Operation == "AssumeRole" })
	if len(assumes) != 1 {
		t.Errorf("AssumeRole called %d times, want 1 (credentials cached)", len(assumes))
	}

	// Copying again writes nothing: no upload, no manifest PUT.
	mark = w.sb.AccessLogMark()
	m2 := w.mirror()
	for _, src := range []destinations.Image{
		{Repo: srcRepo("team-a/app"), Digest: imgDigest.String(), Tag: "v1"},
		{Repo: srcRepo("team-a/app"), Digest: idxDigest.String(), Tag: "v2"},
	} {
		r := one(t, m2.Replicate(w.ctx, src, []rules.Target{tg}))
		if r.Outcome != destinations.AlreadyPresent {
			t.Errorf("second copy of %s: %s %v", src.Tag, r.Outcome, r.Err)
		}
	}
	writes := sandbox.Filter(w.sb.AccessLogSince(mark), func(e sandbox.Entry) bool {
		return e.Service == "registry" && (e.Action == "ecr:PutImage" || e.Action == "ecr:InitiateLayerUpload" || e.Action == "ecr:UploadLayerPart" || e.Action == "ecr:CompleteLayerUpload")
	})
	if len(writes) != 0 {
		t.Errorf("second copy made %d writes: %+v", len(writes), writes)
	}
	blobGets := sandbox.Filter(w.sb.AccessLogSince(mark), func(e sandbox.Entry) bool { return e.Operation == "GET blob" })
	if len(blobGets) != 0 {
		t.Errorf("second copy downloaded %d blobs", len(blobGets))
	}
}

func mustSize(img v1.Image) int64 {
	n, _ := img.Size()
	return n
}

func TestSharedLayersCheckedOnce(t *testing.T) {
	w := newWorld(t)
	w.createSourceRepo(t, &ecr.CreateRepositoryInput{RepositoryName: aws.String("svc")})
	base, _ := random.Image(8192, 3)
	var digests []v1.Hash
	for i := 0; i < 10; i++ {
		layer, _ := random.Layer(512, types.DockerLayer)
		img, _ := mutate.AppendLayers(base, layer)
		digests = append(digests, w.push(t, "svc", fmt.Sprintf("v%d", i), img))
	}
	m := w.mirror()
	mark := w.sb.AccessLogMark()
	tg := targetFor("", "svc")
	for i, d := range digests {
		r := one(t, m.Replicate(w.ctx, destinations.Image{Repo: srcRepo("svc"), Digest: d.String(), Tag: fmt.Sprintf("v%d", i)}, []rules.Target{tg}))
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	heads := map[string]int{}
	uploads, pings := 0, map[string]int{}
	for _, e := range w.sb.AccessLogSince(mark) {
		if e.Operation == "GET ping" {
			pings[e.Account]++
		}
		if e.Account != sandbox.DestinationAccount {
			continue
		}
		if e.Operation == "HEAD blob" {
			heads[e.Reference]++
		}
		if e.Operation == "POST upload" {
			uploads++
		}
	}
	for blob, n := range heads {
		if n != 1 {
			t.Errorf("blob %s HEAD %d times, want 1", blob, n)
		}
	}
	// 3 shared base layers + 10 own layers + 10 configs.
	if uploads != 23 {
		t.Errorf("%d uploads, want 23", uploads)
	}
	// The run keeps its registry clients: a ping (answered 401, the auth challenge) per
	// client, not per image (source: manifest reads, referrers; destination: manifest
	// reads, manifest writes, uploads).
	if pings[sandbox.SourceAccount] > 2 || pings[sandbox.DestinationAccount] > 3 {
		t.Errorf("pings per account for 10 images: %v, want at most 2 and 3", pings)
	}
	for i, d := range digests {
		if got := w.destDigest(t, "svc", fmt.Sprintf("v%d", i)); got != d.String() {
			t.Errorf("v%d = %s, want %s", i, got, d)
		}
	}
}

func TestTagsConvergeAndConflicts(t *testing.T) {
	w := newWorld(t)
	w.createSourceRepo(t, &ecr.CreateRepositoryInput{RepositoryName: aws.String("app")})
	old, _ := random.Image(256, 1)
	newer, _ := random.Image(256, 1)
	oldD := w.push(t, "app", "latest", old)
	newD := w.push(t, "app", "latest", newer) // the tag moved on
	m := w.mirror()
	tg := targetFor("", "app")
	src := func(d v1.Hash) destinations.Image {
		return destinations.Image{Repo: srcRepo("app"), Digest: d.String(), Tag: "latest"}
	}
	// Newest first, then the stale event: the tag must stay at the newest digest.
	if r := one(t, m.Replicate(w.ctx, src(newD), []rules.Target{tg})); r.Err != nil {
		t.Fatal(r.Err)
	}
	r := one(t, m.Replicate(w.ctx, src(oldD), []rules.Target{tg}))
	if r.Err != nil || r.Outcome == destinations.Failed {
		t.Fatalf("stale event: %+v", r)
	}
	if got := w.destDigest(t, "app", "latest"); got != newD.String() {
		t.Fatalf("destination latest = %s, want the newest %s", got, newD)
	}

	// An immutable destination whose tag points elsewhere is a permanent conflict.
	if _, err := ecr.NewFromConfig(w.dstCfg).CreateRepository(w.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("frozen"), ImageTagMutability: ecrtypes.ImageTagMutabilityImmutable,
		Tags: sandboxtest.Owned()}); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(w.ref(t, w.dstHost, "frozen", "v1"), old, remote.WithAuth(w.dstAuth)); err != nil {
		t.Fatal(err)
	}
	w.createSourceRepo(t, &ecr.CreateRepositoryInput{RepositoryName: aws.String("frozen")})
	v1d := w.push(t, "frozen", "v1", newer)
	r = one(t, m.Replicate(w.ctx, destinations.Image{Repo: srcRepo("frozen"), Digest: v1d.String(), Tag: "v1"}, []rules.Target{targetFor("", "frozen")}))
	if r.Outcome != destinations.Conflict || r.Retryable {
		t.Fatalf("immutable conflict: %+v", r)
	}
	// The same digest already tagged in an immutable repository is simply present.
	if err := remote.Write(w.ref(t, w.dstHost, "frozen", "v2"), newer, remote.WithAuth(w.dstAuth)); err != nil {
		t.Fatal(err)
	}
	w.push(t, "frozen", "v2", newer)
	r = one(t, m.Replicate(w.ctx, destinations.Image{Repo: srcRepo("frozen"), Digest: v1d.String(), Tag: "v2"}, []rules.Target{targetFor("", "frozen")}))
	if r.Err != nil || r.Outcome != destinations.AlreadyPresent {
		t.Fatalf("same digest under an immutable tag: %+v", r)
	}
}

func TestFaultClassification(t *testing.T) {
	w := newWorld(t)
	w.createSourceRepo(t, &ecr.CreateRepositoryInput{RepositoryName: aws.String("app")})
	img, _ := random.Image(64<<10, 2)
	d := w.push(t, "app", "v1", img)
	src := destinations.Image{Repo: srcRepo("app"), Digest: d.String(), Tag: "v1"}
	tg := targetFor("", "app")

	t.Run("destination keeps answering 503: retryable", func(t *testing.T) {
		w.sb.FailRegistryRequests(sandbox.DestinationAccount, 200, http.StatusServiceUnavailable, 0)
		r := one(t, w.mirror().Replicate(w.ctx, src, []rules.Target{tg}))
		if r.Outcome != destinations.Failed || !r.Retryable {
			t.Fatalf("persistent 503: %+v", r)
		}
	})
	drainRegistryFaults(t, w)

	t.Run("upload reset and download reset: recovered in-process", func(t *testing.T) {
		w.sb.ResetBlobUploads(sandbox.DestinationAccount, 1000, 1)
		w.sb.ResetBlobDownloads(sandbox.SourceAccount, 1000, 1)
		r := one(t, w.mirror().Replicate(w.ctx, src, []rules.Target{tg}))
		if r.Err != nil || r.Outcome != destinations.Copied {
			t.Fatalf("after resets: %+v", r)
		}
		if got := w.destDigest(t, "app", "v1"); got != d.String() {
			t.Fatalf("destination v1 = %s", got)
		}
		fired := w.sb.FaultsFired()
		if fired["registry:reset:upload"] != 1 || fired["registry:reset:blob"] != 1 {
			t.Errorf("faults fired: %v", fired)
		}
	})

	t.Run("expired registry token: refreshed once", func(t *testing.T) {
		img2, _ := random.Image(1024, 1)
		d2 := w.push(t, "app", "v2", img2)
		m := w.mirror()
		// Warm the token cache, then expire every destination token.
		one(t, m.Replicate(w.ctx, src, []rules.Target{tg}))
		w.sb.ExpireRegistryTokens(sandbox.DestinationAccount)
		mark := w.sb.AccessLogMark()
		r := one(t, m.Replicate(w.ctx, destinations.Image{Repo: srcRepo("app"), Digest: d2.String(), Tag: "v2"}, []rules.Target{tg}))
		if r.Err != nil || r.Outcome != destinations.Copied {
			t.Fatalf("after token expiry: %+v", r)
		}
		tokens := sandbox.Filter(w.sb.AccessLogSince(mark), func(e sandbox.Entry) bool {
			return e.Operation == "GetAuthorizationToken" && e.Account == sandbox.DestinationAccount
		})
		if len(tokens) != 1 {
			t.Errorf("%d new destination tokens, want exactly 1 refresh", len(tokens))
		}
	})

	t.Run("source image deleted: permanent", func(t *testing.T) {
		gone := destinations.Image{Repo: srcRepo("app"), Digest: "sha256:" + strings.Repeat("ab", 32), Tag: ""}
		r := one(t, w.mirror().Replicate(w.ctx, gone, []rules.Target{tg}))
		if r.Outcome != destinations.Failed || r.Retryable {
			t.Fatalf("missing source image: %+v", r)
		}
	})

	t.Run("AssumeRole denied: permanent", func(t *testing.T) {
		bad := tg
		bad.Destination.ExternalID = "wrong"
		r := one(t, w.mirror().Replicate(w.ctx, src, []rules.Target{bad}))
		if r.Outcome != destinations.Failed || r.Retryable || r.Code != "AccessDenied" {
			t.Fatalf("denied AssumeRole: %+v (code %s)", r, r.Code)
		}
	})

	// A quota reached (here the registry's repository quota) is no throttle: retrying
	// cannot help, and it cycled to the dead-letter queue.
	t.Run("LimitExceededException: permanent", func(t *testing.T) {
		if err := w.sb.InjectAPIFault(sandbox.APIFault{Service: "ecr", Operation: "CreateRepository", Code: "LimitExceededException", Count: 10}); err != nil {
			t.Fatal(err)
		}
		defer w.sb.ClearFaults()
		r := one(t, w.mirror().Replicate(w.ctx, src, []rules.Target{targetFor("quota/", "app")}))
		if r.Outcome != destinations.Failed || r.Retryable || r.Code != "LimitExceededException" {
			t.Fatalf("LimitExceededException: outcome %s, code %s, retryable %v (%v); want a permanent failure", r.Outcome, r.Code, r.Retryable, r.Err)
		}
	})

	t.Run("ECR API throttled: retried by the SDK", func(t *testing.T) {
		w.sb.ThrottleAPI("ecr", "CreateRepository", 1)
		r := one(t, w.mirror().Replicate(w.ctx, src, []rules.Target{targetFor("throttled/", "app")}))
		if r.Err != nil || !r.Created {
			t.Fatalf("throttled CreateRepository: %+v", r)
		}
	})
}

// drainRegistryFaults consumes what is left of injected registry faults with harmless
// pings, so later subtests start clean.
func drainRegistryFaults(t *testing.T, w *world) {
	t.Helper()
	for i := 0; i < 300 && w.sb.PendingFaults() > 0; i++ {
		req, _ := http.NewRequest(http.MethodGet, "http://"+w.dstHost+"/v2/", nil)
		req.SetBasicAuth("AWS", w.dstAuth.(*authn.Basic).Password)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	if w.sb.PendingFaults() > 0 {
		t.Fatal("faults still pending")
	}
}

func TestNoReplicationLoopsWithinOneRegistry(t *testing.T) {
	w := newWorld(t)
	w.createSourceRepo(t, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/app")})
	img, _ := random.Image(256, 1)
	d := w.push(t, "mirror/app", "v1", img)
	same := rules.Target{Rule: "same", Repository: "mirror/mirror/app", Destination: rules.Destination{
		AccountID: sandbox.SourceAccount, Region: sandbox.DefaultRegion, RepositoryPrefix: "mirror/", CreateRepository: true}}
	self := same
	self.Repository, self.Destination.RepositoryPrefix = "mirror/app", ""
	mark := w.sb.AccessLogMark()
	for _, tg := range []rules.Target{same, self} {
		r := one(t, w.mirror().Replicate(w.ctx, destinations.Image{Repo: srcRepo("mirror/app"), Digest: d.String(), Tag: "v1"}, []rules.Target{tg}))
		if r.Outcome != destinations.Skipped || r.Reason == "" {
			t.Errorf("%s: %+v, want skipped with a reason", tg.Repository, r)
		}
	}
	if n := len(w.sb.AccessLogSince(mark)); n != 0 {
		t.Errorf("a loop guard made %d requests", n)
	}
}

// deniedAuth is a registry authenticator whose token source is denied, as
// ecraccess's is when GetAuthorizationToken is refused.
type deniedAuth struct{}

func (deniedAuth) Authorization() (*authn.AuthConfig, error) {
	return nil, &ecraccess.Error{Op: "ecr:GetAuthorizationToken", Code: "AccessDeniedException", Err: errors.New("not authorized to perform: ecr:GetAuthorizationToken")}
}

// TestDenialKeepsItsClassThroughTheEngine: http.Client wraps an authenticator's error in
// a *url.Error (itself a net.Error); the engine must report the denial inside —
// AccessDeniedException, permanent — not a retryable network error that loops to the
// dead-letter queue.
func TestDenialKeepsItsClassThroughTheEngine(t *testing.T) {
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	src, _ := name.NewRepository(host + "/src")
	dst, _ := name.NewRepository(host + "/dst")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := copyengine.New().Start().Copy(ctx, copyengine.Request{
		Source:      copyengine.Endpoint{Repository: src, Auth: deniedAuth{}},
		Destination: copyengine.Endpoint{Repository: dst, Auth: deniedAuth{}},
		Digest:      "sha256:" + strings.Repeat("b", 64), Tag: "v1",
	})
	code, retryable := destinations.Classify(res.Err)
	if code != "AccessDeniedException" || retryable {
		t.Fatalf("Classify(%v) = %q, retryable %v; want AccessDeniedException, permanent", res.Err, code, retryable)
	}
}
