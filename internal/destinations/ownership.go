package destinations

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// The replicator writes only where it owns (docs/SECURITY.md, "Ownership"): into a
// repository it created — tagged ecr-replicator:owner=<its account> at creation — or
// one an administrator adopted by adding that tag. The destination role's IAM
// conditions require the same tag of every write; the code checks it first, so that a
// repository it does not own is a clear, permanent, reported failure rather than a
// denial halfway through a copy, and so that it never tags an existing repository.

// CodeRepositoryNotOwned is the failure of a write into a destination repository the
// replicator does not own.
const CodeRepositoryNotOwned = "RepositoryNotOwned"

// KeptImmutable is the outcome of a delete the destination's tag immutability kept.
const KeptImmutable Outcome = "kept-immutable"

// notOwnedError: the destination repository exists and is not the replicator's. Certain:
// its tags were read.
type notOwnedError struct {
	repo         ecrname.Repo
	arn          string
	owner, found string
}

func (e *notOwnedError) Error() string {
	adopt := fmt.Sprintf("aws ecr tag-resource --region %s --resource-arn %s --tags Key=%s,Value=%s", e.repo.Region, e.arn, ecraccess.OwnerTag, e.owner)
	if e.found != "" {
		return fmt.Sprintf("destination repository %s is owned by source account %s (tagged %s=%s), not by this replicator's account %s: "+
			"it is that source's mirror. Several source accounts replicating into one destination account need distinct prefixes "+
			"(one destination role per source, each with its RepositoryPrefix; docs/SECURITY.md). Only if source account %s no longer "+
			"replicates here, hand the repository over: %s", e.repo, e.found, ecraccess.OwnerTag, e.found, e.owner, e.found, adopt)
	}
	return fmt.Sprintf("destination repository %s exists and has no %s tag: the replicator writes only to repositories it created or an administrator "+
		"adopted for it. To adopt it (its images may then be overwritten and, with mirrorDeletes, deleted): %s", e.repo, ecraccess.OwnerTag, adopt)
}
func (e *notOwnedError) ErrorCode() string { return CodeRepositoryNotOwned }
func (e *notOwnedError) Retryable() bool   { return false }

// NotOwned is the RepositoryNotOwned failure of a write into dest, an existing destination
// repository described as repo (ecraccess.Client.DescribeRepository: with its tags), by
// the replicator of account owner; nil when the replicator owns it (or created it).
func NotOwned(dest ecrname.Repo, repo ecraccess.Repository, owner string) error {
	if found := repo.Tags[ecraccess.OwnerTag]; !repo.Created && found != owner {
		return &notOwnedError{repo: dest, arn: repo.ARN, owner: owner, found: found}
	}
	return nil
}

// repoKey names a destination repository as reached through one registry access (a
// Resolver's registries live as long as the process).
type repoKey struct {
	reg  *ecraccess.Client
	name string
}

// ownedCache remembers, for the life of the process (a warm Lambda's invocations, a CLI
// command), the destination repositories found owned, for ttl: a copy into a known mirror
// then costs no control-plane call (DescribeRepositories, ListTagsForResource: rate quotas
// not published, shared with the destination account's other tools). Only an owned
// verdict is kept — an adoption is seen by the next attempt — and the destination role's
// IAM conditions enforce ownership on every write whatever is remembered; a refusal or a
// repository gone forgets the verdict (Batch.forget).
type ownedCache struct {
	ttl time.Duration

	mu        sync.Mutex
	repos     map[repoKey]ownedEntry
	lifecycle map[repoKey]bool // lifecycle policy looked at (lifecycle.go), once per process
}

type ownedEntry struct {
	repo ecraccess.Repository
	at   time.Time
}

func newOwnedCache(ttl time.Duration) *ownedCache {
	return &ownedCache{ttl: ttl, repos: map[repoKey]ownedEntry{}, lifecycle: map[repoKey]bool{}}
}

func (c *ownedCache) get(k repoKey) (ecraccess.Repository, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.repos[k]
	if !ok || time.Since(e.at) >= c.ttl {
		delete(c.repos, k)
		return ecraccess.Repository{}, false
	}
	return e.repo, true
}

func (c *ownedCache) put(k repoKey, repo ecraccess.Repository) {
	repo.Created = false // created by the call that created it only
	c.mu.Lock()
	defer c.mu.Unlock()
	c.repos[k] = ownedEntry{repo: repo, at: time.Now()}
}

func (c *ownedCache) forget(k repoKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.repos, k)
	delete(c.lifecycle, k)
}

