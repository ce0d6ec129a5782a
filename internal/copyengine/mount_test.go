package copyengine

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// ecrSide is one account's registry of a sandbox, as the engine reaches it.
type ecrSide struct {
	api  *ecr.Client
	host string
	auth authn.Authenticator
}

func sandboxSide(t *testing.T, sb *sandbox.Sandbox, account string) ecrSide {
	t.Helper()
	key, secret, err := sb.Credentials(account, sandbox.AdminUser)
	if err != nil {
		t.Fatal(err)
	}
	api := ecr.New(ecr.Options{Region: sandbox.DefaultRegion, BaseEndpoint: aws.String(sb.APIURL()),
		Credentials: credentials.NewStaticCredentialsProvider(key, secret, "")})
	out, err := api.GetAuthorizationToken(context.Background(), &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(aws.ToString(out.AuthorizationData[0].AuthorizationToken))
	user, pass, _ := strings.Cut(string(raw), ":")
	return ecrSide{api: api, host: strings.TrimPrefix(aws.ToString(out.AuthorizationData[0].ProxyEndpoint), "http://"),
		auth: &authn.Basic{Username: user, Password: pass}}
}

func (s ecrSide) repo(t *testing.T, repo string, create bool) name.Repository {
	t.Helper()
	if create {
		if _, err := s.api.CreateRepository(context.Background(), &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)}); err != nil {
			t.Fatal(err)
		}
	}
	return must[name.Repository](t)(name.NewRepository(s.host + "/" + repo))
}

// mountWorld: a sandbox whose destination registry mounts blobs, and n source
// repositories holding one image each: a shared base of two layers of size bytes and a
// small layer of its own.
type mountWorld struct {
	sb       *sandbox.Sandbox
	src, dst ecrSide
	reqs     []Request
	base     int64
}

