package reliability_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

const goodDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func workItemBody(mut func(m map[string]any)) string {
	m := map[string]any{
		"kind": ecrevent.WorkItemKind, "version": 1, "action": "copy", "rule": "rel",
		"source":      map[string]any{"accountId": srcAcct, "region": region, "repository": "team-a/app", "digest": goodDigest, "tag": "v1"},
		"destination": map[string]any{"accountId": dstAcct, "region": region, "repository": "mirror/team-a/app"},
		"createdAt":   "2026-01-02T03:04:05Z",
	}
	if mut != nil {
		mut(m)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// badBodies are messages that must be rejected before any network call; want is a piece
// of the message the rejection must carry.
func badBodies() []struct{ name, body, want string } {
	long := strings.Repeat("a", 257)
	return []struct{ name, body, want string }{
		{"repo-uppercase", sandboxtest.ImageEvent("e", "PUSH", "Team-A/app", goodDigest, "v1"), "repository-name"},
		{"repo-dotdot", sandboxtest.ImageEvent("e", "PUSH", "team-a/../team-b/app", goodDigest, "v1"), "repository-name"},
		{"repo-double-slash", sandboxtest.ImageEvent("e", "PUSH", "team-a//app", goodDigest, "v1"), "repository-name"},
		{"repo-leading-slash", sandboxtest.ImageEvent("e", "PUSH", "/team-a/app", goodDigest, "v1"), "repository-name"},
		{"repo-too-long", sandboxtest.ImageEvent("e", "PUSH", "team-a/"+long, goodDigest, "v1"), "repository-name"},
		{"repo-host", sandboxtest.ImageEvent("e", "PUSH", "evil.example.com:5000/team-a/app", goodDigest, "v1"), "repository-name"},
		{"tag-space", sandboxtest.ImageEvent("e", "PUSH", "team-a/app", goodDigest, "v 1"), "image-tag"},
		{"tag-leading-dash", sandboxtest.ImageEvent("e", "PUSH", "team-a/app", goodDigest, "-v1"), "image-tag"},
		{"tag-too-long", sandboxtest.ImageEvent("e", "PUSH", "team-a/app", goodDigest, strings.Repeat("v", 301)), "image-tag"},
		{"tag-slash", sandboxtest.ImageEvent("e", "PUSH", "team-a/app", goodDigest, "v1/../x"), "image-tag"},
		{"digest-short", sandboxtest.ImageEvent("e", "PUSH", "team-a/app", "sha256:abc", "v1"), "image-digest"},
		{"digest-nonhex", sandboxtest.ImageEvent("e", "PUSH", "team-a/app", "sha256:"+strings.Repeat("z", 64), "v1"), "image-digest"},
		{"digest-algorithm", sandboxtest.ImageEvent("e", "PUSH", "team-a/app", "md5:"+strings.Repeat("a", 32), "v1"), "image-digest"},
		{"digest-uppercase", sandboxtest.ImageEvent("e", "PUSH", "team-a/app", strings.ToUpper(goodDigest), "v1"), "image-digest"},
		{"not-json", `{"version":"0","detail-type":"ECR Image Action"`, ""},
		{"oversized", `{"pad":"` + strings.Repeat("x", ecrevent.MaxBodySize) + `"}`, ""},
		{"workitem-unknown-field", workItemBody(func(m map[string]any) { m["priority"] = 1 }), "unknown field"},
		{"workitem-unknown-nested", workItemBody(func(m map[string]any) { m["source"].(map[string]any)["registry"] = "x" }), "unknown field"},
		{"workitem-bad-version", workItemBody(func(m map[string]any) { m["version"] = 99 }), "version"},
		{"workitem-escape-namespace", workItemBody(func(m map[string]any) {
			m["destination"].(map[string]any)["repository"] = "team-b/app" // not where any rule sends team-a/app
		}), "no rule allows"},
		{"workitem-escape-dotdot", workItemBody(func(m map[string]any) {
			m["destination"].(map[string]any)["repository"] = "mirror/../team-b/app"
		}), "destination"},
		{"workitem-other-account", workItemBody(func(m map[string]any) {
			m["destination"].(map[string]any)["accountId"] = "333333333333"
		}), "no rule allows"},
	}
}

// TestBadInputRejectedBeforeNetwork: every bad message is rejected with a message
// naming what is wrong, acknowledged (never retried), and no request reaches any API
// or registry.
func TestBadInputRejectedBeforeNetwork(t *testing.T) {
	f := newFx(t, 1100)
	mark := f.sb.AccessLogMark()
	cases := badBodies()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sum, err := f.direct(t, c.body)
			if err != nil {
				t.Fatalf("direct invocation answered an error (Lambda would retry): %v", err)
			}
			if len(sum.Malformed) != 1 || sum.Succeeded+sum.Failed != 0 {
				t.Fatalf("not rejected: %+v", sum)
			}
			msg := sum.Malformed[0].Error
			if c.want != "" && !strings.Contains(strings.ToLower(msg), strings.ToLower(c.want)) {
				t.Errorf("message %q does not mention %q", msg, c.want)
			}
			report(t, "rejected: %.160s", msg)
		})
	}
	var bodies []string
	for _, c := range cases {
		bodies = append(bodies, c.body)
	}
	out, err := f.h.Handle(f.ctx, sandboxtest.SQSBatch(1, f.records(bodies...)...))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(out.(events.SQSEventResponse).BatchItemFailures); n != 0 {
		t.Errorf("%d bad message(s) left for redelivery", n)
	}
	if got := f.sb.AccessLogSince(mark); len(got) != 0 {
		t.Errorf("%d network call(s) for bad input, first %+v", len(got), got[0])
	}
}

