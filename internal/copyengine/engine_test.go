package copyengine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// hit is one request seen by a test registry.
type hit struct{ method, path, query string }

// testRegistry is ggcr's in-memory registry behind httptest with a counting,
// fault-injecting middleware.
type testRegistry struct {
	srv       *httptest.Server
	reg       http.Handler
	mu        sync.Mutex
	hits      []hit
	hook      func(w http.ResponseWriter, r *http.Request) bool // true: handled
	immutable bool                                              // refuse PUT manifest by existing tag (ECR IMMUTABLE)
}

func newRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{reg: registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0)))}
	tr.srv = httptest.NewServer(http.HandlerFunc(tr.serve))
	t.Cleanup(tr.srv.Close)
	return tr
}

func (tr *testRegistry) serve(w http.ResponseWriter, r *http.Request) {
	tr.mu.Lock()
	tr.hits = append(tr.hits, hit{r.Method, r.URL.Path, r.URL.RawQuery})
	hook, immutable := tr.hook, tr.immutable
	tr.mu.Unlock()
	if hook != nil && hook(w, r) {
		return
	}
	if immutable && r.Method == http.MethodPut && isManifestPath(r.URL.Path) && !strings.Contains(r.URL.Path, "sha256:") {
		head := httptest.NewRecorder()
		tr.reg.ServeHTTP(head, httptest.NewRequest(http.MethodHead, r.URL.Path, nil))
		if head.Code == http.StatusOK {
			writeRegError(w, http.StatusBadRequest, "TAG_INVALID", "The image tag already exists and cannot be overwritten because the tag is immutable.")
			return
		}
	}
	tr.reg.ServeHTTP(w, r)
}

func writeRegError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, msg)
}

func isManifestPath(p string) bool { return strings.Contains(p, "/manifests/") }

func (tr *testRegistry) setHook(h func(w http.ResponseWriter, r *http.Request) bool) {
	tr.mu.Lock()
	tr.hook = h
	tr.mu.Unlock()
}

func (tr *testRegistry) reset() {
	tr.mu.Lock()
	tr.hits = nil
	tr.mu.Unlock()
}

func (tr *testRegistry) count(f func(h hit) bool) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, h := range tr.hits {
		if f(h) {
			n++
		}
	}
	return n
}

// summary groups requests by method + kind, for logs and the report.
func (tr *testRegistry) summary() map[string]int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	m := map[string]int{}
	for _, h := range tr.hits {
		kind := "other"
		switch {
		case h.path == "/v2/":
			kind = "ping"
		case strings.Contains(h.path, "/blobs/uploads/"):
			kind = "upload"
		case strings.Contains(h.path, "/blobs/"):
			kind = "blob"
		case strings.Contains(h.path, "/referrers/"):
			kind = "referrers"
		case isManifestPath(h.path) && strings.Contains(h.path, "sha256:"):
			kind = "manifest-by-digest"
		case isManifestPath(h.path):
			kind = "manifest-by-tag"
		}
		m[h.method+" "+kind]++
	}
	return m
}

func method(m, kind string) func(hit) bool {
	return func(h hit) bool {
		if h.method != m {
			return false
		}
		switch kind {
		case "manifest":
			return isManifestPath(h.path)
		case "upload":
			return strings.Contains(h.path, "/blobs/uploads/")
		case "blob":
			return strings.Contains(h.path, "/blobs/") && !strings.Contains(h.path, "/blobs/uploads/")
		}
		return true
	}
}

