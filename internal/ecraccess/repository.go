package ecraccess

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path"
	"strings"
	"time"

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
	ARN               string      // of the repository read (ReadSettings)
}

// ReadSettings reads a repository's settings. Lifecycle policy and resource tags are
// read only when asked for (they cost a call each).
func (g *Client) ReadSettings(ctx context.Context, repository string, lifecycle, tags bool) (RepositorySettings, error) {
	var s RepositorySettings
	out, err := g.api.DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RegistryId: g.RegistryID(), RepositoryNames: []string{repository}})
	if err != nil {
		return s, WrapAWS("ecr:DescribeRepositories", err)
	}
	if len(out.Repositories) == 0 {
		return s, &Error{Op: "ecr:DescribeRepositories", Code: CodeRepositoryNotFound, Err: errors.New("repository " + repository + " not found")}
	}
	r := out.Repositories[0]
	s.ARN = aws.ToString(r.RepositoryArn)
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
		lp, err := g.api.GetLifecyclePolicy(ctx, &ecr.GetLifecyclePolicyInput{RegistryId: g.RegistryID(), RepositoryName: aws.String(repository)})
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

// RegistryID is the RegistryId of the registry's API calls: its account, named, so that a
// call never acts on the caller's own registry in place of another's (nil: the caller's,
// for a registry resolved without an account).
func (g *Client) RegistryID() *string {
	if g.access.AccountID == "" {
		return nil
	}
	return aws.String(g.access.AccountID)
}

// Tags that say what the replicator owns and may write (docs/SECURITY.md, "Ownership
// (27A)"); infra/destination-role.yaml's conditions name the same keys.
const (
	// OwnerTag marks a repository as the replicator's: its value is the account of the
	// identity that assumes the destination role (the source stack's ReplicatorRole). The
	// replicator tags the repositories it creates with it; an administrator adopts an
	// existing repository by adding it.
	OwnerTag = "ecr-replicator:owner"
	// SourceTag records, on a created repository, the ARN of the source repository it
	// mirrors (informational; SourceTagValue).
	SourceTag = "ecr-replicator:source"
	// AccessTag is the session tag of a write session (Access.Write), value AccessWrite.
	AccessTag   = "ecr-replicator:access"
	AccessWrite = "write"
)

// OwnedTags are the tags a repository the replicator creates carries: its owner, the
// source it mirrors, and the source's own tags when mirrored — without the replicator's
// keys, which a source that is itself a mirror carries.
func OwnedTags(owner, sourceARN string, mirrored []types.Tag) []types.Tag {
	out := []types.Tag{{Key: aws.String(OwnerTag), Value: aws.String(owner)}}
	if sourceARN != "" {
		out = append(out, types.Tag{Key: aws.String(SourceTag), Value: aws.String(SourceTagValue(sourceARN))})
	}
	for _, t := range mirrored {
		if !strings.HasPrefix(aws.ToString(t.Key), "ecr-replicator:") {
			out = append(out, t)
		}
	}
	return out
}

// maxTagValue is the longest value an ECR tag may have: 256 characters
// (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_Tag.html); a longer one
// fails the CreateRepository that carries it with InvalidTagParameterException.
const maxTagValue = 256

// SourceTagValue is the value of SourceTag for a source repository: its ARN, or — when the
// ARN is longer than a tag value may be (a repository name may have 256 characters,
// API_CreateRepository) — the ARN's first characters, "..." and 12 hex digits of its
// SHA-256, so that the value still names the source and tells long names apart.
func SourceTagValue(arn string) string {
	if len(arn) <= maxTagValue { // ARNs are ASCII: bytes are characters
		return arn
	}
	sum := sha256.Sum256([]byte(arn))
	suffix := "..." + hex.EncodeToString(sum[:])[:12]
	return arn[:maxTagValue-len(suffix)] + suffix
}

// Repository is what the replicator knows of a destination repository before it writes:
// whose it is (its resource tags) and which tags it keeps (its tag mutability).
type Repository struct {
	ARN               string
	Created           bool      // created by this call
	CreatedAt         time.Time // when ECR created it
	TagMutability     types.ImageTagMutability
	MutabilityFilters []types.ImageTagMutabilityExclusionFilter
	Tags              map[string]string // resource tags
	// Encryption names its encryption, type and key ("AES256", "KMS <key ARN>"; "" when
	// not said): ECR mounts blobs only between repositories whose encryption type and key
	// are the same (https://docs.aws.amazon.com/AmazonECR/latest/userguide/blob-mounting.html).
	Encryption string
}

// TagImmutable says whether the repository refuses to overwrite tag once set, by its
// mutability setting and exclusion filters (wildcards: * any run of characters).
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-tag-mutability.html
func (r Repository) TagImmutable(tag string) bool {
	excluded := false
	for _, f := range r.MutabilityFilters {
		if ok, _ := path.Match(aws.ToString(f.Filter), tag); ok {
			excluded = true
		}
	}
	switch r.TagMutability {
	case types.ImageTagMutabilityImmutable:
		return true
	case types.ImageTagMutabilityImmutableWithExclusion:
		return !excluded
	case types.ImageTagMutabilityMutableWithExclusion:
		return excluded
	}
	return false
}

