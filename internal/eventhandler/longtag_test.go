package eventhandler_test

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

// TestTagsLongerThanTheRegistryAPITakes: ECR's PutImage accepts tags of up to 300
// characters (API_PutImage, imageTag), the registry API 128; a push of such a tag is
// replicated — through the ECR API on both sides — and moves with the source. It was
// refused as a malformed event and acknowledged: the push was lost.
func TestTagsLongerThanTheRegistryAPITakes(t *testing.T) {
	f := newFixture(t, rulesDoc(true, false))
	const repo = "team-a/long"
	f.w.Source.EnsureRepository(t, f.ctx, repo)
	api := ecr.NewFromConfig(f.w.Source.Config)
	tag := "release-" + strings.Repeat("0123456789", 29) + "ab" // 300 characters
	putTag := func(tag string) string {
		img, err := random.Image(1024, 1)
		if err != nil {
			t.Fatal(err)
		}
		d := f.w.Source.Push(t, repo, "", img).String()
		raw, _ := img.RawManifest()
		mt, _ := img.MediaType()
		if _, err := api.PutImage(f.ctx, &ecr.PutImageInput{RepositoryName: aws.String(repo), ImageManifest: aws.String(string(raw)),
			ImageManifestMediaType: aws.String(string(mt)), ImageTag: aws.String(tag)}); err != nil {
			t.Fatal(err)
		}
		return d
	}
	destTag := func(tag string) string {
		out, err := ecr.NewFromConfig(f.w.Dest.Config).BatchGetImage(f.ctx, &ecr.BatchGetImageInput{RepositoryName: aws.String("mirror/" + repo),
			ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String(tag)}}})
		if err != nil || len(out.Images) == 0 {
			return ""
		}
		return aws.ToString(out.Images[0].ImageId.ImageDigest)
	}
	h, logs := f.handler(t)
	for i := range 2 { // pushed, then moved
		want := putTag(tag)
		out, err := h.Handle(f.ctx, json.RawMessage(sandboxtest.ImageEvent("e", "PUSH", repo, want, tag)))
		if err != nil {
			t.Fatalf("push %d: %v\n%s", i, err, logs)
		}
		if sum := out.(eventhandler.Summary); sum.Succeeded != 1 || len(sum.Malformed) > 0 {
			t.Fatalf("push %d of a %d-character tag: %+v", i, len(tag), sum)
		}
		if got := destTag(tag); got != want {
			t.Fatalf("push %d: destination tag at %q, want %s", i, got, want)
		}
	}
}

// TestLongTagOnAnImmutableDestination: PutImage's refusal of an IMMUTABLE tag on another
// digest (ImageTagAlreadyExistsException) is the registry's TAG_INVALID conflict: permanent,
// reported, the content still copied by digest.
func TestLongTagOnAnImmutableDestination(t *testing.T) {
	f := newFixture(t, rulesDoc(true, false))
	const repo = "team-a/frozen"
	tag := "t" + strings.Repeat("x", 199)
	put := func(api *ecr.Client, side sandboxtest.Side, repo string) string {
		img, err := random.Image(1024, 1)
		if err != nil {
			t.Fatal(err)
		}
		d := side.Push(t, repo, "", img).String()
		raw, _ := img.RawManifest()
		mt, _ := img.MediaType()
		if _, err := api.PutImage(f.ctx, &ecr.PutImageInput{RepositoryName: aws.String(repo), ImageManifest: aws.String(string(raw)),
			ImageManifestMediaType: aws.String(string(mt)), ImageTag: aws.String(tag)}); err != nil {
			t.Fatal(err)
		}
		return d
	}
	f.w.Dest.CreateRepository(t, f.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/" + repo), ImageTagMutability: ecrtypes.ImageTagMutabilityImmutable,
		Tags: sandboxtest.Owned()})
	put(ecr.NewFromConfig(f.w.Dest.Config), f.w.Dest, "mirror/"+repo)
	f.w.Source.EnsureRepository(t, f.ctx, repo)
	d := put(ecr.NewFromConfig(f.w.Source.Config), f.w.Source, repo)
	h, _ := f.handler(t)
	out, err := h.Handle(f.ctx, json.RawMessage(sandboxtest.ImageEvent("e", "PUSH", repo, d, tag)))
	if err != nil {
		t.Fatal(err)
	}
	sum := out.(eventhandler.Summary)
	if len(sum.Results) != 1 || sum.Results[0].Outcome != "conflict" || sum.Results[0].Retryable || sum.Results[0].Code != "TAG_INVALID" {
		t.Fatalf("summary %+v: want a permanent TAG_INVALID conflict", sum)
	}
	if got := f.destinationHead(t, "mirror/"+repo, d); got != d {
		t.Fatalf("the content was not copied by digest: %q", got)
	}
}
