package sandbox_test

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// TestParameterStore: the SDK's PutParameter and GetParameter against the sandbox —
// versions, overwrite, the tiers' size limits, SecureString decryption, and IAM on the
// parameter's ARN.
func TestParameterStore(t *testing.T) {
	const readOne = `{"Version":"2012-10-17","Statement":[
	  {"Effect":"Allow","Action":"ssm:GetParameter","Resource":"arn:aws:ssm:us-east-1:111111111111:parameter/ecr-replicator/rules"}]}`
	cfg := sandbox.Config{Accounts: []sandbox.AccountConfig{
		{ID: sandbox.SourceAccount, Users: []sandbox.UserConfig{{Name: "fn", Policies: []string{readOne}}, {Name: sandbox.AdminUser}}},
	}}
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	e := &env{sb: sb, ctx: t.Context()}
	t.Setenv("AWS_ENDPOINT_URL_SSM", sb.APIURL())
	admin := ssm.NewFromConfig(e.userConfig(t, sandbox.SourceAccount, sandbox.AdminUser))
	fn := ssm.NewFromConfig(e.userConfig(t, sandbox.SourceAccount, "fn"))

	put := func(name, value string, tier ssmtypes.ParameterTier, overwrite bool) (*ssm.PutParameterOutput, error) {
		return admin.PutParameter(e.ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(value),
			Type: ssmtypes.ParameterTypeString, Tier: tier, Overwrite: aws.Bool(overwrite)})
	}
	const name = "/ecr-replicator/rules"
	if out, err := put(name, "rules: v1", "", false); err != nil || out.Version != 1 || out.Tier != ssmtypes.ParameterTierStandard {
		t.Fatalf("first put: %+v %v", out, err)
	}
	if _, err := put(name, "rules: v2", "", false); errorCode(err) != "ParameterAlreadyExists" {
		t.Errorf("put without Overwrite over an existing parameter: %v, want ParameterAlreadyExists", err)
	}
	if out, err := put(name, "rules: v2", "", true); err != nil || out.Version != 2 {
		t.Fatalf("overwrite: %+v %v", out, err)
	}
	got, err := fn.GetParameter(e.ctx, &ssm.GetParameterInput{Name: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	p := got.Parameter
	if aws.ToString(p.Value) != "rules: v2" || p.Version != 2 || aws.ToString(p.ARN) != "arn:aws:ssm:us-east-1:111111111111:parameter/ecr-replicator/rules" || p.LastModifiedDate == nil {
		t.Errorf("GetParameter = %+v", p)
	}
	if v1, err := fn.GetParameter(e.ctx, &ssm.GetParameterInput{Name: aws.String(name + ":1")}); err != nil || aws.ToString(v1.Parameter.Value) != "rules: v1" {
		t.Errorf("version 1: %+v %v", v1, err)
	}

	// IAM: the function's policy names one parameter.
	if _, err := admin.PutParameter(e.ctx, &ssm.PutParameterInput{Name: aws.String("/other"), Value: aws.String("x"), Type: ssmtypes.ParameterTypeString}); err != nil {
		t.Fatal(err)
	}
	if _, err := fn.GetParameter(e.ctx, &ssm.GetParameterInput{Name: aws.String("/other")}); errorCode(err) != "AccessDeniedException" {
		t.Errorf("GetParameter outside the policy: %v, want AccessDeniedException", err)
	}
	if _, err := fn.GetParameter(e.ctx, &ssm.GetParameterInput{Name: aws.String("/ecr-replicator/nosuch")}); errorCode(err) != "AccessDeniedException" {
		t.Errorf("a missing parameter outside the policy: %v, want AccessDeniedException (IAM first)", err)
	}
	if _, err := admin.GetParameter(e.ctx, &ssm.GetParameterInput{Name: aws.String("/ecr-replicator/nosuch")}); errorCode(err) != "ParameterNotFound" {
		t.Errorf("a missing parameter: %v, want ParameterNotFound", err)
	}

	// Tiers: 4096 characters standard, 8192 advanced.
	big := strings.Repeat("x", 5000)
	if _, err := put("/big", big, "", false); errorCode(err) != "ValidationException" || !strings.Contains(err.Error(), "advanced-parameter tier") {
		t.Errorf("5000 characters, standard: %v, want the tier's ValidationException", err)
	}
	if out, err := put("/big", big, ssmtypes.ParameterTierAdvanced, false); err != nil || out.Tier != ssmtypes.ParameterTierAdvanced {
		t.Errorf("5000 characters, advanced: %+v %v", out, err)
	}
	if out, err := put("/big2", big, ssmtypes.ParameterTierIntelligentTiering, false); err != nil || out.Tier != ssmtypes.ParameterTierAdvanced {
		t.Errorf("5000 characters, intelligent tiering: %+v %v", out, err)
	}
	if _, err := put("/big", strings.Repeat("x", 8193), ssmtypes.ParameterTierAdvanced, true); errorCode(err) != "ValidationException" {
		t.Errorf("8193 characters: %v, want ValidationException", err)
	}

	// SecureString: the value only with WithDecryption.
	if _, err := admin.PutParameter(e.ctx, &ssm.PutParameterInput{Name: aws.String("/secret"), Value: aws.String("s3cr3t"), Type: ssmtypes.ParameterTypeSecureString}); err != nil {
		t.Fatal(err)
	}
	enc, err := admin.GetParameter(e.ctx, &ssm.GetParameterInput{Name: aws.String("/secret")})
	if err != nil || aws.ToString(enc.Parameter.Value) == "s3cr3t" {
		t.Errorf("SecureString without decryption: %+v %v", enc, err)
	}
	dec, err := admin.GetParameter(e.ctx, &ssm.GetParameterInput{Name: aws.String("/secret"), WithDecryption: aws.Bool(true)})
	if err != nil || aws.ToString(dec.Parameter.Value) != "s3cr3t" {
		t.Errorf("SecureString with decryption: %+v %v", dec, err)
	}

	// Deleted and created again: a new parameter, at version 1.
	if _, err := admin.DeleteParameter(e.ctx, &ssm.DeleteParameterInput{Name: aws.String("/other")}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.DeleteParameter(e.ctx, &ssm.DeleteParameterInput{Name: aws.String("/other")}); errorCode(err) != "ParameterNotFound" {
		t.Errorf("deleting a deleted parameter: %v", err)
	}
	if out, err := put("/other", "y", "", false); err != nil || out.Version != 1 {
		t.Errorf("created again: %+v %v", out, err)
	}

	// What tests and the demo use.
	if v, err := sb.PutParameter(sandbox.SourceAccount, sandbox.DefaultRegion, name, "rules: v3", "", true); err != nil || v != 3 {
		t.Errorf("PutParameter: %d %v", v, err)
	}
	denied := 0
	for _, en := range sb.AccessLog() {
		if en.Service == "ssm" && en.Action == "ssm:GetParameter" && en.ErrorCode == "AccessDeniedException" {
			denied++
		}
	}
	if denied != 2 {
		t.Errorf("%d GetParameter denials in the access log, want 2", denied)
	}
}
