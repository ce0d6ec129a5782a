package infra

// Review of issue 23 (a deployment that cannot silently do nothing). Each test here failed
// on the merged tree (efb334f / c64154b) and names what it shows.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/rulesource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/cfn"
)

// accepts reports whether CloudFormation would accept value for the template parameter:
// its AllowedPattern and MaxLength (the renderer does not check them).
func accepts(t *testing.T, r *rendered, name, value string) bool {
	t.Helper()
	p, ok := r.typed().Parameters[name]
	if !ok {
		t.Fatalf("no parameter %s", name)
	}
	if p.AllowedPattern != nil && !regexp.MustCompile(*p.AllowedPattern).MatchString(value) {
		return false
	}
	if p.MaxLength != nil && utf8.RuneCountInString(value) > *p.MaxLength {
		return false
	}
	return true
}

// functionRules loads the rules the rendered ReplicateFunction's environment describes, as
// the function does at cold start (inline document only).
func functionRules(t *testing.T, r *rendered) (*rules.Document, error) {
	t.Helper()
	vars := r.function("ReplicateFunction").Environment.Variables
	env := map[string]string{}
	for k, v := range vars {
		env[k] = scalarString(v)
	}
	return rulesource.New(func(k string) string { return env[k] }, os.ReadFile).Current(context.Background())
}

// TestReview23TemplateRefusesWhatTheFunctionRefuses: "the template refuses at deploy time
// what cannot work". These one-destination parameter values pass every AllowedPattern,
// MaxLength and Rule of template.yaml — `sam deploy` creates a green stack — and the
// function then refuses every invocation at cold start with the generated document, so
// every push goes through the queue's retries to the dead-letter queue.
func TestReview23TemplateRefusesWhatTheFunctionRefuses(t *testing.T) {
	for _, tc := range []struct{ param, value string }{
		// STS: ExternalId is 2-1224 characters
		// (https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html); the
		// parameter has MaxLength 1224 and no minimum.
		{"ExternalId", "x"},
		// A tag glob with a space can never match an ECR tag; the rules package refuses it.
		{"TagFilter", "v 1"},
		// An unterminated character class is not a glob.
		{"RepositoryFilter", "team-a/[ab"},
	} {
		r := render(t, sourceTemplate, destination(map[string]any{tc.param: tc.value}))
		if !accepts(t, r, tc.param, tc.value) {
			continue // refused at deploy time: fine
		}
		if _, err := functionRules(t, r); err != nil {
			t.Errorf("%s=%q: the template deploys it, the function refuses every invocation: %v", tc.param, tc.value, err)
		}
	}
}

// TestReview23FilterPatternsKeepWhatWorks: the tightened patterns still accept the globs
// the rules document accepts and that match, and the function takes each.
func TestReview23FilterPatternsKeepWhatWorks(t *testing.T) {
	for _, tc := range []struct{ param, value, repo, tag string }{
		{"RepositoryFilter", "team-a/*", "team-a/app", "v1"},
		{"RepositoryFilter", "team-{a,b}/**", "team-b/x/app", "v1"},
		{"RepositoryFilter", "team-[ab]/app", "team-a/app", "v1"},
		{"RepositoryFilter", "!team-a/scratch-*", "team-a/app", "v1"},
		{"TagFilter", "v*", "team-a/app", "v1"},
		{"TagFilter", "{latest,v[0-9]*}", "team-a/app", "latest"},
		{"TagFilter", "Release_?.*", "team-a/app", "Release_1.2"},
		{"ExternalId", "ab", "team-a/app", "v1"},
		{"ExternalId", strings.Repeat("x", 1224), "team-a/app", "v1"},
	} {
		r := render(t, sourceTemplate, destination(map[string]any{tc.param: tc.value}))
		if !accepts(t, r, tc.param, tc.value) {
			t.Errorf("%s=%q: refused at deploy time", tc.param, tc.value)
			continue
		}
		doc, err := functionRules(t, r)
		if err != nil {
			t.Errorf("%s=%q: the function refuses it: %v", tc.param, tc.value, err)
			continue
		}
		if len(doc.Targets(tc.repo, tc.tag)) == 0 {
			t.Errorf("%s=%q: %s:%s not selected", tc.param, tc.value, tc.repo, tc.tag)
		}
	}
}

