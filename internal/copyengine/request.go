package copyengine

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// Request asks for one digest to be copied (and optionally tagged).
type Request struct {
	Source Endpoint
	// Digest is what to copy (sha256:...). Empty with a Tag: copy whatever the
	// source tag points at now (one GET of the manifest by tag resolves it).
	Digest string
	// Tag is an optional source tag that pointed at Digest when the push
	// happened. The destination tag only follows it if the source tag still
	// points at Digest (events arrive late, twice and out of order).
	Tag         string
	Destination Endpoint
	// Referrers also copies OCI 1.1 referrers (subject) and cosign-style
	// sha256-<hex>.sig/.att/.sbom tags, recursively to a bounded depth.
	Referrers bool
	// Pinned sets the destination tag to Digest only: a source tag that moved on is not
	// followed (a gated copy tags only the digest its promotion gate decided; the tag's
	// new image has a decision of its own, docs/PROMOTION.md).
	Pinned bool
	// ArtifactReferrersOnly copies only the referrers (and cosign tags) that are
	// artifacts — signatures, attestations, SBOMs — and leaves out, logged, those a
	// runtime could run (images, indexes): a gated copy brings nothing its gate did not
	// decide (artifacts.go).
	ArtifactReferrersOnly bool
}

func validate(req Request) (v1.Hash, error) {
	if req.Source.Repository.RepositoryStr() == "" || req.Destination.Repository.RepositoryStr() == "" {
		return v1.Hash{}, invalid("source and destination repositories are required")
	}
	if req.Tag != "" {
		if err := ecrname.Tag(req.Tag); err != nil {
			return v1.Hash{}, invalid("%w", err)
		}
		if apiTag(req.Tag) && (req.Source.Tags == nil || req.Destination.Tags == nil) {
			return v1.Hash{}, invalid("a tag of %d characters (over the registry API's %d) is copied through the ECR API: both endpoints need Tags",
				len(req.Tag), ecrname.MaxRegistryTagLen)
		}
	}
	if req.Digest == "" {
		if req.Tag == "" {
			return v1.Hash{}, invalid("a digest or a tag is required")
		}
		return v1.Hash{}, nil // resolved from the source tag by run
	}
	h, err := v1.NewHash(req.Digest)
	if err != nil {
		return v1.Hash{}, invalid("digest %q: %w", req.Digest, err)
	}
	if h.Algorithm != "sha256" {
		return v1.Hash{}, invalid("digest %q: only sha256 is supported", req.Digest)
	}
	return h, nil
}