func newMountWorld(t *testing.T, n int, size int64, mounting bool) *mountWorld {
	t.Helper()
	sb, err := sandbox.New(sandbox.TwoAccounts(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	w := &mountWorld{sb: sb, src: sandboxSide(t, sb, sandbox.SourceAccount), dst: sandboxSide(t, sb, sandbox.DestinationAccount)}
	if _, err := w.dst.api.PutAccountSetting(context.Background(), &ecr.PutAccountSettingInput{Name: aws.String("BLOB_MOUNTING"), Value: aws.String("ENABLED")}); err != nil {
		t.Fatal(err)
	}
	base := must[v1.Image](t)(random.Image(size, 2))
	for _, l := range must[[]v1.Layer](t)(base.Layers()) {
		w.base += must[int64](t)(l.Size())
	}
	for i := range n {
		repo := fmt.Sprintf("team/app%d", i)
		img := must[v1.Image](t)(mutate.AppendLayers(base, must[v1.Layer](t)(random.Layer(512, types.DockerLayer))))
		src := w.src.repo(t, repo, true)
		if err := remote.Write(src.Tag("v1"), img, remote.WithAuth(w.src.auth)); err != nil {
			t.Fatal(err)
		}
		w.reqs = append(w.reqs, Request{
			Source:      Endpoint{Repository: src, Auth: w.src.auth},
			Destination: Endpoint{Repository: w.dst.repo(t, repo, true), Auth: w.dst.auth, Mounting: Mounting{Enabled: mounting, Encryption: "AES256"}},
			Digest:      digestOf(t, img).String(), Tag: "v1",
		})
	}
	return w
}

// uploaded sums the bytes of the destination's blob upload PUTs and counts its mounts and
// mount POSTs since mark.
func (w *mountWorld) uploaded(mark int) (bytes int64, mounts, asked int) {
	for _, e := range w.sb.AccessLogSince(mark) {
		if e.Account != sandbox.DestinationAccount {
			continue
		}
		if e.Operation == "PUT upload" && e.Status < 300 {
			bytes += e.Bytes
		}
		if e.Mounted {
			mounts++
		}
		if e.MountFrom != "" {
			asked++
		}
	}
	return bytes, mounts, asked
}

func (w *mountWorld) copyAll(t *testing.T, run *Run, reqs []Request) []Result {
	t.Helper()
	results := make([]Result, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() { results[i] = run.Copy(context.Background(), r) })
	}
	wg.Wait()
	for i, r := range results {
		if r.Err != nil {
			t.Fatalf("copy %d: %s: %v", i, r.Outcome, r.Err)
		}
		if got, _ := remote.Head(reqs[i].Destination.Repository.Tag("v1"), remote.WithAuth(w.dst.auth)); got == nil || got.Digest.String() != reqs[i].Digest {
			t.Fatalf("copy %d: the destination tag is %v, want %s", i, got, reqs[i].Digest)
		}
	}
	return results
}

// TestConcurrentCopiesMountSharedLayers: images sharing a base, copied at once into
// several repositories of one registry that mounts blobs, move the base over the network
// once: the copies wait for the one already uploading it, and mount it from there.
func TestConcurrentCopiesMountSharedLayers(t *testing.T) {
	const n, size = 6, 256 << 10
	w := newMountWorld(t, n, size, true)
	results := w.copyAll(t, New(WithJobs(4)).Start(), w.reqs)
	var copied, mounted int64
	var blobsMounted int
	for _, r := range results {
		copied += r.BytesCopied
		mounted += r.BytesMounted
		blobsMounted += r.BlobsMounted
	}
	bytes, mounts, _ := w.uploaded(0)
	if bytes > w.base+w.base/2 || copied > w.base+w.base/2 {
		t.Errorf("%d copies sharing a %d-byte base uploaded %d bytes (results: %d), want the base once", n, w.base, bytes, copied)
	}
	if blobsMounted != 2*(n-1) || mounts != 2*(n-1) || mounted != int64(n-1)*w.base {
		t.Errorf("mounted %d blobs (%d bytes; the registry saw %d mounts), want %d blobs, %d bytes", blobsMounted, mounted, mounts, 2*(n-1), int64(n-1)*w.base)
	}
}

// TestMountingOffUploadsAndCountsWhatItWouldSave: with mounting off, every copy uploads
// the base; what another repository of the registry already held is reported mountable.
func TestMountingOffUploadsAndCountsWhatItWouldSave(t *testing.T) {
	w := newMountWorld(t, 2, 128<<10, false)
	run := New().Start()
	first := w.copyAll(t, run, w.reqs[:1])[0]
	second := w.copyAll(t, run, w.reqs[1:])[0]
	if first.BytesMountable != 0 || second.BytesMountable != w.base || second.BytesCopied < w.base {
		t.Errorf("mountable %d then %d bytes (second uploaded %d), want 0 then the base (%d)", first.BytesMountable, second.BytesMountable, second.BytesCopied, w.base)
	}
	if _, mounts, asked := w.uploaded(0); asked != 0 || mounts != 0 {
		t.Errorf("%d mounts asked with mounting off, want none", asked)
	}
}

// TestStaleMountSource: a repository the engine learnt holds the base is deleted; the
// next copy asks to mount from it, gets 202, and uploads through the upload that answer
// started (one POST per blob, not two); the index forgets the repository, so the copy
// after that mounts from one that still holds the base.
func TestStaleMountSource(t *testing.T) {
	w := newMountWorld(t, 4, 64<<10, true)
	run := New().Start()
	w.copyAll(t, run, w.reqs[:1])
	w.copyAll(t, run, w.reqs[1:2]) // mounted from app0; app1 is now the most recent source
	if _, err := w.dst.api.DeleteRepository(context.Background(), &ecr.DeleteRepositoryInput{RepositoryName: aws.String("team/app1"), Force: true}); err != nil {
		t.Fatal(err)
	}
	mark := w.sb.AccessLogMark()
	third := w.copyAll(t, run, w.reqs[2:3])[0]
	if third.BytesCopied < w.base || third.BlobsMounted != 0 {
		t.Errorf("a copy whose mount source was deleted: uploaded %d bytes, mounted %d blobs; want the base uploaded", third.BytesCopied, third.BlobsMounted)
	}
	posts := 0
	for _, e := range w.sb.AccessLogSince(mark) {
		if e.Account == sandbox.DestinationAccount && e.Operation == "POST upload" {
			posts++
			if e.MountFrom != "" && (e.MountFrom != "team/app1" || e.Status != http.StatusAccepted) {
				t.Errorf("mount asked from %s answered %d, want team/app1 answered 202", e.MountFrom, e.Status)
			}
		}
	}
	// 2 base layers (the mount POST's 202 is the upload), 1 own layer, 1 config.
	if posts != 4 {
		t.Errorf("%d upload POSTs, want 4: a 202 to a mount starts the upload", posts)
	}
	fourth := w.copyAll(t, run, w.reqs[3:])[0]
	if fourth.BlobsMounted != 2 {
		t.Errorf("the copy after a stale source mounted %d blobs, want the 2 base layers (from a repository that has them)", fourth.BlobsMounted)
	}
}

// TestNoMountWithoutKnownEncryption: a destination whose encryption is unknown is never
// mounted into, even with mounting on.
func TestNoMountWithoutKnownEncryption(t *testing.T) {
	w := newMountWorld(t, 2, 64<<10, true)
	for i := range w.reqs {
		w.reqs[i].Destination.Mounting.Encryption = ""
	}
	run := New().Start()
	w.copyAll(t, run, w.reqs[:1])
	w.copyAll(t, run, w.reqs[1:])
	if bytes, _, asked := w.uploaded(0); asked != 0 || bytes < 2*w.base {
		t.Errorf("unknown encryption: %d mounts asked, %d bytes uploaded; want none asked, the base twice", asked, bytes)
	}
}

// mountHook answers the destination's mount POSTs (?mount=) with answer and counts the
// upload POSTs per repository. ggcr's registry keeps blobs for all its repositories at
// once; the hook has a blob HEAD in mirror/b answer 404 until the blob was uploaded there,
// as a registry with repositories of their own does.
type mountHook struct {
	mu     sync.Mutex
	answer func(reg http.Handler, w http.ResponseWriter, r *http.Request) bool
	reg    http.Handler
	mounts map[string]int  // repository path → mount POSTs
	posts  map[string]int  // repository path → plain POSTs
	inB    map[string]bool // digests uploaded to mirror/b
}

func (h *mountHook) serve(w http.ResponseWriter, r *http.Request) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case r.Method == http.MethodHead && strings.HasPrefix(r.URL.Path, "/v2/mirror/b/blobs/sha256:"):
		if !h.inB[strings.TrimPrefix(r.URL.Path, "/v2/mirror/b/blobs/")] {
			w.WriteHeader(http.StatusNotFound)
			return true
		}
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v2/mirror/b/blobs/uploads/"):
		h.inB[r.URL.Query().Get("digest")] = true
	case r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
	case r.URL.Query().Get("mount") != "":
		h.mounts[r.URL.Path]++
		return h.answer(h.reg, w, r)
	default:
		h.posts[r.URL.Path]++
	}
	return false
}

