package wiring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/ecr-replicator/ecr-replicator/internal/gate/verify"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/rulesource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/signing"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

const param = "/ecr-replicator/rules"

func doc(name string) string {
	return fmt.Sprintf(`{"rules":[{"name":%q,"destinations":[{"accountId":"222222222222","region":"us-east-1","roleArn":"arn:aws:iam::222222222222:role/ecr-replicator-destination"}]}]}`, name)
}

// TestServeKeepsTheRulesCurrent: each invocation works with the parameter's current
// version (checked every time here: REPLICATION_RULES_CHECK_SECONDS=0); a version the
// function cannot use fails the invocation with the reason and a ConfigurationErrors
// metric; the replicator (engine, credentials) outlives the versions.
func TestServeKeepsTheRulesCurrent(t *testing.T) {
	w := sandboxtest.Start(t)
	put := func(v string) {
		t.Helper()
		if _, err := w.SB.PutParameter(sandbox.SourceAccount, sandbox.DefaultRegion, param, v, "", true); err != nil {
			t.Fatal(err)
		}
	}
	put(`{"rules":[]}`) // invalid at cold start
	t.Setenv(rulesource.EnvParameter, param)
	t.Setenv(rulesource.EnvCheckSeconds, "0")
	t.Setenv(rulesource.EnvAssumableRoles, "arn:aws:iam::*:role/ecr-replicator-destination")
	t.Setenv(rules.EnvRules, "")
	logs, emf := &sandboxtest.LogBuffer{}, &sandboxtest.LogBuffer{}
	deps, err := wiring.Load(w.Ctx, "replicate", slog.New(slog.NewJSONHandler(logs, nil)), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if deps.RulesErr == nil || !strings.Contains(deps.RulesErr.Error(), "at least one rule") {
		t.Fatalf("cold start with an invalid document: RulesErr = %v", deps.RulesErr)
	}
	builds := 0
	serve := deps.Serve(func(string) string { return "" }, emf, func(d *wiring.Deps) wiring.HandlerFunc {
		builds++
		name, repl := d.Rules.Rules[0].Name, d.Replicator
		return func(context.Context, json.RawMessage) (any, error) { return fmt.Sprintf("%s %p", name, repl), nil }
	})
	invoke := func() string {
		t.Helper()
		out, err := serve(w.Ctx, json.RawMessage(`{}`))
		if err != nil {
			return "error: " + err.Error()
		}
		return out.(string)
	}
	if got := invoke(); !strings.HasPrefix(got, "error: configuration error: rules parameter /ecr-replicator/rules version 1: rules: at least one rule") {
		t.Fatalf("invalid document: %s", got)
	}
	if !strings.Contains(emf.String(), `"ConfigurationErrors":1`) || !strings.Contains(emf.String(), `"Namespace":"ECRReplicator"`) {
		t.Fatalf("no ConfigurationErrors metric:\n%s", emf)
	}
	put(doc("a"))
	first := invoke()
	if !strings.HasPrefix(first, "a ") {
		t.Fatalf("after the fix: %s", first)
	}
	if again := invoke(); again != first || builds != 1 {
		t.Fatalf("unchanged version rebuilt the handler: %s, %d builds", again, builds)
	}
	put(doc("b"))
	second := invoke()
	if !strings.HasPrefix(second, "b ") || builds != 2 {
		t.Fatalf("new version: %s, %d builds", second, builds)
	}
	if strings.Fields(first)[1] != strings.Fields(second)[1] {
		t.Errorf("the replicator was replaced by a new rules version (%s, %s): the engine's pacing and caches are lost", first, second)
	}
	// A role the function may not assume: refused, not copied with the old version.
	put(strings.Replace(doc("c"), "role/ecr-replicator-destination", "role/admin", 1))
	if got := invoke(); !strings.Contains(got, `is not a role this function may assume`) {
		t.Fatalf("uncovered role: %s", got)
	}
	if n := strings.Count(emf.String(), `"ConfigurationErrors":1`); n != 2 {
		t.Errorf("%d ConfigurationErrors lines, want 2", n)
	}
	if !strings.Contains(logs.String(), `"msg":"configuration error: no usable rules document; every invocation fails until it is fixed"`) {
		t.Errorf("not logged:\n%s", logs)
	}
}

// TestServeRetriesAThrottledFirstRead: Parameter Store throttling the first read is no
// configuration error (ConfigurationErrorsAlarm pages at one): the invocation fails to be
// retried, without the metric, and a later invocation reads the parameter.
func TestServeRetriesAThrottledFirstRead(t *testing.T) {
	w := sandboxtest.Start(t)
	if _, err := w.SB.PutParameter(sandbox.SourceAccount, sandbox.DefaultRegion, param, doc("a"), "", true); err != nil {
		t.Fatal(err)
	}
	t.Setenv(rulesource.EnvParameter, param)
	t.Setenv(rulesource.EnvCheckSeconds, "0") // no wait between reads: the next invocation reads
	t.Setenv(rules.EnvRules, "")
	if err := w.SB.InjectAPIFault(sandbox.APIFault{Service: "ssm", Operation: "GetParameter", Code: "ThrottlingException", Count: -1}); err != nil {
		t.Fatal(err)
	}
	logs, emf := &sandboxtest.LogBuffer{}, &sandboxtest.LogBuffer{}
	deps, err := wiring.Load(w.Ctx, "replicate", slog.New(slog.NewJSONHandler(logs, nil)), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	serve := deps.Serve(func(string) string { return "" }, emf, func(d *wiring.Deps) wiring.HandlerFunc {
		name := d.Rules.Rules[0].Name
		return func(context.Context, json.RawMessage) (any, error) { return name, nil }
	})
	if _, err := serve(w.Ctx, json.RawMessage(`{}`)); err == nil || !strings.Contains(err.Error(), "ThrottlingException") || strings.Contains(err.Error(), "configuration error") {
		t.Fatalf("throttled first read: %v, want the throttling, not a configuration error", err)
	}
	if strings.Contains(emf.String(), "ConfigurationErrors") {
		t.Errorf("a throttled read counted as a configuration error:\n%s", emf)
	}
	w.SB.ClearFaults()
	if out, err := serve(w.Ctx, json.RawMessage(`{}`)); err != nil || out != "a" {
		t.Fatalf("after the throttling: %v, %v", out, err)
	}
}

// TestServeRefusesSignersThatDoNotCompile: a rules version whose promotion gate names a
// key that is no public key is refused like an unusable document — the reason names the
// field, the invocation fails, ConfigurationErrors counts it — until a version that
// compiles replaces it; a function built without verification refuses signers at all.
func TestServeRefusesSignersThatDoNotCompile(t *testing.T) {
	w := sandboxtest.Start(t)
	gated := func(key string) string {
		return fmt.Sprintf(`{"rules":[{"name":"gated","require":{"signatures":{"signers":[{"name":"release","publicKey":%q}]}},
		  "destinations":[{"accountId":"222222222222","region":"us-east-1","roleArn":"arn:aws:iam::222222222222:role/ecr-replicator-destination"}]}]}`, key)
	}
	put := func(v string) {
		t.Helper()
		if _, err := w.SB.PutParameter(sandbox.SourceAccount, sandbox.DefaultRegion, param, v, "", true); err != nil {
			t.Fatal(err)
		}
	}
	put(gated("not a key"))
	t.Setenv(rulesource.EnvParameter, param)
	t.Setenv(rulesource.EnvCheckSeconds, "0")
	t.Setenv(rules.EnvRules, "")
	logs, emf := &sandboxtest.LogBuffer{}, &sandboxtest.LogBuffer{}
	deps, err := wiring.Load(w.Ctx, "replicate", slog.New(slog.NewJSONHandler(logs, nil)), os.Getenv)
	if err != nil || deps.RulesErr != nil {
		t.Fatal(err, deps.RulesErr)
	}
	getenv := func(string) string { return "" }
	serve := deps.Serve(getenv, emf, func(d *wiring.Deps) wiring.HandlerFunc { return d.Replicate(getenv, emf) })
	deps.Verify = verify.ForLambda
	if _, err := serve(w.Ctx, json.RawMessage(`{"Records":[]}`)); err == nil ||
		!strings.Contains(err.Error(), "configuration error: rules[0].require.signatures.signers[0].publicKey") {
		t.Fatalf("a key that does not parse: %v", err)
	}
	if !strings.Contains(emf.String(), `"ConfigurationErrors":1`) ||
		!strings.Contains(logs.String(), `"msg":"configuration error: the promotion gates' signers; every invocation fails until it is fixed"`) {
		t.Fatalf("not counted or not logged:\n%s\n%s", emf, logs)
	}
	put(gated(signing.NewKey(t).PublicPEM(t)))
	if _, err := serve(w.Ctx, json.RawMessage(`{"Records":[]}`)); err != nil {
		t.Fatalf("a version whose key compiles: %v", err)
	}
	deps.Verify = nil
	put(gated(signing.NewKey(t).PublicPEM(t)))
	if _, err := serve(w.Ctx, json.RawMessage(`{"Records":[]}`)); err == nil || !strings.Contains(err.Error(), "built without signature verification") {
		t.Fatalf("signers in a function without verification: %v", err)
	}
}
