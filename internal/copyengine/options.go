package copyengine

import (
	"log/slog"
	"time"

	"golang.org/x/time/rate"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// Option configures an Engine.
type Option func(*Engine)

// WithJobs bounds how many blobs are transferred concurrently (default 8),
// across all runs of the Engine.
func WithJobs(n int) Option {
	return func(c *Engine) {
		if n > 0 {
			c.jobs = n
		}
	}
}

// WithManifestRate sets the ceiling of manifest writes per destination registry host
// (default 10/s, burst 10: ECR's default PutImage quota); the pace adapts below it to
// throttling (see pacer).
func WithManifestRate(perSecond float64, burst int) Option {
	return func(c *Engine) {
		if perSecond > 0 {
			c.rate = rate.Limit(perSecond)
		}
		if burst > 0 {
			c.burst = burst
		}
	}
}

// WithWriters says how many engines may write manifests to one destination at once (a
// fleet of Lambda execution environments): each starts at its share of the manifest
// rate and adapts from there (see pacer). Default 1: start at the full rate.
func WithWriters(n int) Option {
	return func(c *Engine) {
		if n > 0 {
			c.writers = n
		}
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *Engine) {
		if l != nil {
			c.log = l
		}
	}
}

// WithRetry sets how failed registry requests are retried: throttling (429, honouring
// Retry-After up to the policy's Max), 5xx, connection errors and slow answers. Default:
// 5 attempts, 500 ms doubling, ±20 % jitter, waits capped at 20 s. Unset fields take
// these defaults.
func WithRetry(p retry.Policy) Option {
	return func(c *Engine) { c.policy = p }
}

// WithRequestTimeout bounds how long one request waits for the response headers after
// it was sent (default 60 s; the body of a large blob is not counted). A registry that
// does not answer in time is retried like a 503.
func WithRequestTimeout(d time.Duration) Option {
	return func(c *Engine) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithTransferRate seeds the link rate the engine assumes for each destination host,
// when it weighs an upload against a deadline (budget.go), before it has measured one
// (bytes per second; default: none, so nothing is refused before a measurement).
func WithTransferRate(bytesPerSecond float64) Option {
	return func(c *Engine) { c.link.seed = bytesPerSecond }
}

// WithProgress has fn told about every blob transfer as it happens. fn is called from
// the goroutines doing the transfers: it must be quick and safe for concurrent use.
func WithProgress(fn func(Progress)) Option {
	return func(c *Engine) { c.progress = fn }
}
