package sandboxtest

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/cfn"
)

// What Deployed stands in for in the source account.
const (
	// FunctionRole is the role the copying functions run as: template.yaml's
	// ReplicatorRole, named as a deployment of the stack "ecr-replicator" would show it.
	FunctionRole = "ecr-replicator-functions"
	// ReconcilerRole is the role the reconcile function runs as: ReconcilerRole.
	ReconcilerRole = "ecr-replicator-reconciler"
	// StackName is the source stack's name (AWS::StackName) when templates are rendered.
	StackName = "ecr-replicator"
	// QueueName is the name of the stack's ReplicationQueue (and its Fn::GetAtt Arn).
	QueueName = "ecr-replicator-queue"
	// ReconcileQueueName is the name of the stack's ReconcileQueue.
	ReconcileQueueName = "ecr-replicator-reconcile"
	// CopyQueueName is the name of the stack's CopyQueue.
	CopyQueueName = "ecr-replicator-copy"
	// DeadLetterQueueName is the name of the stack's DeadLetterQueue.
	DeadLetterQueueName = "ecr-replicator-dlq"
)

// FunctionRoleARN is the ARN of FunctionRole (the stack's ReplicatorRoleArn output).
func FunctionRoleARN() string { return sandbox.RoleARN(sandbox.SourceAccount, FunctionRole) }

// ReconcilerRoleARN is the ARN of ReconcilerRole (the stack's ReconcilerRoleArn output).
func ReconcilerRoleARN() string { return sandbox.RoleARN(sandbox.SourceAccount, ReconcilerRole) }

// QueueARN is the ARN of a source-account queue in the default region.
func QueueARN(name string) string {
	return fmt.Sprintf("arn:aws:sqs:%s:%s:%s", sandbox.DefaultRegion, sandbox.SourceAccount, name)
}

// repoRoot is the repository root, found from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..")
}

