package copyengine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// walk collects the manifest digests one graph copy looked at, so their
// referrers can be listed afterwards.
type walk struct {
	mu      sync.Mutex
	digests []v1.Hash
}

func (w *walk) add(h v1.Hash) {
	w.mu.Lock()
	w.digests = append(w.digests, h)
	w.mu.Unlock()
}

func (w *walk) list() []v1.Hash {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]v1.Hash(nil), w.digests...)
}

// copyGraph makes manifest desc and everything it references present in the
// destination, verifies what it wrote, then copies referrers of every
// manifest it walked. depth is the referrer depth of desc itself (0 for the
// requested digest). It reports whether the root manifest was written.
func (s *session) copyGraph(ctx context.Context, desc v1.Descriptor, depth int) (bool, error) {
	wrote, w, err := s.copyContent(ctx, desc)
	if err != nil {
		return wrote, err
	}
	return wrote, s.copyReferrersOf(ctx, w, depth)
}

// copyContent is copyGraph without the referrers: the manifest, what it references,
// and the verification of what was written. It returns the manifests it walked.
func (s *session) copyContent(ctx context.Context, desc v1.Descriptor) (bool, *walk, error) {
	w := &walk{}
	wrote, err := s.ensureManifest(ctx, desc, w)
	if err != nil {
		return false, w, err
	}
	switch {
	case s.rootTagged.Load() && desc.Digest == s.rootDigest:
		// One HEAD checks the tag and the digest.
		if err := s.verifyTag(ctx, s.rootTag, desc.Digest); err != nil {
			return wrote, w, err
		}
	case wrote:
		if err := s.verify(ctx, s.dst.repo.Digest(desc.Digest.String()), desc.Digest); err != nil {
			return wrote, w, err
		}
	}
	return wrote, w, nil
}

// copyReferrersOf copies the referrers of every walked manifest (one level deeper than
// depth), the subjects in parallel: each is a few round trips of listing and probing.
func (s *session) copyReferrersOf(ctx context.Context, w *walk, depth int) error {
	if !s.referrers || depth >= s.c.referrerDepth {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.c.jobs)
	for _, h := range w.list() {
		g.Go(func() error { return s.copyReferrers(gctx, h, depth+1) })
	}
	return g.Wait()
}

// countOnce makes the per-Copy counters exact when a digest is reached twice
// (shared by two children, or a referrer also listed in a fallback index).
func (s *session) countOnce(kind string, h v1.Hash) bool {
	_, seen := s.counted.LoadOrStore(kind+h.String(), true)
	return !seen
}

// ensureManifest makes one manifest present in the destination: HEAD by
// digest, and only if absent GET it from the source, copy its dependencies
// (children before the index, blobs before the image) and PUT the exact bytes.
// A manifest already there is trusted to be complete: its blobs are not
// checked (registries refuse manifests whose references are missing).
func (s *session) ensureManifest(ctx context.Context, desc v1.Descriptor, w *walk) (bool, error) {
	w.add(desc.Digest)
	var wrote bool
	ran, err := s.c.manifests.do(ctx, s.dst.key(desc.Digest), func() error {
		var err error
		wrote, err = s.writeManifest(ctx, desc, w)
		return err
	})
	if err != nil {
		return false, err
	}
	if s.countOnce("m:", desc.Digest) {
		if ran && wrote {
			s.written.Add(1)
			s.log.Debug("manifest written", "manifest", desc.Digest.String())
		} else {
			s.skipped.Add(1)
		}
	}
	return wrote, nil
}

// destHasManifest HEADs the destination manifest by digest.
func (s *session) destHasManifest(ctx context.Context, h v1.Hash) (bool, error) {
	d, err := s.dst.head(ctx, s.dst.repo.Digest(h.String()))
	switch {
	case err == nil:
		return d.Digest == h, nil
	case isNotFound(err):
		return false, nil
	}
	return false, classify("head destination manifest", onDest, err)
}

