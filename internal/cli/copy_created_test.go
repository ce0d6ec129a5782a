package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestCLICreatedEmptyWarningByFailureClass: a copy that created its destination
// repository and then failed for good (the destination role may not ecr:PutImage) says
// the repository stays empty until the failure is fixed — not "rerun to fill it", which
// would fail the same way.
func TestCLICreatedEmptyWarningByFailureClass(t *testing.T) {
	w := denyPutWorld(t)
	r := runCLI(t, w.Ctx, nil, "copy", srcECR+"/team-a/app:v1", dstECR+"/fresh/app", "--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID)
	if r.code != ExitFailed || !strings.Contains(r.stdout, "(DENIED)") {
		t.Fatalf("copy with PutImage denied:\n%s", r)
	}
	if !strings.Contains(r.stderr, "was created and is still empty: its copies failed in a way a rerun does not change") || strings.Contains(r.stderr, "rerun to fill it") {
		t.Errorf("the warning does not say a rerun will not fill the repository:\n%s", r)
	}
}

// TestCopyOwner: a destination repository the copy creates is tagged as owned by SRC's
// account by default (the replicator that keeps the mirror runs there), or by --owner
// (a central account); an --owner that is not an account ID is a usage error.
func TestCopyOwner(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	img, _ := random.Image(256, 1)
	w.Source.Push(t, "team-a/app", "v1", img)
	for repo, args := range map[string][]string{"mirror/default": nil, "mirror/central": {"--owner", "444444444444"}} {
		role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
		r := runCLI(t, w.Ctx, nil, append(append([]string{"copy", srcECR + "/team-a/app:v1", dstECR + "/" + repo}, role...), args...)...)
		if r.code != ExitOK {
			t.Fatalf("copy into %s:\n%s", repo, r)
		}
		want := sandbox.SourceAccount
		if args != nil {
			want = args[1]
		}
		arn := fmt.Sprintf("arn:aws:ecr:%s:%s:repository/%s", sandbox.DefaultRegion, sandbox.DestinationAccount, repo)
		out, err := ecr.NewFromConfig(w.Dest.Config).ListTagsForResource(w.Ctx, &ecr.ListTagsForResourceInput{ResourceArn: aws.String(arn)})
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, tg := range out.Tags {
			if aws.ToString(tg.Key) == ecraccess.OwnerTag {
				got = aws.ToString(tg.Value)
			}
		}
		if got != want {
			t.Errorf("%s (%v): %s = %q, want %s", repo, args, ecraccess.OwnerTag, got, want)
		}
	}
	if r := runCLI(t, w.Ctx, nil, "copy", srcECR+"/team-a/app:v1", dstECR+"/mirror/x", "--owner", "me"); r.code != ExitUsage || !strings.Contains(r.stderr, "--owner") {
		t.Errorf("--owner me:\n%s", r)
	}
}
