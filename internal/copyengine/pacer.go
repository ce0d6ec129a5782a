package copyengine

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/time/rate"
)

// pacer paces the manifest writes (PutImage) to one registry host and adapts to what
// the registry says, so that many engines — concurrent Lambda invocations, each with
// its own — share a destination's quota instead of multiplying it: ECR's PutImage
// quota is per account and region (10/s by default, adjustable; "Amazon ECR service
// quotas", https://docs.aws.amazon.com/AmazonECR/latest/userguide/service-quotas.html),
// whoever calls.
//
// Additive increase, multiplicative decrease, as TCP shares a link: a throttled write
// (429) cuts this engine's rate by 30% and its burst to 1, each accepted write adds
// 1/100 of the ceiling back, up to the ceiling (WithManifestRate). One engine alone runs
// at the ceiling; N engines settle near a fair share each, their sum near the quota,
// with a throttled write every few seconds rather than one per surplus write.
type pacer struct {
	mu    sync.Mutex
	lim   *rate.Limiter
	max   rate.Limit
	burst int
}

// minManifestRate is the floor a throttled engine goes down to.
const minManifestRate = 0.2

func newPacer(max rate.Limit, burst int) *pacer {
	return &pacer{lim: rate.NewLimiter(max, burst), max: max, burst: burst}
}

func (p *pacer) wait(ctx context.Context) error { return p.lim.Wait(ctx) }

// throttled: the registry refused a write for its rate.
func (p *pacer) throttled() {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := max(p.lim.Limit()*0.7, minManifestRate)
	p.lim.SetLimit(r)
	p.lim.SetBurst(1)
}

// accepted: the registry took a write.
func (p *pacer) accepted() {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.lim.Limit()
	if r >= p.max {
		return
	}
	r = min(r+p.max/100, p.max)
	p.lim.SetLimit(r)
	if r == p.max {
		p.lim.SetBurst(p.burst)
	}
}

// rate is the pacer's current rate, for tests and logs.
func (p *pacer) rate() rate.Limit {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lim.Limit()
}

// pacerFor returns the pacer of a request that writes a manifest, nil for any other.
func (c *Engine) pacerFor(req *http.Request) *pacer {
	if req.Method != http.MethodPut || !strings.Contains(req.URL.Path, "/manifests/") {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pacers[req.URL.Host]
	if !ok {
		p = newPacer(c.rate, c.burst)
		c.pacers[req.URL.Host] = p
	}
	return p
}
