package copyengine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// pacer paces the manifest writes (PutImage) to one registry host and adapts to what
// the registry says, so that many engines — concurrent Lambda invocations, each with
// its own — share a destination's quota instead of multiplying it: ECR's PutImage
// quota is per account and region (10/s by default, adjustable; "Amazon ECR service
// quotas", https://docs.aws.amazon.com/AmazonECR/latest/userguide/service-quotas.html),
// whoever calls.
//
// It starts at the engine's share of the ceiling and of its burst (WithManifestRate
// divided by WithWriters: how many engines write to the destination at once, the copy
// queue's maximum concurrency), its first turn at a random point of its first interval,
// so that a fleet starting together arrives at the quota's rate, not in a storm of
// throttled writes (each engine would otherwise be throttled log2(N) times before the
// fleet settled). Then additive increase, multiplicative decrease, as TCP shares a link:
// a throttled write (429) halves the rate (not below an eighth of the share) and cuts
// the burst to 1, once per crowding (writes sent before the cut are not news). Each
// accepted write adds back 1.5% of the rate when above the share — an increase in
// proportion to the rates keeps the fleet's throttled writes near 1.5% / 50% = 3% of its
// writes whatever their number, the throttles it takes to undo the increases scaling
// with the shares they cut — and, below the share, as much per second whatever the
// rate, so that an engine cut far below it by a crowd that has left is back in seconds,
// not minutes: the last copies of a run must not crawl. docs/SCALE.md ("Sharing the
// PutImage quota") gives what fleets of 1 to 100 engines, occasional writers beside them,
// and the climb back were measured to do.
type pacer struct {
	mu        sync.Mutex
	lim       *rate.Limiter
	max       rate.Limit
	share     rate.Limit // max / writers
	burst     int
	notBefore time.Time // the first turn
	cut       time.Time // when the rate was last halved
}

// floorShare is how far below its share a throttled engine may go: an eighth, room for
// eight times more engines writing than it was told, and at most three halvings to
// climb back from. (An absolute floor would either be too high for a fleet of hundreds
// or, at a write per minute, leave the last copies of a run waiting on a crowd long
// gone.)
const floorShare = 8

// increase is the additive increase per accepted write, as a fraction of the rate (of
// share²/rate below the share: increase × share² per second). 2% measured 5–6% of a
// fleet's writes throttled in the simulation; 1.5%, 3–4%.
const increase = 0.015

// newPacer starts a pacer at now; phase in [0, 1) places its first turn in its first
// interval.
func newPacer(ceiling rate.Limit, burst, writers int, now time.Time, phase float64) *pacer {
	writers = max(writers, 1)
	share := ceiling / rate.Limit(writers)
	p := &pacer{lim: rate.NewLimiter(share, max(1, burst/writers)), max: ceiling, share: share, burst: burst, notBefore: now}
	if writers > 1 {
		p.notBefore = now.Add(time.Duration(phase * float64(time.Second) / float64(share)))
	}
	return p
}

// turn reserves the next write's turn, at or after now: when it is, and how to give it
// back.
func (p *pacer) turn(now time.Time) (time.Time, func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at := now
	if p.notBefore.After(at) {
		at = p.notBefore
	}
	r := p.lim.ReserveN(at, 1)
	return at.Add(r.DelayFrom(at)), r.Cancel
}

// wait waits for the next write's turn. A turn that would come after ctx's deadline is
// the deadline's error now — retryable, as running out of time is — not a failure of
// its own, which would read as permanent.
func (p *pacer) wait(ctx context.Context) error {
	now := time.Now()
	at, cancel := p.turn(now)
	if dl, ok := ctx.Deadline(); ok && at.After(dl) {
		cancel()
		return fmt.Errorf("no turn to write a manifest at %.2f/s before the deadline: %w", float64(p.rate()), context.DeadlineExceeded)
	}
	t := time.NewTimer(at.Sub(now))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		cancel()
		return ctx.Err()
	}
}

// throttled: the registry refused, at now, a write sent at sent for its rate. A write
// sent before the last cut went at the old rate: its refusal is not news, and cutting
// again for it would halve the rate once per write in flight instead of once per
// crowding (TCP, likewise, halves once per window).
func (p *pacer) throttled(sent, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sent.Before(p.cut) {
		return
	}
	p.cut = now
	r := max(p.lim.Limit()*0.5, p.share/floorShare)
	p.lim.SetLimitAt(now, r)
	p.lim.SetBurstAt(now, 1)
}

// accepted: the registry took a write, at now.
func (p *pacer) accepted(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.lim.Limit()
	if r >= p.max {
		return
	}
	step := r * increase // above the share: in proportion to the rate
	if r < p.share {
		// Below it: as much per second whatever the rate (successes come r per second).
		step = p.share * p.share / r * increase
	}
	r = min(r+step, p.max)
	p.lim.SetLimitAt(now, r)
	if r == p.max {
		p.lim.SetBurstAt(now, p.burst)
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
	return c.hostPacer(req.URL.Host)
}

// hostPacer returns the pacer of the manifest writes to a registry host.
func (c *Engine) hostPacer(host string) *pacer {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pacers[host]
	if !ok {
		p = newPacer(c.rate, c.burst, c.writers, time.Now(), rand.Float64())
		c.pacers[host] = p
	}
	return p
}