func (tr *testRegistry) repo(t *testing.T, path string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(strings.TrimPrefix(tr.srv.URL, "http://") + "/" + path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fastCopier is one run of an engine with short waits.
func fastCopier(opts ...Option) *Run {
	return New(append([]Option{
		WithRetry(retry.Policy{Attempts: 4, Initial: time.Millisecond, Max: 10 * time.Millisecond}),
		WithManifestRate(1000, 1000),
	}, opts...)...).Start()
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func digestOf(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	return must[v1.Hash](t)(d.Digest())
}

func pushImage(t *testing.T, ref name.Reference, img v1.Image) v1.Hash {
	t.Helper()
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return digestOf(t, img)
}

func headDigest(t *testing.T, ref name.Reference) (v1.Hash, bool) {
	t.Helper()
	d, err := remote.Head(ref)
	if err != nil {
		if isNotFound(err) {
			return v1.Hash{}, false
		}
		t.Fatalf("HEAD %s: %v", ref, err)
	}
	return d.Digest, true
}

func wantTag(t *testing.T, ref name.Tag, want v1.Hash) {
	t.Helper()
	got, ok := headDigest(t, ref)
	if !ok || got != want {
		t.Fatalf("%s = %v (found %v), want %s", ref, got, ok, want)
	}
}

func wantOutcome(t *testing.T, res Result, want Outcome) {
	t.Helper()
	if res.Outcome != want {
		t.Fatalf("outcome = %s (reason %q, err %v), want %s", res.Outcome, res.Reason, res.Err, want)
	}
}

type env struct {
	src, dst         *testRegistry
	srcRepo, dstRepo name.Repository
}

func newEnv(t *testing.T) *env {
	e := &env{src: newRegistry(t), dst: newRegistry(t)}
	e.srcRepo = e.src.repo(t, "team/app")
	e.dstRepo = e.dst.repo(t, "mirror/team/app")
	return e
}

func (e *env) req(d v1.Hash, tag string) Request {
	return Request{Source: Endpoint{Repository: e.srcRepo}, Destination: Endpoint{Repository: e.dstRepo}, Digest: d.String(), Tag: tag}
}

func TestCopySingleImage(t *testing.T) {
	for _, mt := range []types.MediaType{types.DockerManifestSchema2, types.OCIManifestSchema1} {
		t.Run(string(mt), func(t *testing.T) {
			e := newEnv(t)
			img := must[v1.Image](t)(random.Image(512, 2))
			img = mutate.MediaType(img, mt)
			d := pushImage(t, e.srcRepo.Tag("v1"), img)

			res := fastCopier().Copy(context.Background(), e.req(d, "v1"))
			wantOutcome(t, res, Copied)
			wantTag(t, e.dstRepo.Tag("v1"), d)
			got := must[*remote.Descriptor](t)(remote.Get(e.dstRepo.Digest(d.String())))
			if got.MediaType != mt || got.Digest != d {
				t.Fatalf("destination %s %s, want %s %s", got.MediaType, got.Digest, mt, d)
			}
			size := int64(0)
			m := must[*v1.Manifest](t)(img.Manifest())
			for _, l := range append(m.Layers, m.Config) {
				size += l.Size
			}
			if res.BlobsCopied != 3 || res.BytesCopied != size || res.ManifestsWritten != 1 || res.BlobsSkipped != 0 {
				t.Fatalf("counters: %+v (want 3 blobs, %d bytes, 1 manifest)", res, size)
			}
		})
	}
}

func TestCopyMultiPlatformIndex(t *testing.T) {
	e := newEnv(t)
	platforms := must[v1.ImageIndex](t)(random.Index(256, 2, 4))
	nested := must[v1.ImageIndex](t)(random.Index(256, 1, 2))
	blob := must[v1.Layer](t)(random.Layer(100, types.MediaType("application/vnd.example.unknown")))
	idx := mutate.AppendManifests(platforms,
		mutate.IndexAddendum{Add: nested},
		mutate.IndexAddendum{Add: blob, Descriptor: v1.Descriptor{MediaType: "application/vnd.example.unknown"}},
	)
	if err := remote.WriteIndex(e.srcRepo.Tag("multi"), idx); err != nil {
		t.Fatal(err)
	}
	d := digestOf(t, idx)

	res := fastCopier().Copy(context.Background(), e.req(d, "multi"))
	wantOutcome(t, res, Copied)
	wantTag(t, e.dstRepo.Tag("multi"), d)

	im := must[*v1.IndexManifest](t)(idx.IndexManifest())
	for _, c := range im.Manifests {
		if c.MediaType == "application/vnd.example.unknown" {
			if _, err := remote.Layer(e.dstRepo.Digest(c.Digest.String())); err != nil {
				t.Fatal(err)
			}
			if ok := must[bool](t)(must[v1.Layer](t)(remote.Layer(e.dstRepo.Digest(c.Digest.String()))).(interface{ Exists() (bool, error) }).Exists()); !ok {
				t.Fatalf("unknown child %s not copied as a blob", c.Digest)
			}
			continue
		}
		if got, ok := headDigest(t, e.dstRepo.Digest(c.Digest.String())); !ok || got != c.Digest {
			t.Fatalf("child %s missing", c.Digest)
		}
	}
	// 1 top index + 4 platforms + nested index + its 2 images.
	if res.ManifestsWritten != 8 {
		t.Fatalf("manifests written = %d, want 8", res.ManifestsWritten)
	}
	// 4×(2 layers + config) + 2×(1 layer + config) + 1 unknown child.
	if res.BlobsCopied != 17 {
		t.Fatalf("blobs copied = %d, want 17", res.BlobsCopied)
	}
}

func TestCopyTwiceDoesNothingTheSecondTime(t *testing.T) {
	e := newEnv(t)
	e.dst.immutable = true // a redundant tag PUT would fail
	idx := must[v1.ImageIndex](t)(random.Index(256, 2, 3))
	if err := remote.WriteIndex(e.srcRepo.Tag("v1"), idx); err != nil {
		t.Fatal(err)
	}
	d := digestOf(t, idx)
	req := e.req(d, "v1")
	req.Referrers = true

	e.src.reset()
	e.dst.reset()
	wantOutcome(t, fastCopier().Copy(context.Background(), req), Copied)
	t.Logf("first run:  src %v", e.src.summary())
	t.Logf("first run:  dst %v", e.dst.summary())

	e.src.reset()
	e.dst.reset()
	res := New().Start().Copy(context.Background(), req) // a new run: nothing cached
	wantOutcome(t, res, AlreadyPresent)
	t.Logf("second run: src %v", e.src.summary())
	t.Logf("second run: dst %v", e.dst.summary())
	if n := e.dst.count(method("POST", "upload")) + e.dst.count(method("PATCH", "")) + e.dst.count(method("PUT", "")); n != 0 {
		t.Fatalf("second run wrote %d times", n)
	}
	if n := e.dst.count(method("HEAD", "blob")); n != 0 {
		t.Fatalf("second run HEADed %d blobs; a present manifest must not have its blobs checked", n)
	}
	if n := e.src.count(method("GET", "blob")) + e.src.count(method("GET", "manifest")); n != 0 {
		t.Fatalf("second run read %d manifests/blobs from the source", n)
	}
	if res.ManifestsSkipped != 1 || res.ManifestsWritten != 0 || res.BlobsCopied != 0 {
		t.Fatalf("counters: %+v", res)
	}
}

func TestSharedLayersUploadedOnce(t *testing.T) {
	e := newEnv(t)
	base := must[v1.Image](t)(random.Image(1024, 2))
	baseLayers := must[[]v1.Layer](t)(base.Layers())
	var reqs []Request
	for i := range 10 {
		img := must[v1.Image](t)(mutate.AppendLayers(base, must[v1.Layer](t)(random.Layer(256, types.DockerLayer))))
		tag := fmt.Sprintf("t%d", i)
		reqs = append(reqs, e.req(pushImage(t, e.srcRepo.Tag(tag), img), tag))
	}
	e.dst.reset()
	c := fastCopier(WithJobs(4))
	results := make([]Result, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() { results[i] = c.Copy(context.Background(), r) })
	}
	wg.Wait()
	copied, skipped := 0, 0
	for _, r := range results {
		wantOutcome(t, r, Copied)
		copied += r.BlobsCopied
		skipped += r.BlobsSkipped
	}
	t.Logf("dst requests: %v", e.dst.summary())
	for _, l := range baseLayers {
		h := digestOf(t, l)
		heads := e.dst.count(func(x hit) bool { return x.method == "HEAD" && strings.HasSuffix(x.path, "/blobs/"+h.String()) })
		// The commit is PUT <location>?digest=sha256%3A<hex>.
		commits := e.dst.count(func(x hit) bool { return x.method == "PUT" && strings.Contains(x.query, h.Hex) })
		if heads != 1 || commits != 1 {
			t.Fatalf("shared blob %s: %d HEADs, %d uploads; want 1 and 1", h, heads, commits)
		}
	}
	// 2 shared + 10 unique layers + 10 configs, each uploaded exactly once.
	if copied != 22 || skipped != 18 {
		t.Fatalf("blobs copied %d skipped %d across copies, want 22 and 18", copied, skipped)
	}
}

// TestOverlappingRunsUploadOnce: two runs of one Engine (two invocations overlapping in
// one execution environment) copy the same image. The first blob upload is held until
// the other run asks for that blob too (or 500 ms pass): the other run must wait for the
// upload in flight, not HEAD a blob not yet there and upload it again.
func TestOverlappingRunsUploadOnce(t *testing.T) {
	e := newEnv(t)
	d := pushImage(t, e.srcRepo.Tag("v1"), must[v1.Image](t)(random.Image(64<<10, 2)))
	e.dst.reset()
	var (
		mu        sync.Mutex
		heads     = map[string]int{}
		holding   bool
		askedToo  = make(chan struct{})
		firstPost sync.Once
	)
	e.dst.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/"):
			mu.Lock()
			heads[r.URL.Path]++
			if heads[r.URL.Path] == 2 && holding {
				holding = false
				close(askedToo) // a blob asked for twice: the other run is racing
			}
			mu.Unlock()
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
			firstPost.Do(func() {
				mu.Lock()
				holding = true
				mu.Unlock()
				select {
				case <-askedToo:
				case <-time.After(500 * time.Millisecond):
				}
			})
		}
		return false
	})
	eng := New(WithRetry(retry.Policy{Attempts: 4, Initial: time.Millisecond, Max: 10 * time.Millisecond}), WithManifestRate(1000, 1000))
	results := make([]Result, 2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() { results[i] = eng.Start().Copy(context.Background(), e.req(d, "v1")) })
	}
	wg.Wait()
	for _, r := range results {
		if r.Err != nil {
			t.Fatalf("outcome %s: %v", r.Outcome, r.Err)
		}
	}
	wantTag(t, e.dstRepo.Tag("v1"), d)
	commits := e.dst.count(func(x hit) bool { return x.method == "PUT" && strings.Contains(x.query, "digest=") })
	// 2 layers and a config.
	if commits != 3 || results[0].BlobsCopied+results[1].BlobsCopied != 3 {
		t.Fatalf("%d blob uploads committed (copied %d + %d) for 3 blobs; want each once across overlapping runs",
			commits, results[0].BlobsCopied, results[1].BlobsCopied)
	}
}

