package eventhandler

import (
	"context"

	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/deadline"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// execute runs the jobs in one run, at most Parallel at a time, within the invocation's
// deadline less the reserve; jobs not started by then are reported as such. It returns
// each job's results, in order.
func (h *Handler) execute(ctx context.Context, budget deadline.Budget, jobs []*job) [][]destinations.Result {
	results := make([][]destinations.Result, len(jobs))
	if len(jobs) == 0 {
		return results
	}
	run := h.c.Start()
	workCtx, cancel := budget.Work(ctx)
	defer cancel()
	g := new(errgroup.Group)
	g.SetLimit(h.c.Parallel)
	for i, j := range jobs {
		g.Go(func() error {
			switch {
			case workCtx.Err() != nil:
				results[i] = notStarted(j)
			case j.delete:
				results[i] = run.Delete(workCtx, j.src, j.targets)
			case j.trigger:
				results[i] = h.trigger(workCtx, run, j)
			case j.gated:
				results[i] = h.gated(workCtx, run, j)
			default:
				results[i] = run.Replicate(workCtx, j.src, j.targets)
			}
			return nil
		})
	}
	g.Wait()
	return results
}

// errNotStarted is the failure of an image the invocation had no time left to start.
var errNotStarted = &notStartedError{}

type notStartedError struct{}

func (*notStartedError) Error() string {
	return "not started: the invocation's deadline is near; left for redelivery"
}
func (*notStartedError) ErrorCode() string { return retry.CodeDeadlineExceeded }
func (*notStartedError) Retryable() bool   { return true }

// notStarted reports every target of a job the invocation did not start (a trigger,
// which has none yet, once).
func notStarted(j *job) []destinations.Result {
	if j.trigger {
		return []destinations.Result{{
			CopyResult: destinations.CopyResult{Outcome: destinations.Failed, Digest: j.src.Digest, Err: errNotStarted},
			Code:       retry.CodeDeadlineExceeded, Retryable: true,
		}}
	}
	out := make([]destinations.Result, len(j.targets))
	for i, t := range j.targets {
		out[i] = destinations.Result{
			CopyResult: destinations.CopyResult{Outcome: destinations.Failed, Digest: j.src.Digest, Tag: j.src.Tag, Err: errNotStarted},
			Rule:       t.Rule, Destination: t.Repo(), Code: retry.CodeDeadlineExceeded, Retryable: true,
		}
	}
	return out
}
