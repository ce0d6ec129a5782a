package cfn_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/cfn"
)

var (
	source      = filepath.Join("..", "..", "..", "..", "template.yaml")
	destination = filepath.Join("..", "..", "..", "..", "infra", "destination-role.yaml")
)

const (
	queueARN          = "arn:aws:sqs:us-east-1:111111111111:ecr-replicator-queue"
	reconcileQueueARN = "arn:aws:sqs:us-east-1:111111111111:ecr-replicator-reconcile"
	copyQueueARN      = "arn:aws:sqs:us-east-1:111111111111:ecr-replicator-copy"
)

func opts(params map[string]any, resolve bool) cfn.Options {
	o := cfn.Options{Parameters: params, Region: "us-east-1", AccountID: "111111111111", StackName: "ecr-replicator"}
	if resolve {
		o.Resolve = func(ref string) (string, bool) {
			switch ref {
			case "ReplicationQueue.Arn":
				return queueARN, true
			case "ReconcileQueue.Arn":
				return reconcileQueueARN, true
			case "CopyQueue.Arn":
				return copyQueueARN, true
			case "DeadLetterQueue.Arn":
				return "arn:aws:sqs:us-east-1:111111111111:ecr-replicator-dlq", true
			case "ImageActionRule.Arn":
				return "arn:aws:events:us-east-1:111111111111:rule/ecr-replicator-ImageActionRule", true
			case "ReplicatorRole.Arn", "ReconcilerRole.Arn":
				return "arn:aws:iam::111111111111:role/ecr-replicator-" + strings.TrimSuffix(ref, ".Arn"), true
			case "ReplicateLogGroup.Arn", "BackfillLogGroup.Arn", "ReconcileLogGroup.Arn":
				return "arn:aws:logs:us-east-1:111111111111:log-group:ecr-replicator-" + strings.TrimSuffix(ref, ".Arn") + ":*", true
			}
			return "", false
		}
	}
	return o
}

type policy struct {
	Statement []struct {
		Sid       string
		Action    any
		Resource  any
		Principal any
		Condition map[string]map[string]string
	}
}

func parse(t *testing.T, doc string) policy {
	t.Helper()
	var p policy
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatalf("%v: %s", err, doc)
	}
	return p
}

func TestRolePoliciesResolveReferences(t *testing.T) {
	bus := "arn:aws:events:us-east-1:111111111111:event-bus/results"
	for _, tc := range []struct {
		bus  string
		want int
	}{{"", 4}, {bus, 5}} {
		r, err := cfn.RenderFile(source, opts(map[string]any{"DestinationAccountId": "222222222222", "ResultEventBus": tc.bus}, true))
		if err != nil {
			t.Fatal(err)
		}
		docs, err := r.RolePolicies("ReplicatorRole")
		if err != nil {
			t.Fatal(err)
		}
		if len(docs) != tc.want {
			t.Fatalf("bus %q: %d inline policies, want %d", tc.bus, len(docs), tc.want)
		}
		all := strings.Join(docs, "\n")
		for _, want := range []string{
			`"Resource":["` + queueARN + `","` + copyQueueARN + `"]`,
			`"Resource":["arn:aws:iam::222222222222:role/ecr-replicator-destination"]`,
			`"Resource":"arn:aws:ecr:us-east-1:111111111111:repository/*"`,
		} {
			if !strings.Contains(all, want) {
				t.Errorf("policies lack %s:\n%s", want, all)
			}
		}
		rdocs, err := r.RolePolicies("ReconcilerRole")
		if err != nil {
			t.Fatal(err)
		}
		if rall := strings.Join(rdocs, "\n"); !strings.Contains(rall, `"Resource":["`+reconcileQueueARN+`","`+copyQueueARN+`"]`) {
			t.Errorf("ReconcilerRole's policies lack the reconcile and copy queues:\n%s", rall)
		}
		if tc.bus != "" && !strings.Contains(all, `"Resource":"`+bus+`"`) {
			t.Errorf("no PutEvents on %s:\n%s", bus, all)
		}
		// Managed policy ARNs are not inline documents.
		if strings.Contains(all, "AWSLambdaBasicExecutionRole") {
			t.Error("a managed policy ARN is among the inline documents")
		}
	}
}

// TestQueuePolicies: every queue of the template gets its policy, by logical name.
func TestQueuePolicies(t *testing.T) {
	r, err := cfn.RenderFile(source, opts(map[string]any{"DestinationAccountId": "222222222222"}, true))
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.QueuePolicies()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"ReplicationQueue", "DeadLetterQueue", "ReconcileQueue", "CopyQueue"} {
		if !strings.Contains(got[q], `"Action":"sqs:SendMessage"`) {
			t.Errorf("%s: no policy on sqs:SendMessage (%v)", q, got)
		}
	}
	if !strings.Contains(got["CopyQueue"], `"arn:aws:iam::111111111111:role/ecr-replicator-ReplicatorRole"`) {
		t.Errorf("CopyQueue's policy names no ReplicatorRole: %s", got["CopyQueue"])
	}
}

