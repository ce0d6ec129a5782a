package eventhandler_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

const destPrincipalPrefix = "arn:aws:sts::222222222222:assumed-role/ecr-replicator-destination/ecr-replicator-replicate-"

func TestDirectPushReplicatesDigestAndTag(t *testing.T) {
	f := newFixture(t, rulesDoc(true, false))
	digest := f.push(t, "team-a/app", "v1.1.0")
	h, logs := f.handler(t)
	mark := f.sb.AccessLogMark()
	out, err := h.Handle(f.ctx, json.RawMessage(sandboxtest.ImageEvent("evt-1", "PUSH", "team-a/app", digest, "v1.1.0")))
	if err != nil {
		t.Fatalf("Handle: %v\n%s", err, logs)
	}
	sum := out.(eventhandler.Summary)
	if len(sum.Results) != 1 || sum.Succeeded != 1 || sum.Results[0].Outcome != "copied" || sum.Results[0].Destination != dstAcct+"/"+region+"/mirror/team-a/app" {
		t.Fatalf("summary = %+v", sum)
	}
	if got := f.destinationHead(t, "mirror/team-a/app", "v1.1.0"); got != digest {
		t.Errorf("destination tag v1.1.0 = %q, want %s", got, digest)
	}
	if got := f.destinationHead(t, "mirror/team-a/app", digest); got != digest {
		t.Errorf("destination digest missing")
	}
	puts := sandbox.Filter(f.sb.AccessLogSince(mark), func(e sandbox.Entry) bool {
		return e.Account == dstAcct && e.Action == "ecr:PutImage" && e.Status < 300
	})
	if len(puts) == 0 {
		t.Fatal("no PutImage in the destination")
	}
	for _, p := range puts {
		if !strings.HasPrefix(p.Principal, destPrincipalPrefix) {
			t.Errorf("PutImage by %q, want %s…", p.Principal, destPrincipalPrefix)
		}
	}
	// One log line for the image at the destination, with the contract's fields.
	var line map[string]any
	for _, l := range jsonLines(logs.String()) {
		if l["msg"] == "image replicated" {
			line = l
		}
	}
	if line == nil {
		t.Fatalf("no per-image log line:\n%s", logs)
	}
	for _, k := range []string{"event_id", "repository", "digest", "tag", "destination", "rule", "outcome", "reason", "bytes", "blobs", "duration_ms", "error_code"} {
		if _, ok := line[k]; !ok {
			t.Errorf("log line lacks %s: %s", k, line["_raw"])
		}
	}
	if line["event_id"] != "evt-1" || line["rule"] != "prod" {
		t.Errorf("log line: %s", line["_raw"])
	}
	key, secret, _ := f.sb.Credentials(srcAcct, sandbox.SourceUser)
	if strings.Contains(logs.String(), secret) || strings.Contains(logs.String(), key) {
		t.Error("logs contain the access key")
	}
	// EMF line and result event.
	if !strings.Contains(logs.String(), `"ImagesReplicated":1`) || !strings.Contains(logs.String(), `"CloudWatchMetrics"`) || !strings.Contains(logs.String(), `"ReplicationLatency"`) {
		t.Errorf("no EMF line:\n%s", logs)
	}
	// The dashboard's per-destination widgets: the same count with the Destination
	// dimension, and the destination's throttled manifest writes (none here).
	perDestination := false
	for _, l := range jsonLines(logs.String()) {
		if l["Destination"] == dstAcct+"/"+region && l["ImagesReplicated"] == 1.0 && l["PutImageThrottled"] == 0.0 &&
			strings.Contains(l["_raw"].(string), `"Dimensions":[["Destination"]]`) {
			perDestination = true
		}
	}
	if !perDestination {
		t.Errorf("no EMF line with ImagesReplicated and PutImageThrottled by Destination:\n%s", logs)
	}
	evs := f.sb.PutEvents()
	if len(evs) != 1 || evs[0].Source != "ecr-replicator" || evs[0].DetailType != "ECR Image Replication" || evs[0].EventBus != bus {
		t.Fatalf("result events = %+v", evs)
	}
	var d map[string]any
	json.Unmarshal(evs[0].Detail, &d)
	for k, want := range map[string]string{"result": "SUCCESS", "repository-name": "team-a/app", "image-digest": digest, "image-tag": "v1.1.0",
		"source-account": srcAcct, "source-region": region, "action-type": "REPLICATE", "destination-account": dstAcct,
		"destination-region": region, "destination-repository": "mirror/team-a/app", "outcome": "copied"} {
		if d[k] != want {
			t.Errorf("detail %s = %v, want %s", k, d[k], want)
		}
	}
}

