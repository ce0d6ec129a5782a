package eventhandler_test

// Review of issue 22 (independent reviewer).

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestReview22LongTagReadsAreNotDestinationPulls: ECR records lastRecordedPullTime on
// every pull (pull-time-update-exclusions.html: "Amazon ECR updates the
// LastRecordedPullTime timestamp on every pull"), and BatchGetImage is the ECR API's pull.
// The engine reads and verifies a destination tag of 129-300 characters with
// BatchGetImage (copyengine.TagAPI.GetTag: before writing it, and again to verify it), so
// every replication of such a tag "pulls" the destination image — the one being replaced
// included — and lifecycle rules on days since last pull at the destination never expire
// replicas nobody pulls. The exclusion the template registers is the source account's;
// the destination role has none. A tag of 128 characters or fewer is read with a HEAD,
// which leaves the pull time (the control). The digest a destination tag points at is
// what DescribeImages by imageTag answers (ecr:DescribeImages, granted), without a pull.
func TestReview22LongTagReadsAreNotDestinationPulls(t *testing.T) {
	f := newFixture(t, rulesDoc(true, false))
	const repo = "team-a/pulls"
	f.w.Source.EnsureRepository(t, f.ctx, repo)
	src := ecr.NewFromConfig(f.w.Source.Config)
	h, logs := f.handler(t)
	for _, tag := range []string{"short", "long-" + strings.Repeat("x", 195)} {
		img, err := random.Image(1024, 1)
		if err != nil {
			t.Fatal(err)
		}
		d := f.w.Source.Push(t, repo, "", img).String()
		raw, _ := img.RawManifest()
		mt, _ := img.MediaType()
		if _, err := src.PutImage(f.ctx, &ecr.PutImageInput{RepositoryName: aws.String(repo), ImageManifest: aws.String(string(raw)),
			ImageManifestMediaType: aws.String(string(mt)), ImageTag: aws.String(tag)}); err != nil {
			t.Fatal(err)
		}
		out, err := h.Handle(f.ctx, json.RawMessage(sandboxtest.ImageEvent("e-"+tag[:4], "PUSH", repo, d, tag)))
		if err != nil || out.(eventhandler.Summary).Succeeded != 1 {
			t.Fatalf("%d-character tag not replicated: %v %+v\n%s", len(tag), err, out, logs)
		}
		di, err := ecr.NewFromConfig(f.w.Dest.Config).DescribeImages(f.ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("mirror/" + repo),
			ImageIds: []ecrtypes.ImageIdentifier{{ImageDigest: aws.String(d)}}})
		if err != nil || len(di.ImageDetails) != 1 {
			t.Fatalf("describe the replica: %v %+v", err, di)
		}
		if p := di.ImageDetails[0].LastRecordedPullTime; p != nil {
			t.Errorf("a %d-character tag: after replication the destination image has lastRecordedPullTime %v — the replicator's own reads count as pulls at the destination", len(tag), *p)
		}
	}
}