// hookedMount copies one image into mirror/a (learning where its blobs are), then the
// same image's blobs into mirror/b with the registry answering mounts with answer. ggcr's
// registry does not mount; answer stands in for a registry that does, or that fails to.
func hookedMount(t *testing.T, answer func(reg http.Handler, w http.ResponseWriter, r *http.Request) bool) (*mountHook, Result) {
	t.Helper()
	e := newEnv(t)
	img := must[v1.Image](t)(random.Image(4096, 2))
	d := pushImage(t, e.srcRepo.Tag("v1"), img)
	run := fastCopier()
	mount := Mounting{Enabled: true, Encryption: "AES256"}
	req := func(dst string) Request {
		return Request{Source: Endpoint{Repository: e.srcRepo}, Destination: Endpoint{Repository: e.dst.repo(t, dst), Mounting: mount}, Digest: d.String(), Tag: "v1"}
	}
	if r := run.Copy(context.Background(), req("mirror/a")); r.Err != nil {
		t.Fatal(r.Err)
	}
	h := &mountHook{answer: answer, reg: e.dst.reg, mounts: map[string]int{}, posts: map[string]int{}, inB: map[string]bool{}}
	e.dst.setHook(h.serve)
	res := run.Copy(context.Background(), req("mirror/b"))
	e.dst.setHook(nil)
	return h, res
}