// TestReview23ValidRoleNameWithCommaIsRefused: IAM role names may contain commas ("Use
// alphanumeric and '+=,.@-_' characters",
// https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html), and the
// template's DestinationRoleArn pattern accepts one. The one-destination deployment passes
// it to DESTINATION_ROLE_ARNS, which the function splits on commas — so the only role the
// stack grants is "not a role this function may assume", and a valid deployment refuses
// every invocation.
func TestReview23ValidRoleNameWithCommaIsRefused(t *testing.T) {
	const role = "arn:aws:iam::222222222222:role/ecr,replicator"
	r := render(t, sourceTemplate, destination(map[string]any{"DestinationRoleArn": role}))
	if !accepts(t, r, "DestinationRoleArn", role) {
		t.Fatalf("the template refuses %s", role)
	}
	if _, err := functionRules(t, r); err != nil {
		t.Errorf("a valid role name, granted by the stack, refused by the function: %v", err)
	}
}

// TestReview23RepositoryFilterThatCanNeverMatch: ECR repository names are lowercase
// ("(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*",
// https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html).
// RepositoryFilter accepts any text but quotes; "Team-A/*" (or "team a/*") deploys, the
// function accepts it, and no push ever matches: a green stack that never replicates and
// never says so — the failure issue 23 set out to make impossible.
func TestReview23RepositoryFilterThatCanNeverMatch(t *testing.T) {
	for _, filter := range []string{"Team-A/*", "team a/*"} {
		r := render(t, sourceTemplate, destination(map[string]any{"RepositoryFilter": filter}))
		if !accepts(t, r, "RepositoryFilter", filter) {
			continue
		}
		doc, err := functionRules(t, r)
		if err != nil {
			continue // refused loudly: fine
		}
		if got := doc.Targets("team-a/app", "v1"); len(got) == 0 {
			t.Errorf("RepositoryFilter=%q: deployed and accepted, matches no repository ECR can hold (team-a/app: %d targets)", filter, len(got))
		}
	}
}

// TestReview23ExternalIDVisibilityIsDocumented: ExternalId is NoEcho, and the README said
// only that, but the template writes it in clear into REPLICATION_RULES, the functions'
// environment — returned by lambda:GetFunctionConfiguration to any read-only principal.
// NoEcho "does not mask any information stored in" resource properties
// (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/security-best-practices.html#creds).
//
// Corrected (f23) from "not in the environment" to "where it is, said honestly": AWS does
// not treat an external ID as a secret — "AWS does not treat the external ID as a secret.
// ... The external ID for a role can be seen by anyone with permission to view the role"
// (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_create_for-user_externalid.html).
// It is in every destination role's trust policy, readable with iam:GetRole in each
// destination account; moving it out of the function's environment (Secrets Manager)
// would hide nothing AWS hides. So the one-destination stack keeps it in the environment
// (the function presents it to STS), and the templates and the README must say where it
// is visible instead of implying NoEcho keeps it hidden. A rules parameter keeps it out of
// the function configuration, for whom that matters.
func TestReview23ExternalIDVisibilityIsDocumented(t *testing.T) {
	const id = "s3cr3t-external-id"
	r := render(t, sourceTemplate, destination(map[string]any{"ExternalId": id}))
	for _, fn := range []string{"ReplicateFunction", "BackfillFunction", "ReconcileFunction"} {
		if !strings.Contains(scalarString(r.function(fn).Environment.Variables["REPLICATION_RULES"]), `"externalId":"`+id+`"`) {
			t.Errorf("%s: the one-destination document does not carry the external ID the function presents to STS", fn)
		}
	}
	param := render(t, sourceTemplate, map[string]any{"RulesParameterName": "/ecr-replicator/rules", "DestinationRoleArns": stackSetGrant})
	for k, v := range param.function("ReplicateFunction").Environment.Variables {
		if strings.Contains(scalarString(v), "externalId") {
			t.Errorf("with a rules parameter, the environment variable %s carries a document", k)
		}
	}
	for _, tc := range []struct {
		file string
		r    *rendered
	}{{sourceTemplate, r}, {destinationTemplate, render(t, destinationTemplate, map[string]any{"ReplicatorRoleArn": replicatorRoleArn})}} {
		desc := description(tc.r, "ExternalId")
		if !strings.Contains(desc, "trust policy") {
			t.Errorf("%s: ExternalId's description does not say the trust policy shows it: %q", tc.file, desc)
		}
	}
	if desc := description(r, "ExternalId"); !strings.Contains(desc, "environment") || !strings.Contains(desc, "not treat an external ID as a secret") {
		t.Errorf("template.yaml: ExternalId's description does not say it is in the functions' environment, and why that is no leak: %q", desc)
	}
	text := strings.Join(strings.Fields(readme(t)), " ")
	for _, want := range []string{"AWS does not treat an external ID as a secret", "id_roles_create_for-user_externalid.html", "GetFunctionConfiguration"} {
		if !strings.Contains(text, want) {
			t.Errorf("the README does not say where the external ID is visible (%q)", want)
		}
	}
}

