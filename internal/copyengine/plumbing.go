package copyengine

import (
	"context"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// rawManifest is a manifest exactly as the source served it. Handing ggcr a
// type that already knows its digest, size and media type makes remote.Put
// PUT these bytes verbatim (no re-serialisation, so the digest is preserved)
// without resolving it into an Image/Index first.
type rawManifest struct {
	raw  []byte
	desc v1.Descriptor
}

func (m *rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m *rawManifest) Digest() (v1.Hash, error)            { return m.desc.Digest, nil }
func (m *rawManifest) Size() (int64, error)                { return m.desc.Size, nil }
func (m *rawManifest) MediaType() (types.MediaType, error) { return m.desc.MediaType, nil }

// onceMap runs a function at most once per key until it succeeds, and lets
// concurrent callers for the same key wait for that single execution. It is
// what makes "HEAD at most once, upload at most once per destination
// repository and digest" hold across concurrent Copy calls in one run.
// A failed execution is forgotten so a later caller can try again.
//
// With inFlightOnly, a successful execution is forgotten too once it ends: the map then
// only joins callers that overlap. The Engine keeps one such map for blob uploads, so
// overlapping runs (concurrent invocations of one execution environment, parallel CLI
// copies) upload a blob once, without the Engine remembering what it learnt beyond the
// runs that learnt it — a blob there an hour ago may have been deleted since.
type onceMap struct {
	inFlightOnly bool

	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	err  error
}

// do returns ran=true when this caller executed fn. When another caller's
// execution failed (possibly because that caller's context was cancelled),
// waiters try themselves rather than inherit a foreign error.
func (o *onceMap) do(ctx context.Context, key string, fn func() error) (ran bool, err error) {
	for attempt := 0; ; attempt++ {
		o.mu.Lock()
		if o.m == nil {
			o.m = map[string]*flight{}
		}
		f, ok := o.m[key]
		if !ok {
			f = &flight{done: make(chan struct{})}
			o.m[key] = f
			o.mu.Unlock()
			f.err = fn()
			if f.err != nil || o.inFlightOnly {
				o.mu.Lock()
				delete(o.m, key)
				o.mu.Unlock()
			}
			close(f.done)
			return true, f.err
		}
		o.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		if f.err == nil {
			return false, nil
		}
		if attempt >= 2 {
			return false, f.err
		}
	}
}