const bUploads = "/v2/mirror/b/blobs/uploads/"

// TestMountAnswered202UsesItsUpload: a 202 to a mount is an upload session started; the
// blob goes to its Location, without another POST.
func TestMountAnswered202UsesItsUpload(t *testing.T) {
	h, res := hookedMount(t, func(reg http.Handler, w http.ResponseWriter, r *http.Request) bool {
		// The registry's own answer to a POST without the mount: 202 and a Location.
		plain := r.Clone(r.Context())
		plain.URL.RawQuery = ""
		plain.RequestURI = ""
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, plain)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		return true
	})
	if res.Err != nil || res.BlobsCopied != 3 || res.BlobsMounted != 0 {
		t.Fatalf("copy after 202 mounts: %s copied %d mounted %d: %v", res.Outcome, res.BlobsCopied, res.BlobsMounted, res.Err)
	}
	// 3 blobs (2 layers, the config): each has one POST, a mount answered 202.
	if h.mounts[bUploads] != 3 || h.posts[bUploads] != 0 {
		t.Errorf("%d mount POSTs and %d plain POSTs, want 3 and 0", h.mounts[bUploads], h.posts[bUploads])
	}
}

// TestMountErrorFallsBackToUpload: a mount refused with an error (a 500, a closed
// connection) is followed by a normal upload in the same attempt.
func TestMountErrorFallsBackToUpload(t *testing.T) {
	for name, answer := range map[string]func(reg http.Handler, w http.ResponseWriter, r *http.Request) bool{
		"500": func(_ http.Handler, w http.ResponseWriter, r *http.Request) bool {
			writeRegError(w, http.StatusInternalServerError, "UNKNOWN", "mount failed")
			return true
		},
		"closed": func(http.Handler, http.ResponseWriter, *http.Request) bool { panic(http.ErrAbortHandler) },
		// A registry that answers 201 and does not have the blob.
		"201 without the blob": func(_ http.Handler, w http.ResponseWriter, r *http.Request) bool {
			w.WriteHeader(http.StatusCreated)
			return true
		},
	} {
		t.Run(name, func(t *testing.T) {
			h, res := hookedMount(t, answer)
			if res.Err != nil || res.BlobsCopied != 3 || res.BlobsMounted != 0 {
				t.Fatalf("%s copied %d mounted %d: %v", res.Outcome, res.BlobsCopied, res.BlobsMounted, res.Err)
			}
			if h.mounts[bUploads] != 3 || h.posts[bUploads] != 3 {
				t.Errorf("%d mount POSTs and %d plain POSTs, want 3 each (one mount asked per blob, no retry of it)", h.mounts[bUploads], h.posts[bUploads])
			}
		})
	}
}