// Deployed configures the default two-account layout as if template.yaml had been deployed
// in the source account with params (its parameters) and infra/destination-role.yaml in the
// destination account, with enforcement on:
//
//   - the source account gets FunctionRole with the rendered inline policies of
//     ReplicatorRole, and ReconcilerRole with ReconcilerRole's (their logs grants are
//     Lambda's: the sandbox has no CloudWatch Logs).
//     Its trust policy allows the source account's admin user instead of the template's
//     lambda.amazonaws.com service principal, which cannot call AssumeRole here; the
//     test plays Lambda with FunctionEnv/RoleSession.
//   - the source account's registry (default region) has the template's
//     AWS::ECR::PullTimeUpdateExclusion resources registered;
//   - the destination role (sandbox.DestinationRole) gets the rendered policies and trust
//     policy of DestinationRole, for ReplicatorRoleArn = FunctionRoleARN(),
//     ReconcilerRoleArn = ReconcilerRoleARN(), ExternalId,
//     RepositoryPrefix, CreateRepositories and MirrorDeletes taken from params (source
//     stack parameters of the same meaning); dest overrides any of them.
//
// Resource references resolve to the sandbox's names (stackRef): ReplicationQueue.Arn to
// QueueARN(QueueName), ReconcileQueue.Arn to QueueARN(ReconcileQueueName), CopyQueue.Arn
// to QueueARN(CopyQueueName), ReplicatorRole.Arn to FunctionRoleARN(),
// ImageActionRule.Arn to ImageActionRuleARN(), GateEventRule.Arn to GateEventRuleARN().
// The admin users stay
// unrestricted; so does the source "replicator" user, which deployed functions do not use.
func Deployed(t testing.TB, params map[string]any, dest ...map[string]any) func(*sandbox.Config) {
	t.Helper()
	root := repoRoot()
	src := renderSource(t, params)
	srcPolicies, err := src.RolePolicies("ReplicatorRole")
	if err != nil {
		t.Fatal(err)
	}
	reconcilerPolicies, err := src.RolePolicies("ReconcilerRole")
	if err != nil {
		t.Fatal(err)
	}
	// The pull-time update exclusions the stack registers in its registry.
	var exclusions []sandbox.PullTimeUpdateExclusion
	for name, res := range src.Resources() {
		if res["Type"] != "AWS::ECR::PullTimeUpdateExclusion" {
			continue
		}
		props, _ := res["Properties"].(map[string]any)
		principal, ok := props["PrincipalArn"].(string)
		if !ok || !strings.HasPrefix(principal, "arn:") {
			t.Fatalf("template.yaml: %s: PrincipalArn %v does not render to an ARN", name, props["PrincipalArn"])
		}
		exclusions = append(exclusions, sandbox.PullTimeUpdateExclusion{Region: sandbox.DefaultRegion, PrincipalARN: principal})
	}

	dparams := map[string]any{"ReplicatorRoleArn": FunctionRoleARN(), "ReconcilerRoleArn": ReconcilerRoleARN()}
	for from, to := range map[string]string{
		"ExternalId": "ExternalId", "DestinationRepositoryPrefix": "RepositoryPrefix",
		"CreateRepositories": "CreateRepositories", "MirrorDeletes": "MirrorDeletes",
	} {
		if v, ok := params[from]; ok {
			dparams[to] = v
		}
	}
	for _, d := range dest {
		for k, v := range d {
			dparams[k] = v
		}
	}
	dst, err := cfn.RenderFile(filepath.Join(root, "infra", "destination-role.yaml"), cfn.Options{
		Parameters: dparams, Region: sandbox.DefaultRegion, AccountID: sandbox.DestinationAccount,
		StackName: "ecr-replicator-destination",
	})
	if err != nil {
		t.Fatal(err)
	}
	dstPolicies, err := dst.RolePolicies("DestinationRole")
	if err != nil {
		t.Fatal(err)
	}
	dstTrust, err := dst.TrustPolicy("DestinationRole")
	if err != nil {
		t.Fatal(err)
	}
	roleName := sandbox.DestinationRole
	if v, ok := dparams["RoleName"]; ok {
		roleName = fmt.Sprint(v)
	}

	srcTrust := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Sid":"TestPlaysLambda","Effect":"Allow",`+
		`"Principal":{"AWS":%q},"Action":"sts:AssumeRole"}]}`,
		fmt.Sprintf("arn:aws:iam::%s:user/%s", sandbox.SourceAccount, sandbox.AdminUser))

	return func(c *sandbox.Config) {
		for i := range c.Accounts {
			a := &c.Accounts[i]
			switch a.ID {
			case sandbox.SourceAccount:
				a.Roles = append(a.Roles, sandbox.RoleConfig{Name: FunctionRole, Policies: srcPolicies, TrustPolicy: srcTrust},
					sandbox.RoleConfig{Name: ReconcilerRole, Policies: reconcilerPolicies, TrustPolicy: srcTrust})
				a.PullTimeUpdateExclusions = append(a.PullTimeUpdateExclusions, exclusions...)
			case sandbox.DestinationAccount:
				found := false
				for j := range a.Roles {
					if a.Roles[j].Name == roleName {
						a.Roles[j].Policies, a.Roles[j].TrustPolicy = dstPolicies, dstTrust
						found = true
					}
				}
				if !found {
					a.Roles = append(a.Roles, sandbox.RoleConfig{Name: roleName, Policies: dstPolicies, TrustPolicy: dstTrust})
				}
			}
		}
	}
}

// stackQueues are the queues' logical names in template.yaml, and their names here.
var stackQueues = map[string]string{
	"ReplicationQueue": QueueName, "ReconcileQueue": ReconcileQueueName,
	"CopyQueue": CopyQueueName, "DeadLetterQueue": DeadLetterQueueName,
}

// ImageActionRuleARN is the ARN of the stack's ImageActionRule in the sandbox (the rule
// DeployQueues puts, named after its logical ID).
func ImageActionRuleARN() string {
	return fmt.Sprintf("arn:aws:events:%s:%s:rule/%s", sandbox.DefaultRegion, sandbox.SourceAccount, ImageActionRule)
}

// ImageActionRule is the name of the stack's ImageActionRule in the sandbox.
const ImageActionRule = "ImageActionRule"

// GateEventRule is the name of the stack's GateEventRule (PromotionGates) in the sandbox.
const GateEventRule = "GateEventRule"

// GateEventRuleARN is the ARN of the stack's GateEventRule in the sandbox.
func GateEventRuleARN() string {
	return fmt.Sprintf("arn:aws:events:%s:%s:rule/%s", sandbox.DefaultRegion, sandbox.SourceAccount, GateEventRule)
}

