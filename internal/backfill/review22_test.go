package backfill_test

// Review of issue 22 (independent reviewer): failing tests for what the change still
// loses or loops on.

import (
	"context"
	"encoding/base64"
	"testing"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// TestReview22InlineCutAtEveryHardStopEnds: docs/RELIABILITY.md says that retryable
// failures "cannot hold a caller looping on the token forever": a position stalled
// maxStalls runs in a row lets its retryable failures go. But a copy cut at the hard stop
// is a retryable failure too, and copyGroup returns it as unfinished before it looks at
// the stall count: an item whose copy never finishes within a run (a destination that
// does not answer its upload; a layer that needs more than what a run has left after
// its listings, in a cold environment that has measured no rate) holds the position,
// and a caller following the continuation token (as the README says to: "invoke again
// with it to continue") loops forever — each run counting one more stall and reporting
// nothing.
func TestReview22InlineCutAtEveryHardStopEnds(t *testing.T) {
	e := start(t, "")
	repos := repoNames("stuck", 1)
	e.seed(t, repos, 1)
	if _, err := e.sb.ArmRegistryFault(sandbox.RegistryFault{Account: sandbox.DestinationAccount, Repository: "mirror/" + repos[0],
		Step: sandbox.StepUploadPUT, Fault: sandbox.FaultSlow, Delay: time.Minute, Count: -1}); err != nil {
		t.Fatal(err)
	}
	b := e.backfill()
	run := func(token string) *backfill.Response {
		ctx, cancel := context.WithTimeout(e.ctx, 1500*time.Millisecond)
		defer cancel()
		resp, err := b.Invoke(ctx, backfill.Request{Mode: backfill.ModeInline, ContinuationToken: token})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := run("")
	runs := 1
	for ; resp.ContinuationToken != "" && runs < 8; runs++ {
		resp = run(resp.ContinuationToken)
	}
	if resp.ContinuationToken != "" {
		tok, _ := base64.RawURLEncoding.DecodeString(resp.ContinuationToken)
		t.Fatalf("after %d runs the continuation still holds the position (failed %d, remaining %d, token %s): a caller following the token never ends",
			runs, resp.Failed, resp.Remaining, tok)
	}
	if resp.Failed == 0 {
		t.Fatalf("the continuation ended after %d runs without reporting the copy that never finished: %+v", runs, resp)
	}
}