func TestOutOfOrderTagEvents(t *testing.T) {
	e := newEnv(t)
	d1 := pushImage(t, e.srcRepo.Tag("latest"), must[v1.Image](t)(random.Image(128, 1)))
	d2 := pushImage(t, e.srcRepo.Tag("latest"), must[v1.Image](t)(random.Image(128, 1)))
	c := fastCopier()

	wantOutcome(t, c.Copy(context.Background(), e.req(d2, "latest")), Copied)
	wantTag(t, e.dstRepo.Tag("latest"), d2)

	// The event for d1 arrives late: its content is copied, the tag is not moved back.
	res := c.Copy(context.Background(), e.req(d1, "latest"))
	wantOutcome(t, res, Copied)
	if !strings.Contains(res.Reason, "stale tag: source tag now points at "+d2.String()) || res.Err != nil {
		t.Fatalf("reason %q err %v", res.Reason, res.Err)
	}
	wantTag(t, e.dstRepo.Tag("latest"), d2)

	// Delivered twice: nothing to write, still stale.
	wantOutcome(t, c.Copy(context.Background(), e.req(d1, "latest")), Skipped)
	wantTag(t, e.dstRepo.Tag("latest"), d2)

	// The d2 event delivered again: nothing to do at all.
	wantOutcome(t, c.Copy(context.Background(), e.req(d2, "latest")), AlreadyPresent)
}

