package copyengine

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// A blob is uploaded in one PUT (see pushBlob) and an upload cut short starts again
// from byte 0: a layer that cannot be sent within one invocation of a function with a
// deadline would be retried on every delivery until the dead-letter queue (ECR allows
// layers of up to 52,000 MiB, "Amazon ECR service quotas",
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/service-quotas.html). So,
// when the context has a deadline, the engine weighs each upload before starting it:
// its declared size against the time the run has and the rate the link has shown. A
// layer that cannot fit in what is left of this run is left for the next delivery
// (NO_TIME_LEFT, retryable). The verdict that drops a push for good (TOO_LARGE, before
// the upload or when the deadline cuts it) rests on what is certain only: the layer's
// declared size, the time a whole run has, and the fastest the link has been seen to
// move upload bytes — all uploads of the engine together, never one stream of several
// sharing the link, whose rate is a share (docs/RELIABILITY.md, "Size against time").

// Transfers shorter than these say more about round trips than about throughput.
const (
	minMeasuredBytes = 32 << 20
	minMeasuredTime  = time.Second
)

// link measures the rate at which the engine's uploads, all together, move bytes: while
// any upload is sending, the bytes they send are counted over windows of at least
// minTime and minBytes, and the fastest window is the link's best (0: none measured
// yet). Uploads sharing the link each see a share of it; only their sum says what the
// link can do, which is what one upload alone gets at best.
//
// The first window of a busy spell is not measured: the bytes are counted as the upload
// reads them, and at first they fill the connections' socket buffers (megabytes each) at
// memory speed, faster than the link carries them; the windows after it see the link.
type link struct {
	// minBytes and minTime: what a window must reach to count (minMeasuredBytes and
	// minMeasuredTime; tests lower them to keep their images small).
	minBytes int64
	minTime  time.Duration

	mu     sync.Mutex
	active int       // uploads sending
	start  time.Time // the current window's
	last   time.Time // the last bytes sent in it
	bytes  int64     // sent in the current window
	warm   bool      // the busy spell's first window is over
	best   float64   // bytes per second
}

// begin is an upload starting to send.
func (l *link) begin() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active == 0 {
		l.start, l.last, l.bytes, l.warm = time.Now(), time.Time{}, 0, false
	}
	l.active++
}

// sent counts n bytes an upload sent; a window long and large enough is measured and a
// new one starts.
func (l *link) sent(n int64) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bytes += n
	l.last = now
	if d := now.Sub(l.start); l.bytes >= l.minBytes && d >= l.minTime {
		if l.warm {
			l.best = max(l.best, float64(l.bytes)/d.Seconds())
		}
		l.start, l.bytes, l.warm = now, 0, true
	}
}

// end is an upload done sending (finished, failed or cut). When none is left, what the
// last window moved counts if it is long and large enough, up to its last byte (the wait
// for the registry's answer is not the link's).
func (l *link) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active--; l.active > 0 {
		return
	}
	if d := l.last.Sub(l.start); l.warm && l.bytes >= l.minBytes && d >= l.minTime {
		l.best = max(l.best, float64(l.bytes)/d.Seconds())
	}
	l.bytes = 0
}

func (l *link) rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.best
}

// WithTransferRate seeds the link rate the engine assumes before it has measured one
// (bytes per second; default: none, so nothing is refused before a measurement).
func WithTransferRate(bytesPerSecond float64) Option {
	return func(c *Engine) { c.link.best = bytesPerSecond }
}

// fitUpload decides, before an upload of size bytes starts, whether it can finish before
// ctx's deadline at the best rate the link has shown.
func (s *session) fitUpload(ctx context.Context, size int64) error {
	dl, ok := ctx.Deadline()
	rate := s.c.link.rate()
	if !ok || rate <= 0 {
		return nil
	}
	need := time.Duration(float64(size) / rate * float64(time.Second))
	if whole := dl.Sub(s.c.started); need > whole {
		return s.tooLarge(size, rate, need, whole)
	}
	if left := time.Until(dl); need > left {
		return &Error{Op: "upload blob", Code: CodeNoTimeLeft, AtDest: true, Transient: true,
			Err: fmt.Errorf("%s at the link's %s needs %s, and %s is left: left for the next delivery",
				byteSize(size), byteRate(rate), roundTime(need), roundTime(left))}
	}
	return nil
}

// cutUpload classifies an upload the deadline cut: too large for any run at the best
// rate the link has shown (this upload's bytes included, measured with those of the
// uploads that shared the link with it), or worth another try.
func (s *session) cutUpload(ctx context.Context, size int64, cause error) error {
	dl, ok := ctx.Deadline()
	rate := s.c.link.rate()
	if !ok || ctx.Err() == nil || rate <= 0 {
		return cause
	}
	need := time.Duration(float64(size) / rate * float64(time.Second))
	if whole := dl.Sub(s.c.started); need > whole {
		return s.tooLarge(size, rate, need, whole)
	}
	return cause
}

func (s *session) tooLarge(size int64, rate float64, need, whole time.Duration) error {
	return &Error{Op: "upload blob", Code: CodeTooLarge, AtDest: true,
		Err: fmt.Errorf("a layer of %s at the link's best %s needs %s, more than the %s this function has; copy the image where no timeout applies: ecr-replicator copy %s %s",
			byteSize(size), byteRate(rate), roundTime(need), roundTime(whole), s.image, s.dst.repo.String())}
}

// roundTime rounds a duration for a message: to the second from a minute, else to a
// tenth of a second.
func roundTime(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

// linkReader counts what an upload sends (reads from the source into its PUT) on the
// link.
type linkReader struct {
	io.ReadCloser
	link *link
}

func (r linkReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.link.sent(int64(n))
	}
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
