package sandbox

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// quotas enforces ECR's per-account, per-region rate quota on manifest writes: PutImage,
// whether called through the API or as a registry manifest PUT (the registry's push maps
// to the same action). "Amazon ECR service quotas" gives 10 per second by default,
// adjustable (https://docs.aws.amazon.com/AmazonECR/latest/userguide/service-quotas.html);
// the page publishes a rate only, so the bucket's burst equal to one second of rate is a
// guess.
type quotas struct {
	mu      sync.Mutex
	rate    float64                  // per second; 0: no quota
	buckets map[string]*rate.Limiter // account|region
}

// SetPutImageRate changes the PutImage quota (Config.PutImageRate) from now on: tests
// seed a registry without it, then measure under it.
func (s *Sandbox) SetPutImageRate(perSecond float64) {
	s.quotas.mu.Lock()
	defer s.quotas.mu.Unlock()
	s.quotas.rate = perSecond
	s.quotas.buckets = map[string]*rate.Limiter{}
}

// allowPutImage takes one write from the account and region's bucket.
func (q *quotas) allowPutImage(account, region string) bool {
	q.mu.Lock()
	if q.rate <= 0 {
		q.mu.Unlock()
		return true
	}
	b, ok := q.buckets[account+"|"+region]
	if !ok {
		b = rate.NewLimiter(rate.Limit(q.rate), max(1, int(q.rate)))
		q.buckets[account+"|"+region] = b
	}
	q.mu.Unlock()
	return b.Allow()
}

// SetLatency changes Config.Latency from now on: benchmarks seed without it.
func (s *Sandbox) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// delay holds a request for the configured latency, as a request to a region far away
// takes that long (scale and latency benchmarks); it gives up when the client does.
func (s *Sandbox) delay(ctx context.Context) {
	d := time.Duration(s.latency.Load())
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