func TestTagMovesWhileWriting(t *testing.T) {
	e := newEnv(t)
	d1 := pushImage(t, e.srcRepo.Tag("latest"), must[v1.Image](t)(random.Image(128, 1)))
	img2 := must[v1.Image](t)(random.Image(128, 1))
	d2 := pushImage(t, e.srcRepo.Digest(digestOf(t, img2).String()), img2)
	var once sync.Once
	e.dst.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/manifests/latest") {
			// A newer push lands on the source while we tag the older digest.
			once.Do(func() {
				desc := must[*remote.Descriptor](t)(remote.Get(e.srcRepo.Digest(d2.String())))
				if err := remote.Tag(e.srcRepo.Tag("latest"), desc); err != nil {
					t.Error(err)
				}
			})
		}
		return false
	})
	res := fastCopier().Copy(context.Background(), e.req(d1, "latest"))
	wantOutcome(t, res, Copied)
	wantTag(t, e.dstRepo.Tag("latest"), d2)
	if res.ManifestsWritten != 2 {
		t.Fatalf("manifests written %d, want 2 (d1, then d2 to converge)", res.ManifestsWritten)
	}
}

// TestPinnedCopyDoesNotFollowTheTag: a pinned copy (a gated one) puts the requested
// digest in and tags only it: a source tag that moved on, before or while it writes, is
// left where it was at the destination (the tag's new image has its own decision).
func TestPinnedCopyDoesNotFollowTheTag(t *testing.T) {
	e := newEnv(t)
	d1 := pushImage(t, e.srcRepo.Tag("latest"), must[v1.Image](t)(random.Image(128, 1)))
	d2 := pushImage(t, e.srcRepo.Tag("latest"), must[v1.Image](t)(random.Image(128, 1)))
	req := e.req(d1, "latest")
	req.Pinned = true
	res := fastCopier().Copy(context.Background(), req)
	wantOutcome(t, res, Copied)
	if !strings.Contains(res.Reason, "a gated copy tags only the digest its gate decided") {
		t.Fatalf("reason %q", res.Reason)
	}
	if _, err := remote.Head(e.dstRepo.Tag("latest")); err == nil {
		t.Fatalf("the destination tag followed the source to %s", d2)
	}
	if _, err := remote.Head(e.dstRepo.Digest(d1.String())); err != nil {
		t.Fatalf("the decided digest was not copied: %v", err)
	}
}

func TestTagOnlyUpdate(t *testing.T) {
	e := newEnv(t)
	img := must[v1.Image](t)(random.Image(128, 1))
	d := pushImage(t, e.srcRepo.Tag("v2"), img)
	pushImage(t, e.dstRepo.Digest(d.String()), img)
	res := fastCopier().Copy(context.Background(), e.req(d, "v2"))
	wantOutcome(t, res, TagUpdated)
	wantTag(t, e.dstRepo.Tag("v2"), d)
}

