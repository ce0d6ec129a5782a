package copyengine

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"golang.org/x/time/rate"

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
	engine.link.minBytes = 2 << 20

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
	// The layer once: a too-large layer is not retried in process. (The config, a few
	// hundred bytes, goes in or not depending on which upload the scheduler starts first:
	// the layer's verdict cancels what has not started.)
	layer := digestOf(t, must[[]v1.Layer](t)(img.Layers())[0])
	if n := e.dst.count(func(h hit) bool { return h.method == http.MethodPut && strings.Contains(h.query, layer.Hex) }); n != 1 {
		t.Errorf("the layer was uploaded %d time(s), want once (%v)", n, e.dst.summary())
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

// sharedLink makes the destination take every upload body through one link of
// bytesPerSecond, however many uploads share it, and reports the most that were in
// flight at once.
func sharedLink(tr *testRegistry, bytesPerSecond int) (peak func() int32) {
	lim := rate.NewLimiter(rate.Limit(bytesPerSecond), 64<<10)
	var inFlight, most atomic.Int32
	tr.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") {
			n := inFlight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			r.Body = &linkBody{ReadCloser: r.Body, lim: lim, ctx: r.Context(), done: func() { inFlight.Add(-1) }}
		}
		return false
	})
	return most.Load
}

type linkBody struct {
	io.ReadCloser
	lim  *rate.Limiter
	ctx  context.Context
	done func()
	once sync.Once
}

func (b *linkBody) Read(p []byte) (int, error) {
	p = p[:min(len(p), 64<<10)]
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		if werr := b.lim.WaitN(b.ctx, n); werr != nil {
			return n, werr
		}
	}
	if err != nil {
		b.once.Do(b.done)
	}
	return n, err
}

// TestContendedUploadsDoNotShrinkTheBudget: uploads that share the link each see a share
// of it; the budget must weigh a layer against the link (what all uploads moved
// together), not against one contended stream. Eight layers uploaded at once on a 16 MiB/s
// link each ran at a share of it (the fastest at about 8 MiB/s), that rate was kept as the
// engine's best, and the warm engine then refused up front — permanently,
// TOO_LARGE_FOR_FUNCTION, the push acknowledged and lost — a 24 MiB layer that the same
// link uploads in 1.5 s of a 2.5-second run.
func TestContendedUploadsDoNotShrinkTheBudget(t *testing.T) {
	e := &env{src: newRegistry(t), dst: newSmallBufferRegistry(t)}
	e.srcRepo = e.src.repo(t, "team/app")
	e.dstRepo = e.dst.repo(t, "mirror/team/app")
	peak := sharedLink(e.dst, 16<<20)
	req := func(d v1.Hash, tag string) Request {
		r := e.req(d, tag)
		r.Destination.Transport = smallBufferTransport()
		return r
	}
	engine := New(WithRetry(retry.Policy{Attempts: 4, Initial: time.Millisecond, Max: 10 * time.Millisecond}), WithManifestRate(1000, 1000))
	// Transfers of 1 MiB over 200 ms measure here (32 MiB and 1 s in production), so
	// that the images stay small.
	engine.link.minBytes, engine.link.minTime = 1<<20, 200*time.Millisecond

	eight := must[v1.Image](t)(random.Image(2<<20, 8))
	d8 := pushImage(t, e.srcRepo.Tag("eight"), eight)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wantOutcome(t, engine.Start().Copy(ctx, req(d8, "eight")), Copied)
	if p := peak(); p < 6 {
		t.Fatalf("at most %d uploads shared the link; the scenario needs them concurrent", p)
	}

	if best := engine.link.rate(e.dstRepo.RegistryStr()) / (1 << 20); best < 12 || best > 24 {
		t.Fatalf("the link's best after the contended uploads: %.1f MiB/s, want about the link's 16", best)
	} else {
		t.Logf("the link's best after 8 uploads shared it: %.1f MiB/s (link 16 MiB/s)", best)
	}
	big := must[v1.Image](t)(random.Image(24<<20, 1))
	d1 := pushImage(t, e.srcRepo.Tag("big"), big)
	run := engine.Start()
	ctx2, cancel2 := context.WithDeadline(context.Background(), run.started.Add(2500*time.Millisecond))
	defer cancel2()
	res := run.Copy(ctx2, req(d1, "big"))
	if res.Outcome != Copied {
		t.Fatalf("outcome %s (%v): a layer the link uploads in 1.5 s of a 2.5-second run was refused", res.Outcome, res.Err)
	}
	wantTag(t, e.dstRepo.Tag("big"), d1)
}

// newSmallBufferRegistry is a test registry whose connections buffer little (64 KiB of
// socket receive buffer), and smallBufferTransport a client whose connections buffer
// little on the sending side: on loopback, megabytes of socket buffers would otherwise
// take an upload's first bytes at memory speed, whatever the link.
func newSmallBufferRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{reg: registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0)))}
	tr.srv = httptest.NewUnstartedServer(http.HandlerFunc(tr.serve))
	tr.srv.Listener = smallBufferListener{tr.srv.Listener}
	tr.srv.Start()
	t.Cleanup(tr.srv.Close)
	return tr
}

type smallBufferListener struct{ net.Listener }

func (l smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetReadBuffer(64 << 10)
	}
	return c, err
}

func smallBufferTransport() http.RoundTripper {
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 64<<10) })
		return errors.Join(err, serr)
	}}
	return &http.Transport{DialContext: d.DialContext}
}