func TestSQSBatchReturnsOnlyRetryable(t *testing.T) {
	f := newFixture(t, rulesDoc(true, false))
	good := f.push(t, "team-a/app", "v1")
	other := f.push(t, "team-a/other", "v1")
	// The good record's destination repository exists; the other's must be created, and
	// creating it is throttled (SDK retries off): a retryable failure.
	f.w.Dest.CreateRepository(t, f.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/team-a/app"), Tags: sandboxtest.Owned()})
	if err := f.sb.ThrottleAPI("ecr", "CreateRepository", 5); err != nil {
		t.Fatal(err)
	}
	h, logs := f.handler(t)
	batch := sqsBatch(
		sandboxtest.ImageEvent("good", "PUSH", "team-a/app", good, "v1"),
		`{"version":"0","id":"poison","detail-type":"ECR Image Action","source":"aws.ecr","detail":{"repository-name":"team-a/app","image-digest":"sha256:zz"`,
		sandboxtest.ImageEvent("throttled", "PUSH", "team-a/other", other, "v1"),
		sandboxtest.ImageEvent("good-again", "PUSH", "team-a/app", good, "v1"), // duplicate: processed once
	)
	out, err := h.Handle(f.ctx, batch)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	resp := out.(events.SQSEventResponse)
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "m2" {
		t.Fatalf("batchItemFailures = %+v\n%s", resp.BatchItemFailures, logs)
	}
	if got := f.destinationHead(t, "mirror/team-a/app", "v1"); got != good {
		t.Errorf("good record not replicated: %q", got)
	}
	s := logs.String()
	if !strings.Contains(s, `"error_code":"ThrottlingException"`) || !strings.Contains(s, `"message_id":"m1"`) || !strings.Contains(s, `"Reason":"Malformed"`) {
		t.Errorf("logs/metrics lack the failures:\n%s", s)
	}
	if n := strings.Count(s, `"msg":"image replicated"`); n != 1 {
		t.Errorf("%d replications logged, want 1 (dedup)", n)
	}
	if r := f.sb.PutEvents(); len(r) != 2 || !strings.Contains(string(r[0].Detail)+string(r[1].Detail), `"result":"FAILED"`) {
		t.Errorf("result events: %d", len(r))
	}
}

func TestDirectRetryableFailureIsAnError(t *testing.T) {
	f := newFixture(t, rulesDoc(true, false))
	d := f.push(t, "team-a/app", "v1")
	f.sb.ThrottleAPI("ecr", "CreateRepository", 5)
	h, _ := f.handler(t)
	_, err := h.Handle(f.ctx, json.RawMessage(sandboxtest.ImageEvent("e", "PUSH", "team-a/app", d, "v1")))
	if err == nil || !strings.Contains(err.Error(), "retryable") || !strings.Contains(err.Error(), "ThrottlingException") {
		t.Fatalf("err = %v", err)
	}
}

func TestDirectMalformedAndIgnored(t *testing.T) {
	f := newFixture(t, rulesDoc(true, false))
	h, logs := f.handler(t)
	out, err := h.Handle(f.ctx, json.RawMessage(`{"version":"0","id":"x","detail-type":"ECR Image Action","source":"aws.ecr","account":"111111111111","region":"us-east-1","time":"2026-03-04T15:42:17Z","detail":{"result":"SUCCESS","repository-name":"team-a/app","image-digest":"sha256:zz","action-type":"PUSH"}}`))
	if err != nil {
		t.Fatalf("malformed direct event must not be an error: %v", err)
	}
	if sum := out.(eventhandler.Summary); len(sum.Malformed) != 1 || !strings.Contains(sum.Malformed[0].Error, "digest") {
		t.Errorf("summary = %+v", sum)
	}
	b, _ := json.Marshal(out)
	if !strings.Contains(string(b), `"results":[]`) || !strings.Contains(string(b), `"ignored":0`) {
		t.Errorf("summary JSON = %s", b)
	}
	// Another repository: ignored with one log line.
	out, err = h.Handle(f.ctx, json.RawMessage(sandboxtest.ImageEvent("y", "PUSH", "team-b/app", "sha256:"+strings.Repeat("a", 64), "v1")))
	if err != nil || out.(eventhandler.Summary).Ignored != 1 {
		t.Fatalf("out = %+v, %v", out, err)
	}
	if strings.Count(logs.String(), `"msg":"event ignored"`) != 1 {
		t.Errorf("logs:\n%s", logs)
	}
}

func TestInvalidRulesFailEveryInvocation(t *testing.T) {
	f := newFixture(t, `{"rules":[{"name":"x","destinations":[{"accountId":"2222","region":"us-east-1"}]}]}`)
	h, _ := f.handler(t)
	for _, p := range [][]byte{[]byte(sandboxtest.ImageEvent("e", "PUSH", "team-a/app", "sha256:"+strings.Repeat("a", 64), "v1")), sqsBatch("{}")} {
		_, err := h.Handle(f.ctx, p)
		if err == nil || !strings.Contains(err.Error(), "rules[0].destinations[0].accountId") || !strings.Contains(err.Error(), "configuration") {
			t.Errorf("err = %v", err)
		}
	}
}

func TestUntaggedFalseIgnoresDigestOnlyPush(t *testing.T) {
	f := newFixture(t, rulesDoc(false, false))
	d := f.push(t, "team-a/app", "")
	h, logs := f.handler(t)
	mark := f.sb.AccessLogMark()
	out, err := h.Handle(f.ctx, json.RawMessage(sandboxtest.ImageEvent("u", "PUSH", "team-a/app", d, "")))
	if err != nil || out.(eventhandler.Summary).Ignored != 1 || len(out.(eventhandler.Summary).Results) != 0 {
		t.Fatalf("out = %+v, %v", out, err)
	}
	if n := len(sandbox.Filter(f.sb.AccessLogSince(mark), func(e sandbox.Entry) bool { return e.Account == dstAcct })); n != 0 {
		t.Errorf("%d requests to the destination", n)
	}
	if !strings.Contains(logs.String(), "digest-only") {
		t.Errorf("logs:\n%s", logs)
	}
}

func TestDeleteWithMirrorDeletes(t *testing.T) {
	f := newFixture(t, rulesDoc(true, true))
	d := f.push(t, "team-a/app", "v1")
	h, _ := f.handler(t)
	if _, err := h.Handle(f.ctx, json.RawMessage(sandboxtest.ImageEvent("p", "PUSH", "team-a/app", d, "v1"))); err != nil {
		t.Fatal(err)
	}
	if f.destinationHead(t, "mirror/team-a/app", "v1") != d {
		t.Fatal("not replicated")
	}
	// Delete the source image, then deliver the DELETE event.
	if _, err := ecrDelete(t, f, "team-a/app", d); err != nil {
		t.Fatal(err)
	}
	out, err := h.Handle(f.ctx, json.RawMessage(sandboxtest.ImageEvent("del", "DELETE", "team-a/app", d, "v1")))
	if err != nil {
		t.Fatal(err)
	}
	if sum := out.(eventhandler.Summary); len(sum.Results) != 1 || sum.Results[0].Outcome != "deleted" {
		t.Fatalf("summary = %+v", sum)
	}
	if got := f.destinationHead(t, "mirror/team-a/app", "v1"); got != "" {
		t.Errorf("destination still has v1 → %s", got)
	}
}

func TestDeleteWithoutMirrorDeletesIgnored(t *testing.T) {
	f := newFixture(t, rulesDoc(true, false))
	h, _ := f.handler(t)
	out, err := h.Handle(f.ctx, json.RawMessage(sandboxtest.ImageEvent("del", "DELETE", "team-a/app", "sha256:"+strings.Repeat("b", 64), "v1")))
	if err != nil || out.(eventhandler.Summary).Ignored != 1 {
		t.Fatalf("out = %+v, %v", out, err)
	}
}

func TestWorkItems(t *testing.T) {
	f := newFixture(t, rulesDoc(true, false))
	d := f.push(t, "team-a/app", "v2")
	h, _ := f.handler(t)
	item := func(dest string) string {
		return `{"kind":"ecr-replicator/work-item","version":1,"action":"copy","rule":"prod","source":{"accountId":"111111111111","region":"us-east-1","repository":"team-a/app","digest":"` + d + `","tag":"v2"},"destination":{"accountId":"222222222222","region":"us-east-1","repository":"` + dest + `"},"createdAt":"2026-03-05T10:00:00Z"}`
	}
	out, err := h.Handle(f.ctx, sqsBatch(item("mirror/team-a/app"), item("elsewhere/team-a/app")))
	if err != nil || len(out.(events.SQSEventResponse).BatchItemFailures) != 0 {
		t.Fatalf("out = %+v, %v", out, err)
	}
	if f.destinationHead(t, "mirror/team-a/app", "v2") != d {
		t.Error("work item not copied")
	}
	out, err = h.Handle(f.ctx, json.RawMessage(item("elsewhere/team-a/app")))
	if err != nil {
		t.Fatal(err)
	}
	if sum := out.(eventhandler.Summary); len(sum.Malformed) != 1 || !strings.Contains(sum.Malformed[0].Error, eventhandler.ErrNoRuleAllows.Error()) {
		t.Errorf("summary = %+v", sum)
	}
	if !errors.Is(eventhandler.ErrNoRuleAllows, eventhandler.ErrNoRuleAllows) {
		t.Fatal()
	}
}

// TestLayerTooLargeForTheFunction: an image with a layer that cannot be uploaded within
// one invocation at the throughput the function has measured is acknowledged with the
// outcome too-large-for-function — explained, with the CLI command that copies it, and
// counted — not listed for redelivery: each delivery would restart the upload at byte 0
// until the dead-letter queue.
func TestLayerTooLargeForTheFunction(t *testing.T) {
	f := newFixture(t, rulesDoc(true, false))
	f.w.Source.EnsureRepository(t, f.ctx, "team-a/big")
	img, err := random.Image(8<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	digest := f.w.Source.Push(t, "team-a/big", "v1", img).String()
	h, logs := f.handler(t, copyengine.WithTransferRate(1<<20)) // as measured: 8 s for the layer
	ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)    // the invocation's deadline
	defer cancel()
	out, err := h.Handle(ctx, sqsBatch(sandboxtest.ImageEvent("big", "PUSH", "team-a/big", digest, "v1")))
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if resp := out.(events.SQSEventResponse); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("batchItemFailures = %+v: a layer too large for the function must not come back\n%s", resp.BatchItemFailures, logs)
	}
	var line map[string]any
	for _, l := range jsonLines(logs.String()) {
		if l["outcome"] == "too-large-for-function" {
			line = l
		}
	}
	if line == nil || line["retryable"] != false || line["error_code"] != "TOO_LARGE_FOR_FUNCTION" ||
		!strings.Contains(fmt.Sprint(line["error"]), "ecr-replicator copy ") {
		t.Fatalf("no explained too-large-for-function outcome:\n%s", logs)
	}
	if !strings.Contains(logs.String(), `"Reason":"TOO_LARGE_FOR_FUNCTION"`) {
		t.Errorf("not counted in ReplicationFailures:\n%s", logs)
	}
	failedAt := false
	for _, l := range jsonLines(logs.String()) {
		failedAt = failedAt || (l["Destination"] == dstAcct+"/"+region && l["ReplicationFailures"] == 1.0)
	}
	if !failedAt {
		t.Errorf("not counted in ReplicationFailures by Destination:\n%s", logs)
	}
	if evs := f.sb.PutEvents(); len(evs) != 1 || !strings.Contains(string(evs[0].Detail), `"outcome":"too-large-for-function"`) {
		t.Errorf("result events: %+v", evs)
	}
	if got := f.destinationHead(t, "mirror/team-a/big", "v1"); got != "" {
		t.Errorf("destination has %s: nothing should have been written", got)
	}
}
