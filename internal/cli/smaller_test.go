package cli

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestCLISignals: Ctrl-C (SIGINT) ends a copy with 130 and SIGTERM with 143 (128 + the
// signal, as a shell reports a process the signal ended), both with the one
// "interrupted" line, promptly, while a request is still unanswered.
func TestCLISignals(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Source.Push(t, "team-a/app", "v1", fixedImage(t, "signals"))
	for _, tc := range []struct {
		sig  syscall.Signal
		exit int
	}{{syscall.SIGTERM, 143}, {syscall.SIGINT, 130}} {
		repo := fmt.Sprintf("mirror/%d/app", tc.sig)
		reached, release := make(chan struct{}, 16), make(chan struct{})
		remove, err := w.SB.HoldRequests(sandbox.Hold{Account: sandbox.DestinationAccount, Step: sandbox.StepUploadPUT, Repository: repo, Count: -1,
			Reached: func(sandbox.Entry) { reached <- struct{}{}; <-release }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { remove(); close(release) })
		cmd := cliCommand(t, w.Ctx, nil, "copy", srcECR+"/team-a/app:v1", dstECR+"/"+repo,
			"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-reached: // a blob upload is waiting for its answer
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%v: the copy never reached the held upload", tc.sig)
		}
		start := time.Now()
		cmd.Process.Signal(tc.sig)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if code := exitCode(t, err); code != tc.exit || stdout.String() != "" ||
				!strings.HasSuffix(stderr.String(), "ecr-replicator: interrupted: 0 done, 1 left, rerun to resume\n") {
				t.Errorf("%v: exit %d (want %d)\n--- stdout\n%s--- stderr\n%s", tc.sig, code, tc.exit, &stdout, &stderr)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%v: still running %s after the signal", tc.sig, time.Since(start))
		}
	}
}

// TestCLIRegionIsUsage: a --region that can never exist is a usage error (exit 2) in the
// validator's words, before any request.
func TestCLIRegionIsUsage(t *testing.T) {
	w, _ := syncWorld(t)
	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID))
	mark := w.SB.AccessLogMark()
	const want = "ecr-replicator: --region: \"us-east1\" is not a valid AWS region (want e.g. us-east-1)\n"
	for _, args := range [][]string{
		{"plan", "--rules", rules, "--region", "us-east1"},
		{"sync", "--rules", rules, "--region", "us-east1"},
		{"copy", "--region", "us-east1", srcECR + "/team-a/api:v1", dstECR + "/mirror/team-a/api"},
	} {
		if r := runCLI(t, w.Ctx, nil, args...); r.code != ExitUsage || r.stderr != want || r.stdout != "" {
			t.Errorf("%v:\n%s\nwant stderr %q", args, r, want)
		}
	}
	if n := len(w.SB.AccessLogSince(mark)); n != 0 {
		t.Errorf("%d requests made", n)
	}
}

// TestCLIFailedFirstCopyCreatesNothing: a copy whose source tag (or digest) does not
// exist fails that image without creating the destination repository it would have
// filled; --all-tags of an empty repository creates nothing either.
func TestCLIFailedFirstCopyCreatesNothing(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Source.Push(t, "team-a/app", "v1", fixedImage(t, "first"))
	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
	missing := "sha256:" + strings.Repeat("0", 64)
	for _, tc := range []struct{ src, want string }{
		{srcECR + "/team-a/app:nosuch", "failed          " + dstECR + "/new/app:nosuch: tag nosuch not found in " + srcECR + "/team-a/app (MANIFEST_UNKNOWN)\n1 tag: 1 failed; 0 B copied\n"},
		{srcECR + "/team-a/app@" + missing, "failed          " + dstECR + "/new/app@sha256:000000000000: sha256:000000000000 not found in " + srcECR + "/team-a/app (MANIFEST_UNKNOWN): the image was deleted, or an index refers to a manifest the repository lacks\n1 image: 1 failed; 0 B copied\n"},
	} {
		r := runCLI(t, w.Ctx, nil, append([]string{"copy", tc.src, dstECR + "/new/app"}, role...)...)
		if r.code != ExitFailed || r.stdout != tc.want {
			t.Errorf("%s:\n%s\nwant stdout\n%s", tc.src, r, tc.want)
		}
		_, err := ecr.NewFromConfig(w.Dest.Config).DescribeRepositories(w.Ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"new/app"}})
		var nf *ecrtypes.RepositoryNotFoundException
		if !errors.As(err, &nf) {
			t.Errorf("%s: the failed copy left repository new/app (DescribeRepositories: %v)", tc.src, err)
		}
	}
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/empty")})
	r := runCLI(t, w.Ctx, nil, append([]string{"copy", "--all-tags", srcECR + "/team-a/empty", dstECR + "/new/empty"}, role...)...)
	_, err := ecr.NewFromConfig(w.Dest.Config).DescribeRepositories(w.Ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"new/empty"}})
	var nf *ecrtypes.RepositoryNotFoundException
	if r.code != ExitOK || r.stdout != "0 tags: nothing to copy\n" || !errors.As(err, &nf) {
		t.Errorf("--all-tags of an empty repository:\n%s\n(DescribeRepositories new/empty: %v)", r, err)
	}
}

