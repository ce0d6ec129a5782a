package reconcile_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/signing"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// TestReview25ReconcileRunsForkRecheckChains: a held copy re-checks itself on the copy
// queue until it passes or its wait ends — one chain, started by its push. A reconcile
// run finds the same held image as drift and sends it to the copy queue; the replicate
// function holds it again and, the work item carrying no hold, starts another chain at
// attempt 1. Every run does: with ReconcileSchedule "rate(1 hour)" and a 24 h wait, a
// held image is re-decided by ~25 parallel chains of ~96 re-checks each (every one a
// DescribeImages, manifest, referrers, .sig, scan and verification), and reported
// blocked ~25 times when the wait ends. Here: the push and three reconcile runs leave
// four re-checks waiting for one held image.
func TestReview25ReconcileRunsForkRecheckChains(t *testing.T) {
	w := sandboxtest.Start(t)
	key := signing.NewKey(t)
	rules := fmt.Sprintf(`{"rules":[{"name":"gated","repositories":["team/**"],
	  "require":{"signatures":{"wait":"10m","signers":[{"name":"release","publicKey":%q}]}},
	  "destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
		key.PublicPEM(t), sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), sandboxtest.ExternalID)
	f := newFixtureIn(t, w, rules)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team/app")})
	img, _ := random.Image(256, 1)
	d := w.Source.Push(t, "team/app", "v1", img).String() // not signed yet: held

	for k, v := range f.env {
		t.Setenv(k, v)
	}
	t.Setenv("REPLICATION_RULES", rules)
	logs := &sandboxtest.LogBuffer{}
	deps, err := wiring.Load(w.Ctx, "replicate", wiring.Logger(logs, func(string) string { return "" }), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	h := sandboxtest.ReplicateHandler(deps, eventhandler.Config{Log: wiring.Logger(logs, func(string) string { return "" })})
	replicate := func(bodies ...string) {
		t.Helper()
		var recs []sandboxtest.SQSMessage
		for i, b := range bodies {
			recs = append(recs, sandboxtest.SQSMessage{ID: fmt.Sprint(i), Body: b})
		}
		out, err := h.Handle(w.Ctx, sandboxtest.SQSBatch(1, recs...))
		if b, _ := json.Marshal(out); err != nil || !strings.Contains(string(b), `"batchItemFailures":[]`) {
			t.Fatalf("replicate: %s %v", b, err)
		}
	}
	delayed := func() string {
		t.Helper()
		attrs, err := f.q.GetQueueAttributes(w.Ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(f.env[wiring.EnvCopyQueueURL]),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
		if err != nil {
			t.Fatal(err)
		}
		return attrs.Attributes["ApproximateNumberOfMessagesDelayed"]
	}

	// The push: held, its re-check chain starts.
	replicate(sandboxtest.ImageEvent("e-push", "PUSH", "team/app", d, "v1"))
	if got := delayed(); got != "1" {
		t.Fatalf("after the push: %s re-checks waiting, want 1", got)
	}
	// Three reconcile runs while the image waits for its signature.
	for run := range 3 {
		if _, err := f.r.Handle(w.Ctx, json.RawMessage(`{}`)); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if failed := f.deliver(t, f.take(t, "reconcile")...); len(failed) > 0 {
				t.Fatalf("run %d: reconcile items failed: %v", run, failed)
			}
		}
		if work := f.take(t, "copy"); len(work) > 0 {
			replicate(work...)
		}
	}
	if got := delayed(); got != "1" {
		t.Fatalf("one held image, %s re-check chains running after its push and 3 reconcile runs: each run forks another", got)
	}
}
