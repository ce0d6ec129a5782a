package copyengine

import (
	"bytes"
	"context"
	"encoding/json"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Writing one manifest into the destination, once its dependencies are there, and what
// the index of blob locations (mount.go) learns from it.

// writeManifest is ensureManifest's once-per-run part: it reports whether it wrote the
// manifest. A manifest found or put in the destination tells the index where its blobs
// are (learn); while its blobs are copied, the copy is announced to copies into other
// repositories of the registry that could mount them (shareFlight).
func (s *session) writeManifest(ctx context.Context, desc v1.Descriptor, w *walk) (bool, error) {
	root := desc.Digest == s.rootDigest
	if s.tagPresent && root {
		return false, nil // the destination tag points at it: present and complete
	}
	// A root about to be written under its new tag is not HEADed by digest up front:
	// the PUT by tag is needed either way. Only when its dependencies all turn out
	// present does it look (putManifest), so that re-tagging content already there is
	// reported as a tag update.
	newTaggedRoot := s.rootTag != "" && root
	if !newTaggedRoot {
		present, err := s.destHasManifest(ctx, desc.Digest)
		if err != nil || present {
			if m, ok := s.fetched.Load(desc.Digest); ok && present {
				s.learn(m.(*rawManifest))
			}
			return false, err
		}
	}
	m, err := s.fetch(ctx, desc.Digest)
	if err != nil {
		return false, err
	}
	blobs, _ := blobsOf(m) // an invalid manifest: copyDeps says so
	end, err := s.shareFlight(ctx, blobs)
	if err != nil {
		return false, err
	}
	defer end()
	if err := s.copyDeps(ctx, m, w); err != nil {
		return false, err
	}
	wrote, err := s.putManifest(ctx, m, newTaggedRoot)
	if err == nil {
		s.learn(m)
	}
	return wrote, err
}

// putManifest writes a manifest whose dependencies are in: under the root's new tag
// (putRootByTag), or by digest. It reports whether it wrote it.
func (s *session) putManifest(ctx context.Context, m *rawManifest, newTaggedRoot bool) (bool, error) {
	if newTaggedRoot {
		tagOnly := false
		if s.blobsCopied.Load() == 0 && s.blobsMounted.Load() == 0 && s.written.Load() == 0 {
			var err error
			if tagOnly, err = s.destHasManifest(ctx, m.desc.Digest); err != nil {
				return false, err
			}
		}
		err := s.putRootByTag(ctx, m)
		switch {
		case err == nil:
			return !tagOnly, nil
		case !isTagConflict(err):
			return false, err
		case tagOnly:
			// An IMMUTABLE destination tag points elsewhere: keep the content (by
			// digest); converge reports the conflict.
			return false, nil
		}
	}
	if err := s.put(ctx, s.dst.repo.Digest(m.desc.Digest.String()), m, "put destination manifest"); err != nil {
		return false, err
	}
	return true, nil
}

// learn tells the index that the destination repository holds manifest m, so its blobs
// can be mounted from there.
func (s *session) learn(m *rawManifest) {
	if scope, ok := s.dst.mountScope(); ok {
		if blobs, err := blobsOf(m); err == nil {
			s.c.index.learn(scope, s.dst.repo.RepositoryStr(), blobs)
		}
	}
}

// blobsOf lists, once each, the blobs an image manifest brings with it: a Docker v2 or
// OCI image manifest's (or OCI artifact's, whatever its config or artifactType media
// type) config and layers, but foreign layers, which live outside registries (ggcr skips
// them too); a Docker schema 1 manifest's fsLayers (of unknown size). None for an index.
func blobsOf(m *rawManifest) ([]v1.Descriptor, error) {
	invalid := func(err error) error {
		return &Error{Op: "parse source manifest " + m.desc.Digest.String(), Code: string(transport.ManifestInvalidErrorCode), Err: err}
	}
	var all []v1.Descriptor
	switch mt := m.desc.MediaType; {
	case mt.IsIndex():
		return nil, nil
	case mt.IsSchema1():
		var sm struct {
			FSLayers []struct {
				BlobSum v1.Hash `json:"blobSum"`
			} `json:"fsLayers"`
		}
		if err := json.Unmarshal(m.raw, &sm); err != nil {
			return nil, invalid(err)
		}
		for _, l := range sm.FSLayers {
			all = append(all, v1.Descriptor{Digest: l.BlobSum, MediaType: types.DockerLayer})
		}
	default:
		mf, err := v1.ParseManifest(bytes.NewReader(m.raw))
		if err != nil {
			return nil, invalid(err)
		}
		all = append([]v1.Descriptor{mf.Config}, mf.Layers...)
	}
	seen := map[v1.Hash]bool{}
	blobs := make([]v1.Descriptor, 0, len(all))
	for _, desc := range all {
		if desc.Digest.Hex == "" || seen[desc.Digest] || !desc.MediaType.IsDistributable() {
			continue
		}
		seen[desc.Digest] = true
		blobs = append(blobs, desc)
	}
	return blobs, nil
}
