package ecraccess

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecr/types"
)

// RepositorySettings are what a created destination repository mirrors from its source.
// https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html
type RepositorySettings struct {
	TagMutability     types.ImageTagMutability
	MutabilityFilters []types.ImageTagMutabilityExclusionFilter
	ScanOnPush        bool
	EncryptionType    types.EncryptionType
	KMSKey            string
	LifecyclePolicy   string      // empty: none
	Tags              []types.Tag // resource tags
}

// ReadSettings reads a repository's settings. Lifecycle policy and resource tags are
// read only when asked for (they cost a call each).
func (g *Registry) ReadSettings(ctx context.Context, repository string, lifecycle, tags bool) (RepositorySettings, error) {
	var s RepositorySettings
	out, err := g.api.DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{repository}})
	if err != nil {
		return s, WrapAWS("ecr:DescribeRepositories", err)
	}
	if len(out.Repositories) == 0 {
		return s, &Error{Op: "ecr:DescribeRepositories", Code: CodeRepositoryNotFound, Err: errors.New("repository " + repository + " not found")}
	}
	r := out.Repositories[0]
	s.TagMutability = r.ImageTagMutability
	s.MutabilityFilters = r.ImageTagMutabilityExclusionFilters
	if r.ImageScanningConfiguration != nil {
		s.ScanOnPush = r.ImageScanningConfiguration.ScanOnPush
	}
	if r.EncryptionConfiguration != nil {
		s.EncryptionType = r.EncryptionConfiguration.EncryptionType
		s.KMSKey = aws.ToString(r.EncryptionConfiguration.KmsKey)
	}
	if lifecycle {
		lp, err := g.api.GetLifecyclePolicy(ctx, &ecr.GetLifecyclePolicyInput{RepositoryName: aws.String(repository)})
		var nf *types.LifecyclePolicyNotFoundException
		switch {
		case errors.As(err, &nf):
		case err != nil:
			return s, WrapAWS("ecr:GetLifecyclePolicy", err)
		default:
			s.LifecyclePolicy = aws.ToString(lp.LifecyclePolicyText)
		}
	}
	if tags {
		tr, err := g.api.ListTagsForResource(ctx, &ecr.ListTagsForResourceInput{ResourceArn: r.RepositoryArn})
		if err != nil {
			return s, WrapAWS("ecr:ListTagsForResource", err)
		}
		s.Tags = tr.Tags
	}
	return s, nil
}

// EnsureRepository makes sure a repository exists, creating it with settings when it
// does not. A concurrent creation (RepositoryAlreadyExistsException) is success. It
// reports whether this call created it. Known repositories are remembered, with their
// encryption (Encryption), so a warm process asks once.
func (g *Registry) EnsureRepository(ctx context.Context, repository string, settings RepositorySettings, create bool) (bool, error) {
	g.mu.Lock()
	_, known := g.known[repository]
	g.mu.Unlock()
	if known {
		return false, nil
	}
	described, err := g.api.DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{repository}})
	var nf *types.RepositoryNotFoundException
	switch {
	case err == nil:
		var enc *types.EncryptionConfiguration
		if len(described.Repositories) > 0 {
			enc = described.Repositories[0].EncryptionConfiguration
		}
		g.remember(repository, enc)
		return false, nil
	case !errors.As(err, &nf):
		return false, WrapAWS("ecr:DescribeRepositories", err)
	case !create:
		return false, &Error{Op: "ecr:DescribeRepositories", Code: CodeRepositoryNotFound, Err: errors.New("destination repository " + repository + " does not exist and createRepository is false")}
	}
	in := &ecr.CreateRepositoryInput{
		RepositoryName:                     aws.String(repository),
		ImageTagMutability:                 settings.TagMutability,
		ImageTagMutabilityExclusionFilters: settings.MutabilityFilters,
		ImageScanningConfiguration:         &types.ImageScanningConfiguration{ScanOnPush: settings.ScanOnPush},
		Tags:                               settings.Tags,
	}
	if settings.EncryptionType != "" {
		in.EncryptionConfiguration = &types.EncryptionConfiguration{EncryptionType: settings.EncryptionType}
		if settings.KMSKey != "" {
			in.EncryptionConfiguration.KmsKey = aws.String(settings.KMSKey)
		}
	}
	out, err := g.api.CreateRepository(ctx, in)
	var exists *types.RepositoryAlreadyExistsException
	created := err == nil
	if err != nil && !errors.As(err, &exists) {
		return false, WrapAWS("ecr:CreateRepository", err)
	}
	if created && settings.LifecyclePolicy != "" {
		if _, err := g.api.PutLifecyclePolicy(ctx, &ecr.PutLifecyclePolicyInput{
			RepositoryName: aws.String(repository), LifecyclePolicyText: aws.String(settings.LifecyclePolicy),
		}); err != nil {
			return true, WrapAWS("ecr:PutLifecyclePolicy", err)
		}
	}
	var enc *types.EncryptionConfiguration
	if created && out.Repository != nil {
		enc = out.Repository.EncryptionConfiguration
	}
	g.remember(repository, enc) // created concurrently by another: its encryption unknown
	return created, nil
}

func (g *Registry) remember(repository string, enc *types.EncryptionConfiguration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.known == nil {
		g.known = map[string]string{}
	}
	g.known[repository] = encryption(enc)
}

// Encryption names a repository's encryption, type and key ("AES256", "KMS <key ARN>"),
// as DescribeRepositories or CreateRepository answered for it in EnsureRepository; "" when
// it was not learnt that way. ECR mounts blobs only between repositories whose encryption
// type and key are the same (blob-mounting.html).
func (g *Registry) Encryption(repository string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.known[repository]
}

func encryption(enc *types.EncryptionConfiguration) string {
	if enc == nil || enc.EncryptionType == "" {
		return ""
	}
	if key := aws.ToString(enc.KmsKey); key != "" {
		return string(enc.EncryptionType) + " " + key
	}
	return string(enc.EncryptionType)
}

// Forget drops a repository from the known set (after the registry said it is gone).
func (g *Registry) Forget(repository string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.known, repository)
}
