package reliability_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestUploadPOSTServerErrorIsRetried: a destination answering every blob upload POST
// with 500 must not drop the push. The engine once closed the POST's response before
// reading its error, got "http: read on closed response body" instead of the registry's
// code, called that permanent and acknowledged the message. Now: retried in process,
// still failing → listed in batchItemFailures; redelivered after the fault → replicated.
func TestUploadPOSTServerErrorIsRetried(t *testing.T) {
	f := newFx(t, 1200)
	digest := f.push(t, "team-a/post", "v1", f.image(t, 4096, 2))
	fault, err := f.sb.ArmRegistryFault(sandbox.RegistryFault{Account: dstAcct, Repository: prefix + "team-a/post",
		Step: sandbox.StepUploadPOST, Fault: sandbox.Fault500, Count: -1})
	if err != nil {
		t.Fatal(err)
	}
	recs := f.records(sandboxtest.ImageEvent("post-1", "PUSH", "team-a/post", digest, "v1"))
	out, err := f.h.Handle(f.ctx, sandboxtest.SQSBatch(1, recs...))
	if err != nil {
		t.Fatal(err)
	}
	if failed := batchFailures(t, out); !failed[recs[0].ID] {
		t.Fatalf("a push whose uploads were answered 500 was acknowledged (not in batchItemFailures): %s\n%s", toJSON(out), lastLines(f.logs.String(), 3))
	}
	if got := fault.Answered(); got < 2 {
		t.Errorf("the POST was tried %d time(s): want in-process retries", got)
	}
	fault.Disarm()
	st := f.deliver(t, recs, nil)
	f.verify(t, "team-a/post", digest)
	report(t, "upload POST answered 500 (persistent): %d POSTs refused, message in batchItemFailures; after the fault, %d delivery(ies); verified", fault.Answered(), st.invocations)
}

// TestPresignedURLNeverLeaks: when the download from the presigned storage URL fails
// at the connection level, Go's error carries the whole URL — X-Amz-Credential,
// X-Amz-Security-Token, X-Amz-Signature. None of it may reach a log line, the
// invocation's answer or a result event.
func TestPresignedURLNeverLeaks(t *testing.T) {
	f := newFx(t, 1300)
	digest := f.push(t, "team-a/leak", "v1", f.image(t, 64<<10, 1))
	fault, err := f.sb.ArmRegistryFault(sandbox.RegistryFault{Account: srcAcct, Repository: "team-a/leak",
		Step: sandbox.StepStorageGET, Fault: sandbox.FaultSlow, Delay: 20 * time.Second, Count: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer fault.Disarm()
	// The deadline cuts the download while it waits on storage: a *url.Error naming the
	// presigned URL, as on AWS when S3 is slow or the connection drops.
	ctx, cancel := context.WithTimeout(f.ctx, 4*time.Second)
	defer cancel()
	out, err := f.h.Handle(ctx, json.RawMessage(sandboxtest.ImageEvent("leak-1", "PUSH", "team-a/leak", digest, "v1")))
	answer := toJSON(out)
	if err != nil {
		answer += err.Error()
	}
	if fault.Answered() == 0 {
		t.Fatal("the storage fault never fired")
	}
	for _, where := range []struct{ name, text string }{{"answer", answer}, {"logs", f.logs.String()}} {
		if strings.Contains(where.text, "X-Amz-") {
			i := strings.Index(where.text, "X-Amz-")
			t.Errorf("the %s carries a presigned URL query: …%s", where.name, where.text[max(0, i-120):i])
		}
	}
}

// TestReserveBeforeDeadline: a batch whose second image cannot finish before the
// invocation's deadline (its destination never answers the upload) must still be
// answered in time — Lambda discards an answer that comes after the deadline and returns
// the whole batch, successes included — with only the unfinished message listed.
func TestReserveBeforeDeadline(t *testing.T) {
	f := newFx(t, 1400)
	quick := f.push(t, "team-a/quick", "v1", f.image(t, 2048, 1))
	slow := f.push(t, "team-a/slow", "v1", f.image(t, 2048, 1))
	fault, err := f.sb.ArmRegistryFault(sandbox.RegistryFault{Account: dstAcct, Repository: prefix + "team-a/slow",
		Step: sandbox.StepUploadPUT, Fault: sandbox.FaultSlow, Delay: 30 * time.Second, Count: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer fault.Disarm()
	recs := f.records(
		sandboxtest.ImageEvent("q-1", "PUSH", "team-a/quick", quick, "v1"),
		sandboxtest.ImageEvent("s-1", "PUSH", "team-a/slow", slow, "v1"),
	)
	deadline := time.Now().Add(8 * time.Second)
	ctx, cancel := context.WithDeadline(f.ctx, deadline)
	defer cancel()
	out, err := f.h.Handle(ctx, sandboxtest.SQSBatch(1, recs...))
	answered := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if answered.After(deadline) {
		t.Fatalf("answered %v after the deadline: Lambda would have discarded the answer and returned both messages", answered.Sub(deadline))
	}
	resp := out.(events.SQSEventResponse)
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != recs[1].ID {
		t.Fatalf("batchItemFailures %+v: want only the unfinished %s", resp.BatchItemFailures, recs[1].ID)
	}
	if got := f.w.Dest.Digest(t, prefix+"team-a/quick", "v1"); got != quick {
		t.Fatalf("the quick image was not replicated: %q", got)
	}
	report(t, "deadline in 8 s, one upload never answered: answered %.1f s before the deadline, only the unfinished message in batchItemFailures", deadline.Sub(answered).Seconds())
}

// lastLines returns the last n lines of s, for failure messages.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
