package cli

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestCLICrossAccountHints: the first likely mistake — a copy into (or out of) another
// account without a role — names both accounts and the flags that fix it, instead of
// only "ecr:DescribeRepositories was denied".
func TestCLICrossAccountHints(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Source.Push(t, "team-a/app", "v1", fixedImage(t, "one"))
	w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("other/app")})
	w.Dest.Push(t, "other/app", "v1", fixedImage(t, "two"))
	caller := "arn:aws:iam::111111111111:user/replicator"

	r := runCLI(t, w.Ctx, nil, "copy", srcECR+"/team-a/app:v1", dstECR+"/mirror/app")
	want := "ecr-replicator: destination " + dstECR + "/mirror/app is in account 222222222222, and this identity (" + caller + ") is in account 111111111111: " +
		"ecr:DescribeRepositories was denied there (AccessDeniedException). To write another account, pass --dest-role-arn with a role of account 222222222222 " +
		"that account 111111111111 may assume (and --external-id if its trust policy requires one), or --dest-profile with credentials of account 222222222222\n"
	if r.code != ExitUsage || r.stderr != want || r.stdout != "" {
		t.Errorf("destination in another account:\n%s\nwant stderr\n%s", r, want)
	}

	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
	r = runCLI(t, w.Ctx, nil, append([]string{"copy", dstECR + "/other/app:v1", dstECR + "/mirror/app"}, role...)...)
	want = "ecr-replicator: source " + dstECR + "/other/app is in account 222222222222, and this identity (" + caller + ") is in account 111111111111: " +
		"ecr:DescribeRepositories was denied there (AccessDeniedException). To read another account, pass --source-role-arn with a role of account 222222222222 " +
		"that account 111111111111 may assume, or --profile with credentials of account 222222222222 (and --dest-profile for the destination's), " +
		"or allow account 111111111111 in the repository's policy\n"
	if r.code != ExitUsage || r.stderr != want || r.stdout != "" {
		t.Errorf("source in another account:\n%s\nwant stderr\n%s", r, want)
	}

	// plan: a destination of the rules in another account, without a roleArn.
	rules := rulesFile(t, "      - accountId: \"222222222222\"\n        region: us-east-1\n        repositoryPrefix: mirror/\n")
	r = runCLI(t, w.Ctx, nil, "plan", "--rules", rules)
	want = "destination 222222222222/us-east-1 (1 repository not listed): listing 222222222222/us-east-1/mirror/team-a/app was denied (AccessDeniedException): " +
		"it is in account 222222222222, and this identity in account 111111111111; give rules[0].destinations[0] a roleArn of account 222222222222 that account 111111111111 may assume (and its externalId)\n"
	if r.code != ExitFailed || !strings.Contains(r.stdout, want) {
		t.Errorf("plan, destination in another account without a role:\n%s\nwant the line\n%s", r, want)
	}

	// The same registry, reached with a role: no hint, it works.
	r = runCLI(t, w.Ctx, nil, append([]string{"copy", srcECR + "/team-a/app:v1", dstECR + "/mirror/app"}, role...)...)
	if r.code != ExitOK || w.Dest.Digest(t, "mirror/app", "v1") == "" {
		t.Errorf("copy with the role:\n%s", r)
	}
}

// TestCLIHostTypos: an ECR host whose region (or account) can never exist is a usage
// error in the rules validator's words, said before any request (no DNS lookup, no
// "did not answer (NETWORK) after retries"); a reference without a registry host means
// Docker Hub, and the command says so when the other side is ECR.
func TestCLIHostTypos(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Source.Push(t, "team-a/app", "v1", fixedImage(t, "one"))
	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
	mark := w.SB.AccessLogMark()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"copy", "111111111111.dkr.ecr.us-east1.amazonaws.com/team-a/app:v1", dstECR + "/mirror/app"},
			`SRC registry 111111111111.dkr.ecr.us-east1.amazonaws.com: "us-east1" is not a valid AWS region (want e.g. us-east-1)`},
		{[]string{"copy", srcECR + "/team-a/app:v1", "222222222222.dkr.ecr.useast-1.amazonaws.com/mirror/app"},
			`DST registry 222222222222.dkr.ecr.useast-1.amazonaws.com: "useast-1" is not a valid AWS region (want e.g. us-east-1)`},
		{[]string{"copy", "11111111111.dkr.ecr.us-east-1.amazonaws.com/team-a/app:v1", dstECR + "/mirror/app"},
			`SRC registry 11111111111.dkr.ecr.us-east-1.amazonaws.com: "11111111111" is not a 12-digit AWS account ID`},
		{[]string{"copy", "--all-tags", "--dry-run", "111111111111.dkr-ecr.us-east1.on.aws/team-a/app", dstECR + "/mirror/app"},
			`SRC registry 111111111111.dkr-ecr.us-east1.on.aws: "us-east1" is not a valid AWS region (want e.g. us-east-1)`},
	} {
		r := runCLI(t, w.Ctx, nil, append(tc.args, role...)...)
		if r.code != ExitUsage || r.stdout != "" || r.stderr != "ecr-replicator: "+tc.want+"\n" {
			t.Errorf("%v:\n%s\nwant stderr %q", tc.args, r, tc.want)
		}
	}
	if n := len(w.SB.AccessLogSince(mark)); n != 0 {
		t.Errorf("host typos made %d requests, want none", n)
	}

	// A bare reference is Docker Hub's; with ECR on the other side, the command says so
	// first. (Docker Hub is unreachable here: the lookup fails, as it would offline.)
	r := runCLI(t, w.Ctx, nil, append([]string{"copy", "--dry-run", "team-a/app:v1", dstECR + "/mirror/app"}, role...)...)
	warn := `ecr-replicator: warning: SRC "team-a/app:v1" names no registry, so it is Docker Hub's index.docker.io/team-a/app:v1; an ECR image is named ACCOUNT.dkr.ecr.REGION.amazonaws.com/team-a/app:v1`
	if l := lines(r.stderr); len(l) == 0 || l[0] != warn {
		t.Errorf("bare SRC:\n%s\nwant the first stderr line\n%s", r, warn)
	}
	r = runCLI(t, w.Ctx, nil, "copy", "--dry-run", srcECR+"/team-a/app:v1", "mirror/app")
	warn = `ecr-replicator: warning: DST "mirror/app" names no registry, so it is Docker Hub's index.docker.io/mirror/app; an ECR repository is named ACCOUNT.dkr.ecr.REGION.amazonaws.com/mirror/app`
	if l := lines(r.stderr); len(l) == 0 || l[0] != warn {
		t.Errorf("bare DST:\n%s\nwant the first stderr line\n%s", r, warn)
	}
	// Nothing was written to the destination account.
	if n := len(sandbox.Filter(w.SB.AccessLogSince(mark), func(e sandbox.Entry) bool {
		return e.Account == sandbox.DestinationAccount && (e.Operation == "CreateRepository" || strings.HasPrefix(e.Operation, "PUT"))
	})); n != 0 {
		t.Errorf("%d writes to the destination", n)
	}
}