// description is a parameter's description, its whitespace folded.
func description(r *rendered, name string) string {
	p := r.typed().Parameters[name]
	if p.Description == nil {
		return ""
	}
	return strings.Join(strings.Fields(*p.Description), " ")
}

// TestReview23RulesParameterAloneCoversEveryIgnoredParameter: RulesParameterAlone refuses
// one-destination parameters next to a rules parameter because "they would be ignored",
// but not CreateRepositories: CreateRepositories=false with RulesParameterName deploys,
// and is ignored (each destination's createRepository in the document, default true,
// decides) — the operator who asked for no repository creation gets repositories created.
func TestReview23RulesParameterAloneCoversEveryIgnoredParameter(t *testing.T) {
	_, err := cfn.RenderFile(sourceTemplate, cfn.Options{Parameters: map[string]any{"RulesParameterName": "/ecr-replicator/rules", "DestinationRoleArns": stackSetGrant, "CreateRepositories": "false"},
		Region: testRegion, AccountID: testAccountID, StackName: testStackName})
	var re *cfn.RuleError
	if !errors.As(err, &re) || re.Rule != "RulesParameterAlone" {
		t.Errorf("CreateRepositories=false with RulesParameterName: %v, want rule RulesParameterAlone to refuse it", err)
	}
}

