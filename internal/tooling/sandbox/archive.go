package sandbox

import (
	"time"
)

// The archive storage class (ECR User Guide, "Archiving an image",
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/archive-image.html; API
// UpdateImageStorageClass, DescribeImagesFilter):
//   - UpdateImageStorageClass with targetStorageClass ARCHIVE makes an image ARCHIVED;
//     with STANDARD an archived image becomes ACTIVATING, then ACTIVE once restored.
//   - An archived (or activating) image cannot be pulled: a registry GET or HEAD of its
//     manifest answers 404. BatchGetImage reports it as a per-image failure,
//     ImageInaccessible (a guess: the failure code API_ImageFailure gained alongside the
//     archive storage class).
//   - DescribeImages and ListImages list only ACTIVE images unless their filter's
//     imageStatus asks for ARCHIVED, ACTIVATING or ANY; DescribeImages by imageIds
//     describes an image whatever its status ("it can still be described"). ImageDetail
//     carries imageStatus, lastArchivedAt and lastActivatedAt.
//   - Pushing the image again restores it ("by re-pushing the image to the repository"):
//     immediately, in the sandbox (a guess), through the registry or PutImage.
//   - An archive or a restore emits an "ECR Image Action" with action-type
//     UPDATE_STORAGE_CLASS and target-storage-class ARCHIVE or STANDARD (ecr-eventbridge.html).
// Not emulated: lifecycle rules that archive (tests archive with the API), the 90-day
// minimum, layers of archived images (a blob HEAD still finds them: a guess either way).

// Image statuses (ImageDetail.imageStatus).
const (
	statusActive     = "ACTIVE"
	statusArchived   = "ARCHIVED"
	statusActivating = "ACTIVATING"
)

// status is a manifest's image status; an ACTIVATING image whose restore has taken
// Config.RestoreDuration is ACTIVE from then on. The registry's lock must be held.
func (r *registry) status(m *manifestRecord) string {
	if m.status == statusActivating && r.sb.cfg.RestoreDuration > 0 && !r.sb.now().Before(m.activatingSince.Add(r.sb.cfg.RestoreDuration)) {
		m.status, m.lastActivatedAt = "", m.activatingSince.Add(r.sb.cfg.RestoreDuration)
	}
	if m.status == "" {
		return statusActive
	}
	return m.status
}

// pullable says whether a manifest can be pulled (ACTIVE). The registry's lock must be held.
func (r *registry) pullable(m *manifestRecord) bool { return r.status(m) == statusActive }

// restored marks a re-pushed manifest ACTIVE again.
func (r *registry) restored(m *manifestRecord) {
	if m.status != "" {
		m.status, m.lastActivatedAt = "", r.sb.now()
	}
}

// statusMatches applies DescribeImages' and ListImages' imageStatus filter (default ACTIVE).
func (r *registry) statusMatches(m *manifestRecord, filter string) bool {
	switch filter {
	case "ANY":
		return true
	case "":
		filter = statusActive
	}
	return r.status(m) == filter
}

// UpdateImageStorageClass: https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_UpdateImageStorageClass.html
func (r *registry) updateImageStorageClass(name string, id *imageID, target string) (any, *apiError) {
	if id == nil || (id.Digest == "" && id.Tag == "") {
		return nil, errorf(400, "InvalidParameterException", "imageId is required")
	}
	if target != "ARCHIVE" && target != "STANDARD" {
		return nil, errorf(400, "InvalidParameterException", "Invalid parameter at 'targetStorageClass': %q is not one of STANDARD, ARCHIVE", target)
	}
	r.mu.Lock()
	repo, ok := r.repos[name]
	if !ok {
		r.mu.Unlock()
		return nil, r.repoNotFound(name)
	}
	m, code, msg := repo.resolve(*id)
	if m == nil {
		r.mu.Unlock()
		if code == "ImageNotFound" {
			return nil, errorf(400, "ImageNotFoundException", "The image with imageId {imageDigest:'%s', imageTag:'%s'} does not exist within the repository with name '%s' in the registry with id '%s'", id.Digest, id.Tag, name, r.account)
		}
		return nil, errorf(400, "InvalidParameterException", "%s", msg)
	}
	// Archiving what is archived, or restoring what is active, changes nothing (a guess:
	// ECR may refuse them).
	changed := false
	switch st := r.status(m); {
	case target == "ARCHIVE" && st != statusArchived:
		m.status, m.lastArchivedAt, changed = statusArchived, r.sb.now(), true
	case target == "STANDARD" && st == statusArchived:
		m.status, m.activatingSince, changed = statusActivating, r.sb.now(), true
	}
	status, digest := r.status(m), m.digest
	lastActivated := m.lastActivatedAt
	r.mu.Unlock()
	if changed {
		r.emitStorageClass(name, digest, id.Tag, target, lastActivated)
	}
	return map[string]any{"registryId": r.account, "repositoryName": name,
		"imageId": imageID{Digest: digest, Tag: id.Tag}, "imageStatus": status}, nil
}

// CompleteRestores makes every ACTIVATING image of every registry ACTIVE now, as ECR
// does when a restore finishes (Config.RestoreDuration does it by the clock).
func (s *Sandbox) CompleteRestores() {
	s.mu.Lock()
	regs := make([]*registry, 0, len(s.registries))
	for _, r := range s.registries {
		regs = append(regs, r)
	}
	s.mu.Unlock()
	for _, r := range regs {
		r.mu.Lock()
		for _, repo := range r.repos {
			for _, m := range repo.manifests {
				if m.status == statusActivating {
					m.status, m.lastActivatedAt = "", r.sb.now()
				}
			}
		}
		r.mu.Unlock()
	}
}

// epochPtr is an optional timestamp of an AWS JSON answer.
func epochPtr(t time.Time) *epoch {
	if t.IsZero() {
		return nil
	}
	e := epoch(t)
	return &e
}