// TestMountIntoRepositoryNotOwned: a destination repository the identity may not write
// refuses the mount (403) and then the upload: the copy fails for good with the
// registry's code, it is not reported mounted.
func TestMountIntoRepositoryNotOwned(t *testing.T) {
	e := newEnv(t)
	img := must[v1.Image](t)(random.Image(1024, 1))
	d := pushImage(t, e.srcRepo.Tag("v1"), img)
	run := fastCopier()
	mount := Mounting{Enabled: true, Encryption: "AES256"}
	if r := run.Copy(context.Background(), Request{Source: Endpoint{Repository: e.srcRepo}, Destination: Endpoint{Repository: e.dst.repo(t, "mirror/a"), Mounting: mount}, Digest: d.String()}); r.Err != nil {
		t.Fatal(r.Err)
	}
	e.dst.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodHead && strings.HasPrefix(r.URL.Path, "/v2/other/b/blobs/") {
			w.WriteHeader(http.StatusNotFound) // ggcr's registry has every blob in every repository
			return true
		}
		if strings.HasPrefix(r.URL.Path, "/v2/other/b/blobs/uploads") {
			writeRegError(w, http.StatusForbidden, "DENIED", "not authorized to perform: ecr:InitiateLayerUpload")
			return true
		}
		return false
	})
	res := run.Copy(context.Background(), Request{Source: Endpoint{Repository: e.srcRepo}, Destination: Endpoint{Repository: e.dst.repo(t, "other/b"), Mounting: mount}, Digest: d.String()})
	var ee *Error
	if res.Outcome != Failed || res.BlobsMounted != 0 || !errors.As(res.Err, &ee) || ee.Code != "DENIED" || retry.IsRetryable(res.Err) {
		t.Fatalf("copy into a repository that refuses writes: %s mounted %d: %v; want failed, DENIED, permanent", res.Outcome, res.BlobsMounted, res.Err)
	}
}

// TestMountIndexIsBounded: the index keeps at most its bound of blobs, least recently used
// forgotten first, and a few repositories per blob, the most recent.
func TestMountIndexIsBounded(t *testing.T) {
	x := blobIndex{max: 100}
	aes, kms := mountScope{registry: "reg", encryption: "AES256"}, mountScope{registry: "reg", encryption: "KMS key"}
	blob := func(i int) v1.Descriptor {
		return v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%064x", i)}}
	}
	x.learn(aes, "r0", []v1.Descriptor{blob(0)})
	for i := 1; i < 10000; i++ {
		if i%50 == 0 {
			x.source(aes, "other", blob(0).Digest) // used: kept
		}
		x.learn(aes, fmt.Sprintf("r%d", i), []v1.Descriptor{blob(i)})
	}
	if x.len() != 100 {
		t.Fatalf("index holds %d blobs, want its bound of 100", x.len())
	}
	if _, ok := x.source(aes, "other", blob(1).Digest); ok {
		t.Error("an old blob never used again is still indexed")
	}
	if r, ok := x.source(aes, "other", blob(0).Digest); !ok || r != "r0" {
		t.Errorf("a blob used again and again was forgotten (%q %v)", r, ok)
	}
	for i := range 10 {
		x.learn(aes, fmt.Sprintf("repo%d", i), []v1.Descriptor{blob(0)})
	}
	if e := x.byKey[indexKey{aes, blob(0).Digest}].Value.(*indexed); len(e.repos) != maxMountSources || e.repos[0] != "repo9" {
		t.Errorf("repositories kept for one blob: %v, want the %d most recent", e.repos, maxMountSources)
	}
	if r, _ := x.source(aes, "repo9", blob(0).Digest); r != "repo8" {
		t.Errorf("a source for repo9 is %q, want another repository (repo8)", r)
	}
	if _, ok := x.source(kms, "other", blob(0).Digest); ok {
		t.Error("a blob indexed under one encryption is offered under another")
	}
	x.forget(aes, "repo9", blob(0).Digest)
	if r, _ := x.source(aes, "other", blob(0).Digest); r != "repo8" {
		t.Errorf("after forgetting repo9, the source is %q, want repo8", r)
	}
}

