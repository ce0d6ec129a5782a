package destinations_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// sharedBase pushes one image per repository, each a shared base of two layers of size
// bytes plus a small layer of its own, and returns their digests.
func (w *world) sharedBase(t *testing.T, size int64, repos ...string) []v1.Hash {
	t.Helper()
	base, _ := random.Image(size, 2)
	var ds []v1.Hash
	for _, r := range repos {
		w.createSourceRepo(t, &ecr.CreateRepositoryInput{RepositoryName: aws.String(r)})
		own, _ := random.Layer(1024, types.DockerLayer)
		img, _ := mutate.AppendLayers(base, own)
		ds = append(ds, w.push(t, r, "v1", img))
	}
	return ds
}

func (w *world) setBlobMounting(t *testing.T, value string) {
	t.Helper()
	if _, err := ecr.NewFromConfig(w.dstCfg).PutAccountSetting(w.ctx, &ecr.PutAccountSettingInput{Name: aws.String("BLOB_MOUNTING"), Value: aws.String(value)}); err != nil {
		t.Fatal(err)
	}
}

// uploaded sums what the destination registry received in blob upload PUTs, and counts
// its mounts, since mark.
func (w *world) uploaded(mark int) (bytes int64, mounts int) {
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
	}
	return bytes, mounts
}

// TestSharedLayersMountedInTheDestinationRegistry: with BLOB_MOUNTING enabled in the
// destination registry, a layer a replicated image shares with one already copied into
// another repository there is mounted from it, not uploaded again — by a later run of the
// same replicator too (a warm function's next invocation).
func TestSharedLayersMountedInTheDestinationRegistry(t *testing.T) {
	w := newWorld(t)
	w.setBlobMounting(t, "ENABLED")
	const size = 256 << 10
	repos := []string{"team/one", "team/two", "team/three"}
	digests := w.sharedBase(t, size, repos...)
	replicator := destinations.New(w.resolver, copyengine.New())
	copyOne := func(run *destinations.Batch, i int) destinations.Result {
		t.Helper()
		r := one(t, run.Replicate(w.ctx, destinations.Image{Repo: srcRepo(repos[i]), Digest: digests[i].String(), Tag: "v1"}, []rules.Target{targetFor("mirror/", repos[i])}))
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r
	}
	first := copyOne(replicator.Start(), 0)
	if first.BytesCopied < 2*size {
		t.Fatalf("the first copy uploaded %d bytes, want the whole base (%d)", first.BytesCopied, 2*size)
	}
	mark := w.sb.AccessLogMark()
	run := replicator.Start()
	for i := 1; i < len(repos); i++ {
		if r := copyOne(run, i); r.BytesCopied >= size {
			t.Errorf("%s: %d bytes uploaded, want the base mounted and only its own layer and config uploaded", repos[i], r.BytesCopied)
		}
	}
	bytes, mounts := w.uploaded(mark)
	if bytes >= size || mounts != 4 {
		t.Errorf("two more images sharing a %d-byte base: %d bytes uploaded and %d mounts, want under %d bytes and 4 mounts", 2*size, bytes, mounts, size)
	}
	for i, r := range repos {
		if got := w.destDigest(t, "mirror/"+r, "v1"); got != digests[i].String() {
			t.Errorf("mirror/%s:v1 = %q, want %s", r, got, digests[i])
		}
	}
}

// TestNoMountAcrossEncryption: a destination repository encrypted otherwise than the one
// holding the layer (here KMS against AES256) gets the layer uploaded: ECR mounts only
// between repositories of the same encryption type and key (blob-mounting.html), and the
// engine does not ask.
func TestNoMountAcrossEncryption(t *testing.T) {
	w := newWorld(t)
	w.setBlobMounting(t, "ENABLED")
	const size = 128 << 10
	repos := []string{"plain/app", "sealed/app"}
	digests := w.sharedBase(t, size, repos...)
	run := destinations.New(w.resolver, copyengine.New()).Start()
	sealed := targetFor("mirror/", repos[1])
	sealed.Destination.KMSKey = fmt.Sprintf("arn:aws:kms:%s:%s:key/1234abcd-12ab-34cd-56ef-1234567890ab", sandbox.DefaultRegion, sandbox.DestinationAccount)
	for i, tg := range []rules.Target{targetFor("mirror/", repos[0]), sealed} {
		r := one(t, run.Replicate(w.ctx, destinations.Image{Repo: srcRepo(repos[i]), Digest: digests[i].String(), Tag: "v1"}, []rules.Target{tg}))
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if r.BytesCopied < 2*size {
			t.Errorf("%s: %d bytes uploaded, want the whole base (%d)", repos[i], r.BytesCopied, 2*size)
		}
	}
	for _, e := range w.sb.AccessLogSince(0) {
		if e.MountFrom != "" {
			t.Errorf("a mount was asked across encryption types: %s from %s", e.Repository, e.MountFrom)
		}
	}
}

