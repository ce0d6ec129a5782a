package cli

// Review of issue 22 (independent reviewer).

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestReview22CopyLongTag: the function replicates tags of 129-300 characters through the
// ECR API (issue 22 item 5), and its permanent TOO_LARGE_FOR_FUNCTION verdict sends the
// operator to the CLI: "copy the image where no timeout applies: ecr-replicator copy
// <repo>:<tag> <destination>". For a long tag that command is refused: the CLI builds its
// endpoints without copyengine.Endpoint.Tags (and parses the reference with the registry
// API's 128-character grammar), so the named remedy cannot copy the image, and
// `copy --all-tags` fails the repository's long tags.
func TestReview22CopyLongTag(t *testing.T) {
	w := sandboxtest.Start(t)
	const repo = "team-a/app"
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
	img, _ := random.Image(512, 1)
	d := w.Source.Push(t, repo, "", img).String()
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	tag := "build-" + strings.Repeat("0123456789", 19) // 196 characters
	if _, err := ecr.NewFromConfig(w.Source.Config).PutImage(w.Ctx, &ecr.PutImageInput{RepositoryName: aws.String(repo),
		ImageManifest: aws.String(string(raw)), ImageManifestMediaType: aws.String(string(mt)), ImageTag: aws.String(tag)}); err != nil {
		t.Fatal(err)
	}
	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
	destTag := func() string {
		out, err := ecr.NewFromConfig(w.Dest.Config).BatchGetImage(w.Ctx, &ecr.BatchGetImageInput{RepositoryName: aws.String("mirror/" + repo),
			ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String(tag)}}})
		if err != nil || len(out.Images) == 0 {
			return ""
		}
		return aws.ToString(out.Images[0].ImageId.ImageDigest)
	}

	code, out, errOut := run(t, w.Ctx, append([]string{"copy", srcECR + "/" + repo + ":" + tag, dstECR + "/mirror/" + repo}, role...)...)
	if code != ExitOK || destTag() != d {
		t.Errorf("copy of a %d-character tag (the command TOO_LARGE_FOR_FUNCTION names): exit %d, destination tag %q\nstdout: %s\nstderr: %s",
			len(tag), code, destTag(), out, errOut)
	}
	code, out, errOut = run(t, w.Ctx, append([]string{"copy", "--all-tags", srcECR + "/" + repo, dstECR + "/mirror/" + repo}, role...)...)
	if code != ExitOK || destTag() != d {
		t.Errorf("copy --all-tags of a repository with a %d-character tag: exit %d, destination tag %q\nstdout: %s\nstderr: %s",
			len(tag), code, destTag(), out, errOut)
	}
}
