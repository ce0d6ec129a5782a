package reliability_test

import (
	"context"
	"testing"

	"github.com/ecr-replicator/ecr-replicator/internal/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/sandbox/sandboxtest"
)

// TestKilledInvocationLeavesNoOlderTag: invocation A handles v1→D1. While A copies, the
// source moves v1 to D2 and invocation B (another execution environment) replicates D2
// completely. A's PUT by tag then lands v1→D1, and A dies before re-checking the source.
// The redelivered message finds the source at D2 — a stale event — and must still
// converge the destination tag on D2, not leave it on D1 for good.
func TestKilledInvocationLeavesNoOlderTag(t *testing.T) {
	f := newFx(t, 1500)
	const repo = "team-a/race"
	d1 := f.push(t, repo, "v1", f.image(t, 4096, 1))
	img2 := f.image(t, 4096, 1)
	b := f.newHandler(t)

	ctxA, killA := context.WithCancel(f.ctx)
	defer killA()
	var bDone bool
	// 1. A's first blob upload is held: meanwhile the source moves and B replicates D2.
	_, err := f.sb.HoldRequests(sandbox.Hold{Account: dstAcct, Step: sandbox.StepUploadPUT, Repository: prefix + repo,
		Reached: func(sandbox.Entry) {
			d2 := f.push(t, repo, "v1", img2)
			out, err := b.Handle(f.ctx, sandboxtest.SQSBatch(1, f.records(sandboxtest.ImageEvent("b", "PUSH", repo, d2, "v1"))...))
			if err != nil || len(batchFailures(t, out)) > 0 {
				t.Errorf("invocation B: %v %s", err, toJSON(out))
			}
			bDone = f.w.Dest.Digest(t, prefix+repo, "v1") == d2
			// 2. A's PUT by tag lands after B's; A is killed before it is answered.
			if _, err := f.sb.HoldRequests(sandbox.Hold{Account: dstAcct, Step: sandbox.StepManifestPUT, Repository: prefix + repo, Reference: "v1",
				Reached: func(sandbox.Entry) { killA() }}); err != nil {
				t.Error(err)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	recs := f.records(sandboxtest.ImageEvent("a", "PUSH", repo, d1, "v1"))
	out, err := f.h.Handle(ctxA, sandboxtest.SQSBatch(1, recs...))
	if err != nil {
		t.Fatal(err)
	}
	if !bDone {
		t.Fatal("invocation B did not replicate D2 while A was held: the interleaving did not happen")
	}
	if !batchFailures(t, out)[recs[0].ID] {
		t.Fatalf("the killed invocation acknowledged its message: %s", toJSON(out))
	}
	if got := f.w.Dest.Digest(t, prefix+repo, "v1"); got != d1 {
		t.Fatalf("setup: after A's late write the destination v1 is %s, want D1 %s", got, d1)
	}
	// 3. The redelivery of A's message: the source is at D2.
	f.deliver(t, recs, nil)
	f.verify(t, repo)
	report(t, "A killed between its late tag PUT (v1→D1) and its re-check, after B wrote v1→D2: the redelivered stale event moved the destination to D2")
}