// fetch GETs a manifest from the source by digest. remote.Get sends Accept for
// every manifest media type: ECR converts formats (and so changes the digest)
// for clients that don't accept the stored one. ggcr verifies the digest.
func (s *session) fetch(ctx context.Context, h v1.Hash) (*rawManifest, error) {
	if m, ok := s.fetched.Load(h); ok {
		return m.(*rawManifest), nil
	}
	return s.getSource(ctx, s.src.repo.Digest(h.String()), "get source manifest "+h.String())
}

// getSource GETs a source manifest by digest or tag and keeps it for this call, by digest.
func (s *session) getSource(ctx context.Context, ref name.Reference, op string) (*rawManifest, error) {
	d, err := s.src.get(ctx, ref)
	if err != nil {
		return nil, classify(op, onSource, err)
	}
	m := &rawManifest{raw: d.Manifest, desc: d.Descriptor}
	s.fetched.Store(d.Digest, m)
	return m, nil
}

// manifestBytes returns a manifest's bytes for tagging: from this call's
// fetches, or from the destination (which is known to hold it).
func (s *session) manifestBytes(ctx context.Context, h v1.Hash) (*rawManifest, error) {
	if m, ok := s.fetched.Load(h); ok {
		return m.(*rawManifest), nil
	}
	d, err := s.dst.get(ctx, s.dst.repo.Digest(h.String()))
	if err != nil {
		return nil, classify("get destination manifest "+h.String(), onDest, err)
	}
	return &rawManifest{raw: d.Manifest, desc: d.Descriptor}, nil
}

func (s *session) copyDeps(ctx context.Context, m *rawManifest, w *walk) error {
	mt := m.desc.MediaType
	eg, gctx := errgroup.WithContext(ctx)
	// Bounded like the transfers: an image with hundreds of layers starts no more
	// goroutines (and HEADs) at once than the engine moves blobs.
	eg.SetLimit(s.c.jobs)
	g := &depGroup{Group: eg}
	switch {
	case mt.IsIndex():
		im, err := v1.ParseIndexManifest(bytes.NewReader(m.raw))
		if err != nil {
			return &Error{Op: "parse source index " + m.desc.Digest.String(), Code: string(transport.ManifestInvalidErrorCode), Err: err}
		}
		for _, child := range im.Manifests {
			g.Go(func() error {
				if child.MediaType.IsIndex() || child.MediaType.IsImage() || child.MediaType.IsSchema1() {
					_, err := s.ensureManifest(gctx, child, w)
					return err
				}
				// A child of unknown media type is just a blob, as in ggcr
				// (partial.ComputeManifests, "workaround for #819").
				return s.ensureBlob(gctx, child)
			})
		}
	default:
		blobs, err := blobsOf(m)
		if err != nil {
			return err
		}
		for _, desc := range blobs {
			g.Go(func() error { return s.ensureBlob(gctx, desc) })
		}
	}
	return g.Wait()
}

// depGroup runs a manifest's dependencies. Its error is the first one, unless a
// dependency is too large for the run: when the deadline cuts several uploads at once,
// which one ends first is chance, and only that one says no delivery will ever fit.
type depGroup struct {
	*errgroup.Group
	tooLarge atomic.Pointer[error]
}

func (g *depGroup) Go(f func() error) {
	g.Group.Go(func() error {
		err := f()
		if code, _ := retry.Classify(err); code == CodeTooLarge {
			g.tooLarge.CompareAndSwap(nil, &err)
		}
		return err
	})
}

func (g *depGroup) Wait() error {
	err := g.Group.Wait()
	if tl := g.tooLarge.Load(); tl != nil {
		return *tl
	}
	return err
}

