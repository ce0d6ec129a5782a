package eventhandler_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/lambdatest"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

func TestMain(m *testing.M) { lambdatest.Main(m) }

// busARN is the result bus as template.yaml's ResultEventBus parameter names it (an ARN).
var busARN = fmt.Sprintf("arn:aws:events:%s:%s:event-bus/%s", region, srcAcct, bus)

// deployedParams are the template.yaml parameters the end-to-end tests deploy with.
func deployedParams() map[string]any {
	return map[string]any{
		"DestinationAccountId": dstAcct, "DestinationRegion": region, "ExternalId": extID,
		"DestinationRepositoryPrefix": "mirror/", "CreateRepositories": "true",
		"ResultEventBus": busARN, "MirrorDeletes": "false",
	}
}

// startDeployed starts the replicate bootstrap under RIE running as the deployed
// function role (sandboxtest.Deployed): IAM is enforced with the policies of template.yaml
// and infra/destination-role.yaml rendered for params, dest overriding the latter's.
func startDeployed(t *testing.T, rules string, params map[string]any, dest ...map[string]any) (*fixture, *lambdatest.Function) {
	t.Helper()
	f := newFixture(t, rules, sandboxtest.Deployed(t, params, dest...))
	env := sandboxtest.FunctionEnvFor(t, f.ctx, f.sb, f.env) // the fixture's env, as the function role
	if bus, ok := params["ResultEventBus"].(string); ok && bus != "" {
		env["RESULT_EVENT_BUS"] = bus
	} else {
		delete(env, "RESULT_EVENT_BUS")
	}
	return f, lambdatest.Start(t, "github.com/ecr-replicator/ecr-replicator/functions/replicate", env)
}

// TestEndToEndUnderRIE builds the real bootstrap and runs it under the Lambda Runtime
// Interface Emulator against the sandbox, as the deployed function role: every call is
// authorized against the templates' policies.
func TestEndToEndUnderRIE(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bootstrap and the RIE")
	}
	f, fn := startDeployed(t, rulesDoc(true, false), deployedParams())
	defer func() {
		for _, e := range sandboxtest.Denials(f.sb, 0) {
			t.Errorf("denied under the deployed policies: %+v", e)
		}
		asFunction, asDestination := 0, 0
		for _, e := range f.sb.AccessLog() {
			switch {
			case strings.HasPrefix(e.Principal, "arn:aws:sts::"+srcAcct+":assumed-role/"+sandboxtest.FunctionRole+"/"):
				asFunction++
			case strings.HasPrefix(e.Principal, "arn:aws:sts::"+dstAcct+":assumed-role/"+sandbox.DestinationRole+"/"):
				asDestination++
			case strings.HasSuffix(e.Principal, ":user/replicator"):
				t.Errorf("the function used the replicator user's keys: %+v", e)
			}
		}
		if asFunction == 0 || asDestination == 0 {
			t.Errorf("requests as the function role: %d, as the destination role: %d", asFunction, asDestination)
		}
	}()

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
		sandboxtest.ImageEvent("good", "PUSH", "team-a/app", good, "v2"),
		`{"version":"0","id":"poison","detail-type":"ECR Image Action","source":"aws.ecr"`,
		sandboxtest.ImageEvent("throttled", "PUSH", "team-a/other", other, "v1"),
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
	// What Lambda would report as Max Memory Used: the bootstrap's own, not the
	// emulator's — a Go binary that copied images is megabytes, not kilobytes or gigabytes.
	if used, err := fn.MaxMemoryUsed(); err != nil || used < 4<<20 || used > 512<<20 {
		t.Errorf("max memory used %d bytes (%v)", used, err)
	} else {
		t.Logf("max memory used: %.1f MiB", float64(used)/(1<<20))
	}

	// Result events recorded by the sandbox's EventBridge.
	evs := f.sb.PutEvents()
	if len(evs) != 3 {
		t.Fatalf("%d result events, want 3", len(evs))
	}
	t.Logf("result event detail: %s", evs[0].Detail)

	var logLine, emfLine string
	fn.AwaitJSONLines(f.ctx, func(lines []map[string]any) bool {
		for _, l := range lines {
			raw := l["_raw"].(string)
			if l["msg"] == "image replicated" && logLine == "" {
				logLine = raw
			}
			if _, ok := l["_aws"]; ok && emfLine == "" {
				emfLine = raw
			}
		}
		return logLine != "" && emfLine != ""
	})
	if logLine == "" || emfLine == "" {
		t.Fatalf("missing log or EMF line:\n%s", fn.Stdout())
	}
	key, secret, _ := f.sb.Credentials(srcAcct, "replicator")
	if strings.Contains(fn.Stdout(), secret) || strings.Contains(fn.Stdout(), key) || strings.Contains(fn.Stdout(), "SessionToken") ||
		strings.Contains(fn.Stdout(), "IQoJb3JpZ2luX2VjE") /* a session token */ {
		t.Error("function output contains credentials")
	}
	t.Logf("log line: %s", logLine)
	t.Logf("EMF line: %s", emfLine)
}

// TestEndToEndDeniedByDestinationRole proves enforcement bites: with the destination role
// deployed with CreateRepositories=false, a push to a repository the destination lacks is
// refused by IAM (ecr:CreateRepository), reported as a permanent access-denied outcome
// rather than retried, while the source stack's policies are unchanged.
func TestEndToEndDeniedByDestinationRole(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bootstrap and the RIE")
	}
	f, fn := startDeployed(t, rulesDoc(true, false), deployedParams(), map[string]any{"CreateRepositories": "false"})
	digest := f.push(t, "team-a/new", "v1")
	mark := f.sb.AccessLogMark()
	out, err := fn.Invoke(f.ctx, sqsBatch(sandboxtest.ImageEvent("denied", "PUSH", "team-a/new", digest, "v1")))
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	var resp events.SQSEventResponse
	if err := json.Unmarshal(out, &resp); err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("a permanent failure must not be retried: %s %v", out, err)
	}
	denials := sandboxtest.Denials(f.sb, mark)
	if len(denials) == 0 || denials[0].Action != "ecr:CreateRepository" {
		t.Fatalf("denials = %+v, want ecr:CreateRepository refused", denials)
	}
	if got := f.destinationHead(t, "mirror/team-a/new", "v1"); got != "" {
		t.Fatalf("replicated despite the denial: %s", got)
	}
	var logged bool
	fn.AwaitJSONLines(f.ctx, func(lines []map[string]any) bool {
		for _, l := range lines {
			if l["msg"] == "image replication failed (permanent)" && l["error_code"] == "AccessDeniedException" && l["retryable"] == false && l["outcome"] == "failed" {
				logged = true
			}
		}
		return logged
	})
	if !logged {
		t.Fatalf("no permanent AccessDeniedException failure logged:\n%s", fn.Stdout())
	}
	if evs := f.sb.PutEvents(); len(evs) != 1 || !strings.Contains(string(evs[0].Detail), "AccessDenied") {
		t.Fatalf("result events = %+v, want the failure published", evs)
	}
}