// TestBlobMountingSettingKeepsOnlyCertainAnswers: a permanent failure to read the
// BLOB_MOUNTING setting (AccessDenied: a destination role without the grant) is kept and
// not asked again at every copy; while a call is in flight, a copy that knows nothing yet
// does not wait for it beyond a moment (it uploads) — the caller whose call it is
// neither —, and the answer is kept for the next copy.
func TestBlobMountingSettingKeepsOnlyCertainAnswers(t *testing.T) {
	w := newWorld(t)
	access := destinations.DestinationAccess(targetFor("mirror/", "team/one").Destination)
	asked := func(mark int) (n int) {
		for _, e := range w.sb.AccessLogSince(mark) {
			if e.Operation == "GetAccountSetting" {
				n++
			}
		}
		return n
	}
	if err := w.sb.InjectAPIFault(sandbox.APIFault{Service: "ecr", Operation: "GetAccountSetting", Code: "AccessDeniedException"}); err != nil {
		t.Fatal(err)
	}
	reg, err := w.resolver.Client(w.ctx, access)
	if err != nil {
		t.Fatal(err)
	}
	mark := w.sb.AccessLogMark()
	for range 3 {
		if on, err := reg.BlobMounting(w.ctx); on || code(err) != "AccessDeniedException" {
			t.Fatalf("setting denied: %v %v, want off and the denial", on, err)
		}
	}
	if n := asked(mark); n != 1 {
		t.Errorf("a denied setting was asked %d times by 3 copies, want once (kept)", n)
	}

	w.setBlobMounting(t, "ENABLED")
	reg, err = ecraccess.NewResolver(w.srcCfg).Client(w.ctx, access) // a new process
	if err != nil {
		t.Fatal(err)
	}
	reached, release := make(chan struct{}), make(chan struct{})
	remove, err := w.sb.HoldRequests(sandbox.Hold{Account: sandbox.DestinationAccount, Operation: "GetAccountSetting",
		Reached: func(sandbox.Entry) { close(reached); <-release }})
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	mark = w.sb.AccessLogMark()
	first := make(chan bool)
	go func() { on, _ := reg.BlobMounting(w.ctx); first <- on }()
	<-reached
	joined := make(chan error)
	go func() {
		on, err := reg.BlobMounting(w.ctx)
		if on {
			err = nil
		}
		joined <- err
	}()
	select {
	case err := <-joined:
		if err == nil {
			t.Error("a copy joining a call in flight was told ENABLED before any answer")
		}
	case <-time.After(10 * time.Second): // the hold lasts until released: a copy that waits for the call never returns
		t.Error("a copy joining a call in flight waits for its answer (the call is held)")
	}
	// The copy whose call it is goes on without mounting too, no later than the others
	// (review 26b): a held call must not hold the copy.
	select {
	case on := <-first:
		if on {
			t.Error("the copy whose call it was was told ENABLED before any answer")
		}
	case <-time.After(10 * time.Second):
		t.Error("the copy whose call it was waits for its answer (the call is held)")
	}
	close(release)
	if on, err := reg.BlobMounting(w.ctx); !on || err != nil || asked(mark) != 1 {
		t.Errorf("after the answer: %v %v with %d calls, want ENABLED kept from the one call", on, err, asked(mark))
	}
}

func code(err error) string {
	c, _ := destinations.Classify(err)
	return c
}

// TestBlobMountingOfAnotherAccountIsUnknown: another account's registry reached without a
// role cannot tell its BLOB_MOUNTING setting (GetAccountSetting answers for the caller's
// own account): reported unreadable, not off, and nothing asked.
func TestBlobMountingOfAnotherAccountIsUnknown(t *testing.T) {
	w := newWorld(t)
	w.setBlobMounting(t, "ENABLED")
	reg, err := w.resolver.Client(w.ctx, ecraccess.Access{AccountID: sandbox.DestinationAccount, Region: sandbox.DefaultRegion})
	if err != nil {
		t.Fatal(err)
	}
	mark := w.sb.AccessLogMark()
	if on, err := reg.BlobMounting(w.ctx); on || code(err) != ecraccess.CodeSettingUnreadable {
		t.Errorf("another account's registry without a role: %v %v, want off and %s", on, err, ecraccess.CodeSettingUnreadable)
	}
	for _, e := range w.sb.AccessLogSince(mark) {
		if e.Operation == "GetAccountSetting" {
			t.Errorf("GetAccountSetting asked of %s: it answers for the caller's own account", e.Account)
		}
	}
}
