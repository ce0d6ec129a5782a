// Package deadline divides the time an invocation has left between its work and its
// answer. Lambda returns a whole SQS batch to the queue — successes included — when a
// function times out instead of answering ("Handling errors for an SQS event source in
// Lambda", https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html),
// so every function stops starting work at a soft stop, cuts what is still running at a
// hard stop, and keeps the rest of its time to answer.
package deadline

import (
	"context"
	"time"
)

// Budget is one invocation's division of its time. The zero Budget (no deadline) never
// stops anything.
type Budget struct {
	soft, hard, end time.Time
}

// Options override the defaults; zero values keep them.
type Options struct {
	// Reserve is kept back before the deadline for answering: work still running at the
	// hard stop (deadline − Reserve) is cut. Default: a tenth of the time left, at least
	// 2 s and at most 15 s — and never more than half the time left.
	Reserve time.Duration
	// Margin is how long before the deadline no new work starts (the soft stop). Default:
	// a fifth of the time left, at least the reserve and at most 30 s.
	Margin time.Duration
}

// New divides what ctx has left at now.
func New(ctx context.Context, now time.Time, o Options) Budget {
	dl, ok := ctx.Deadline()
	if !ok {
		return Budget{}
	}
	left := dl.Sub(now)
	reserve := o.Reserve
	if reserve <= 0 {
		reserve = min(max(left/10, 2*time.Second), 15*time.Second, left/2)
	}
	margin := o.Margin
	if margin <= 0 {
		margin = max(min(left/5, 30*time.Second), reserve)
	}
	return Budget{soft: dl.Add(-margin), hard: dl.Add(-reserve), end: dl}
}

// SoftStopped reports whether no new work should start at now.
func (b Budget) SoftStopped(now time.Time) bool { return !b.soft.IsZero() && !now.Before(b.soft) }

// Work is ctx cut at the hard stop: what runs under it ends in time for the answer.
func (b Budget) Work(ctx context.Context) (context.Context, context.CancelFunc) {
	if b.hard.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, b.hard)
}

// Late is ctx cut halfway through the reserve: for what follows the work and may be
// dropped (result events), so that a call that never answers costs itself, never the
// answer.
func (b Budget) Late(ctx context.Context) (context.Context, context.CancelFunc) {
	if b.end.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, b.hard.Add(b.end.Sub(b.hard)/2))
}