// ensureBlob makes one blob present in the destination. The run-wide onceMap makes
// it at most one HEAD and one upload per destination repository and digest for the
// whole run; pushBlob HEADs and, only if absent, streams the source response body into
// a monolithic upload (WithJobs bounds the uploads in flight, not the HEADs).
func (s *session) ensureBlob(ctx context.Context, desc v1.Descriptor) error {
	var fate blobFate
	size := desc.Size // unknown (0) in a Docker schema 1 manifest: pushBlob learns it
	ran, err := s.c.blobs.do(ctx, s.dst.key(desc.Digest), func() error {
		// Another run uploading the same blob now is waited for, not raced: it then
		// counts as skipped here (ran false).
		_, err := s.c.uploads.do(ctx, s.dst.key(desc.Digest), func() error {
			var err error
			fate, size, err = s.pushBlob(ctx, v1.Descriptor{Digest: desc.Digest, Size: desc.Size})
			return err
		})
		return err
	})
	if err != nil {
		return err
	}
	if !s.countOnce("b:", desc.Digest) {
		return nil
	}
	switch {
	case ran && fate == blobUploaded:
		s.blobsCopied.Add(1)
		s.bytesCopied.Add(size)
		if s.wouldMount(desc.Digest) {
			s.bytesMountable.Add(size)
		}
		s.log.Debug("blob uploaded", "blob", desc.Digest.String(), "size", size)
	case ran && fate == blobMounted:
		s.blobsMounted.Add(1)
		s.bytesMounted.Add(size)
		s.log.Debug("blob mounted", "blob", desc.Digest.String(), "size", size)
	default:
		s.blobsSkipped.Add(1)
		s.bytesSkipped.Add(max(size, 0))
	}
	return nil
}

// putRootByTag writes a new root manifest under its tag; run HEADed the tag just before
// (IMMUTABLE repositories refuse re-pushing an existing tag, even to the same digest:
// such a refusal falls back to a PUT by digest, and converge reports the conflict).
// It takes no tag lock (it runs inside the manifest's once-per-run section, and
// converge, holding the tag lock, may wait on that section): a concurrent writer of
// the same tag is caught by converge's re-check of the source, which follows it.
func (s *session) putRootByTag(ctx context.Context, m *rawManifest) error {
	if err := s.putTag(ctx, s.rootTag, m, "put destination tag"); err != nil {
		return err
	}
	s.rootTagged.Store(true)
	s.tagWrites.Add(1)
	s.c.destTags.add(s.dst.repo.String(), s.rootTag)
	return nil
}

// isTagConflict: the destination tag exists elsewhere (so the tag must go through
// converge, which handles mutable moves and IMMUTABLE conflicts).
func isTagConflict(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Code == "TAG_EXISTS" || e.Code == "TAG_INVALID")
}

// put writes manifest bytes by digest or tag; the retry transport paces every attempt
// per destination host (pacer) and retries 429/5xx.
func (s *session) put(ctx context.Context, ref name.Reference, m *rawManifest, op string) error {
	err := s.dst.put(ctx, ref, m)
	if err != nil && strings.Contains(err.Error(), "does not support the Referrers API") {
		// With WithReferrersTagFallback(false), ggcr reports a destination
		// without the referrers API *after* the PUT succeeded (it probes
		// for subject-bearing manifests). The manifest is written; the
		// fallback tag is only copied when the source uses one.
		s.log.Warn("destination has no referrers API; subject link only via copied fallback tag", "ref", ref.String())
		err = nil
	}
	return classify(op+" "+ref.String(), onDest, err)
}

// verify HEADs the destination and checks it serves the digest we wrote.
func (s *session) verify(ctx context.Context, ref name.Reference, want v1.Hash) error {
	d, err := s.dst.head(ctx, ref)
	if err != nil {
		return classify("verify "+ref.String(), onDest, err)
	}
	if d.Digest != want {
		return &Error{Op: "verify " + ref.String(), Code: CodeDigestMismatch, Transient: true,
			Err: fmt.Errorf("destination serves %s, want %s", d.Digest, want)}
	}
	return nil
}

func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}
