package destinations

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// mutability reads the destination repository's tag mutability now (one
// DescribeRepositories): a delete decides on what the repository keeps immutable as it
// is, not as the process last saw it (ownership is remembered; mutability may change). A
// repository gone keeps nothing: the delete that follows says it does not exist.
func mutability(ctx context.Context, dstReg *ecraccess.Client, repository string) (ecraccess.Repository, error) {
	s, err := dstReg.ReadSettings(ctx, repository, false, false)
	var ae *ecraccess.Error
	if errors.As(err, &ae) && ae.Code == ecraccess.CodeRepositoryNotFound {
		return ecraccess.Repository{}, nil
	}
	if err != nil {
		return ecraccess.Repository{}, err
	}
	return ecraccess.Repository{ARN: s.ARN, TagMutability: s.TagMutability, MutabilityFilters: s.MutabilityFilters}, nil
}

// keepImmutable says why a delete must not remove what it names in the destination
// repository ("" when it may): a tag the repository keeps immutable — the tag (when it
// still points at digest), or any tag of the image digest when no tag is given — unless
// the rule sets deleteImmutableTags. Deleting it would let the source's next push under
// that tag move it. What is no longer there is left to the delete to report.
func keepImmutable(ctx context.Context, dstReg *ecraccess.Client, t rules.Target, tag, digest string) (string, error) {
	if t.DeleteImmutableTags {
		return "", nil
	}
	repo, err := mutability(ctx, dstReg, t.Repository)
	if err != nil || repo.TagMutability == ecrtypes.ImageTagMutabilityMutable || repo.TagMutability == "" {
		return "", err
	}
	id := ecrtypes.ImageIdentifier{ImageDigest: aws.String(digest)}
	if tag != "" {
		id = ecrtypes.ImageIdentifier{ImageTag: aws.String(tag)}
	}
	out, err := dstReg.API().DescribeImages(ctx, &ecr.DescribeImagesInput{RegistryId: dstReg.RegistryID(), RepositoryName: aws.String(t.Repository), ImageIds: []ecrtypes.ImageIdentifier{id}})
	var nf *ecrtypes.ImageNotFoundException
	switch {
	case errors.As(err, &nf):
		return "", nil
	case err != nil:
		return "", ecraccess.WrapAWS("ecr:DescribeImages", err)
	}
	for _, d := range out.ImageDetails {
		tags := d.ImageTags
		if tag != "" {
			if digest != "" && aws.ToString(d.ImageDigest) != digest {
				continue // the tag moved on: the delete by tag and digest refuses it
			}
			tags = []string{tag}
		}
		for _, tg := range tags {
			if repo.TagImmutable(tg) {
				return fmt.Sprintf("the destination tag %s is immutable (%s): delete mirroring keeps it (deleteImmutableTags: true on rule %s deletes it)",
					tg, repo.TagMutability, t.Rule), nil
			}
		}
	}
	return "", nil
}

// keptByIndex says why an image the destination refused to delete because an index
// references it (ImageReferencedByManifestList) stays: an index of the repository that
// lists it carries a tag the repository keeps immutable — the index delete mirroring kept
// (kept-immutable) — so no retry can delete it ("" when there is no such index: the
// index's own DELETE may be on its way, and the refusal stays retryable). Only this
// refusal pays for the look: the repository's tagged images (DescribeImages, 1,000 a
// page), then those that are indexes with an immutable tag (BatchGetImage, 100 a call).
func keptByIndex(ctx context.Context, dstReg *ecraccess.Client, t rules.Target, digest string) (string, error) {
	if t.DeleteImmutableTags {
		return "", nil
	}
	repo, err := mutability(ctx, dstReg, t.Repository)
	if err != nil || repo.TagMutability == ecrtypes.ImageTagMutabilityMutable || repo.TagMutability == "" {
		return "", err
	}
	tagsOf, err := immutableIndexes(ctx, dstReg, t.Repository, repo)
	if err != nil {
		return "", err
	}
	var ids []ecrtypes.ImageIdentifier
	for d := range tagsOf {
		ids = append(ids, ecrtypes.ImageIdentifier{ImageDigest: aws.String(d)})
	}
	for chunk := range slices.Chunk(ids, 100) {
		out, err := dstReg.API().BatchGetImage(ctx, &ecr.BatchGetImageInput{RegistryId: dstReg.RegistryID(), RepositoryName: aws.String(t.Repository),
			ImageIds: chunk, AcceptedMediaTypes: []string{string(types.OCIImageIndex), string(types.DockerManifestList)}})
		if err != nil {
			return "", ecraccess.WrapAWS("ecr:BatchGetImage", err)
		}
		for _, img := range out.Images {
			m, err := v1.ParseIndexManifest(strings.NewReader(aws.ToString(img.ImageManifest)))
			if err != nil || img.ImageId == nil {
				continue
			}
			for _, child := range m.Manifests {
				if child.Digest.String() == digest {
					index := aws.ToString(img.ImageId.ImageDigest)
					return fmt.Sprintf("the destination index %s (tags %s, immutable: %s) references it and was kept by delete mirroring "+
						"(deleteImmutableTags: true on rule %s deletes both)", index, strings.Join(tagsOf[index], ","), repo.TagMutability, t.Rule), nil
				}
			}
		}
	}
	return "", nil
}

// immutableIndexes lists the repository's indexes that carry a tag it keeps immutable,
// with those tags.
func immutableIndexes(ctx context.Context, dstReg *ecraccess.Client, repository string, repo ecraccess.Repository) (map[string][]string, error) {
	out := map[string][]string{}
	p := ecr.NewDescribeImagesPaginator(dstReg.API(), &ecr.DescribeImagesInput{RegistryId: dstReg.RegistryID(), RepositoryName: aws.String(repository),
		MaxResults: aws.Int32(1000), Filter: &ecrtypes.DescribeImagesFilter{TagStatus: ecrtypes.TagStatusTagged}})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, ecraccess.WrapAWS("ecr:DescribeImages", err)
		}
		for _, d := range page.ImageDetails {
			if mt := types.MediaType(aws.ToString(d.ImageManifestMediaType)); !mt.IsIndex() {
				continue
			}
			for _, tg := range d.ImageTags {
				if repo.TagImmutable(tg) {
					out[aws.ToString(d.ImageDigest)] = d.ImageTags
					break
				}
			}
		}
	}
	return out, nil
}
