package infra

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/rulesource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/cfn"
)

// stackSetGrant is the DestinationRoleArns the README gives a stack whose destinations are
// the StackSet's roles (bounded by OrganizationId).
const stackSetGrant = "arn:aws:iam::*:role/ecr-replicator-destination"

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// block returns the first fenced code block of the given language after marker.
func block(t *testing.T, text, marker, lang string) string {
	t.Helper()
	i := strings.Index(text, marker)
	if i < 0 {
		t.Fatalf("README has no %q", marker)
	}
	rest := text[i:]
	start := strings.Index(rest, "```"+lang+"\n")
	if start < 0 {
		t.Fatalf("no %s block after %q", lang, marker)
	}
	rest = rest[start+len(lang)+4:]
	return rest[:strings.Index(rest, "```")]
}

// TestReadmeWorkedExample runs the README's worked example as pasted, with bash, from
// the repository root: the sandbox, the push tool, copy, plan and sync.
func TestReadmeWorkedExample(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI and runs the sandbox")
	}
	script := block(t, readme(t), "<!-- worked example", "sh")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = ".."
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "SANDBOX_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the worked example failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"pushed team-a/app:v1 (sha256:", "repository created", "pushed team-a/app:v2",
		"1 tag: 1 copied", "1 in sync, 1 to copy", "1 already in sync, 1 copied, 0 failed",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestReadmeOperateCommandsUseOutputs: every stack output the README's commands read
// (`out NAME`) is one template.yaml has.
func TestReadmeOperateCommandsUseOutputs(t *testing.T) {
	outputs := render(t, sourceTemplate, destination(nil)).typed().Outputs
	used := regexp.MustCompile(`\bout ([A-Za-z]+)`).FindAllStringSubmatch(readme(t), -1)
	if len(used) < 6 {
		t.Fatalf("the README reads %d outputs; the operate commands are gone?", len(used))
	}
	for _, u := range used {
		if _, ok := outputs[u[1]]; !ok {
			t.Errorf("the README reads output %s, which template.yaml does not have", u[1])
		}
	}
}

// TestReadmeRulesDocument: the README's example document is valid, and its roles are
// within the stack's default grant.
func TestReadmeRulesDocument(t *testing.T) {
	text := block(t, readme(t), "### The rules document", "yaml")
	grant := render(t, sourceTemplate, map[string]any{"RulesParameterName": "/ecr-replicator/rules", "DestinationRoleArns": stackSetGrant}).function("ReplicateFunction").Environment.Variables["DESTINATION_ROLE_ARNS"]
	env := map[string]string{rules.EnvRules: text, rulesource.EnvAssumableRoles: scalarString(grant)}
	doc, err := rulesource.New(func(k string) string { return env[k] }, os.ReadFile).Current(context.Background())
	if err != nil {
		t.Fatalf("the README's rules document: %v\n%s", err, text)
	}
	if len(doc.Rules) != 2 || len(doc.Rules[1].Destinations) != 2 || doc.Rules[1].Destinations[1].RepositoryPrefix != "mirror/" {
		t.Errorf("anchors not shared: %+v", doc.Rules)
	}
}

// TestReadmePromotionChain: the README's build → test → prod chain is two rules
// documents each deployment accepts (with PromotionGates), and the second selects the
// names the first writes in the test account.
func TestReadmePromotionChain(t *testing.T) {
	text := block(t, readme(t), "## Promotion gates", "yaml")
	i := strings.Index(text, "# Deployment 2")
	if i < 0 {
		t.Fatalf("no second deployment in:\n%s", text)
	}
	var docs []*rules.Document
	for _, part := range []string{text[:i], text[i:]} {
		env := map[string]string{rules.EnvRules: part, rulesource.EnvAssumableRoles: stackSetGrant, rulesource.EnvPromotionGates: "true"}
		doc, err := rulesource.New(func(k string) string { return env[k] }, os.ReadFile).Current(context.Background())
		if err != nil {
			t.Fatalf("the README's chain: %v\n%s", err, part)
		}
		if !doc.HasSigners() {
			t.Errorf("a stage without a signature gate:\n%s", part)
		}
		docs = append(docs, doc)
	}
	written := docs[0].Rules[0].Destinations[0].RepositoryFor("app/web")
	if len(docs[1].Targets(written, "v1")) != 1 {
		t.Errorf("the second stage does not select %s, which the first writes in the test account", written)
	}
}

// TestDestinationRoleAsStackSet renders infra/destination-role.yaml as the README's
// service-managed StackSet deploys it: with the parameters its create-stack-set command
// passes, in each account of the OU under the stack name StackSets give an instance. Every
// account gets the same role name, which the source stack's default grant covers, and only
// global (IAM) resources, so the one region the command names is enough.
func TestDestinationRoleAsStackSet(t *testing.T) {
	text := readme(t)
	create := regexp.MustCompile(`aws cloudformation create-stack-set ((?:[^\n]*\\\n)*[^\n]*)\naws cloudformation create-stack-instances ((?:[^\n]*\\\n)*[^\n]*)`).FindStringSubmatch(text)
	if create == nil {
		t.Fatal("the README has no create-stack-set and create-stack-instances commands")
	}
	for _, want := range []string{"--template-body file://infra/destination-role.yaml", "--capabilities CAPABILITY_NAMED_IAM", "--permission-model SERVICE_MANAGED", "--auto-deployment Enabled=true"} {
		if !strings.Contains(create[1], want) {
			t.Errorf("create-stack-set lacks %s", want)
		}
	}
	if regions := regexp.MustCompile(`--regions ([\w-]+)$`).FindStringSubmatch(create[2]); regions == nil || !strings.Contains(create[2], "--deployment-targets OrganizationalUnitIds=") {
		t.Errorf("create-stack-instances: want exactly one region: %s", create[2])
	}
	params := map[string]any{}
	placeholders := map[string]string{"<ReplicatorRoleArn output>": replicatorRoleArn, "<your external ID>": "s3cr3t-id"}
	for _, m := range regexp.MustCompile(`ParameterKey=(\w+),ParameterValue=(<[^>]+>|\S+)`).FindAllStringSubmatch(create[1], -1) {
		v, ok := placeholders[m[2]]
		if !ok {
			v = strings.ReplaceAll(m[2], `\,`, ",") // the AWS CLI's escaped comma in a list value
		}
		params[m[1]] = v
	}
	// The regions the role acts in are those the README's rules document writes to.
	doc, err := rules.Parse([]byte(block(t, text, "### The rules document", "yaml")))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range doc.Rules {
		for _, d := range r.Destinations {
			if !strings.Contains(","+scalarString(params["Regions"])+",", ","+d.Region+",") {
				t.Errorf("create-stack-set's Regions %v lacks %s, a region of the README's rules document", params["Regions"], d.Region)
			}
		}
	}
	if params["ReplicatorRoleArn"] != replicatorRoleArn {
		t.Fatalf("create-stack-set passes %v", params)
	}
	grant := scalarString(render(t, sourceTemplate, map[string]any{"RulesParameterName": "/r", "DestinationRoleArns": stackSetGrant}).function("ReplicateFunction").Environment.Variables["DESTINATION_ROLE_ARNS"])
	for _, account := range []string{"222222222222", "333333333333", "444444444444"} {
		r, err := cfn.RenderFile(destinationTemplate, cfn.Options{Parameters: params, Region: "us-east-1", AccountID: account,
			StackName: "StackSet-ecr-replicator-destination-0f2b6a4e-1c3d-4e5f-8a9b-0c1d2e3f4a5b"})
		if err != nil {
			t.Fatal(err)
		}
		for name, res := range r.Resources() {
			if typ, _ := res["Type"].(string); !strings.HasPrefix(typ, "AWS::IAM::") {
				t.Errorf("%s is %s, not global: a StackSet in one region would not create it everywhere", name, typ)
			}
		}
		role, err := r.Resource("DestinationRole", "AWS::IAM::Role")
		if err != nil {
			t.Fatal(err)
		}
		arn := "arn:aws:iam::" + account + ":role/" + scalarString(role["RoleName"])
		doc := `{"rules":[{"destinations":[{"accountId":"` + account + `","region":"eu-west-1","roleArn":"` + arn + `","externalId":"s3cr3t-id"}]}]}`
		env := map[string]string{rules.EnvRules: doc, rulesource.EnvAssumableRoles: grant}
		if _, err := rulesource.New(func(k string) string { return env[k] }, os.ReadFile).Current(context.Background()); err != nil {
			t.Errorf("account %s: the role the StackSet creates is not within the source stack's default grant: %v", account, err)
		}
		trust, err := r.TrustPolicy("DestinationRole")
		if err != nil || !strings.Contains(trust, replicatorRoleArn) || !strings.Contains(trust, `"sts:ExternalId":"s3cr3t-id"`) {
			t.Errorf("account %s: trust policy %s (%v)", account, trust, err)
		}
	}
}
