package cli

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
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
	for _, k := range []string{"AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL_STS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION", "SANDBOX_DESTINATION_ROLE_ARN", "SANDBOX_DESTINATION_EXTERNAL_ID"} {
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

// TestSandboxEnvFile: --env-file appears complete once the sandbox is ready (never
// empty or partial, whatever was there before), private, and is removed on exit.
func TestSandboxEnvFile(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	file := filepath.Join(dir, "sandbox.env")
	// A file left by an earlier sandbox is not taken for this one's.
	if err := os.WriteFile(file, []byte("export AWS_ENDPOINT_URL_ECR=http://127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	var stdout strings.Builder
	done := make(chan int)
	go func() {
		done <- Run(ctx, []string{"sandbox", "--env-file", file, "--external-id", "ext-123"}, &stdout, pw)
		pw.Close()
	}()
	// The sandbox says it is ready on stderr after the file is in place.
	sc := bufio.NewScanner(pr)
	ready := false
	for !ready && sc.Scan() {
		ready = strings.HasPrefix(sc.Text(), "# sandbox ready: ")
	}
	go io.Copy(io.Discard, pr)
	if !ready {
		t.Fatal("the sandbox never said it was ready")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n")[1:] {
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok || !strings.HasPrefix(line, "export ") {
			t.Fatalf("not an export line: %q", line)
		}
		env[k] = v
	}
	if env["SANDBOX_DESTINATION_EXTERNAL_ID"] != "ext-123" || env["AWS_DEFAULT_REGION"] != "us-east-1" || env["AWS_REGION"] != "us-east-1" ||
		!strings.HasPrefix(env["AWS_ENDPOINT_URL_ECR"], "http://127.0.0.1:") || env["AWS_ENDPOINT_URL_ECR"] == "http://127.0.0.1:1" {
		t.Errorf("env file:\n%s", data)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("env file mode: %v %v", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left beside the env file: %v", entries)
	}
	if stdout.Len() != 0 {
		t.Errorf("with --env-file, stdout should stay empty: %q", stdout.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Errorf("exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sandbox did not stop when interrupted")
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("env file left after the sandbox stopped: %v", err)
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
		out  string
	}{
		{[]string{"version"}, ExitOK, "ecr-replicator dev\n"},
		{[]string{"--version"}, ExitOK, "ecr-replicator dev\n"},
		{[]string{"no-such-command"}, ExitUsage, "ecr-replicator: unknown command \"no-such-command\" for \"ecr-replicator\"\n"},
		{[]string{"version", "extra"}, ExitUsage, "ecr-replicator: unknown command \"extra\" for \"ecr-replicator version\"\n"},
		{[]string{"sandbox", "--no-such-flag"}, ExitUsage, "ecr-replicator: unknown flag: --no-such-flag (see 'ecr-replicator sandbox --help')\n"},
		{[]string{"sandbox", "--api-addr", "10.0.0.1:0"}, ExitUsage, ""},
	} {
		var out strings.Builder
		got := Run(context.Background(), tc.args, &out, &out)
		if got != tc.want || (tc.out != "" && out.String() != tc.out) {
			t.Errorf("%v: exit %d, want %d (output %q, want %q)", tc.args, got, tc.want, out.String(), tc.out)
		}
	}
}
