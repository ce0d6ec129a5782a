package destinations

import (
	"context"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// mirrorLifecycle gives an owned destination repository without a lifecycle policy the
// source's, when the rule mirrors it (mirrorLifecyclePolicy): a creation whose
// PutLifecyclePolicy failed is retried as a copy into an existing repository, which would
// otherwise never get the policy. Looked at once per process per repository (one
// GetLifecyclePolicy); a policy the repository has is left as it is. A failure fails the
// copy with its code, retried or reported as any other, and is looked at again next time.
func (r *Batch) mirrorLifecycle(ctx context.Context, srcReg, dstReg *ecraccess.Client, src Image, t rules.Target, repo ecraccess.Repository) error {
	if !t.Destination.MirrorLifecyclePolicy || !r.owned.lifecycleDue(repoKey{reg: dstReg, name: t.Repository}) || repo.Created {
		return nil // a creation sets it (EnsureRepository)
	}
	err := r.setMissingLifecycle(ctx, srcReg, dstReg, src, t)
	if err != nil {
		r.owned.lifecycleUndo(repoKey{reg: dstReg, name: t.Repository})
	}
	return err
}

func (r *Batch) setMissingLifecycle(ctx context.Context, srcReg, dstReg *ecraccess.Client, src Image, t rules.Target) error {
	has, err := dstReg.HasLifecyclePolicy(ctx, t.Repository)
	if err != nil || has {
		return err
	}
	settings, err := r.sourceSettings(ctx, srcReg, src.Repo, t.Destination)
	if err != nil || settings.LifecyclePolicy == "" {
		return err
	}
	if err := dstReg.PutLifecyclePolicy(ctx, t.Repository, settings.LifecyclePolicy); err != nil {
		return err
	}
	r.log.Info("lifecycle policy set on a destination repository that had none", "repository", t.Repo().String(), "source", src.Repo.String())
	return nil
}

// lifecycleDue says whether the lifecycle policy of k is still to be looked at in this
// process, and marks it looked at.
func (c *ownedCache) lifecycleDue(k repoKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lifecycle[k] {
		return false
	}
	c.lifecycle[k] = true
	return true
}

// lifecycleUndo marks the lifecycle policy of k as still to be looked at (the look failed).
func (c *ownedCache) lifecycleUndo(k repoKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.lifecycle, k)
}
