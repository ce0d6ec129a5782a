package infra

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventsource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/stack"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/cfn"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/lambdatest"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

func TestMain(m *testing.M) { lambdatest.Main(m) }

// TestRulesParameterReplicates deploys the stack for a platform team: forty teams' rules
// (three destinations each, over Lambda's 4 KB of environment) in a Systems Manager
// parameter of the sandbox, template.yaml rendered with RulesParameterName — the
// function's policies (ssm:GetParameter on that parameter, sts:AssumeRole on the
// StackSet's role name in any account) and environment taken from it — and the push path
// as deployed: an image pushed to three teams' repositories goes through the
// ImageActionRule, the ReplicationQueue and its event source into the replicate
// function's bootstrap under the Lambda Runtime Interface Emulator, which copies it to all
// three destinations. A new version of the parameter applies to the next push without a
// deployment; a version naming a role outside the grant is refused, counted as a
// ConfigurationErrors metric, and copies nothing.
func TestRulesParameterReplicates(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bootstrap and the RIE")
	}
	const param = "/platform/ecr-replicator/rules"
	params := map[string]any{"RulesParameterName": param, "RulesCheckSeconds": 0, "DestinationRoleArns": stackSetGrant}
	// The destination role as the StackSet deploys it: every repository, the external ID,
	// the three regions the rules name.
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, params, map[string]any{"ExternalId": sandboxtest.ExternalID, "RepositoryPrefix": "",
		"Regions": "us-east-1,us-west-2,eu-west-1"}))
	ctx := w.Ctx
	regions := []string{"us-east-1", "us-west-2", "eu-west-1"}
	doc := sandboxtest.TeamRules(40, sandbox.DestinationAccount, regions, w.DestinationRoleARN(), sandboxtest.ExternalID)
	if len(doc) <= 4096 {
		t.Fatalf("the document is %d bytes; the point is a document over Lambda's 4 KB of environment", len(doc))
	}
	put := func(v string) {
		t.Helper()
		if _, err := w.SB.PutParameter(sandbox.SourceAccount, sandbox.DefaultRegion, param, v, "Advanced", true); err != nil {
			t.Fatal(err)
		}
	}
	put(doc)

	// The function's environment: what the template sets, the stack's, the SDK's, and the
	// function role's credentials.
	r, err := cfn.RenderFile(sourceTemplate, cfn.Options{Parameters: params, Region: sandbox.DefaultRegion, AccountID: sandbox.SourceAccount, StackName: sandboxtest.StackName})
	if err != nil {
		t.Fatal(err)
	}
	globals, _ := cfn.Section(r.Doc, "Globals")["Function"].(map[string]any)
	vars, _ := globals["Environment"].(map[string]any)["Variables"].(map[string]any)
	st, err := stack.Deploy(ctx, w.SB, stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
	for _, k := range []string{"REPLICATION_RULES", "REPLICATION_RULES_PARAMETER", "REPLICATION_RULES_CHECK_SECONDS", "DESTINATION_ROLE_ARNS", "METRICS_NAMESPACE"} {
		env[k] = cfn.ScalarString(vars[k])
	}
	if env["REPLICATION_RULES"] != "" || env["REPLICATION_RULES_PARAMETER"] != param || env["DESTINATION_ROLE_ARNS"] != "arn:aws:iam::*:role/ecr-replicator-destination" {
		t.Fatalf("the template's environment: %v", env)
	}
	for _, m := range []map[string]string{w.Env, st.FunctionEnv()} {
		for k, v := range m {
			env[k] = v
		}
	}
	delete(env, rules.EnvRules)
	env = sandboxtest.FunctionEnvFor(t, ctx, w.SB, env)

	// Built here, on the test's goroutine: a bootstrap that does not build fails the test
	// instead of stopping the event source's goroutine that would start it.
	pool := lambdatest.Pool(t, "github.com/ecr-replicator/ecr-replicator/functions/replicate", env)
	envs := eventsource.NewEnvironments(func() (eventsource.Handler, error) { return pool.New() })
	es, stop, err := st.Start(ctx, stack.Mapping{Invoke: envs.Invoke, MaximumConcurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	stdout := func() string {
		var b strings.Builder
		for _, f := range pool.Functions() {
			b.WriteString(f.Stdout())
		}
		return b.String()
	}
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	push := func(tag string, teams ...int) string {
		t.Helper()
		var d string
		for _, n := range teams {
			repo := fmt.Sprintf("team-%02d/app", n)
			w.Source.EnsureRepository(t, ctx, repo)
			d = w.Source.Push(t, repo, tag, img).String()
		}
		return d
	}
	pushAll := func(tag string, teams ...int) string {
		t.Helper()
		d := push(tag, teams...)
		if err := st.WaitIdle(ctx, es); err != nil {
			t.Fatal(err)
		}
		return d
	}
	sides := map[string]sandboxtest.Side{}
	for _, region := range regions {
		sides[region] = destinationIn(t, w, region)
	}
	replicas := func(tag string, teams ...int) (got []string) {
		t.Helper()
		for _, n := range teams {
			for _, region := range regions {
				got = append(got, sides[region].Digest(t, fmt.Sprintf("%s/team-%02d/app", region, n), tag))
			}
		}
		return got
	}

	digest := pushAll("v1", 0, 17, 39)
	for i, d := range replicas("v1", 0, 17, 39) {
		if d != digest {
			t.Errorf("replica %d of v1: %q, want %s", i, d, digest)
		}
	}
	if n, err := st.DeadLetters(ctx); err != nil || n != 0 {
		t.Errorf("dead letters: %d %v", n, err)
	}
	for _, e := range sandboxtest.Denials(w.SB, 0) {
		t.Errorf("denied under the deployed policies: %s %s by %s", e.Action, e.Reference, e.Principal)
	}
	if !strings.Contains(stdout(), `"msg":"rules loaded","source":"parameter `+param+`","version":1,"rules":"rules document (40 rules:`) {
		t.Errorf("the function did not load the parameter:\n%s", stdout())
	}

	// A new version: team-17 stops replicating "v*" tags. The next push follows it.
	put(strings.Replace(doc, "team-17/**", "team-17/other-*", 1))
	pushAll("v2", 17, 39)
	if got := replicas("v2", 17); strings.Join(got, "") != "" {
		t.Errorf("team-17:v2 replicated under the old version: %v", got)
	}
	for i, d := range replicas("v2", 39) {
		if d != digest {
			t.Errorf("team-39 replica %d of v2: %q", i, d)
		}
	}

	// A version naming a role the function may not assume: refused, alarmed, nothing
	// copied (not the previous version either).
	put(strings.ReplaceAll(doc, "role/ecr-replicator-destination", "role/admin"))
	push("v3", 0)
	// The refused event goes back to the queue (after the visibility timeout, then to the
	// dead-letter queue): wait for the refusal, not for an idle queue.
	var refused bool
	for deadline := time.Now().Add(30 * time.Second); !refused && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		refused = strings.Contains(stdout(), `"ConfigurationErrors":1`)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	out := stdout()
	if !refused || !strings.Contains(out, `is not a role this function may assume`) {
		t.Fatalf("no configuration error reported:\n%s", out)
	}
	if got := replicas("v3", 0); strings.Join(got, "") != "" {
		t.Errorf("copied with a refused rules document: %v", got)
	}
	var emf map[string]any
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"ConfigurationErrors"`) {
			json.Unmarshal([]byte(line), &emf)
		}
	}
	if emf == nil || !strings.Contains(fmt.Sprint(emf["_aws"]), "Namespace:ECRReplicator") {
		t.Errorf("ConfigurationErrors not in the namespace the alarm watches: %v", emf)
	}
}

// destinationIn logs in to the destination account's registry of a region, as its admin.
func destinationIn(t *testing.T, w *sandboxtest.World, region string) sandboxtest.Side {
	t.Helper()
	cfg := w.Dest.Config.Copy()
	cfg.Region = region
	host, auth := sandboxtest.Login(t, w.Ctx, cfg)
	return sandboxtest.Side{Account: w.Dest.Account, Config: cfg, Host: host, Auth: auth}
}
