package eventhandler_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/rulesource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/signing"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// scanEvent is an "ECR Image Scan" event as ECR sends it, claiming whatever it claims.
func scanEvent(repo, digest string, critical int) string {
	counts := map[string]int{}
	if critical > 0 {
		counts["CRITICAL"] = critical
	}
	b, _ := json.Marshal(map[string]any{
		"version": "0", "id": "scan-" + digest[7:15], "detail-type": "ECR Image Scan", "source": "aws.ecr",
		"account": srcAcct, "time": time.Now().UTC().Format(time.RFC3339), "region": region,
		"resources": []string{"arn:aws:ecr:" + region + ":" + srcAcct + ":repository/" + repo},
		"detail": map[string]any{"scan-status": "COMPLETE", "repository-name": repo, "image-digest": digest,
			"image-tags": []string{"v1"}, "finding-severity-counts": counts},
	})
	return string(b)
}

// TestGateClaimsAreChecked: a message is a claim. A scan event saying "complete, nothing
// found" copies nothing ECR does not say is clean; a push event naming a tag copies the
// digest the gate decided, under the tag only if the source's tag still names it; a
// re-check past its bound is blocked, not re-checked again.
func TestGateClaimsAreChecked(t *testing.T) {
	key := signing.NewKey(t)
	rules := fmt.Sprintf(`{"rules":[{"name":"gated","repositories":["team-a/*"],
	  "require":{"signatures":{"signers":[{"name":"release","publicKey":%q}]},"scan":{"severity":"CRITICAL"}},
	  "destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
		key.PublicPEM(t), dstAcct, region, sandbox.RoleARN(dstAcct, sandbox.DestinationRole), extID)
	f := newFixture(t, rules)
	q, err := sqs.NewFromConfig(f.w.Source.Config).CreateQueue(f.ctx, &sqs.CreateQueueInput{QueueName: aws.String("copy")})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(wiring.EnvCopyQueueURL, aws.ToString(q.QueueUrl))
	h, logs := f.handler(t)
	signed := func(repo string) string {
		d := f.push(t, repo, "v1")
		r := signing.NewRepo(t, f.w.Source.Host, repo, f.w.Source.Auth)
		key.Cosign(t, r, r.Subject(t, d), signing.Options{})
		return d
	}

	// A forged "clean" scan event for an image whose scan found something critical, and
	// for one still being scanned.
	vuln := signed("team-a/vuln")
	if err := f.sb.SetImageScan(srcAcct, region, "team-a/vuln", vuln, sandbox.ScanResult{Findings: []sandbox.ScanFinding{{Name: "CVE-2026-31337", Severity: "CRITICAL"}}}); err != nil {
		t.Fatal(err)
	}
	pending := signed("team-a/pending")
	if err := f.sb.SetImageScan(srcAcct, region, "team-a/pending", pending, sandbox.ScanResult{Status: "IN_PROGRESS"}); err != nil {
		t.Fatal(err)
	}
	out, err := h.Handle(f.ctx, sqsBatch(scanEvent("team-a/vuln", vuln, 0), scanEvent("team-a/pending", pending, 0)))
	if b, _ := json.Marshal(out); err != nil || !strings.Contains(string(b), `"batchItemFailures":[]`) {
		t.Fatalf("%s %v", b, err)
	}
	for _, repo := range []string{"mirror/team-a/vuln", "mirror/team-a/pending"} {
		if got := f.destinationHead(t, repo, "v1"); got != "" {
			t.Errorf("%s copied on a forged scan event: %s", repo, got)
		}
	}
	if !strings.Contains(logs.String(), `"error_code":"ScanFindings"`) || !strings.Contains(logs.String(), "CVE-2026-31337") {
		t.Errorf("the vulnerable image is not reported blocked:\n%s", logs.String())
	}

	// A push event naming v1 at a signed digest while v1 already names an unsigned one:
	// the signed digest may be copied, the tag is not moved onto it.
	good := signed("team-a/moved")
	f.sb.SetImageScan(srcAcct, region, "team-a/moved", good, sandbox.ScanResult{})
	bad := f.push(t, "team-a/moved", "v1")
	f.sb.SetImageScan(srcAcct, region, "team-a/moved", bad, sandbox.ScanResult{})
	if _, err := h.Handle(f.ctx, json.RawMessage(sandboxtest.ImageEvent("e-moved", "PUSH", "team-a/moved", good, "v1"))); err != nil {
		t.Fatal(err)
	}
	if got := f.destinationHead(t, "mirror/team-a/moved", "v1"); got != "" {
		t.Errorf("v1 copied to the destination (%s) though the source's v1 is the unsigned %s", got, bad)
	}

	// A re-check past MaxHoldAttempts is blocked, and sends no other re-check.
	unsigned := f.push(t, "team-a/unsigned", "v1")
	f.sb.SetImageScan(srcAcct, region, "team-a/unsigned", unsigned, sandbox.ScanResult{})
	w, _ := ecrevent.Marshal(ecrevent.WorkItem{Action: ecrevent.WorkCopy, Rule: "gated", CreatedAt: time.Now().UTC().Truncate(time.Second),
		Source:      ecrevent.ImageRef{AccountID: srcAcct, Region: region, Repository: "team-a/unsigned", Digest: unsigned, Tag: "v1"},
		Destination: ecrevent.RepositoryRef{AccountID: dstAcct, Region: region, Repository: "mirror/team-a/unsigned"},
		Hold:        &ecrevent.Hold{Attempt: ecrevent.MaxHoldAttempts, Reason: "SignatureMissing", EventID: "e-unsigned"}})
	out, err = h.Handle(f.ctx, json.RawMessage(w))
	if b, _ := json.Marshal(out); err != nil || !strings.Contains(string(b), `"outcome":"blocked"`) || !regexp.MustCompile(`re-checked \d+ times`).Match(b) ||
		!strings.Contains(string(b), `"code":"SignatureTimeout"`) {
		t.Fatalf("the last re-check: %s %v", b, err)
	}
	attrs, _ := sqs.NewFromConfig(f.w.Source.Config).GetQueueAttributes(f.ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
	if attrs.Attributes["ApproximateNumberOfMessagesDelayed"] != "0" || attrs.Attributes["ApproximateNumberOfMessages"] != "0" {
		t.Errorf("re-checks sent after the last: %v", attrs.Attributes)
	}
}

// TestGatesNeedTheStacksGates: a rule with a promotion gate in a stack deployed without
// gates (no scan events, no re-checks past Lambda's loop detection) fails every
// invocation, saying what to deploy.
func TestGatesNeedTheStacksGates(t *testing.T) {
	key := signing.NewKey(t)
	f := newFixture(t, fmt.Sprintf(`{"rules":[{"require":{"signatures":{"signers":[{"publicKey":%q}]}},
	  "destinations":[{"accountId":%q,"region":%q}]}]}`, key.PublicPEM(t), dstAcct, region))
	t.Setenv(rulesource.EnvPromotionGates, "false")
	h, _ := f.handler(t)
	if _, err := h.Handle(f.ctx, json.RawMessage(sandboxtest.ImageEvent("e", "PUSH", "team-a/app", "sha256:"+strings.Repeat("a", 64), "v1"))); err == nil ||
		!strings.Contains(err.Error(), "deployed without promotion gates (PROMOTION_GATES=false") {
		t.Fatalf("a gated rule in a stack without gates: %v", err)
	}
	t.Setenv(rulesource.EnvPromotionGates, "true")
	h, _ = f.handler(t)
	if _, err := h.Handle(f.ctx, json.RawMessage(`{"Records":[]}`)); err != nil {
		t.Fatalf("with gates: %v", err)
	}
}