// TestWaitEndsWhenTheOtherCopyGivesUp: a copy waiting for another copy of its shared
// layers into another repository goes on, and uploads them itself, when that copy ends
// without writing its manifest (it failed, or was cut).
func TestWaitEndsWhenTheOtherCopyGivesUp(t *testing.T) {
	w := newMountWorld(t, 1, 64<<10, true)
	run := New().Start()
	req := w.reqs[0]
	m, err := remote.Get(req.Source.Repository.Digest(req.Digest), remote.WithAuth(w.src.auth))
	if err != nil {
		t.Fatal(err)
	}
	blobs := must[[]v1.Descriptor](t)(blobsOf(&rawManifest{raw: m.Manifest, desc: m.Descriptor}))
	// Another copy, into another repository of the registry, moving the same blobs.
	other := &session{c: run, dst: &endpoint{repo: w.dst.repo(t, "team/other", true), mounting: req.Destination.Mounting, auth: req.Destination.Auth}, log: run.log}
	end, err := other.shareFlight(context.Background(), blobs)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan Result)
	go func() { done <- run.Copy(context.Background(), req) }()
	select {
	case r := <-done:
		t.Fatalf("the copy did not wait for the other one moving its blobs: %s %v", r.Outcome, r.Err)
	case <-time.After(300 * time.Millisecond):
	}
	end() // gives up: nothing learnt
	r := <-done
	if r.Err != nil || r.BytesCopied < w.base || r.BlobsMounted != 0 {
		t.Fatalf("after the other copy gave up: %s uploaded %d, mounted %d: %v", r.Outcome, r.BytesCopied, r.BlobsMounted, r.Err)
	}
}

// TestOverlappingSharedLayersDoNotDeadlock: images sharing different subsets of a few
// layers, copied at once into as many repositories of one registry with few transfer
// slots, all complete: no copy waits for one that waits for it.
func TestOverlappingSharedLayersDoNotDeadlock(t *testing.T) {
	sb, err := sandbox.New(sandbox.TwoAccounts(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	src, dst := sandboxSide(t, sb, sandbox.SourceAccount), sandboxSide(t, sb, sandbox.DestinationAccount)
	if _, err := dst.api.PutAccountSetting(context.Background(), &ecr.PutAccountSettingInput{Name: aws.String("BLOB_MOUNTING"), Value: aws.String("ENABLED")}); err != nil {
		t.Fatal(err)
	}
	var shared []v1.Layer
	for range 4 {
		shared = append(shared, must[v1.Layer](t)(random.Layer(32<<10, types.DockerLayer)))
	}
	var reqs []Request
	for i := range 12 {
		var layers []v1.Layer
		for j, l := range shared { // a different subset (and order) per image
			if (i>>(j%4))&1 == 1 || j == i%4 {
				layers = append([]v1.Layer{l}, layers...)
			}
		}
		img := must[v1.Image](t)(mutate.AppendLayers(must[v1.Image](t)(random.Image(256, 1)), layers...))
		repo := fmt.Sprintf("team/mix%d", i)
		s := src.repo(t, repo, true)
		if err := remote.Write(s.Tag("v1"), img, remote.WithAuth(src.auth)); err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, Request{Source: Endpoint{Repository: s, Auth: src.auth},
			Destination: Endpoint{Repository: dst.repo(t, repo, true), Auth: dst.auth, Mounting: Mounting{Enabled: true, Encryption: "AES256"}},
			Digest:      digestOf(t, img).String(), Tag: "v1"})
	}
	w := &mountWorld{sb: sb, src: src, dst: dst}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := New(WithJobs(2)).Start()
	results := make([]Result, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() { results[i] = run.Copy(ctx, r) })
	}
	wg.Wait()
	for i, r := range results {
		if r.Err != nil {
			t.Fatalf("copy %d: %s: %v (a deadlock ends at the test's deadline)", i, r.Outcome, r.Err)
		}
	}
	w.copyAll(t, run, reqs) // all there: nothing left to do, digests checked
}

// len is how many blobs the index holds (the tests check its bound).
func (x *blobIndex) len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.byKey)
}
