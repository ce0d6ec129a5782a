package reconcile_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

// TestReconcileHonoursGates: a reconcile run finds the drift of a gated destination
// and sends it, as any drift, to the copy queue; the replicate function decides each
// copy there: the one that passes is copied, the held one is re-checked later (a
// delayed re-check on the copy queue), the blocked ones are not copied and are reported
// with the run's id — an image pushed before its wait could end is blocked at once.
func TestReconcileHonoursGates(t *testing.T) {
	var offset atomic.Int64
	w := sandboxtest.Start(t, func(c *sandbox.Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	key := signing.NewKey(t)
	rules := fmt.Sprintf(`{"rules":[{"name":"gated","repositories":["team/**"],
	  "require":{"signatures":{"wait":"10m","signers":[{"name":"release","publicKey":%q}]},"scan":{"severity":"HIGH"}},
	  "destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
		key.PublicPEM(t), sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), sandboxtest.ExternalID)
	f := newFixtureIn(t, w, rules)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team/app")})
	r := signing.NewRepo(t, w.Source.Host, "team/app", w.Source.Auth)
	pushed := map[string]string{}
	push := func(tag string, sign bool, findings ...sandbox.ScanFinding) {
		img, _ := random.Image(256, 1)
		d := w.Source.Push(t, "team/app", tag, img).String()
		pushed[tag] = d
		if err := w.SB.SetImageScan(sandbox.SourceAccount, sandbox.DefaultRegion, "team/app", d, sandbox.ScanResult{Findings: findings}); err != nil {
			t.Fatal(err)
		}
		if sign {
			key.Cosign(t, r, r.Subject(t, d), signing.Options{})
		}
	}
	offset.Store(int64(-time.Hour)) // pushed an hour ago: its wait for a signature is long over
	push("old", false)
	offset.Store(0)
	push("ok", true)
	push("fresh", false)
	push("vulnerable", true, sandbox.ScanFinding{Name: "CVE-2026-4242", Severity: "HIGH"})

	// The run: the trigger, the scan item, the repository item.
	if _, err := f.r.Handle(w.Ctx, json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if failed := f.deliver(t, f.take(t, "reconcile")...); len(failed) > 0 {
			t.Fatalf("reconcile items failed: %v", failed)
		}
	}
	if !strings.Contains(f.logs.String(), `"drift":4,"gated":4`) {
		t.Errorf("the reconcile's log line does not count the gated drift:\n%s", f.logs.String())
	}
	work := f.take(t, "copy")
	if len(work) != 4 {
		t.Fatalf("%d work items, want 4 (the signature goes with its image): %v", len(work), work)
	}

	// The copy queue's consumer: the replicate function.
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
	var recs []sandboxtest.SQSMessage
	for i, b := range work {
		recs = append(recs, sandboxtest.SQSMessage{ID: fmt.Sprint(i), Body: b})
	}
	out, err := h.Handle(w.Ctx, sandboxtest.SQSBatch(1, recs...))
	if b, _ := json.Marshal(out); err != nil || !strings.Contains(string(b), `"batchItemFailures":[]`) {
		t.Fatalf("copies: %s %v", b, err)
	}
	tags := w.Dest.Tags(t, w.Ctx, "mirror/team/app")
	if tags["ok"] != pushed["ok"] || tags["old"] != "" || tags["fresh"] != "" || tags["vulnerable"] != "" {
		t.Fatalf("destination: %v", tags)
	}
	for _, c := range []struct{ tag, msg, code string }{
		{"old", "image blocked by a promotion gate (permanent)", "SignatureTimeout"},
		{"vulnerable", "image blocked by a promotion gate (permanent)", "ScanFindings"},
		{"fresh", "image held by a promotion gate", "SignatureMissing"},
	} {
		found := false
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `"msg":"`+c.msg+`"`) && strings.Contains(l, `"tag":"`+c.tag+`"`) &&
				strings.Contains(l, `"error_code":"`+c.code+`"`) && strings.Contains(l, `"event_id":"reconcile:`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no %q line for %s (%s) with the run's event id:\n%s", c.msg, c.tag, c.code, logs.String())
		}
	}
	// The held copy starts no re-checks of its own: the next run decides it again (each run
	// starting a chain would fork one per run, docs/PROMOTION.md).
	attrs, err := f.q.GetQueueAttributes(w.Ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(f.env[wiring.EnvCopyQueueURL]), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
	if err != nil || attrs.Attributes["ApproximateNumberOfMessagesDelayed"] != "0" {
		t.Fatalf("re-checks waiting: %v %v", attrs, err)
	}
}
