package sandbox_test

// Review of issue 23: the sandbox's Parameter Store against the SSM API reference. Failed
// on the merged tree (efb334f / c64154b).

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// TestReview23ParameterNamesAsAWS: PutParameter's naming constraints
// (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html#systemsmanager-PutParameter-request-Name):
// "A parameter name can't be prefixed with "aws" or "ssm" (case-insensitive)" and
// "Parameter hierarchies are limited to a maximum depth of fifteen levels"; and
// GetParameter's Name is "the name or Amazon Resource Name (ARN) of the parameter"
// (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameter.html#systemsmanager-GetParameter-request-Name).
// The sandbox stores the names AWS refuses, and refuses the ARN AWS answers.
func TestReview23ParameterNamesAsAWS(t *testing.T) {
	cfg := sandbox.Config{Accounts: []sandbox.AccountConfig{
		{ID: sandbox.SourceAccount, Users: []sandbox.UserConfig{{Name: sandbox.AdminUser}}},
	}}
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	e := &env{sb: sb, ctx: t.Context()}
	t.Setenv("AWS_ENDPOINT_URL_SSM", sb.APIURL())
	admin := ssm.NewFromConfig(e.userConfig(t, sandbox.SourceAccount, sandbox.AdminUser))
	put := func(name string) error {
		_, err := admin.PutParameter(e.ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String("rules: []"), Type: ssmtypes.ParameterTypeString})
		return err
	}
	// f23: a hierarchy too deep is refused with its own documented code, not
	// ValidationException: "HierarchyLevelLimitExceededException: A hierarchy can have a
	// maximum of 15 levels" (API_PutParameter, Errors).
	for name, code := range map[string]string{"awsRules": "ValidationException", "SSM-rules": "ValidationException", "/aws/rules": "ValidationException",
		"/" + strings.Repeat("level/", 15) + "rules": "HierarchyLevelLimitExceededException"} {
		if err := put(name); errorCode(err) != code {
			t.Errorf("PutParameter %q: %v, want %s", name, err, code)
		}
	}
	if err := put("/" + strings.Repeat("level/", 14) + "rules"); err != nil {
		t.Errorf("PutParameter of 15 levels: %v", err)
	}
	if err := put("/ecr-replicator/rules"); err != nil {
		t.Fatal(err)
	}
	arn := "arn:aws:ssm:" + sandbox.DefaultRegion + ":" + sandbox.SourceAccount + ":parameter/ecr-replicator/rules"
	if out, err := admin.GetParameter(e.ctx, &ssm.GetParameterInput{Name: aws.String(arn)}); err != nil || aws.ToString(out.Parameter.Value) != "rules: []" {
		t.Errorf("GetParameter by ARN: %v, want the parameter", err)
	}
	if out, err := admin.GetParameter(e.ctx, &ssm.GetParameterInput{Name: aws.String(arn + ":1")}); err != nil || aws.ToInt64(&out.Parameter.Version) != 1 {
		t.Errorf("GetParameter by ARN and version: %v, want version 1", err)
	}
	// PutParameter and DeleteParameter take the name only ("You can't enter the Amazon
	// Resource Name (ARN) for a parameter, only the parameter name itself").
	if _, err := admin.DeleteParameter(e.ctx, &ssm.DeleteParameterInput{Name: aws.String(arn)}); errorCode(err) != "ValidationException" {
		t.Errorf("DeleteParameter by ARN: %v, want ValidationException", err)
	}
}

// TestParameterByARNIsAuthorizedOnItsARN (f23): a GetParameter by ARN is evaluated against
// the parameter's ARN, as by name: a role granted exactly that parameter reads it both
// ways, and nothing else.
func TestParameterByARNIsAuthorizedOnItsARN(t *testing.T) {
	arn := "arn:aws:ssm:" + sandbox.DefaultRegion + ":" + sandbox.SourceAccount + ":parameter"
	onlyRules := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ssm:GetParameter","Resource":"` + arn + `/ecr-replicator/rules"}]}`
	sb, err := sandbox.New(sandbox.Config{Accounts: []sandbox.AccountConfig{
		{ID: sandbox.SourceAccount, Users: []sandbox.UserConfig{{Name: "reader", Policies: []string{onlyRules}}, {Name: sandbox.AdminUser}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	for _, name := range []string{"/ecr-replicator/rules", "/other"} {
		if _, err := sb.PutParameter(sandbox.SourceAccount, sandbox.DefaultRegion, name, "rules: []", "", false); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{sb: sb, ctx: t.Context()}
	t.Setenv("AWS_ENDPOINT_URL_SSM", sb.APIURL())
	client := ssm.NewFromConfig(e.userConfig(t, sandbox.SourceAccount, "reader"))
	for name, want := range map[string]bool{"/ecr-replicator/rules": true, arn + "/ecr-replicator/rules": true, "/other": false, arn + "/other": false} {
		_, err := client.GetParameter(e.ctx, &ssm.GetParameterInput{Name: aws.String(name)})
		if got := err == nil; got != want {
			t.Errorf("GetParameter %s: %v, want allowed = %t", name, err, want)
		}
	}
}