func TestImmutableConflict(t *testing.T) {
	e := newEnv(t)
	e.dst.immutable = true
	pushImage(t, e.dstRepo.Tag("v1"), must[v1.Image](t)(random.Image(128, 1)))
	d := pushImage(t, e.srcRepo.Tag("v1"), must[v1.Image](t)(random.Image(128, 1)))
	e.dst.reset()

	res := fastCopier().Copy(context.Background(), e.req(d, "v1"))
	wantOutcome(t, res, Conflict)
	var re *Error
	if !errors.As(res.Err, &re) || re.Code != "TAG_INVALID" || retry.IsRetryable(res.Err) {
		t.Fatalf("err %v: want permanent TAG_INVALID", res.Err)
	}
	if n := e.dst.count(func(h hit) bool { return h.method == "PUT" && strings.HasSuffix(h.path, "/manifests/v1") }); n != 1 {
		t.Fatalf("tag PUT %d times, want 1 (a conflict is not retried)", n)
	}
}

// pushReferrer pushes an OCI artifact whose subject is subj into repo.
func pushReferrer(t *testing.T, repo name.Repository, subj v1.Descriptor, artifactType types.MediaType) v1.Descriptor {
	t.Helper()
	img := must[v1.Image](t)(random.Image(64, 1))
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), artifactType)
	img = mutate.Subject(img, subj).(v1.Image)
	d := pushImage(t, repo.Digest(digestOf(t, img).String()), img)
	return v1.Descriptor{Digest: d, MediaType: types.OCIManifestSchema1, Size: must[int64](t)(img.Size())}
}

func subjectOf(t *testing.T, img v1.Image) v1.Descriptor {
	return v1.Descriptor{Digest: digestOf(t, img), MediaType: must[types.MediaType](t)(img.MediaType()), Size: must[int64](t)(img.Size())}
}

func TestReferrersAndCosignTags(t *testing.T) {
	e := newEnv(t)
	subj := mutate.MediaType(must[v1.Image](t)(random.Image(128, 1)), types.OCIManifestSchema1)
	d := pushImage(t, e.srcRepo.Tag("v1"), subj)
	sbom := pushReferrer(t, e.srcRepo, subjectOf(t, subj), "application/spdx+json")
	sbomSig := pushReferrer(t, e.srcRepo, sbom, "application/vnd.dev.cosign.artifact.sig.v1+json")
	sigTag := "sha256-" + d.Hex + ".sig"
	sig := pushImage(t, e.srcRepo.Tag(sigTag), must[v1.Image](t)(random.Image(64, 1)))

	req := e.req(d, "v1")
	req.Referrers = true
	res := fastCopier().Copy(context.Background(), req)
	wantOutcome(t, res, Copied)
	if res.ReferrersCopied != 3 {
		t.Fatalf("referrers copied %d, want 3 (sbom, its signature, cosign .sig)", res.ReferrersCopied)
	}
	for _, h := range []v1.Hash{sbom.Digest, sbomSig.Digest} {
		if _, ok := headDigest(t, e.dstRepo.Digest(h.String())); !ok {
			t.Fatalf("referrer %s not copied", h)
		}
	}
	wantTag(t, e.dstRepo.Tag(sigTag), sig)
	refs := must[v1.ImageIndex](t)(remote.Referrers(e.dstRepo.Digest(d.String())))
	im := must[*v1.IndexManifest](t)(refs.IndexManifest())
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != sbom.Digest || im.Manifests[0].ArtifactType != "application/spdx+json" {
		t.Fatalf("destination referrers of subject: %+v", im.Manifests)
	}
	if n := e.dst.count(func(h hit) bool { return strings.HasSuffix(h.path, "/manifests/sha256-"+d.Hex) }); n != 0 {
		t.Fatalf("fallback tag touched %d times on a destination with the referrers API", n)
	}
}

func TestReferrersPagination(t *testing.T) {
	e := newEnv(t)
	subj := must[v1.Image](t)(random.Image(128, 1))
	d := pushImage(t, e.srcRepo.Tag("v1"), subj)
	a := pushReferrer(t, e.srcRepo, subjectOf(t, subj), "application/vnd.example.a")
	b := pushReferrer(t, e.srcRepo, subjectOf(t, subj), "application/vnd.example.b")
	path := "/v2/" + e.srcRepo.RepositoryStr() + "/referrers/" + d.String()
	e.src.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != path {
			return false
		}
		page := []v1.Descriptor{a}
		if r.URL.Query().Get("page") == "2" {
			page = []v1.Descriptor{b}
		} else {
			w.Header().Set("Link", fmt.Sprintf(`<%s?page=2>; rel="next"`, path))
		}
		w.Header().Set("Content-Type", string(types.OCIImageIndex))
		_ = json.NewEncoder(w).Encode(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: page})
		return true
	})
	e.src.reset() // ggcr's push probed the referrers API
	req := e.req(d, "v1")
	req.Referrers = true
	res := fastCopier().Copy(context.Background(), req)
	wantOutcome(t, res, Copied)
	for _, h := range []v1.Hash{a.Digest, b.Digest} {
		if _, ok := headDigest(t, e.dstRepo.Digest(h.String())); !ok {
			t.Fatalf("referrer %s (page %v) not copied", h, h == b.Digest)
		}
	}
	if n := e.src.count(func(h hit) bool { return h.path == path }); n != 2 {
		t.Fatalf("referrers pages fetched %d, want 2", n)
	}
}