// TestCLISelfCopyWarns: copying an image onto itself does nothing, and says so.
func TestCLISelfCopyWarns(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	d := w.Source.Push(t, "team-a/app", "v1", fixedImage(t, "self"))
	r := runCLI(t, w.Ctx, nil, "copy", srcECR+"/team-a/app:v1", srcECR+"/team-a/app")
	want := "ecr-replicator: warning: SRC and DST are the same repository, " + srcECR + "/team-a/app: there is nothing to copy (for another account or region, change the host)\n"
	if r.code != ExitOK || r.stderr != want || r.stdout != "already-present "+srcECR+"/team-a/app:v1@"+shortDigest(d.String())+"\n1 tag: 1 already-present; 0 B copied\n" {
		t.Errorf("self copy:\n%s\nwant stderr %q", r, want)
	}
}

// TestCLINoSecretsInOutput: what the command prints — with --debug, on failure, in JSON —
// never holds the secret key, the session token or a registry password (sent as Basic
// auth of "AWS:<token>", base64 "QVdTO…").
func TestCLINoSecretsInOutput(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/src")})
	w.Dest.Push(t, "mirror/src", "v1", fixedImage(t, "secrets"))
	// Temporary credentials, so that a session token is in play.
	out, err := sts.NewFromConfig(w.Config(t, sandbox.SourceAccount, sandbox.SourceUser)).AssumeRole(w.Ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String(w.DestinationRoleARN()), RoleSessionName: aws.String("cli-test"), ExternalId: aws.String(w.ExternalID)})
	if err != nil {
		t.Fatal(err)
	}
	c := out.Credentials
	env := []string{"AWS_ACCESS_KEY_ID=" + aws.ToString(c.AccessKeyId), "AWS_SECRET_ACCESS_KEY=" + aws.ToString(c.SecretAccessKey), "AWS_SESSION_TOKEN=" + aws.ToString(c.SessionToken)}
	for _, args := range [][]string{
		{"--debug", "copy", dstECR + "/mirror/src:v1", dstECR + "/mirror/dst"},
		{"--debug", "copy", dstECR + "/mirror/src:nosuch", dstECR + "/mirror/dst", "-o", "json"},
		{"--debug", "copy", dstECR + "/mirror/src:v1", srcECR + "/mirror/dst"},
		{"--debug", "copy", "--all-tags", "--dry-run", dstECR + "/mirror/src", dstECR + "/mirror/dst2"},
	} {
		r := runCLI(t, w.Ctx, env, args...)
		all := r.stdout + r.stderr
		if !strings.Contains(all, "level=DEBUG") {
			t.Errorf("%v: no debug log\n%s", args, r)
		}
		for _, s := range []string{aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken), "QVdTO", "Basic "} {
			if strings.Contains(all, s) {
				t.Errorf("%v: %.8s… is in the output\n%s", args, s, r)
			}
		}
	}
}
