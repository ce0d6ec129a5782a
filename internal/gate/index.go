package gate

import (
	"bytes"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// An index's images are what the gate scans (and, with platforms: all, wants signed):
// every image a runtime may select from it. A runtime selects a child by its platform
// (the OCI image index's platform field; containerd and Docker follow nested indexes),
// not by an annotation, so a child is left out only when it cannot be run: buildx's
// attestation manifests, whose platform is unknown/unknown and whose layers are in-toto
// statements (https://docs.docker.com/build/metadata/attestations/attestation-storage/),
// and children of a media type that is neither an image nor an index. A child that
// says unknown/unknown but carries anything else is an image like any other.

// Bounds of the walk of an index: its nesting, and the children read.
const (
	maxIndexDepth    = 4
	maxIndexChildren = 256
)

// mediaTypeInToto is the layer media type of an in-toto attestation (buildx).
const mediaTypeInToto = "application/vnd.in-toto+json"

// manifest fetches an image's manifest by digest: its descriptor and, for an index, its
// images (nested indexes followed, attestations left out). checkAttestations reads each
// unknown/unknown child to make sure it is an attestation; without it (a superset will
// do: Parents) such children are listed with the images.
func (r *registryReader) manifest(digest string, checkAttestations bool) (v1.Descriptor, []v1.Descriptor, error) {
	d, err := remote.Get(r.repo.Digest(digest), r.opts...)
	if err != nil {
		return v1.Descriptor{}, nil, registryError("GET manifest "+digest, err)
	}
	self := d.Descriptor
	self.Platform, self.Annotations, self.URLs = nil, nil, nil
	if !self.MediaType.IsIndex() {
		return self, nil, nil
	}
	w := indexWalk{r: r, check: checkAttestations, seen: map[v1.Hash]bool{}}
	if err := w.walk(digest, d.Manifest, 0); err != nil {
		return self, nil, err
	}
	return self, w.images, nil
}

// indexWalk collects an index's images.
type indexWalk struct {
	r      *registryReader
	check  bool
	seen   map[v1.Hash]bool
	read   int
	images []v1.Descriptor
}

func (w *indexWalk) walk(digest string, raw []byte, depth int) error {
	im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return &Error{Op: "GET manifest " + digest, Code: "MANIFEST_INVALID", Err: err}
	}
	for _, c := range im.Manifests {
		if w.seen[c.Digest] {
			continue
		}
		w.seen[c.Digest] = true
		if w.read++; w.read > maxIndexChildren {
			return &Error{Op: "GET manifest " + digest, Code: "MANIFEST_INVALID",
				Err: fmt.Errorf("the index lists more than %d manifests (nested indexes included): too many to decide", maxIndexChildren)}
		}
		switch {
		case c.MediaType.IsIndex():
			if depth+1 >= maxIndexDepth {
				return &Error{Op: "GET manifest " + digest, Code: "MANIFEST_INVALID",
					Err: fmt.Errorf("indexes nested more than %d deep: too deep to decide", maxIndexDepth)}
			}
			child, err := remote.Get(w.r.repo.Digest(c.Digest.String()), w.r.opts...)
			if err != nil {
				return registryError("GET manifest "+c.Digest.String(), err)
			}
			if err := w.walk(c.Digest.String(), child.Manifest, depth+1); err != nil {
				return err
			}
		case !c.MediaType.IsImage() && !c.MediaType.IsSchema1():
			// Not a manifest a runtime runs (an artifact): copied with the index, not an
			// image. A Docker schema 1 child is an image: runtimes pull it (moby's
			// pullManifestList; containerd 1.x converts it), so it is decided too.
		default:
			attestation, err := w.attestation(c)
			if err != nil {
				return err
			}
			if !attestation {
				c.Platform, c.Annotations, c.URLs = nil, nil, nil
				w.images = append(w.images, c)
			}
		}
	}
	return nil
}

// attestation says whether an index's child is an attestation manifest, not an image:
// platform unknown/unknown and, when checked, nothing but in-toto layers.
func (w *indexWalk) attestation(c v1.Descriptor) (bool, error) {
	if c.Platform == nil || c.Platform.OS != "unknown" || c.Platform.Architecture != "unknown" {
		return false, nil
	}
	if !w.check {
		return false, nil
	}
	d, err := remote.Get(w.r.repo.Digest(c.Digest.String()), w.r.opts...)
	if err != nil {
		return false, registryError("GET manifest "+c.Digest.String(), err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(d.Manifest))
	if err != nil || len(m.Layers) == 0 {
		return false, nil // not an attestation: an image to decide (its scan fails, or it blocks)
	}
	for _, l := range m.Layers {
		if l.MediaType != mediaTypeInToto {
			return false, nil
		}
	}
	return true, nil
}