// TestBadRulesRejectedBeforeNetwork: a rules document that breaks patterns, escapes
// into another namespace, is oversized or has unknown fields fails every invocation
// with a configuration error, before any network call.
func TestBadRulesRejectedBeforeNetwork(t *testing.T) {
	dest := func(extra string) func(string) string {
		return func(ext string) string {
			return fmt.Sprintf(`{"rules":[{"name":"r","repositories":["team-a/**"],"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q%s}]}]}`,
				dstAcct, region, sandbox.RoleARN(dstAcct, sandbox.DestinationRole), ext, extra)
		}
	}
	cases := []struct {
		name  string
		rules func(string) string
		want  string
	}{
		{"prefix-dotdot", dest(`,"repositoryPrefix":"../team-b/"`), "prefix"},
		{"prefix-leading-slash", dest(`,"repositoryPrefix":"/team-b/"`), "prefix"},
		{"prefix-inner-dotdot", dest(`,"repositoryPrefix":"mirror/../../team-b/"`), "prefix"},
		{"prefix-uppercase", dest(`,"repositoryPrefix":"Mirror/"`), "prefix"},
		{"prefix-too-long", dest(`,"repositoryPrefix":"` + strings.Repeat("p", 250) + `/"`), "prefix"},
		{"unknown-field-destination", dest(`,"acountId":"x"`), "acountId"},
		{"unknown-field-top", func(e string) string { return strings.Replace(dest("")(e), `{"rules"`, `{"rulez":[],"rules"`, 1) }, "rulez"},
		{"bad-account", func(e string) string { return strings.Replace(dest("")(e), dstAcct, "2222", 1) }, "account"},
		{"oversized", func(e string) string {
			return strings.Replace(dest("")(e), `"name":"r"`, `"name":"r","description":"`+strings.Repeat("x", 300<<10)+`"`, 1)
		}, "limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFx(t, 1200, withRules(c.rules))
			mark := f.sb.AccessLogMark()
			if f.deps.RulesErr == nil && c.name == "prefix-too-long" {
				// The prefix alone is valid; the names it makes are checked per target:
				// the push is a permanent failure before any network call.
				sum, err := f.direct(t, sandboxtest.ImageEvent("e", "PUSH", "team-a/app", goodDigest, "v1"))
				if err != nil || sum.Failed != 1 || sum.Retryable != 0 || !strings.Contains(sum.Results[0].Error, "256") {
					t.Errorf("summary %+v, err %v", sum, err)
				}
				if got := f.sb.AccessLogSince(mark); len(got) != 0 {
					t.Errorf("%d network call(s), first %+v", len(got), got[0])
				}
				if len(sum.Results) == 1 {
					report(t, "document accepted; the push is a permanent failure: %.160s", sum.Results[0].Error)
				}
				return
			}
			if f.deps.RulesErr == nil {
				t.Fatal("the rules document was accepted")
			}
			_, err := f.h.Handle(f.ctx, sandboxtest.SQSBatch(1, f.records(sandboxtest.ImageEvent("e", "PUSH", "team-a/app", goodDigest, "v1"))...))
			if err == nil || !strings.Contains(err.Error(), "configuration error") {
				t.Errorf("Handle: %v", err)
			}
			if !strings.Contains(strings.ToLower(f.deps.RulesErr.Error()), strings.ToLower(c.want)) {
				t.Errorf("rules error %q does not mention %q", f.deps.RulesErr, c.want)
			}
			if got := f.sb.AccessLogSince(mark); len(got) != 0 {
				t.Errorf("%d network call(s), first %+v", len(got), got[0])
			}
			report(t, "rejected: %.160s", f.deps.RulesErr)
		})
	}
}

// TestBadBackfillRequestRejectedBeforeNetwork: backfill requests that are malformed or
// carry unknown fields are refused with a clear error before any network call.
func TestBadBackfillRequestRejectedBeforeNetwork(t *testing.T) {
	f := newFx(t, 1300)
	bf := sandboxtest.BackfillFunction(f.deps, func(string) string { return "" })
	for _, c := range []struct{ name, body, want string }{
		{"unknown-field", `{"repositorys":["team-a/*"]}`, "unknown field"},
		{"bad-mode", `{"mode":"turbo"}`, "mode"},
		{"bad-since", `{"since":"yesterday"}`, "since"},
		{"bad-token", `{"continuationToken":"not a token"}`, "continuationToken"},
		{"wrong-type", `{"repositories":"team-a/*"}`, "repositories"},
		{"trailing", `{} {}`, "trailing"},
		{"not-json", `{"repositories":[`, "backfill request"},
		{"bad-glob", `{"repositories":["team-a/["]}`, ""},
		{"oversized", `{"repositories":["` + strings.Repeat("a", 300<<10) + `"]}`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			mark := f.sb.AccessLogMark()
			_, err := bf.Handle(f.ctx, json.RawMessage(c.body))
			if err == nil {
				t.Fatalf("accepted")
			}
			if c.want != "" && !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
			report(t, "rejected: %.160s", err)
			if got := f.sb.AccessLogSince(mark); len(got) != 0 {
				t.Errorf("%d network call(s), first %+v", len(got), got[0])
			}
		})
	}
}

var (
	_ = eventhandler.Summary{}
	_ = wiring.Logger
)
