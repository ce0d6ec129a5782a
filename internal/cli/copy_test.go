package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/sandbox/sandboxtest"
)

const (
	srcECR = sandbox.SourceAccount + ".dkr.ecr." + sandbox.DefaultRegion + ".amazonaws.com"
	dstECR = sandbox.DestinationAccount + ".dkr.ecr." + sandbox.DefaultRegion + ".amazonaws.com"
)

func run(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut strings.Builder
	code := Run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestCopyBetweenAccounts names registries by their ECR host names, as a user would; the
// hosts actually used come from ECR's answers (the sandbox's loopback registries).
func TestCopyBetweenAccounts(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app"), ImageTagMutability: ecrtypes.ImageTagMutabilityImmutable})
	idx, _ := random.Index(1024, 2, 3)
	idxDigest := w.Source.Push(t, "team-a/app", "v1", idx)
	var digests []string
	for i := 0; i < 4; i++ {
		img, _ := random.Image(512, 1)
		digests = append(digests, w.Source.Push(t, "team-a/app", fmt.Sprintf("t%d", i), img).String())
	}
	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}

	code, out, errOut := run(t, w.Ctx, append([]string{"copy", srcECR + "/team-a/app:v1", dstECR + "/mirror/team-a/app", "--output", "json"}, role...)...)
	if code != ExitOK {
		t.Fatalf("copy exit %d: %s %s", code, out, errOut)
	}
	var rep struct {
		Results []imageResult
		Failed  int
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("JSON output: %v\n%s", err, out)
	}
	if len(rep.Results) != 1 || rep.Results[0].Outcome != "copied" || rep.Results[0].Digest != idxDigest.String() {
		t.Fatalf("results: %+v", rep.Results)
	}
	if got := w.Dest.Digest(t, "mirror/team-a/app", "v1"); got != idxDigest.String() {
		t.Fatalf("destination v1 = %q, want %s", got, idxDigest)
	}
	// The created repository mirrors the source's immutability.
	repos, err := ecr.NewFromConfig(w.Dest.Config).DescribeRepositories(w.Ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"mirror/team-a/app"}})
	if err != nil || repos.Repositories[0].ImageTagMutability != ecrtypes.ImageTagMutabilityImmutable {
		t.Fatalf("destination repository: %+v %v", repos, err)
	}

	// --all-tags copies the rest; v1 is already there (and immutable: looked at, not rewritten).
	code, out, errOut = run(t, w.Ctx, append([]string{"copy", "--all-tags", srcECR + "/team-a/app", dstECR + "/mirror/team-a/app"}, role...)...)
	if code != ExitOK {
		t.Fatalf("copy --all-tags exit %d: %s %s", code, out, errOut)
	}
	if !strings.Contains(out, "5 images: 1 already-present, 4 copied") {
		t.Errorf("summary: %s", out)
	}
	for i, d := range digests {
		if got := w.Dest.Digest(t, "mirror/team-a/app", fmt.Sprintf("t%d", i)); got != d {
			t.Errorf("t%d = %q, want %s", i, got, d)
		}
	}
	if !strings.Contains(errOut, "[5/5]") {
		t.Errorf("no progress lines on a non-terminal stderr: %q", errOut)
	}

	// A conflicting immutable tag fails that image: exit 1, listed.
	other, _ := random.Image(256, 1)
	w.Dest.Push(t, "mirror/team-a/app", "t9", other)
	img, _ := random.Image(256, 1)
	w.Source.Push(t, "team-a/app", "t9", img)
	code, out, _ = run(t, w.Ctx, append([]string{"copy", srcECR + "/team-a/app:t9", dstECR + "/mirror/team-a/app"}, role...)...)
	if code != ExitFailed || !strings.Contains(out, "conflict") {
		t.Errorf("immutable conflict: exit %d, output %q", code, out)
	}

	// Usage errors exit 2 before any work.
	for _, args := range [][]string{
		{"copy", srcECR + "/team-a/app:v1"},
		{"copy", srcECR + "/team-a/app:v1", dstECR + "/x:other"},
		{"copy", srcECR + "/team-a/app:v1", dstECR + "/x@sha256:" + strings.Repeat("a", 64)},
		{"copy", "--output", "yaml", srcECR + "/team-a/app:v1", dstECR + "/x"},
		{"copy", "--all-tags", srcECR + "/team-a/app:v1", dstECR + "/x"},
	} {
		if code, _, errOut := run(t, w.Ctx, args...); code != ExitUsage {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errOut)
		}
	}
	// A denied role is a failure with a clear message, not a usage error.
	code, _, errOut = run(t, w.Ctx, "copy", srcECR+"/team-a/app:v1", dstECR+"/y", "--dest-role-arn", w.DestinationRoleARN(), "--external-id", "wrong-id")
	if code != ExitFailed || !strings.Contains(errOut, "AccessDenied") {
		t.Errorf("denied role: exit %d, %q", code, errOut)
	}
}
