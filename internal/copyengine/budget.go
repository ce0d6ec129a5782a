package copyengine

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// A blob is uploaded in one PUT (see pushBlob) and an upload cut short starts again
// from byte 0: a layer that cannot be sent within one invocation of a function with a
// deadline would be retried on every delivery until the dead-letter queue (ECR allows
// layers of up to 52,000 MiB, "Amazon ECR service quotas",
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/service-quotas.html). So,
// when the context has a deadline, the engine weighs each upload before starting it:
// its declared size against the time the run has and the throughput the engine has
// measured. A layer that cannot fit in a whole run is refused for good, with
// CodeTooLarge and the command that copies it without a deadline; one that cannot fit
// in what is left of this run is left for the next delivery (retryable). An upload the
// deadline cuts is measured too: if at the rate it was going it could not fit in a
// whole run, the failure is CodeTooLarge instead of a retry — one lost invocation, not
// MaxReceiveCount of them.

// Transfers shorter than these say more about round trips than about throughput.
const (
	minMeasuredBytes = 32 << 20
	minMeasuredTime  = time.Second
)

// throughput is the best blob transfer rate the engine has seen, in bytes per second
// (0: none measured yet). The best, not the average: refusing a layer for good on a
// pessimistic estimate would drop an image that could have been copied.
type throughput struct {
	// minBytes and minTime: what a transfer must reach to count (minMeasuredBytes and
	// minMeasuredTime; tests lower them to keep their images small).
	minBytes int64
	minTime  time.Duration

	mu   sync.Mutex
	best float64
}

// counts says whether a transfer of bytes in d measures the throughput.
func (t *throughput) counts(bytes int64, d time.Duration) bool {
	return bytes >= t.minBytes && d >= t.minTime
}

func (t *throughput) observe(bytes int64, d time.Duration) {
	if !t.counts(bytes, d) {
		return
	}
	r := float64(bytes) / d.Seconds()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.best = max(t.best, r)
}

func (t *throughput) rate() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.best
}

// WithTransferRate seeds the throughput the engine assumes before it has measured one
// (bytes per second; default: none, so nothing is refused before a measurement).
func WithTransferRate(bytesPerSecond float64) Option {
	return func(c *Engine) { c.throughput.best = bytesPerSecond }
}

// fitUpload decides, before an upload of desc.Size bytes starts, whether it can finish
// before ctx's deadline.
func (s *session) fitUpload(ctx context.Context, size int64) error {
	dl, ok := ctx.Deadline()
	rate := s.c.throughput.rate()
	if !ok || rate <= 0 {
		return nil
	}
	need := time.Duration(float64(size) / rate * float64(time.Second))
	if whole := dl.Sub(s.c.started); need > whole {
		return s.tooLarge(size, rate, need, whole)
	}
	if left := time.Until(dl); need > left {
		return &Error{Op: "upload blob", Code: CodeNoTimeLeft, AtDest: true, Transient: true,
			Err: fmt.Errorf("%s at the measured %s needs %s, and %s is left: left for the next delivery",
				byteSize(size), byteRate(rate), need.Round(time.Second), left.Round(time.Second))}
	}
	return nil
}

// cutUpload classifies an upload the deadline cut after sent bytes in elapsed: too
// large for any run at that rate, or worth another try.
func (s *session) cutUpload(ctx context.Context, size, sent int64, elapsed time.Duration, cause error) error {
	dl, ok := ctx.Deadline()
	if !ok || ctx.Err() == nil || !s.c.throughput.counts(sent, elapsed) {
		return cause
	}
	rate := float64(sent) / elapsed.Seconds()
	s.c.throughput.observe(sent, elapsed)
	need := time.Duration(float64(size) / rate * float64(time.Second))
	if whole := dl.Sub(s.c.started); need > whole {
		return s.tooLarge(size, rate, need, whole)
	}
	return cause
}

func (s *session) tooLarge(size int64, rate float64, need, whole time.Duration) error {
	return &Error{Op: "upload blob", Code: CodeTooLarge, AtDest: true,
		Err: fmt.Errorf("a layer of %s at %s needs %s, more than the %s this function has; copy the image where no timeout applies: ecr-replicator copy %s %s",
			byteSize(size), byteRate(rate), need.Round(time.Second), whole.Round(time.Second), s.image, s.dst.repo.String())}
}

// countingReader counts what the upload read from the source.
type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

func byteRate(r float64) string { return fmt.Sprintf("%.0f MiB/s", r/(1<<20)) }