func TestUnresolvedReferenceInPolicyIsAnError(t *testing.T) {
	r, err := cfn.RenderFile(source, opts(map[string]any{"DestinationAccountId": "222222222222"}, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.RolePolicies("ReplicatorRole"); err == nil || !strings.Contains(err.Error(), `unresolved resource reference "getatt:`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := r.QueuePolicies(); err == nil || !strings.Contains(err.Error(), `unresolved resource reference "getatt:`) {
		t.Fatalf("queue policies: err = %v", err)
	}
	props, err := r.Resource("ImageActionRule", "AWS::Events::Rule")
	if err != nil {
		t.Fatal(err)
	}
	if got := props["Targets"].([]any)[0].(map[string]any)["Arn"]; got != "getatt:ReplicationQueue.Arn" {
		t.Fatalf("unresolved reference renders as %v", got)
	}
}

func TestSplitOfDestinationRoleArns(t *testing.T) {
	arns := "arn:aws:iam::222222222222:role/a,arn:aws:iam::333333333333:role/b"
	r, err := cfn.RenderFile(source, opts(map[string]any{"RulesParameterName": "/ecr-replicator/rules", "DestinationRoleArns": arns}, true))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := r.RolePolicies("ReplicatorRole")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		for _, s := range parse(t, d).Statement {
			if s.Sid == "AssumeDestinationRoles" {
				if !reflect.DeepEqual(s.Resource, []any{"arn:aws:iam::222222222222:role/a", "arn:aws:iam::333333333333:role/b"}) {
					t.Fatalf("Resource = %v", s.Resource)
				}
				return
			}
		}
	}
	t.Fatal("no AssumeDestinationRoles statement")
}

// TestSelect: Fn::Select of a Fn::Split, as the destination role derives the source
// account from ReplicatorRoleArn; an index out of range is an error, as in CloudFormation.
func TestSelect(t *testing.T) {
	tmpl := []byte("Parameters:\n  Arn: {Type: String}\nOutputs:\n  Account: {Value: !Select [4, !Split [\":\", !Ref Arn]]}\n")
	r, err := cfn.Render("select.yaml", tmpl, opts(map[string]any{"Arn": "arn:aws:iam::111111111111:role/x"}, false))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfn.Section(r.Doc, "Outputs")["Account"].(map[string]any)["Value"]; got != "111111111111" {
		t.Errorf("Fn::Select = %v, want 111111111111", got)
	}
	if _, err := cfn.Render("select.yaml", tmpl, opts(map[string]any{"Arn": "no-colons"}, false)); err == nil || !strings.Contains(err.Error(), "Fn::Select") {
		t.Errorf("index out of range: %v", err)
	}
}

func TestTrustPolicyAndConditions(t *testing.T) {
	role := "arn:aws:iam::111111111111:role/ecr-replicator-functions"
	for _, ext := range []string{"", "ext-1"} {
		r, err := cfn.RenderFile(destination, cfn.Options{
			Parameters: map[string]any{"ReplicatorRoleArn": role, "ExternalId": ext, "CreateRepositories": "false"},
			Region:     "us-east-1", AccountID: "222222222222", StackName: "d",
		})
		if err != nil {
			t.Fatal(err)
		}
		doc, err := r.TrustPolicy("DestinationRole")
		if err != nil {
			t.Fatal(err)
		}
		s := parse(t, doc).Statement[0]
		if !reflect.DeepEqual(s.Principal, map[string]any{"AWS": role}) {
			t.Errorf("Principal = %v", s.Principal)
		}
		if got := s.Condition["StringEquals"]["sts:ExternalId"]; got != ext {
			t.Errorf("ExternalId %q: condition %v", ext, s.Condition)
		}
		if v, err := r.Condition("HasExternalId"); err != nil || v != (ext != "") {
			t.Errorf("HasExternalId = %v, %v", v, err)
		}
		docs, err := r.RolePolicies("DestinationRole")
		if err != nil || len(docs) != 1 || strings.Contains(docs[0], "ecr:CreateRepository") {
			t.Errorf("CreateRepositories=false: %v %v", docs, err)
		}
	}
}

var oneDestination = map[string]any{"DestinationAccountId": "222222222222"}

// TestRules: the Rules section is checked before anything renders, as CloudFormation
// checks it before provisioning; each rule function decides as CloudFormation documents.
func TestRules(t *testing.T) {
	const tmpl = `
Parameters:
  Env: {Type: String, Default: dev}
  Sizes: {Type: CommaDelimitedList, Default: "small,medium"}
  Name: {Type: String, Default: ""}
Rules:
  ProdNeedsName:
    RuleCondition: !Equals [!Ref Env, prod]
    Assertions:
      - Assert: !Not [!Equals [!Ref Name, ""]]
        AssertDescription: prod needs a name
  KnownSizes:
    Assertions:
      - Assert: {"Fn::EachMemberIn": [!Ref Sizes, [small, medium, large]]}
        AssertDescription: sizes are small, medium or large
      - Assert: !Or [{"Fn::Contains": [[dev, test, prod], !Ref Env]}, {"Fn::EachMemberEquals": [!Ref Sizes, small]}]
        AssertDescription: env is known
      - Assert: !And [!Not [!Equals [!Ref Env, ""]], !Not [!Equals [!Ref Env, none]]]
        AssertDescription: env is set
Resources: {}
`
	for _, tc := range []struct {
		params   map[string]any
		rule, is string // "": renders
	}{
		{nil, "", ""},
		{map[string]any{"Env": "prod"}, "ProdNeedsName", "prod needs a name"},
		{map[string]any{"Env": "prod", "Name": "x"}, "", ""},
		{map[string]any{"Sizes": "small,huge"}, "KnownSizes", "sizes are small, medium or large"},
		{map[string]any{"Env": "qa"}, "KnownSizes", "env is known"},
		{map[string]any{"Env": "qa", "Sizes": "small"}, "", ""},
		{map[string]any{"Env": "none", "Sizes": "small"}, "KnownSizes", "env is set"},
	} {
		_, err := cfn.Render("rules.yaml", []byte(tmpl), opts(tc.params, false))
		var re *cfn.RuleError
		switch {
		case tc.rule == "" && err != nil:
			t.Errorf("%v: %v", tc.params, err)
		case tc.rule != "" && (!errors.As(err, &re) || re.Rule != tc.rule || re.Description != tc.is):
			t.Errorf("%v: %v, want rule %s refusing with %q", tc.params, err, tc.rule, tc.is)
		}
	}
	bad := "Rules:\n  R:\n    Assertions:\n      - Assert: {\"Fn::ValueOf\": [P, Tag]}\nResources: {}\n"
	if _, err := cfn.Render("bad.yaml", []byte(bad), opts(nil, false)); err == nil || !strings.Contains(err.Error(), "unsupported rule function Fn::ValueOf") {
		t.Errorf("unsupported function: %v", err)
	}
}

func TestErrors(t *testing.T) {
	if _, err := cfn.RenderFile(source, opts(map[string]any{"Nope": "x"}, false)); err == nil || !strings.Contains(err.Error(), "undeclared parameter Nope") {
		t.Errorf("undeclared parameter: %v", err)
	}
	if _, err := cfn.RenderFile(source, cfn.Options{Parameters: oneDestination}); err == nil || !strings.Contains(err.Error(), "pseudo parameter") {
		t.Errorf("missing pseudo parameters: %v", err)
	}
	if _, err := cfn.RenderFile(destination, cfn.Options{Region: "r", AccountID: "1", StackName: "s"}); err == nil || !strings.Contains(err.Error(), "ReplicatorRoleArn has no value") {
		t.Errorf("parameter without value: %v", err)
	}
	r, err := cfn.RenderFile(source, opts(oneDestination, true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resource("ReplicationQueue", "AWS::IAM::Role"); err == nil {
		t.Error("wrong resource type accepted")
	}
	if _, err := r.TrustPolicy("Missing"); err == nil {
		t.Error("missing role accepted")
	}
	if _, err := r.Condition("Missing"); err == nil {
		t.Error("undefined condition accepted")
	}
	if _, err := r.Typed(); err != nil {
		t.Errorf("typed: %v", err)
	}
	bad := []byte("Conditions:\n  A: !Condition B\n  B: !Condition A\nResources: {}\n")
	if _, err := cfn.Render("cycle.yaml", bad, opts(nil, false)); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("condition cycle: %v", err)
	}
}

// TestResourceTypesNewerThanGoformation: a resource type goformation's schema does not
// know (AWS::ECR::PullTimeUpdateExclusion) renders like any other — its condition
// applied, its references resolved — and Typed leaves it out instead of failing.
func TestResourceTypesNewerThanGoformation(t *testing.T) {
	for _, exclude := range []string{"true", "false"} {
		o := opts(map[string]any{"DestinationAccountId": "222222222222", "ExcludeReplicatorPulls": exclude}, true)
		o.Resolve = func(ref string) (string, bool) {
			return "arn:aws:iam::111111111111:role/ecr-replicator-functions", ref == "ReplicatorRole.Arn"
		}
		r, err := cfn.RenderFile(source, o)
		if err != nil {
			t.Fatal(err)
		}
		props, err := r.Resource("ReplicatorPullTimeExclusion", "AWS::ECR::PullTimeUpdateExclusion")
		switch {
		case exclude == "true" && (err != nil || props["PrincipalArn"] != "arn:aws:iam::111111111111:role/ecr-replicator-functions"):
			t.Errorf("ExcludeReplicatorPulls=true: %v %v", props, err)
		case exclude == "false" && err == nil:
			t.Errorf("ExcludeReplicatorPulls=false: the exclusion is still created: %v", props)
		}
		if _, err := r.Typed(); err != nil {
			t.Errorf("Typed: %v", err)
		}
	}
}
