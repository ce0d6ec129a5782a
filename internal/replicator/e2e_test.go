package replicator_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ecr-replicator/ecr-replicator/internal/lambdatest"
)

func TestMain(m *testing.M) { lambdatest.Main(m) }

// TestEndToEndUnderRIE builds the real bootstrap and runs it under the Lambda Runtime
// Interface Emulator against the sandbox.
func TestEndToEndUnderRIE(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bootstrap and the RIE")
	}
	f := newFixture(t, rulesDoc(true, false))
	fn := lambdatest.Start(t, "github.com/ecr-replicator/ecr-replicator/functions/replicate", f.env)

	// Direct invocation with events/push.json, adapted to a really pushed digest.
	digest := f.push(t, "team-a/app", "v1.1.0")
	sample, err := os.ReadFile("../../events/push.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(sample, &ev); err != nil {
		t.Fatal(err)
	}
	ev["detail"].(map[string]any)["image-digest"] = digest
	ev["time"] = time.Now().UTC().Add(-time.Second).Format(time.RFC3339)
	payload, _ := json.Marshal(ev)
	out, err := fn.Invoke(f.ctx, payload)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	if !strings.Contains(string(out), `"outcome":"copied"`) {
		t.Errorf("summary = %s", out)
	}
	if got := f.destinationHead(t, "mirror/team-a/app", "v1.1.0"); got != digest {
		t.Fatalf("destination v1.1.0 = %q, want %s", got, digest)
	}

	// SQS batch: good, poisoned, retryable (destination repository creation throttled).
	good := f.push(t, "team-a/app", "v2")
	other := f.push(t, "team-a/other", "v1")
	if err := f.sb.ThrottleAPI("ecr", "CreateRepository", 5); err != nil {
		t.Fatal(err)
	}
	out, err = fn.Invoke(f.ctx, sqsBatch(
		imageEvent("good", "PUSH", "team-a/app", good, "v2"),
		`{"version":"0","id":"poison","detail-type":"ECR Image Action","source":"aws.ecr"`,
		imageEvent("throttled", "PUSH", "team-a/other", other, "v1"),
	))
	if err != nil {
		t.Fatalf("invoke batch: %v", err)
	}
	var resp events.SQSEventResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "m2" {
		t.Fatalf("batchItemFailures = %s", out)
	}
	if got := f.destinationHead(t, "mirror/team-a/app", "v2"); got != good {
		t.Errorf("good record not replicated")
	}

	// Result events recorded by the sandbox's EventBridge.
	evs := f.sb.PutEvents()
	if len(evs) != 3 {
		t.Fatalf("%d result events, want 3", len(evs))
	}
	t.Logf("result event detail: %s", evs[0].Detail)

	var logLine, emfLine string
	for _, l := range fn.JSONLines() {
		raw := l["_raw"].(string)
		if l["msg"] == "image replicated" && logLine == "" {
			logLine = raw
		}
		if _, ok := l["_aws"]; ok && emfLine == "" {
			emfLine = raw
		}
	}
	if logLine == "" || emfLine == "" {
		t.Fatalf("missing log or EMF line:\n%s", fn.Stdout())
	}
	key, secret, _ := f.sb.Credentials(srcAcct, "replicator")
	if strings.Contains(fn.Stdout(), secret) || strings.Contains(fn.Stdout(), key) || strings.Contains(fn.Stdout(), "SessionToken") {
		t.Error("function output contains credentials")
	}
	t.Logf("log line: %s", logLine)
	t.Logf("EMF line: %s", emfLine)
}
