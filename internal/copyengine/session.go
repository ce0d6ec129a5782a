package copyengine

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// session is the state of one Copy call.
type session struct {
	c         *Run
	src, dst  *endpoint
	image     string // the source image as the CLI names it (repository:tag or @digest)
	referrers bool
	pinned    bool // Request.Pinned
	// artifactsOnly: Request.ArtifactReferrersOnly.
	artifactsOnly bool
	log           *slog.Logger

	blobsCopied, blobsSkipped, bytesCopied, bytesSkipped atomic.Int64
	blobsMounted, bytesMounted, bytesMountable           atomic.Int64
	written, skipped, referrersCopied, tagWrites         atomic.Int64
	referrersRefused                                     atomic.Int64

	// rootTag, when set, is the tag the root manifest (rootDigest) is written under: a
	// new tagged image costs one manifest write (PutImage), not a write by digest and
	// another by tag — ECR's 10 PutImage/s quota is what bounds replication.
	rootTag    string
	rootDigest v1.Hash
	rootTagged atomic.Bool // the root was written under rootTag
	// tagChecked: run saw the source tag at the requested digest just before copying.
	// tagPresent: the destination tag already pointed there too, so the root manifest
	// and everything it references are present (registries refuse incomplete manifests).
	tagChecked, tagPresent bool

	counted   sync.Map // "b:"/"m:" + digest → counted once per session
	fetched   sync.Map // digest → *rawManifest fetched during this call
	listed    sync.Map // subjects whose referrers were listed
	verifyErr error
}

func (c *Run) newSession(req Request) (*session, v1.Hash, error) {
	h, err := validate(req)
	if err != nil {
		return nil, h, err
	}
	s := &session{c: c, referrers: req.Referrers, pinned: req.Pinned, artifactsOnly: req.ArtifactReferrersOnly}
	s.image = req.Source.Repository.String() + "@" + req.Digest
	if req.Tag != "" {
		s.image = req.Source.Repository.String() + ":" + req.Tag
	}
	s.src = c.cachedEndpoint(req.Source, false)
	s.dst = c.cachedEndpoint(req.Destination, true)
	s.log = c.log.With("src", req.Source.Repository.String(), "dst", req.Destination.Repository.String())
	if req.Digest != "" {
		s.log = s.log.With("digest", req.Digest)
	}
	return s, h, nil
}

// run is Copy's body: content first, tag last. A tag whose source still points at
// the digest is written together with a new root manifest (one PUT by tag, after
// every dependency); otherwise the root goes in by digest and the tag converges after.
// A request without a digest copies what the source tag points at now.
//
// What does not depend on each other runs at once, since each step is a round trip to
// a registry that may be a region away: the source tag and the destination tag are
// read together, and once the content is in, the tag's convergence (the re-check of
// the source) runs alongside the copying of referrers.
func (s *session) run(ctx context.Context, digest v1.Hash, res *Result) error {
	if res.Tag != "" {
		var missing bool
		var err error
		if digest, missing, err = s.readTags(ctx, digest, res); err != nil || missing {
			return err
		}
	}
	_, w, err := s.copyContent(ctx, v1.Descriptor{Digest: digest})
	if err != nil {
		return err
	}
	// Neither cancels the other: a tag that cannot be set (an IMMUTABLE conflict) does
	// not stop the image's signatures from being copied.
	var refErr, tagErr error
	var wg sync.WaitGroup
	wg.Go(func() { refErr = s.copyReferrersOf(ctx, w, 0) })
	if res.Tag != "" && !s.tagPresent {
		wg.Go(func() {
			var tr tagResult
			tr, tagErr = s.converge(ctx, res.Tag, digest)
			if tr.stale != "" {
				res.Reason = "stale tag: " + tr.stale
			}
			res.SourceTagMissing = tr.missing
			if tr.at != (v1.Hash{}) {
				res.TagDigest = tr.at.String()
			}
		})
	}
	wg.Wait()
	if retry.IsRetryable(refErr) {
		return refErr // a retry completes the referrers; the tag will answer the same then
	}
	if tagErr != nil {
		return tagErr
	}
	return refErr
}
