package destinations

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// The replicator writes only where it owns (docs/SECURITY.md, "Ownership (27A)"): into
// a repository it created — tagged ecr-replicator:owner=<its account> at creation — or
// one an administrator adopted by adding that tag. The destination role's IAM
// conditions require the same tag of every write; the code checks it first, so that a
// repository it does not own is a clear, permanent, reported failure rather than a
// denial halfway through a copy, and so that it never tags an existing repository.

// CodeRepositoryNotOwned is the failure of a write into a destination repository the
// replicator does not own.
const CodeRepositoryNotOwned = "RepositoryNotOwned"

// KeptImmutable is the outcome of a delete the destination's tag immutability kept.
const KeptImmutable copyengine.Outcome = "kept-immutable"

// notOwnedError: the destination repository exists and is not the replicator's. Certain:
// its tags were read.
type notOwnedError struct {
	repo         ecrname.Repo
	arn          string
	owner, found string
}

func (e *notOwnedError) Error() string {
	whose := "has no " + ecraccess.OwnerTag + " tag"
	if e.found != "" {
		whose = fmt.Sprintf("is tagged %s=%s (another replicator's)", ecraccess.OwnerTag, e.found)
	}
	return fmt.Sprintf("destination repository %s exists and %s: the replicator writes only to repositories it created or an administrator "+
		"adopted for it. To adopt it (its images may then be overwritten and, with mirrorDeletes, deleted): "+
		"aws ecr tag-resource --region %s --resource-arn %s --tags Key=%s,Value=%s",
		e.repo, whose, e.repo.Region, e.arn, ecraccess.OwnerTag, e.owner)
}
func (e *notOwnedError) ErrorCode() string { return CodeRepositoryNotOwned }
func (e *notOwnedError) Retryable() bool   { return false }

// repoKey names a destination repository as reached through one registry access.
type repoKey struct {
	reg  *ecraccess.Registry
	name string
}

// destination makes sure the destination repository exists (creating it, owned, when
// create) and is the replicator's, and describes it. A verdict of ownership is kept for
// the run (one invocation): an administrator's change is seen by the next one.
func (r *Run) destination(ctx context.Context, srcReg, dstReg *ecraccess.Registry, src Source, t rules.Target, create bool) (ecraccess.Repository, error) {
	key := repoKey{reg: dstReg, name: t.Repository}
	r.mu.Lock()
	repo, ok := r.repos[key]
	r.mu.Unlock()
	if ok {
		return repo, nil
	}
	owner, err := r.resolver.CallerAccount(ctx)
	if err != nil {
		return repo, err
	}
	var settings ecraccess.RepositorySettings
	if create {
		if settings, err = r.sourceSettings(ctx, srcReg, src.Repo, t.Destination); err != nil {
			return repo, err
		}
		settings.Tags = ecraccess.OwnedTags(owner, settings.ARN, settings.Tags)
	}
	repo, err = dstReg.EnsureRepository(ctx, t.Repository, settings, create)
	if err != nil {
		return repo, err
	}
	if found := repo.Tags[ecraccess.OwnerTag]; !repo.Created && found != owner {
		return repo, &notOwnedError{repo: t.Repo(), arn: repo.ARN, owner: owner, found: found}
	}
	known := repo
	known.Created = false // created by this call only
	r.mu.Lock()
	r.repos[key] = known
	r.mu.Unlock()
	return repo, nil
}

// forget drops a destination repository from the run's knowledge (the registry said it
// is gone): the next copy looks for it again.
func (r *Run) forget(dstReg *ecraccess.Registry, repository string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.repos, repoKey{reg: dstReg, name: repository})
}

// keepImmutable says why a delete must not remove what it names in the destination
// repository ("" when it may): a tag the repository keeps immutable — the tag (when it
// still points at digest), or any tag of the image digest when no tag is given — unless
// the rule sets deleteImmutableTags. Deleting it would let the source's next push under
// that tag move it. What is no longer there is left to the delete to report.
func keepImmutable(ctx context.Context, dstReg *ecraccess.Registry, repo ecraccess.Repository, t rules.Target, tag, digest string) (string, error) {
	if t.DeleteImmutableTags || repo.TagMutability == ecrtypes.ImageTagMutabilityMutable || repo.TagMutability == "" {
		return "", nil
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
