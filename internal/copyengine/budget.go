package copyengine

import (
	"context"
	"fmt"
	"time"
)

// A blob is uploaded in one PUT (see pushBlob) and an upload cut short starts again
// from byte 0: a layer that cannot be sent within one invocation of a function with a
// deadline would be retried on every delivery until the dead-letter queue (ECR allows
// layers of up to 52,000 MiB, "Amazon ECR service quotas",
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/service-quotas.html). So,
// when the context has a deadline, the engine weighs each upload before starting it:
// its declared size against the time the run has and the rate the link to the
// destination has shown. A layer that cannot fit in what is left of this run is left for
// the next delivery (NO_TIME_LEFT, retryable). The verdict that drops a push for good
// (TOO_LARGE, before the upload or when the deadline cuts it) rests on what is certain
// only: the layer's declared size, the time a whole run has, and the fastest the link to
// that destination host has been seen to move upload bytes — all its uploads together,
// never one stream of several sharing the link, whose rate is a share, and never
// transfers too small or too short to fill the link (docs/RELIABILITY.md, "Size against
// time").

// fitUpload decides, before an upload of size bytes starts, whether it can finish before
// ctx's deadline at the best rate the link to the destination host has shown.
func (s *session) fitUpload(ctx context.Context, size int64) error {
	dl, ok := ctx.Deadline()
	rate := s.c.link.rate(s.dst.repo.RegistryStr())
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
	rate := s.c.link.rate(s.dst.repo.RegistryStr())
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