// TestReview23RulesParameterNeedsTheEventsItsRulesUse: with RulesParameterName, the
// stack's EventBridge rule forwards DELETE events only when MirrorDeletes=true, and only
// repositories under RepositoryPrefixFilter. The functions check a new rules version
// against the role grant, but not against these: a version that adds `mirrorDeletes: true`
// (the README's own example document has one) is accepted on a stack deployed with the
// default MirrorDeletes=false, and no deletion is ever mirrored; a rule for team-b/** on a
// stack filtering "team-a/" never sees a push. Nothing fails, nothing is counted, no alarm.
func TestReview23RulesParameterNeedsTheEventsItsRulesUse(t *testing.T) {
	const name = "/ecr-replicator/rules"
	sb, err := sandbox.New(sandbox.TwoAccounts(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	key, secret, err := sb.Credentials(sandbox.SourceAccount, sandbox.SourceUser)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadDefaultConfig(t.Context(), config.WithRegion(sandbox.DefaultRegion), config.WithBaseEndpoint(sb.APIURL()),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(key, secret, "")))
	if err != nil {
		t.Fatal(err)
	}
	client := ssm.NewFromConfig(cfg)
	const dst = `{"accountId":"222222222222","region":"us-east-1","roleArn":"arn:aws:iam::222222222222:role/ecr-replicator-destination"}`
	for _, tc := range []struct {
		name   string
		params map[string]any
		doc    string
	}{
		{"mirrorDeletes without DELETE events", map[string]any{"RulesParameterName": name, "DestinationRoleArns": stackSetGrant},
			`{"rules":[{"name":"team-b","repositories":["team-b/**"],"mirrorDeletes":true,"destinations":[` + dst + `]}]}`},
		{"a rule outside RepositoryPrefixFilter", map[string]any{"RulesParameterName": name, "DestinationRoleArns": stackSetGrant, "RepositoryPrefixFilter": "team-a/"},
			`{"rules":[{"name":"team-b","repositories":["team-b/**"],"destinations":[` + dst + `]}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, sourceTemplate, tc.params)
			// What the stack's event rule forwards: no DELETE; only the prefix.
			pattern := fmt.Sprint(r.resource("ImageActionRule", "AWS::Events::Rule")["EventPattern"])
			if strings.Contains(pattern, "DELETE") || (tc.params["RepositoryPrefixFilter"] != nil && !strings.Contains(pattern, "team-a/")) {
				t.Fatalf("the event pattern changed: %s", pattern)
			}
			if _, err := sb.PutParameter(sandbox.SourceAccount, sandbox.DefaultRegion, name, tc.doc, "", true); err != nil {
				t.Fatal(err)
			}
			vars := r.function("ReplicateFunction").Environment.Variables
			env := map[string]string{}
			for k, v := range vars {
				env[k] = scalarString(v)
			}
			src := rulesource.New(func(k string) string { return env[k] }, os.ReadFile, rulesource.WithParameterReader(client))
			if _, err := src.Current(t.Context()); err == nil {
				t.Errorf("the functions accept a rules version the stack's event rule cannot feed (%v): it silently does nothing", tc.params)
			}
		})
	}
}

// TestReview23ReadmeRedriveAfterDeletion: the README (and template.yaml's comment) keep the
// dead-letter queue on stack deletion "to redrive into a new stack's ReplicationQueueArn",
// but its only redrive command omits --destination-arn, which sends each message back to
// "their respective original source queues" — the queues deleted with the old stack. And
// this DLQ is also the ImageActionRule target's dead-letter queue: events EventBridge could
// not deliver never came from an SQS queue, and "Non-SQS queue sources of dead-letter
// queues ... are currently not supported" by a move back to the source
// (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_StartMessageMoveTask.html).
// The command for the case the README promises is not there.
func TestReview23ReadmeRedriveAfterDeletion(t *testing.T) {
	text := readme(t)
	if !strings.Contains(text, "redrive into a") {
		t.Log("the README no longer promises a redrive into a new stack")
		return
	}
	moves := regexp.MustCompile(`aws sqs start-message-move-task[^\n]*`).FindAllString(text, -1)
	for _, m := range moves {
		if strings.Contains(m, "--destination-arn") {
			return
		}
	}
	t.Errorf("the README promises a redrive of the kept dead-letter queue into a new stack, but its only command(s) %q move messages back to their original (deleted) source queues", moves)
}

// TestReview23DestinationRoleExternalIDLength: the destination role's ExternalId has the
// same gap. STS refuses an external ID under 2 characters before evaluating any trust
// policy (https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html: "Length
// Constraints: Minimum length of 2"), so a role whose trust policy requires a 1-character
// sts:ExternalId can never be assumed — and the StackSet deploys it into every account
// of the OU, green.
func TestReview23DestinationRoleExternalIDLength(t *testing.T) {
	r := render(t, destinationTemplate, map[string]any{"ReplicatorRoleArn": replicatorRoleArn, "ExternalId": "x"})
	if accepts(t, r, "ExternalId", "x") {
		t.Errorf("infra/destination-role.yaml accepts ExternalId %q, which no AssumeRole can present", "x")
	}
}