func TestReferrersFallbackTag(t *testing.T) {
	e := newEnv(t)
	// The source has no referrers API: ggcr maintains sha256-<hex> on push.
	e.src.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/referrers/") {
			writeRegError(w, http.StatusNotFound, "NOT_FOUND", "no referrers API")
			return true
		}
		return false
	})
	subj := must[v1.Image](t)(random.Image(128, 1))
	d := pushImage(t, e.srcRepo.Tag("v1"), subj)
	ref := pushReferrer(t, e.srcRepo, subjectOf(t, subj), "application/vnd.example.sbom")
	fb := e.srcRepo.Tag("sha256-" + d.Hex)
	fbDigest, ok := headDigest(t, fb)
	if !ok {
		t.Fatal("source fallback tag not created by ggcr")
	}
	req := e.req(d, "v1")
	req.Referrers = true
	res := fastCopier().Copy(context.Background(), req)
	wantOutcome(t, res, Copied)
	if _, ok := headDigest(t, e.dstRepo.Digest(ref.Digest.String())); !ok {
		t.Fatal("referrer from fallback index not copied")
	}
	wantTag(t, e.dstRepo.Tag("sha256-"+d.Hex), fbDigest)
}

func TestThrottledManifestPutHonoursRetryAfter(t *testing.T) {
	e := newEnv(t)
	d := pushImage(t, e.srcRepo.Tag("v1"), must[v1.Image](t)(random.Image(128, 1)))
	var n int
	var mu sync.Mutex
	e.dst.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPut && isManifestPath(r.URL.Path) && n == 0 {
			n++
			w.Header().Set("Retry-After", "1")
			writeRegError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "Rate exceeded")
			return true
		}
		return false
	})
	start := time.Now()
	// A long backoff proves the wait came from Retry-After, not from backoff.
	res := New(WithRetry(retry.Policy{Attempts: 2, Initial: time.Minute, Max: time.Minute})).Start().Copy(context.Background(), e.req(d, "v1"))
	wantOutcome(t, res, Copied)
	if el := time.Since(start); el < time.Second || el > 10*time.Second {
		t.Fatalf("took %v, want about the 1s Retry-After", el)
	}
	wantTag(t, e.dstRepo.Tag("v1"), d)
	if res.ManifestsThrottled != 1 {
		t.Errorf("ManifestsThrottled = %d, want the one 429 (the PutImage throttling metric counts it)", res.ManifestsThrottled)
	}
}

func TestServerErrorThenSuccess(t *testing.T) {
	e := newEnv(t)
	d := pushImage(t, e.srcRepo.Tag("v1"), must[v1.Image](t)(random.Image(128, 2)))
	var manifestFails, blobFails int
	var mu sync.Mutex
	e.dst.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPut && isManifestPath(r.URL.Path) && manifestFails == 0 {
			manifestFails++
			writeRegError(w, http.StatusInternalServerError, "UNKNOWN", "boom")
			return true
		}
		// The blob upload's PUT, which carries the body (uploads are monolithic).
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") && blobFails == 0 {
			blobFails++
			_, _ = io.Copy(io.Discard, r.Body)
			writeRegError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "try again")
			return true
		}
		return false
	})
	res := fastCopier().Copy(context.Background(), e.req(d, "v1"))
	wantOutcome(t, res, Copied)
	wantTag(t, e.dstRepo.Tag("v1"), d)
	if res.BlobsCopied != 3 {
		t.Fatalf("blobs copied %d, want 3", res.BlobsCopied)
	}
	mu.Lock()
	defer mu.Unlock()
	if manifestFails != 1 || blobFails != 1 {
		t.Fatalf("faults answered: %d manifest PUTs, %d blob uploads; want 1 and 1", manifestFails, blobFails)
	}
}

func TestPersistentThrottlingIsRetryable(t *testing.T) {
	e := newEnv(t)
	d := pushImage(t, e.srcRepo.Tag("v1"), must[v1.Image](t)(random.Image(128, 1)))
	e.dst.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && isManifestPath(r.URL.Path) {
			writeRegError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "Rate exceeded")
			return true
		}
		return false
	})
	res := fastCopier().Copy(context.Background(), e.req(d, "v1"))
	wantOutcome(t, res, Failed)
	var re *Error
	if !errors.As(res.Err, &re) || re.Code != "TOOMANYREQUESTS" || re.Status != 429 || !retry.IsRetryable(res.Err) {
		t.Fatalf("err %#v: want retryable TOOMANYREQUESTS", res.Err)
	}
	if n := e.dst.count(method("PUT", "manifest")); n < 2 || n > 10 {
		t.Fatalf("manifest PUT attempts %d: want bounded retries", n)
	} else if res.ManifestsThrottled != n {
		t.Errorf("ManifestsThrottled = %d, want every one of the %d refused writes", res.ManifestsThrottled, n)
	}
}

