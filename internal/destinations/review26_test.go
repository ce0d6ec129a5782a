package destinations_test

import (
	"testing"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// TestReview26ThrottledSettingTurnsMountingOffForMinutes: ECR throttles the one
// GetAccountSetting a warm function asks (a fleet of execution environments starting at
// once for a backfill; ThrottlingException is retryable). ecraccess keeps that failure for
// mountingRetry (5 minutes): every copy of the process in the meantime uploads every layer,
// though the next call would have answered ENABLED — a 200-repository backfill on a 400 MiB
// base uploads it 200 times again, the very thing blob mounting was enabled to avoid.
func TestReview26ThrottledSettingTurnsMountingOffForMinutes(t *testing.T) {
	w := newWorld(t)
	w.setBlobMounting(t, "ENABLED")
	const size = 128 << 10
	repos := []string{"team/one", "team/two"}
	digests := w.sharedBase(t, size, repos...)
	replicator := destinations.New(w.resolver, copyengine.New())
	// The SDK's own attempts (3, standard retry mode) all throttled: one burst.
	if err := w.sb.ThrottleAPI("ecr", "GetAccountSetting", 3); err != nil {
		t.Fatal(err)
	}
	copyOne := func(i int) destinations.Result {
		t.Helper()
		r := one(t, replicator.Start().Replicate(w.ctx, destinations.Image{Repo: srcRepo(repos[i]), Digest: digests[i].String(), Tag: "v1"}, []rules.Target{targetFor("mirror/", repos[i])}))
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r
	}
	first := copyOne(0)
	// The burst is over once the call it throttled has made its 3 attempts: a copy waits
	// at most a second for a call in flight (review 26b), so one made while that call is
	// still backing off may go on without it.
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; n < 3 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		n = 0
		for _, e := range w.sb.AccessLogSince(0) {
			if e.Operation == "GetAccountSetting" {
				n++
			}
		}
	}
	time.Sleep(100 * time.Millisecond) // the SDK reads the third answer and the call ends
	w.sb.ClearFaults()
	second := copyOne(1)
	t.Logf("after one throttled GetAccountSetting: first copy uploaded %d bytes, the second (the burst over) %d bytes and mounted %d", first.BytesCopied, second.BytesCopied, second.BytesMounted)
	if second.BytesMounted < 2*size {
		t.Errorf("a copy made after the throttling burst, into a registry with blob mounting ENABLED, uploaded the shared base again (%d bytes, %d mounted): one throttled GetAccountSetting keeps mounting off for the process for minutes",
			second.BytesCopied, second.BytesMounted)
	}
}
