package replication

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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

// sourceBlob is a v1.Layer whose body is the source registry's blob response,
// streamed straight into the destination upload by ggcr's writer.
//
// It is deliberately not a *remote.MountableLayer: ggcr would then ask the
// destination to mount from a repository in another registry/account, which
// ECR cannot do across accounts. It also reports the size from the manifest's
// descriptor so ggcr does not HEAD the source blob to learn it.
//
// ggcr's uploadOne HEADs the destination itself and only calls Compressed when
// it actually uploads, so counting Compressed calls tells us "uploaded" apart
// from "already present" without a second HEAD of our own.
type sourceBlob struct {
	desc   v1.Descriptor
	open   func() (io.ReadCloser, error)
	opened atomic.Int32
	read   atomic.Int64 // bytes read by the last attempt (for blobs of unknown size)
}

func (b *sourceBlob) Digest() (v1.Hash, error) { return b.desc.Digest, nil }
func (b *sourceBlob) DiffID() (v1.Hash, error) {
	return v1.Hash{}, errors.New("replication: DiffID of a copied blob is not needed")
}
func (b *sourceBlob) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("replication: copied blobs are never decompressed")
}
func (b *sourceBlob) Size() (int64, error) {
	if b.desc.Size <= 0 {
		// Schema 1 manifests carry no sizes: let the upload go out chunked.
		return 0, errors.New("replication: size unknown")
	}
	return b.desc.Size, nil
}
func (b *sourceBlob) MediaType() (types.MediaType, error) {
	if b.desc.MediaType == "" {
		return types.DockerLayer, nil
	}
	return b.desc.MediaType, nil
}
func (b *sourceBlob) Compressed() (io.ReadCloser, error) {
	b.opened.Add(1)
	b.read.Store(0)
	rc, err := b.open()
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, n: &b.read}, nil
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

// onceMap runs a function at most once per key until it succeeds, and lets
// concurrent callers for the same key wait for that single execution. It is
// what makes "HEAD at most once, upload at most once per destination
// repository and digest" hold across concurrent Copy calls in one run.
// A failed execution is forgotten so a later caller can try again.
type onceMap struct {
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
			if f.err != nil {
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

// retryAfterTransport honours Retry-After on 429 and 503 responses. ggcr's
// retry transport backs off on those statuses but ignores the header, and its
// *transport.Error does not keep response headers, so this has to happen
// below ggcr, at the RoundTripper. Without a Retry-After header the response
// passes through and ggcr's backoff (WithBackoff) applies.
type retryAfterTransport struct {
	inner    http.RoundTripper
	attempts int
	maxWait  time.Duration
}

func (t *retryAfterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 1; ; attempt++ {
		resp, err := t.inner.RoundTrip(req)
		if err != nil || attempt >= t.attempts {
			return resp, err
		}
		if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
			return resp, nil
		}
		wait, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		if !ok || (req.Body != nil && req.GetBody == nil) {
			return resp, nil
		}
		wait = min(wait, t.maxWait)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()

		timer := time.NewTimer(wait)
		select {
		case <-req.Context().Done():
			timer.Stop()
			return nil, req.Context().Err()
		case <-timer.C:
		}
		// A RoundTripper must not reuse a consumed body: rewind via GetBody
		// (ggcr sets it for manifests and for blob PATCHes, where it
		// re-opens the source stream).
		next := req.Clone(req.Context())
		if req.Body != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			next.Body = body
		}
		req = next
	}
}

func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
