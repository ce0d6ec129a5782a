package destinations_test

import (
	"testing"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// TestReview26bStalledSettingStallsTheCopyThatAsks: the first copy into a destination
// registry a process knows nothing of (every cold start) starts the GetAccountSetting
// call and waits for it until it ends (ecraccess/mounting.go BlobMounting: `wait` is nil
// for the caller whose call it is) — up to mountingCallTimeout (30 s), or the SDK's
// retries with their backoff against a throttle — while copies that join the call wait
// at most mountingJoinWait (1 s) and then upload. A stalled ECR API endpoint (or a
// throttled one) thus holds every cold start's first copy to each destination registry,
// though the answer only decides whether to mount. Here the call is held: the copy, which
// would upload a 4 KiB image, does not finish within 10 s.
func TestReview26bStalledSettingStallsTheCopyThatAsks(t *testing.T) {
	w := newWorld(t)
	w.setBlobMounting(t, "ENABLED")
	digests := w.sharedBase(t, 4096, "team/one")
	release := make(chan struct{})
	remove, err := w.sb.HoldRequests(sandbox.Hold{Account: sandbox.DestinationAccount, Operation: "GetAccountSetting",
		Reached: func(sandbox.Entry) { <-release }})
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	replicator := destinations.New(w.resolver, copyengine.New())
	done := make(chan []destinations.Result, 1)
	start := time.Now()
	go func() {
		done <- replicator.Start().Replicate(w.ctx, destinations.Image{Repo: srcRepo("team/one"), Digest: digests[0].String(), Tag: "v1"},
			[]rules.Target{targetFor("mirror/", "team/one")})
	}()
	select {
	case rs := <-done:
		if r := one(t, rs); r.Err != nil {
			t.Fatal(r.Err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("a copy whose registry's GetAccountSetting stalls has not finished after %s: the copy that starts the call waits for it (up to 30 s), joiners wait 1 s", time.Since(start).Round(time.Second))
		close(release)
		<-done
		return
	}
	close(release)
}
