package copyengine

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// fakeTags is a repository's long tags as the ECR API would keep them: the source's
// manifests, the destination's digests; the destination's first throttle PutImage calls
// answer ThrottlingException.
type fakeTags struct {
	mu        sync.Mutex
	manifests map[string][]byte
	mediaType string
	digests   map[string]string
	throttle  int
	puts      int
}

type apiError struct{ code string }

func (e apiError) Error() string     { return "api error " + e.code }
func (e apiError) ErrorCode() string { return e.code }
func (e apiError) Retryable() bool   { return e.code == "ThrottlingException" }

func (f *fakeTags) GetTag(_ context.Context, tag string) ([]byte, string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.manifests[tag]
	return m, f.mediaType, ok, nil
}

func (f *fakeTags) TagDigest(_ context.Context, tag string) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.digests[tag]
	return d, ok, nil
}

func (f *fakeTags) PutTag(_ context.Context, tag string, _ []byte, _, digest string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.puts++; f.puts <= f.throttle {
		return apiError{"ThrottlingException"}
	}
	f.digests[tag] = digest
	return nil
}

// TestLongTagWritesShareThePutImagePace: a tag the registry API cannot carry is written
// with the ECR API's PutImage — the same quota as the registry's manifest PUTs — so its
// write takes a turn from the destination host's pacer, and a ThrottlingException halves
// that pace and counts as a throttled write (Result.ManifestsThrottled, the
// PutImageThrottled metric), as a 429 does.
func TestLongTagWritesShareThePutImagePace(t *testing.T) {
	e := newEnv(t)
	img := must[v1.Image](t)(random.Image(512, 1))
	d := pushImage(t, e.srcRepo.Digest(digestOf(t, img).String()), img)
	tag := "long-" + strings.Repeat("x", 195)
	raw := must[[]byte](t)(img.RawManifest())
	src := &fakeTags{manifests: map[string][]byte{tag: raw}, mediaType: string(must[types.MediaType](t)(img.MediaType()))}
	dst := &fakeTags{digests: map[string]string{}, throttle: 1}
	engine := New(WithRetry(retry.Policy{Attempts: 2, Initial: time.Millisecond, Max: 10 * time.Millisecond}), WithManifestRate(1000, 1000))
	req := Request{Source: Endpoint{Repository: e.srcRepo, Tags: src}, Destination: Endpoint{Repository: e.dstRepo, Tags: dst}, Digest: d.String(), Tag: tag}

	res := engine.Start().Copy(context.Background(), req)
	if code, retryable := retry.Classify(res.Err); res.Outcome != Failed || code != "ThrottlingException" || !retryable || res.ManifestsThrottled != 1 {
		t.Fatalf("a throttled long-tag write: outcome %s, code %s, retryable %v, ManifestsThrottled %d (%v); want a retryable failure counted once",
			res.Outcome, code, retryable, res.ManifestsThrottled, res.Err)
	}
	if r := float64(engine.hostPacer(e.dstRepo.RegistryStr()).rate()); r != 500 {
		t.Errorf("the destination's manifest pace after the throttled write: %.0f/s, want halved to 500/s", r)
	}
	if res = engine.Start().Copy(context.Background(), req); res.Outcome.Failure() {
		t.Fatalf("the next delivery: outcome %s (%v)", res.Outcome, res.Err)
	}
	if got := dst.digests[tag]; got != d.String() {
		t.Errorf("destination tag at %q, want %s", got, d)
	}
}
