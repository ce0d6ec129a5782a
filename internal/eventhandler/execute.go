package eventhandler

import (
	"context"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// execute runs the jobs in one run, at most Parallel at a time, within the invocation's
// deadline less the reserve; jobs not started by then are reported as such. It returns
// each job's results, in order.
func (h *Handler) execute(ctx context.Context, jobs []*job) [][]destinations.Result {
	results := make([][]destinations.Result, len(jobs))
	if len(jobs) == 0 {
		return results
	}
	run := h.c.Start()
	workCtx, cancel := h.workContext(ctx)
	defer cancel()
	g := new(errgroup.Group)
	g.SetLimit(h.c.Parallel)
	for i, j := range jobs {
		g.Go(func() error {
			switch {
			case workCtx.Err() != nil:
				results[i] = notStarted(j)
			case j.reconcile != nil:
				results[i] = []destinations.Result{h.reconcile(workCtx, j)}
			case j.delete:
				results[i] = run.Delete(workCtx, j.src, j.targets)
			default:
				results[i] = run.Replicate(workCtx, j.src, j.targets)
			}
			return nil
		})
	}
	g.Wait()
	return results
}

// reconcile runs one reconcile item; its result is reported like a copy's.
func (h *Handler) reconcile(ctx context.Context, j *job) destinations.Result {
	start := time.Now()
	res := destinations.Result{Result: copyengine.Result{Outcome: "reconciled"}}
	if err := h.c.Reconcile(ctx, j.reconcile); err != nil {
		res.Outcome, res.Err = copyengine.Failed, err
		res.Code, res.Retryable = destinations.Classify(err)
	}
	res.Duration = time.Since(start)
	return res
}

// workContext is ctx shortened by the reserve, so the copies end in time for the answer.
func (h *Handler) workContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, dl.Add(-h.reserve(dl)))
}

func (h *Handler) reserve(dl time.Time) time.Duration {
	if h.c.Reserve > 0 {
		return h.c.Reserve
	}
	return min(max(time.Until(dl)/10, 2*time.Second), 15*time.Second)
}

// publishContext bounds the publication of result events, which comes after the copies:
// it may use the first half of the reserve, never the second, so an EventBridge endpoint
// that does not answer (a function in a VPC without a route to it) costs the events, not
// the invocation's answer.
func (h *Handler) publishContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, dl.Add(-h.reserve(dl)/2))
}

// errNotStarted is the failure of an image the invocation had no time left to start.
var errNotStarted = &notStartedError{}

type notStartedError struct{}

func (*notStartedError) Error() string {
	return "not started: the invocation's deadline is near; left for redelivery"
}
func (*notStartedError) ErrorCode() string { return retry.CodeDeadlineExceeded }
func (*notStartedError) Retryable() bool   { return true }

// notStarted reports every target of a job the invocation did not start.
func notStarted(j *job) []destinations.Result {
	out := make([]destinations.Result, len(j.targets))
	if j.reconcile != nil {
		return []destinations.Result{{Result: copyengine.Result{Outcome: copyengine.Failed, Err: errNotStarted},
			Code: retry.CodeDeadlineExceeded, Retryable: true}}
	}
	for i, t := range j.targets {
		out[i] = destinations.Result{
			Result: copyengine.Result{Outcome: copyengine.Failed, Digest: j.src.Digest, Tag: j.src.Tag, Err: errNotStarted},
			Rule:   t.Rule, Destination: t.Repo(), Code: retry.CodeDeadlineExceeded, Retryable: true,
		}
	}
	return out
}
