package sandbox_test

// Review of issue 23: the sandbox's Parameter Store against the SSM API reference. Failed
// on the merged tree (efb334f / c64154b).

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/ecr-replicator/ecr-replicator/internal/sandbox"
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
	for _, name := range []string{"awsRules", "SSM-rules", "/" + strings.Repeat("level/", 15) + "rules"} {
		if err := put(name); errorCode(err) != "ValidationException" {
			t.Errorf("PutParameter %q: %v, want ValidationException", name, err)
		}
	}
	if err := put("/ecr-replicator/rules"); err != nil {
		t.Fatal(err)
	}
	arn := "arn:aws:ssm:" + sandbox.DefaultRegion + ":" + sandbox.SourceAccount + ":parameter/ecr-replicator/rules"
	if out, err := admin.GetParameter(e.ctx, &ssm.GetParameterInput{Name: aws.String(arn)}); err != nil || aws.ToString(out.Parameter.Value) != "rules: []" {
		t.Errorf("GetParameter by ARN: %v, want the parameter", err)
	}
}