// destination makes sure the destination repository exists (creating it, owned, when
// create) and is the replicator's, and describes it; cached: the verdict came from the
// process's memory (ownedCache), not from ECR just now.
func (r *Batch) destination(ctx context.Context, srcReg, dstReg *ecraccess.Client, src Image, t rules.Target, create bool) (repo ecraccess.Repository, cached bool, err error) {
	key := repoKey{reg: dstReg, name: t.Repository}
	if repo, ok := r.owned.get(key); ok {
		return repo, true, r.mirrorLifecycle(ctx, srcReg, dstReg, src, t, repo)
	}
	owner, err := r.resolver.CallerAccount(ctx)
	if err != nil {
		return repo, false, err
	}
	if repo, err = r.ensure(ctx, srcReg, dstReg, src, t, owner, create); err != nil {
		return repo, false, err
	}
	if repo, err = r.recheckYoung(ctx, dstReg, t.Repository, repo, owner); err != nil {
		return repo, false, err
	}
	if err := NotOwned(t.Repo(), repo, owner); err != nil {
		return repo, false, err
	}
	r.owned.put(key, repo)
	return repo, false, r.mirrorLifecycle(ctx, srcReg, dstReg, src, t, repo)
}

// ensure makes sure the destination repository exists, creating it (when create) owned,
// with the source's settings. A creation carrying mirrored repository tags that the
// destination role refuses — a key outside its MirroredTagKeys (aws:TagKeys), which a
// source user may add at will — is made again without them, and the keys dropped are
// logged (MirroredTagsRefused): the repository is replicated, its tags are not.
func (r *Batch) ensure(ctx context.Context, srcReg, dstReg *ecraccess.Client, src Image, t rules.Target, owner string, create bool) (ecraccess.Repository, error) {
	var settings ecraccess.RepositorySettings
	if create {
		var err error
		if settings, err = r.sourceSettings(ctx, srcReg, src.Repo, t.Destination); err != nil {
			return ecraccess.Repository{}, err
		}
	}
	repo, err := CreateOwned(ctx, dstReg, t.Repository, settings, owner, create)
	owned, all := ecraccess.OwnedTags(owner, settings.ARN, nil), ecraccess.OwnedTags(owner, settings.ARN, settings.Tags)
	if err == nil || !create || len(all) == len(owned) || !refusedCreation(err) {
		return repo, err
	}
	var dropped []string
	for _, tg := range all[len(owned):] {
		dropped = append(dropped, aws.ToString(tg.Key))
	}
	settings.Tags = nil // the owned ones only
	if repo, err = CreateOwned(ctx, dstReg, t.Repository, settings, owner, create); err == nil {
		r.log.Warn("destination repository created without its mirrored tags: the destination role refused them", "code", CodeMirroredTagsRefused,
			"repository", t.Repo().String(), "keys", dropped, "fix", "list these keys in the destination role's MirroredTagKeys")
	}
	return repo, err
}

// CodeMirroredTagsRefused is the warning of a repository created without the source's
// tags, because the destination role refused them.
const CodeMirroredTagsRefused = "MirroredTagsRefused"

// refusedCreation says whether err is IAM refusing a CreateRepository (or the
// ecr:TagResource it needs for its tags).
func refusedCreation(err error) bool {
	var ae *ecraccess.Error
	return errors.As(err, &ae) && ae.Op == "ecr:CreateRepository" && ecraccess.IsAccessDenied(ae.Code)
}

// youngRepository is how recently created a repository seen without an owner tag is read
// again (recheckYoung), and recheckDelay how long after: a guess — ECR does not say how
// soon the tags a CreateRepository carried are visible to ListTagsForResource.
const (
	youngRepository = time.Minute
	recheckDelay    = time.Second
)

// recheckYoung reads a repository again, once, when it has no owner tag and was created
// moments ago — by a concurrent copy of this replicator, say, whose tags ECR may not show
// yet — so that the permanent RepositoryNotOwned rests on a settled answer.
func (r *Batch) recheckYoung(ctx context.Context, dstReg *ecraccess.Client, name string, repo ecraccess.Repository, owner string) (ecraccess.Repository, error) {
	if repo.Created || repo.Tags[ecraccess.OwnerTag] != "" || repo.CreatedAt.IsZero() || time.Since(repo.CreatedAt) >= youngRepository {
		return repo, nil
	}
	select {
	case <-ctx.Done():
		return repo, ctx.Err()
	case <-time.After(r.recheckDelay):
	}
	return dstReg.DescribeRepository(ctx, name)
}

// forget drops a destination repository from the process's knowledge (the registry said
// it is gone, or refused a write): the next copy looks at it again.
func (r *Batch) forget(dstReg *ecraccess.Client, repository string) {
	r.owned.forget(repoKey{reg: dstReg, name: repository})
}