// stackRef resolves template.yaml's resource references to the sandbox's names.
func stackRef(ref string) (string, bool) {
	if name, ok := stackQueues[strings.TrimSuffix(ref, ".Arn")]; ok && strings.HasSuffix(ref, ".Arn") {
		return QueueARN(name), true
	}
	switch ref {
	case "ReplicatorRole.Arn":
		return FunctionRoleARN(), true
	case "ReconcilerRole.Arn":
		return ReconcilerRoleARN(), true
	case "ImageActionRule.Arn":
		return ImageActionRuleARN(), true
	case "GateEventRule.Arn":
		return GateEventRuleARN(), true
	case "ReplicateLogGroup.Arn", "BackfillLogGroup.Arn", "ReconcileLogGroup.Arn":
		return fmt.Sprintf("arn:aws:logs:%s:%s:log-group:%s-%s:*", sandbox.DefaultRegion, sandbox.SourceAccount, StackName, strings.TrimSuffix(ref, ".Arn")), true
	}
	return "", false
}

// renderSource renders template.yaml for params, its references resolved (stackRef).
func renderSource(t testing.TB, params map[string]any) *cfn.Template {
	t.Helper()
	src, err := cfn.RenderFile(filepath.Join(repoRoot(), "template.yaml"), cfn.Options{
		Parameters: params, Region: sandbox.DefaultRegion, AccountID: sandbox.SourceAccount,
		StackName: StackName, Resolve: stackRef,
	})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// RoleSession assumes a role of the source account (FunctionRole, ReconcilerRole) as its
// admin, as Lambda does for a function, and returns the session's credentials.
func RoleSession(ctx context.Context, sb *sandbox.Sandbox, role, sessionName string) (aws.Credentials, error) {
	key, secret, err := sb.Credentials(sandbox.SourceAccount, sandbox.AdminUser)
	if err != nil {
		return aws.Credentials{}, err
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(sandbox.DefaultRegion),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(key, secret, "")),
		config.WithBaseEndpoint(sb.APIURL()))
	if err != nil {
		return aws.Credentials{}, err
	}
	arn := sandbox.RoleARN(sandbox.SourceAccount, role)
	out, err := sts.NewFromConfig(cfg).AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String(arn), RoleSessionName: aws.String(sessionName),
	})
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("assuming %s: %w", arn, err)
	}
	cr := out.Credentials
	return aws.Credentials{
		AccessKeyID: aws.ToString(cr.AccessKeyId), SecretAccessKey: aws.ToString(cr.SecretAccessKey),
		SessionToken: aws.ToString(cr.SessionToken), Source: "sandboxtest.RoleSession",
	}, nil
}

// FunctionEnvFor returns env with the AWS_* credential variables replaced by a
// FunctionRole session's, so a function started with it runs as its deployed role.
func FunctionEnvFor(t testing.TB, ctx context.Context, sb *sandbox.Sandbox, env map[string]string) map[string]string {
	t.Helper()
	return RoleEnvFor(t, ctx, sb, FunctionRole, env)
}

// RoleEnvFor is FunctionEnvFor for another role of the source account (ReconcilerRole).
func RoleEnvFor(t testing.TB, ctx context.Context, sb *sandbox.Sandbox, role string, env map[string]string) map[string]string {
	t.Helper()
	cr, err := RoleSession(ctx, sb, role, "ecr-replicator-"+role)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	out["AWS_ACCESS_KEY_ID"] = cr.AccessKeyID
	out["AWS_SECRET_ACCESS_KEY"] = cr.SecretAccessKey
	out["AWS_SESSION_TOKEN"] = cr.SessionToken
	return out
}

// FunctionEnv is w.Env with the credentials of a FunctionRole session (see Deployed): what
// a function needs to run as the deployed role.
func (w *World) FunctionEnv(t testing.TB) map[string]string {
	t.Helper()
	return FunctionEnvFor(t, w.Ctx, w.SB, w.Env)
}

// Denials are the access-log entries since mark that IAM refused: API calls answered
// AccessDenied(Exception), registry requests answered DENIED by a policy, and requests
// refused under another code for want of an action (DeniedAction: a kms: grant). Storage's
// AccessDenied (an expired presigned URL) is not an IAM decision and is left out.
func Denials(sb *sandbox.Sandbox, mark int) []sandbox.Entry {
	var out []sandbox.Entry
	for _, e := range sb.AccessLogSince(mark) {
		if e.Service == "s3" {
			continue
		}
		if strings.HasPrefix(e.ErrorCode, "AccessDenied") || (e.ErrorCode == "DENIED" && e.Status == 403 && e.Action != "") || e.DeniedAction != "" {
			out = append(out, e)
		}
	}
	return out
}