func TestPermanentErrors(t *testing.T) {
	t.Run("source manifest gone", func(t *testing.T) {
		e := newEnv(t)
		pushImage(t, e.srcRepo.Tag("other"), must[v1.Image](t)(random.Image(64, 1)))
		missing := digestOf(t, must[v1.Image](t)(random.Image(64, 1)))
		res := fastCopier().Copy(context.Background(), e.req(missing, ""))
		wantOutcome(t, res, Failed)
		var re *Error
		if !errors.As(res.Err, &re) || re.Code != "MANIFEST_UNKNOWN" || re.Status != 404 || retry.IsRetryable(res.Err) {
			t.Fatalf("err %v: want permanent MANIFEST_UNKNOWN", res.Err)
		}
	})
	t.Run("source repository gone", func(t *testing.T) {
		e := newEnv(t)
		missing := digestOf(t, must[v1.Image](t)(random.Image(64, 1)))
		res := fastCopier().Copy(context.Background(), e.req(missing, ""))
		var re *Error
		if !errors.As(res.Err, &re) || re.Code != "NAME_UNKNOWN" || retry.IsRetryable(res.Err) {
			t.Fatalf("err %v: want permanent NAME_UNKNOWN", res.Err)
		}
	})
	t.Run("access denied", func(t *testing.T) {
		e := newEnv(t)
		d := pushImage(t, e.srcRepo.Tag("v1"), must[v1.Image](t)(random.Image(64, 1)))
		e.src.setHook(func(w http.ResponseWriter, r *http.Request) bool {
			if isManifestPath(r.URL.Path) {
				writeRegError(w, http.StatusForbidden, "DENIED", "not authorized to perform: ecr:BatchGetImage")
				return true
			}
			return false
		})
		res := fastCopier().Copy(context.Background(), e.req(d, "v1"))
		wantOutcome(t, res, Failed)
		var re *Error
		if !errors.As(res.Err, &re) || re.Code != "DENIED" || re.Status != 403 || retry.IsRetryable(res.Err) {
			t.Fatalf("err %v: want permanent DENIED", res.Err)
		}
	})
	t.Run("invalid input makes no request", func(t *testing.T) {
		e := newEnv(t)
		for _, r := range []Request{
			{Source: Endpoint{Repository: e.srcRepo}, Destination: Endpoint{Repository: e.dstRepo}, Digest: "sha256:nothex"},
			{Source: Endpoint{Repository: e.srcRepo}, Destination: Endpoint{Repository: e.dstRepo}, Digest: "latest"},
			{Source: Endpoint{Repository: e.srcRepo}, Destination: Endpoint{Repository: e.dstRepo}, Digest: "sha256:" + strings.Repeat("a", 64), Tag: "bad tag"},
			{Source: Endpoint{Repository: e.srcRepo}, Digest: "sha256:" + strings.Repeat("a", 64)},
		} {
			res := fastCopier().Copy(context.Background(), r)
			var re *Error
			if res.Outcome != Failed || !errors.As(res.Err, &re) || re.Code != CodeInvalid || retry.IsRetryable(res.Err) {
				t.Fatalf("%+v: %s %v", r, res.Outcome, res.Err)
			}
		}
		if n := e.src.count(func(hit) bool { return true }) + e.dst.count(func(hit) bool { return true }); n != 0 {
			t.Fatalf("%d requests made for invalid input", n)
		}
	})
}