// DescribeRepository reads a repository and its resource tags (DescribeRepositories,
// ListTagsForResource). A missing repository is an *Error with CodeRepositoryNotFound.
func (g *Client) DescribeRepository(ctx context.Context, repository string) (Repository, error) {
	out, err := g.api.DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RegistryId: g.RegistryID(), RepositoryNames: []string{repository}})
	var nf *types.RepositoryNotFoundException
	if errors.As(err, &nf) || (err == nil && len(out.Repositories) == 0) {
		return Repository{}, &Error{Op: "ecr:DescribeRepositories", Code: CodeRepositoryNotFound, Err: errors.New("repository " + repository + " not found")}
	}
	if err != nil {
		return Repository{}, WrapAWS("ecr:DescribeRepositories", err)
	}
	repo := repositoryOf(out.Repositories[0])
	tags, err := g.api.ListTagsForResource(ctx, &ecr.ListTagsForResourceInput{ResourceArn: aws.String(repo.ARN)})
	if err != nil {
		return repo, WrapAWS("ecr:ListTagsForResource", err)
	}
	repo.Tags = tagMap(tags.Tags)
	return repo, nil
}

// EnsureRepository makes sure a repository exists, creating it with settings (and its
// lifecycle policy, right after) when it does not and create is set, and describes it.
// A concurrent creation (RepositoryAlreadyExistsException) is described like an existing
// repository: whose it is, its tags say.
func (g *Client) EnsureRepository(ctx context.Context, repository string, settings RepositorySettings, create bool) (Repository, error) {
	repo, err := g.DescribeRepository(ctx, repository)
	var ae *Error
	switch {
	case err == nil:
		return repo, nil
	case !errors.As(err, &ae) || ae.Code != CodeRepositoryNotFound:
		return repo, err
	case !create:
		return repo, &Error{Op: "ecr:DescribeRepositories", Code: CodeRepositoryNotFound, Err: errors.New("destination repository " + repository + " does not exist and createRepository is false")}
	}
	in := &ecr.CreateRepositoryInput{
		RegistryId:                         g.RegistryID(),
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
	if errors.As(err, &exists) {
		return g.DescribeRepository(ctx, repository)
	}
	if err != nil {
		return Repository{}, WrapAWS("ecr:CreateRepository", err)
	}
	repo = repositoryOf(*out.Repository)
	repo.Created, repo.Tags = true, tagMap(settings.Tags)
	if settings.LifecyclePolicy != "" {
		return repo, g.PutLifecyclePolicy(ctx, repository, settings.LifecyclePolicy)
	}
	return repo, nil
}

// HasLifecyclePolicy says whether a repository has a lifecycle policy
// (GetLifecyclePolicy; LifecyclePolicyNotFoundException: it has none).
func (g *Client) HasLifecyclePolicy(ctx context.Context, repository string) (bool, error) {
	_, err := g.api.GetLifecyclePolicy(ctx, &ecr.GetLifecyclePolicyInput{RegistryId: g.RegistryID(), RepositoryName: aws.String(repository)})
	var nf *types.LifecyclePolicyNotFoundException
	switch {
	case errors.As(err, &nf):
		return false, nil
	case err != nil:
		return false, WrapAWS("ecr:GetLifecyclePolicy", err)
	}
	return true, nil
}

// PutLifecyclePolicy sets a repository's lifecycle policy.
func (g *Client) PutLifecyclePolicy(ctx context.Context, repository, policy string) error {
	if _, err := g.api.PutLifecyclePolicy(ctx, &ecr.PutLifecyclePolicyInput{
		RegistryId: g.RegistryID(), RepositoryName: aws.String(repository), LifecyclePolicyText: aws.String(policy),
	}); err != nil {
		return WrapAWS("ecr:PutLifecyclePolicy", err)
	}
	return nil
}

func repositoryOf(r types.Repository) Repository {
	return Repository{ARN: aws.ToString(r.RepositoryArn), CreatedAt: aws.ToTime(r.CreatedAt), TagMutability: r.ImageTagMutability,
		MutabilityFilters: r.ImageTagMutabilityExclusionFilters, Encryption: EncryptionOf(r.EncryptionConfiguration)}
}

// EncryptionOf names a repository's encryption as Repository.Encryption does.
func EncryptionOf(enc *types.EncryptionConfiguration) string {
	if enc == nil || enc.EncryptionType == "" {
		return ""
	}
	if key := aws.ToString(enc.KmsKey); key != "" {
		return string(enc.EncryptionType) + " " + key
	}
	return string(enc.EncryptionType)
}

func tagMap(tags []types.Tag) map[string]string {
	out := make(map[string]string, len(tags))
	for _, t := range tags {
		out[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return out
}
