package cli

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestCopyLongTagDryRunAndMissing: a tag of 129-300 characters (ECR's PutImage,
// API_PutImage imageTag) is looked up through the ECR API in a dry run — to copy, then in
// sync — without pulling the destination image (DescribeImages: lastRecordedPullTime
// stays unset), and a long tag the source lacks fails before the destination repository
// is created, as a short one does.
func TestCopyLongTagDryRunAndMissing(t *testing.T) {
	w := sandboxtest.Start(t)
	const repo = "team-a/app"
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
	img, _ := random.Image(512, 1)
	d := w.Source.Push(t, repo, "", img).String()
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	tag := "build-" + strings.Repeat("9876543210", 15) // 156 characters
	if _, err := ecr.NewFromConfig(w.Source.Config).PutImage(w.Ctx, &ecr.PutImageInput{RepositoryName: aws.String(repo),
		ImageManifest: aws.String(string(raw)), ImageManifestMediaType: aws.String(string(mt)), ImageTag: aws.String(tag)}); err != nil {
		t.Fatal(err)
	}
	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
	ref := dstECR + "/mirror/" + repo + ":" + tag + "@" + shortDigest(d)

	missing := srcECR + "/" + repo + ":" + strings.Repeat("m", 200)
	code, out, errOut := run(t, w.Ctx, append([]string{"copy", missing, dstECR + "/mirror/" + repo}, role...)...)
	if code != ExitFailed || !strings.HasPrefix(out, "failed") || strings.Contains(errOut, "was created") {
		t.Errorf("copy of a long tag the source lacks: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if _, err := ecr.NewFromConfig(w.Dest.Config).DescribeRepositories(w.Ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"mirror/" + repo}}); err == nil {
		t.Errorf("a copy of a missing tag created the destination repository")
	}

	code, out, errOut = run(t, w.Ctx, append([]string{"copy", srcECR + "/" + repo + ":" + tag, dstECR + "/mirror/" + repo + ":" + tag}, role...)...)
	if code != ExitOK {
		t.Fatalf("copy of a %d-character tag: exit %d\nstdout: %s\nstderr: %s", len(tag), code, out, errOut)
	}
	code, out, _ = run(t, w.Ctx, append([]string{"copy", "--all-tags", "--dry-run", "--detailed-exitcode", srcECR + "/" + repo, dstECR + "/mirror/" + repo}, role...)...)
	if code != ExitOK || !strings.Contains(out, "in-sync         "+ref+"\n") {
		t.Errorf("dry run after the copy: exit %d\n%s", code, out)
	}
	di, err := ecr.NewFromConfig(w.Dest.Config).DescribeImages(w.Ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("mirror/" + repo),
		ImageIds: []ecrtypes.ImageIdentifier{{ImageDigest: aws.String(d)}}})
	if err != nil || len(di.ImageDetails) != 1 || di.ImageDetails[0].LastRecordedPullTime != nil {
		t.Errorf("the destination image after copy and dry run: %+v %v (want no lastRecordedPullTime)", di, err)
	}

	if _, err := ecr.NewFromConfig(w.Dest.Config).BatchDeleteImage(w.Ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String("mirror/" + repo),
		ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String(tag)}}}); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run(t, w.Ctx, append([]string{"copy", "--dry-run", "--detailed-exitcode", srcECR + "/" + repo + ":" + tag, dstECR + "/mirror/" + repo}, role...)...)
	if code != ExitDrift || !strings.Contains(out, "to-copy         "+ref+" (tag missing)\n") {
		t.Errorf("dry run of a long tag the destination lacks: exit %d\n%s", code, out)
	}
}
