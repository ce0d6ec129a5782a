package copyengine

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// slowUploads makes the destination take blob upload bodies at bytesPerSecond, as a
// link of that bandwidth would.
func slowUploads(tr *testRegistry, bytesPerSecond int) {
	tr.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") {
			r.Body = &throttledBody{ReadCloser: r.Body, rate: bytesPerSecond, start: time.Now(), ctx: r.Context()}
		}
		return false
	})
}

type throttledBody struct {
	io.ReadCloser
	rate  int
	start time.Time
	read  int
	ctx   context.Context
}

func (b *throttledBody) Read(p []byte) (int, error) {
	p = p[:min(len(p), 64<<10)]
	n, err := b.ReadCloser.Read(p)
	b.read += n
	due := b.start.Add(time.Duration(float64(b.read) / float64(b.rate) * float64(time.Second)))
	select {
	case <-time.After(time.Until(due)):
	case <-b.ctx.Done(): // the client gave up
		return n, b.ctx.Err()
	}
	return n, err
}

func uploads(tr *testRegistry) int {
	return tr.count(func(h hit) bool { return h.method == http.MethodPut && strings.Contains(h.path, "/blobs/uploads/") })
}

// TestLayerTooLargeForTheRunIsFinal: an upload the deadline cuts, at a rate at which the
// layer could never fit in a whole run, is a permanent failure that says so and names
// the command that copies it — not a retry that restarts at byte 0 on every delivery
// until the dead-letter queue. The next run of the engine knows the rate and refuses
// the same layer before sending a byte.
func TestLayerTooLargeForTheRunIsFinal(t *testing.T) {
	e := newEnv(t)
	img := must[v1.Image](t)(random.Image(24<<20, 1)) // needs 6 s at 4 MiB/s
	d := pushImage(t, e.srcRepo.Tag("big"), img)
	slowUploads(e.dst, 4<<20)
	engine := New(WithRetry(retry.Policy{Attempts: 4, Initial: time.Millisecond, Max: 10 * time.Millisecond}), WithManifestRate(1000, 1000))
	// A 2 MiB transfer measures here (32 MiB in production): the cut upload counts
	// however slowly a busy machine starts it.
	engine.throughput.minBytes = 2 << 20

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res := engine.Start().Copy(ctx, e.req(d, "big"))
	code, retryable := retry.Classify(res.Err)
	if res.Outcome != TooLarge || code != CodeTooLarge || retryable {
		t.Fatalf("cut upload: outcome %s, code %q, retryable %v (%v); want a permanent %s", res.Outcome, code, retryable, res.Err, CodeTooLarge)
	}
	if msg := res.Err.Error(); !strings.Contains(msg, "ecr-replicator copy "+e.srcRepo.String()+":big "+e.dstRepo.String()) || !strings.Contains(msg, "24.0 MiB") {
		t.Errorf("the error does not say what to do: %s", msg)
	}
	if n := uploads(e.dst); n != 2 {
		t.Errorf("%d uploads, want 2 — the config, and the layer once: a too-large layer is not retried in process (%v)", n, e.dst.summary())
	}

	// Redelivered: refused before the upload starts.
	e.dst.reset()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel2()
	res = engine.Start().Copy(ctx2, e.req(d, "big"))
	if res.Outcome != TooLarge {
		t.Fatalf("second delivery: outcome %s (%v), want %s", res.Outcome, res.Err, TooLarge)
	}
	if n := uploads(e.dst); n != 0 {
		t.Errorf("second delivery sent %d uploads, want none", n)
	}
}

// TestLayerThatFitsAWholeRunWaitsForOne: a layer that fits a whole run but not what is
// left of this one is not started: retryable, for the next delivery, with no attempt
// made now (time only runs out). Without a deadline (the CLI) nothing is weighed.
func TestLayerThatFitsAWholeRunWaitsForOne(t *testing.T) {
	e := newEnv(t)
	img := must[v1.Image](t)(random.Image(4<<20, 1))
	layer := digestOf(t, must[[]v1.Layer](t)(img.Layers())[0])
	d := pushImage(t, e.srcRepo.Tag("v1"), img)
	engine := New(WithRetry(retry.Policy{Attempts: 4, Initial: time.Millisecond, Max: 10 * time.Millisecond}), WithManifestRate(1000, 1000),
		WithTransferRate(1<<20)) // 4 s for the layer
	run := engine.Start()
	run.started = time.Now().Add(-time.Minute) // a run with a minute behind it
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res := run.Copy(ctx, e.req(d, "v1"))
	code, retryable := retry.Classify(res.Err)
	if res.Outcome != Failed || code != CodeNoTimeLeft || !retryable {
		t.Fatalf("outcome %s, code %q, retryable %v (%v); want a retryable %s", res.Outcome, code, retryable, res.Err, CodeNoTimeLeft)
	}
	// The config (a few hundred bytes) fits, and may go in before the layer is weighed.
	if n := e.dst.count(func(h hit) bool { return h.method == http.MethodPut && strings.Contains(h.query, layer.Hex) }); n != 0 {
		t.Errorf("the layer was uploaded %d time(s), want none", n)
	}
	res = engine.Start().Copy(context.Background(), e.req(d, "v1"))
	wantOutcome(t, res, Copied)
}