func TestCancelMidCopyThenRerun(t *testing.T) {
	e := newEnv(t)
	idx := must[v1.ImageIndex](t)(random.Index(4096, 3, 2))
	if err := remote.WriteIndex(e.srcRepo.Tag("v1"), idx); err != nil {
		t.Fatal(err)
	}
	d := digestOf(t, idx)
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	e.dst.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/blobs/uploads/") {
			return false
		}
		handled := false
		once.Do(func() {
			handled = true
			cancel() // the Lambda deadline strikes mid-upload
			// The server notices the client went away only once the body is consumed.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
			writeRegError(w, http.StatusInternalServerError, "UNKNOWN", "interrupted")
		})
		return handled
	})
	c := fastCopier(WithJobs(2))
	res := c.Copy(ctx, e.req(d, "v1"))
	wantOutcome(t, res, Failed)
	var re *Error
	if !retry.IsRetryable(res.Err) || !errors.As(res.Err, &re) || re.Code != retry.CodeCanceled {
		t.Fatalf("err %v: want retryable CANCELED", res.Err)
	}
	if _, ok := headDigest(t, e.dstRepo.Tag("v1")); ok {
		t.Fatal("tag set although the copy was incomplete")
	}
	if _, ok := headDigest(t, e.dstRepo.Digest(d.String())); ok {
		t.Fatal("index written although the copy was incomplete")
	}
	e.dst.setHook(nil)
	res = c.Copy(context.Background(), e.req(d, "v1")) // the redelivery, same run
	wantOutcome(t, res, Copied)
	wantTag(t, e.dstRepo.Tag("v1"), d)
	for _, c := range must[*v1.IndexManifest](t)(idx.IndexManifest()).Manifests {
		img := must[v1.Image](t)(remote.Image(e.dstRepo.Digest(c.Digest.String())))
		for _, l := range must[[]v1.Layer](t)(img.Layers()) {
			rc := must[io.ReadCloser](t)(l.Compressed())
			if _, err := io.Copy(io.Discard, rc); err != nil { // verifies digest
				t.Fatal(err)
			}
			rc.Close()
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err       error
		s         side
		code      string
		retryable bool
	}{
		{context.DeadlineExceeded, onDest, retry.CodeDeadlineExceeded, true},
		{fmt.Errorf("x: %w", context.Canceled), onSource, retry.CodeCanceled, true},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, onDest, retry.CodeConnReset, true},
		{io.ErrUnexpectedEOF, onDest, retry.CodeEOF, true},
		{errors.New("mystery"), onDest, "", false},
	} {
		err := classify("op", tc.s, tc.err)
		var e *Error
		if !errors.As(err, &e) || e.Code != tc.code || e.Transient != tc.retryable || retry.IsRetryable(err) != tc.retryable {
			t.Errorf("%v: got %+v", tc.err, err)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%v: not unwrappable", tc.err)
		}
	}
	if retry.IsRetryable(errors.New("plain")) {
		t.Error("unclassified error must not be retryable")
	}
}

func TestNextLink(t *testing.T) {
	cur := must[*url.URL](t)(url.Parse("http://127.0.0.1:1/v2/r/referrers/sha256:x"))
	u := must[*url.URL](t)(nextLink(cur, []string{`</v2/r/referrers/sha256:x?last=b>; rel="prev", </v2/r/referrers/sha256:x?last=a&n=1>; rel="next"`}))
	if u == nil || u.String() != "http://127.0.0.1:1/v2/r/referrers/sha256:x?last=a&n=1" {
		t.Fatalf("next = %v", u)
	}
	if _, err := nextLink(cur, []string{`<http://evil.example/v2/x>; rel="next"`}); err == nil {
		t.Fatal("cross-host Link followed")
	}
	tls := must[*url.URL](t)(url.Parse("https://registry.example/v2/r/referrers/sha256:x"))
	if _, err := nextLink(tls, []string{`<http://registry.example/v2/r/referrers/sha256:x?last=a>; rel="next"`}); err == nil {
		t.Fatal("a Link from https to http on the same host was followed")
	}
	if u, _ := nextLink(cur, nil); u != nil {
		t.Fatal("no Link, yet a next page")
	}
}

// recordingTransport remembers every request's URL and answers as an empty plain-http
// registry would: TLS fails, the ping answers 200, anything else 404 MANIFEST_UNKNOWN.
type recordingTransport struct {
	mu   sync.Mutex
	urls []string
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.urls = append(r.urls, req.URL.String())
	r.mu.Unlock()
	if req.URL.Scheme == "https" {
		return nil, errors.New("tls: first record does not look like a TLS handshake")
	}
	resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: req}
	if req.URL.Path != "/v2/" {
		resp.StatusCode = http.StatusNotFound
		resp.Header.Set("Content-Type", "application/json")
		resp.Body = io.NopCloser(strings.NewReader(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}`))
	}
	return resp, nil
}

// TestPlainHTTPOnlyForLoopback: for RFC 1918 addresses and *.local / *.localhost names,
// go-containerregistry falls back to plain http when TLS fails — credentials in clear
// text on a network. The engine sends plain http to loopback only (the sandbox's
// registries, on 127.0.0.1, are covered by every other test).
func TestPlainHTTPOnlyForLoopback(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	for _, host := range []string{"10.1.2.3:5000", "192.168.0.7", "registry.localhost:5000", "box.local"} {
		rt := &recordingTransport{}
		src := must[name.Repository](t)(name.NewRepository(host + "/app"))
		dst := must[name.Repository](t)(name.NewRepository("127.0.0.1:1/app"))
		res := New(WithRetry(retry.Policy{Attempts: 1})).Start().Copy(context.Background(), Request{
			Source: Endpoint{Repository: src, Transport: rt}, Destination: Endpoint{Repository: dst, Transport: rt}, Digest: d,
		})
		if res.Outcome != Failed {
			t.Fatalf("%s: outcome %s", host, res.Outcome)
		}
		rt.mu.Lock()
		for _, u := range rt.urls {
			if strings.HasPrefix(u, "http://"+host+"/") {
				t.Errorf("%s: request %s in clear text; want https only", host, u)
			}
		}
		if len(rt.urls) == 0 {
			t.Errorf("%s: no request made", host)
		}
		rt.mu.Unlock()
	}
}
