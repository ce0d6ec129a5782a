package eventhandler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/gate"
	"github.com/ecr-replicator/ecr-replicator/internal/gate/verify"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/signing"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// TestReview25ReferrerSmuggledPastTheGate: a gated copy copies every referrer of the
// image it decided — "signatures, attestations and SBOMs travel with the image" — but
// nothing checks that a referrer is one of those. Anyone who can push to the build
// repository pushes a runnable image (an OCI image manifest: image config, layers) whose
// subject is a signed, clean image; it is neither signed nor scanned clean (a CRITICAL
// finding), and when the clean image is promoted it lands in the gated destination too,
// byte for byte, pullable by its digest from the prod registry the gate guards.
func TestReview25ReferrerSmuggledPastTheGate(t *testing.T) {
	key := signing.NewKey(t)
	rules := fmt.Sprintf(`{"rules":[{"name":"gated","repositories":["team-a/*"],
	  "require":{"signatures":{"signers":[{"name":"release","publicKey":%q}]},"scan":{"severity":"CRITICAL"}},
	  "destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
		key.PublicPEM(t), dstAcct, region, sandbox.RoleARN(dstAcct, sandbox.DestinationRole), extID)
	f := newFixture(t, rules)
	h, logs := f.handler(t)

	good := f.push(t, "team-a/app", "v1")
	r := signing.NewRepo(t, f.w.Source.Host, "team-a/app", f.w.Source.Auth)
	subject := r.Subject(t, good)
	key.Cosign(t, r, subject, signing.Options{})
	if err := f.sb.SetImageScan(srcAcct, region, "team-a/app", good, sandbox.ScanResult{}); err != nil {
		t.Fatal(err)
	}

	// The smuggled image: runnable, unsigned, CRITICAL, a referrer of the good one.
	base, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	smuggled := mutate.Subject(mutate.MediaType(base, types.OCIManifestSchema1), v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}).(v1.Image)
	sd := f.w.Source.Push(t, "team-a/app", "", smuggled).String()
	if err := f.sb.SetImageScan(srcAcct, region, "team-a/app", sd, sandbox.ScanResult{Findings: []sandbox.ScanFinding{{Name: "CVE-2026-6667", Severity: "CRITICAL"}}}); err != nil {
		t.Fatal(err)
	}

	out, err := h.Handle(f.ctx, json.RawMessage(sandboxtest.ImageEvent("e-good", "PUSH", "team-a/app", good, "v1")))
	if b, _ := json.Marshal(out); err != nil || strings.Contains(string(b), `"outcome":"blocked"`) || strings.Contains(string(b), `"outcome":"held"`) {
		t.Fatalf("the signed, clean image was not promoted: %s %v", b, err)
	}
	if got := f.destinationHead(t, "mirror/team-a/app", "v1"); got != good {
		t.Fatalf("the signed, clean image is not in the destination under v1 (%q)", got)
	}
	if got := f.destinationHead(t, "mirror/team-a/app", sd); got != "" {
		t.Fatalf("an unsigned image with a CRITICAL finding (%s), a referrer of the promoted one, was copied into the gated destination", sd)
	}
	// Left out, and said so: counted by rule, not only logged.
	counted := false
	for _, l := range jsonLines(logs.String()) {
		if v, ok := l["GateReferrersRefused"].(float64); ok && v >= 1 && l["Rule"] == "gated" {
			counted = true
		}
	}
	if !counted {
		t.Errorf("no GateReferrersRefused{Rule=gated} metric for the referrer left out:\n%s", logs)
	}
}

// TestReview25InspectorScanOfAnEC2Instance: the GateEventRule sends every "Inspector2
// Scan" event of the account to the push queue (source aws.inspector2, no filter on the
// resource), but Amazon Inspector sends that detail type for the initial scan of every
// resource it scans, not only ECR images: an EC2 instance's names detail.instance-id and
// no repository-name (https://docs.aws.amazon.com/inspector/latest/user/eventbridge-integration.html,
// "Amazon EC2 instance initial scan"; Lambda functions likewise). Each is refused as a
// malformed message — an error log line "permanent failure" and a ReplicationFailures
// count — so an account whose Inspector scans its instances and functions raises
// replication failures that are none. The sandbox emits Inspector events for ECR images
// only, which hides it.
func TestReview25InspectorScanOfAnEC2Instance(t *testing.T) {
	key := signing.NewKey(t)
	f := newFixture(t, fmt.Sprintf(`{"rules":[{"name":"gated","repositories":["team-a/*"],
	  "require":{"signatures":{"signers":[{"name":"release","publicKey":%q}]}},
	  "destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
		key.PublicPEM(t), dstAcct, region, sandbox.RoleARN(dstAcct, sandbox.DestinationRole), extID))
	h, logs := f.handler(t)
	ec2, _ := json.Marshal(map[string]any{
		"version": "0", "id": "28a46762-6ac8-6cc4-4f55-bc9ab99af928", "detail-type": "Inspector2 Scan", "source": "aws.inspector2",
		"account": srcAcct, "time": "2023-01-20T22:52:35Z", "region": region, "resources": []string{"i-087d63509b8c97098"},
		"detail": map[string]any{"scan-status": "INITIAL_SCAN_COMPLETE", "instance-id": "i-087d63509b8c97098", "version": "1.0",
			"finding-severity-counts": map[string]int{"CRITICAL": 0, "HIGH": 0, "MEDIUM": 0, "TOTAL": 0}},
	})
	if _, err := h.Handle(f.ctx, sqsBatch(string(ec2))); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "ReplicationFailures") || strings.Contains(logs.String(), "permanent failure") {
		t.Fatalf("an Inspector scan of an EC2 instance, which the GateEventRule delivers, is counted as a replication failure:\n%s", logs)
	}
}

// clockGate decides as the gate does for an image whose signature arrives at signedAt
// and whose scan never completes: held for its signature until push+10m (the signature
// wait), then held for its scan until push+24h (the scan wait), then blocked.
type clockGate struct {
	now              func() time.Time
	pushed, signedAt time.Time
}

func (g *clockGate) Decide(_ context.Context, _ gate.Image, reqs []*rules.Require) ([]gate.Decision, error) {
	now := g.now()
	d := gate.Decision{Verdict: gate.Hold, PushedAt: g.pushed}
	switch {
	case now.Before(g.signedAt):
		d.Code, d.Reason, d.Until = gate.CodeSignatureMissing, "no signature", g.pushed.Add(10*time.Minute)
	case now.Before(g.pushed.Add(24 * time.Hour)):
		d.Code, d.Reason, d.Until = gate.CodeScanPending, "scan in progress", g.pushed.Add(24*time.Hour)
	default:
		d = gate.Decision{Verdict: gate.Block, Code: gate.CodeScanTimeout, Reason: "scan in progress, 24h0m0s after the push (scan.wait)", PushedAt: g.pushed}
	}
	out := make([]gate.Decision, len(reqs))
	for i := range out {
		out[i] = d
	}
	return out, nil
}
func (g *clockGate) Lookup(context.Context, gate.Image) (gate.Lookup, error) {
	return gate.Lookup{}, nil
}
func (g *clockGate) Parents(context.Context, gate.Image, time.Time) ([]gate.Lookup, error) {
	return nil, nil
}

// TestReview25HoldGivesUpBeforeItsWait: a held copy re-checks itself every tenth of the
// wait it is held for (1 s to 15 min), at most MaxHoldAttempts (100) times "whatever the
// clocks say", the last "just after the wait ends". The two bounds do not fit together
// once a hold changes its reason: an image signed 9 minutes after its push (held for its
// signature, a re-check a minute) whose scan takes long (scan wait 24 h, the documented
// maximum: a re-check every 15 min) needs ~105 re-checks to reach the end of its scan
// wait; the 101st reports it blocked — ScanTimeout, "re-checked 100 times" — at 22h54m,
// over an hour before the wait it was promised ends. A scan completing in that last stretch
// whose event is lost (EventBridge delivers best effort) leaves a clean, signed image
// blocked. The handler, the copy queue and the re-checks are real; the gate is a clock, and
// so is the handler's (SQS's delays are taken as waited out).
func TestReview25HoldGivesUpBeforeItsWait(t *testing.T) {
	var offset atomic.Int64
	start := time.Now()
	now := func() time.Time { return start.Add(time.Duration(offset.Load())) }
	key := signing.NewKey(t)
	rules := fmt.Sprintf(`{"rules":[{"name":"gated","repositories":["team-a/*"],
	  "require":{"signatures":{"wait":"10m","signers":[{"name":"release","publicKey":%q}]},"scan":{"severity":"CRITICAL","wait":"24h"}},
	  "destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
		key.PublicPEM(t), dstAcct, region, sandbox.RoleARN(dstAcct, sandbox.DestinationRole), extID)
	f := newFixture(t, rules)
	cq, err := sqs.NewFromConfig(f.w.Source.Config).CreateQueue(f.ctx, &sqs.CreateQueueInput{QueueName: aws.String("copy")})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(wiring.EnvCopyQueueURL, aws.ToString(cq.QueueUrl))
	d := f.push(t, "team-a/app", "v1")
	deps, err := wiring.Load(f.ctx, "replicate", slog.New(slog.DiscardHandler), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	deps.Verify = verify.ForLambda
	g := &clockGate{now: now, pushed: now(), signedAt: now().Add(9 * time.Minute)}
	h := deps.Handler(os.Getenv, nil, func(c *eventhandler.Config) { c.Gate, c.Now = g, now })

	delayRE := regexp.MustCompile(`re-checked in (\S+) \(re-check (\d+)\)`)
	body := sandboxtest.ImageEvent("e-push", "PUSH", "team-a/app", d, "v1")
	for step := 0; step < 200; step++ {
		out, err := h.Handle(f.ctx, json.RawMessage(body))
		if err != nil {
			t.Fatal(err)
		}
		sum := out.(eventhandler.Summary)
		if len(sum.Results) != 1 {
			t.Fatalf("step %d: %+v", step, sum)
		}
		r := sum.Results[0]
		if r.Outcome == "blocked" {
			if at := now().Sub(g.pushed); at < 24*time.Hour {
				t.Fatalf("blocked %s after the push, before its scan wait (24h) ended: %s: %s", at.Round(time.Minute), r.Code, r.Reason)
			}
			return
		}
		m := delayRE.FindStringSubmatch(r.Reason)
		if r.Outcome != "held" || m == nil {
			t.Fatalf("step %d: %+v", step, r)
		}
		delay, _ := time.ParseDuration(m[1])
		offset.Add(int64(delay)) // the handler's clock: SQS's delay, waited out
		queued, err := f.sb.QueueMessages(srcAcct, region, "copy")
		if err != nil || len(queued) != step+1 {
			t.Fatalf("step %d: re-check %s not sent: %d messages, %v", step, m[2], len(queued), err)
		}
		body = queued[step].Body
	}
	t.Fatal("the hold never ended")
}
