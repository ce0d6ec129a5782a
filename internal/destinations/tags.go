package destinations

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
)

// manifestTypes are every manifest media type ECR stores: BatchGetImage converts a
// manifest whose type the caller does not accept, which changes its digest
// (https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-manifest-formats.html).
var manifestTypes = []string{
	"application/vnd.docker.distribution.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.v1+prettyjws",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
}

// repositoryTags is one repository's tags through the ECR API (copyengine.TagAPI): tags of
// 129-300 characters, which PutImage accepts and the registry API cannot carry. Reading a
// manifest is ecr:BatchGetImage (a pull: the source's), reading where a tag points is
// ecr:DescribeImages (not a pull: the destination's) and writing ecr:PutImage, which the
// deployed policies grant already.
type repositoryTags struct {
	api      *ecr.Client
	registry string // the repository's account: every call names it (RegistryId)
	repo     string
}

// RepositoryTags is repo's tags in registry (its account ID) through the ECR API, as the
// replicator reads and writes them: an Endpoint's Tags for an ECR repository (the CLI's
// too).
func RepositoryTags(api *ecr.Client, registry, repo string) copyengine.TagAPI {
	return repositoryTags{api: api, registry: registry, repo: repo}
}

func (r repositoryTags) GetTag(ctx context.Context, tag string) ([]byte, string, bool, error) {
	out, err := r.api.BatchGetImage(ctx, &ecr.BatchGetImageInput{RegistryId: aws.String(r.registry), RepositoryName: aws.String(r.repo),
		ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String(tag)}}, AcceptedMediaTypes: manifestTypes})
	var nf *ecrtypes.RepositoryNotFoundException
	if errors.As(err, &nf) {
		return nil, "", false, nil
	}
	if err != nil {
		return nil, "", false, ecraccess.WrapAWS("ecr:BatchGetImage", err)
	}
	if len(out.Images) > 0 {
		img := out.Images[0]
		return []byte(aws.ToString(img.ImageManifest)), aws.ToString(img.ImageManifestMediaType), true, nil
	}
	for _, f := range out.Failures {
		switch f.FailureCode {
		case ecrtypes.ImageFailureCodeImageNotFound:
		case ecrtypes.ImageFailureCodeImageInaccessible:
			// Archived: it cannot be pulled, as the registry's 404 says of a shorter tag;
			// the caller asks the ECR API what that 404 means (archived.go).
		default:
			return nil, "", false, imageFailure("ecr:BatchGetImage", f)
		}
	}
	return nil, "", false, nil
}

// TagDigest reads where tag points with DescribeImages by imageTag, which is not a pull:
// ECR "updates the LastRecordedPullTime timestamp on every pull" and BatchGetImage is one
// (https://docs.aws.amazon.com/AmazonECR/latest/userguide/pull-time-update-exclusions.html),
// so reading a destination tag with it would keep replicas nobody pulls from expiring by
// days since last pull. An image in the archive storage class is not found, as the
// registry's 404 says of a shorter tag (archive-image.html: it cannot be pulled).
func (r repositoryTags) TagDigest(ctx context.Context, tag string) (string, bool, error) {
	out, err := r.api.DescribeImages(ctx, &ecr.DescribeImagesInput{RegistryId: aws.String(r.registry), RepositoryName: aws.String(r.repo),
		ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String(tag)}}})
	var (
		inf *ecrtypes.ImageNotFoundException
		rnf *ecrtypes.RepositoryNotFoundException
	)
	if errors.As(err, &inf) || errors.As(err, &rnf) {
		return "", false, nil
	}
	if err != nil {
		return "", false, ecraccess.WrapAWS("ecr:DescribeImages", err)
	}
	if len(out.ImageDetails) == 0 {
		return "", false, nil
	}
	switch d := out.ImageDetails[0]; d.ImageStatus {
	case ecrtypes.ImageStatusArchived, ecrtypes.ImageStatusActivating:
		return "", false, nil
	default:
		return aws.ToString(d.ImageDigest), true, nil
	}
}

func (r repositoryTags) PutTag(ctx context.Context, tag string, manifest []byte, mediaType, digest string) error {
	_, err := r.api.PutImage(ctx, &ecr.PutImageInput{RegistryId: aws.String(r.registry), RepositoryName: aws.String(r.repo), ImageManifest: aws.String(string(manifest)),
		ImageManifestMediaType: aws.String(mediaType), ImageTag: aws.String(tag), ImageDigest: aws.String(digest)})
	if err != nil {
		return ecraccess.WrapAWS("ecr:PutImage", err)
	}
	return nil
}
