package backfill_test

import (
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// TestReviewFinalSlowSettingIsReportedUnknown: since review 26b, ecraccess.BlobMounting
// waits at most mountingJoinWait (1 s) for the GetAccountSetting call, the caller that
// started it included, and then returns an error (ecraccess/mounting.go). The backfill's
// dry run (backfill/mounting.go blobMounting) treats that error as the setting being
// unreadable: a registry whose setting answers ENABLED in 1.5 s — a cold endpoint, the
// SDK's retry after one throttle — is reported BlobMounting UNKNOWN, with a reason that
// reads as a failure, to an operator who asked for the plan and is in no hurry. Before
// the change the dry run (the caller whose call it was) got the answer.
func TestReviewFinalSlowSettingIsReportedUnknown(t *testing.T) {
	e := start(t, "")
	e.enableBlobMounting(t)
	repos := repoNames("slowsetting", 2)
	img, _ := random.Image(16<<10, 2)
	for _, repo := range repos {
		e.review26Push(t, repo, "v1", img, true)
	}
	remove, err := e.sb.HoldRequests(sandbox.Hold{Account: sandbox.DestinationAccount, Operation: "GetAccountSetting", Count: -1,
		Reached: func(sandbox.Entry) { time.Sleep(1500 * time.Millisecond) }})
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	m := e.planMounting(t)
	if m.BlobMounting != "ENABLED" {
		t.Errorf("dry run: BlobMounting %s (reason %q); the setting is ENABLED and answers in 1.5 s", m.BlobMounting, m.Reason)
	}
}
