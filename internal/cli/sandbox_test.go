package cli

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// TestSandboxCommandPrintsUsableEnv starts `ecr-replicator sandbox`, evaluates what it
// prints the way a shell would, and uses it: the printed keys assume the printed role.
func TestSandboxCommandPrintsUsableEnv(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int)
	go func() {
		done <- Run(ctx, []string{"sandbox", "--external-id", "ext-123"}, pw, io.Discard)
		pw.Close()
	}()
	env := map[string]string{}
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok && strings.HasPrefix(line, "export ") {
			env[k] = strings.Trim(v, "'")
		}
		if len(env) > 0 && strings.HasPrefix(line, "export SANDBOX_SOURCE_REGISTRY=") {
			break
		}
	}
	go io.Copy(io.Discard, pr)
	for _, k := range []string{"AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL_STS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "SANDBOX_DESTINATION_ROLE_ARN", "SANDBOX_DESTINATION_EXTERNAL_ID"} {
		if env[k] == "" {
			t.Fatalf("sandbox did not print %s; got %v", k, env)
		}
	}
	if env["SANDBOX_DESTINATION_EXTERNAL_ID"] != "ext-123" {
		t.Errorf("external ID = %q", env["SANDBOX_DESTINATION_EXTERNAL_ID"])
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], "")))
	if err != nil {
		t.Fatal(err)
	}
	out, err := sts.NewFromConfig(cfg).AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String(env["SANDBOX_DESTINATION_ROLE_ARN"]), RoleSessionName: aws.String("cli-test"), ExternalId: aws.String("ext-123"),
	})
	if err != nil {
		t.Fatalf("AssumeRole with the printed environment: %v", err)
	}
	if !strings.Contains(aws.ToString(out.AssumedRoleUser.Arn), ":assumed-role/") {
		t.Errorf("assumed role user = %s", aws.ToString(out.AssumedRoleUser.Arn))
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Errorf("exit code %d after interrupt, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sandbox did not stop when interrupted")
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"version"}, ExitOK},
		{[]string{"no-such-command"}, ExitUsage},
		{[]string{"version", "extra"}, ExitUsage},
		{[]string{"sandbox", "--no-such-flag"}, ExitUsage},
		{[]string{"sandbox", "--api-addr", "10.0.0.1:0"}, ExitUsage},
	} {
		var out strings.Builder
		if got := Run(context.Background(), tc.args, &out, &out); got != tc.want {
			t.Errorf("%v: exit %d, want %d (output %q)", tc.args, got, tc.want, out.String())
		}
	}
}
