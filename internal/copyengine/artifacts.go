package copyengine

import (
	"bytes"
	"context"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// A gated copy (Request.ArtifactReferrersOnly) copies the referrers of what its gate
// decided only when they are artifacts — signatures, attestations, SBOMs — and not
// something a runtime could pull and run by its digest from the gated destination: an
// image (a manifest with a filesystem layer) or an index is content its gate never
// decided (docs/PROMOTION.md). An artifact's type is what it carries, not the
// artifactType it claims: runtimes unpack layers by their media type.

// runnable says why a referrer's manifest may be run ("" when it cannot: an artifact).
func runnable(m *rawManifest) string {
	mt := m.desc.MediaType
	switch {
	case mt.IsIndex():
		return "an index (it may list images)"
	case mt.IsSchema1():
		return "a Docker schema 1 image"
	case !mt.IsImage():
		return "" // an artifact manifest of its own media type: no layers a runtime unpacks
	}
	mf, err := v1.ParseManifest(bytes.NewReader(m.raw))
	if err != nil {
		return "an image manifest that does not parse"
	}
	for _, l := range mf.Layers {
		if runtimeLayer(l.MediaType) {
			return "an image (layer " + strconv.Quote(string(l.MediaType)) + ")"
		}
	}
	return ""
}

// runtimeLayer: a layer media type some runtime pulls and unpacks into a root filesystem.
// Docker Engine lower-cases the type and takes "", application/octet-stream,
// application/json, text/html and any application/vnd.oci.image.* or
// application/vnd.docker.* as a layer, guessing the compression from the bytes (moby,
// distribution/pull_v2.go, checkSupportedMediaType); containerd and containers/image take
// a subset of those. An artifact's layers carry types of their own (cosign simple signing,
// DSSE, Sigstore bundles, Notation's JWS and COSE, SPDX, CycloneDX, in-toto).
func runtimeLayer(mt types.MediaType) bool {
	t := strings.ToLower(strings.TrimSpace(string(mt)))
	switch t {
	case "", "application/octet-stream", "application/json", "text/html":
		return true
	}
	return strings.HasPrefix(t, "application/vnd.oci.image.") || strings.HasPrefix(t, "application/vnd.docker.")
}

// admitReferrer says whether a referrer (or a cosign tag's manifest) of this copy may be
// copied; one that may not is logged and left out.
func (s *session) admitReferrer(ctx context.Context, h v1.Hash, where string) (bool, error) {
	if !s.artifactsOnly {
		return true, nil
	}
	m, err := s.fetch(ctx, h)
	if err != nil {
		return false, err
	}
	if why := runnable(m); why != "" {
		s.referrersRefused.Add(1)
		s.log.Warn("referrer left out of a gated copy: not a signature, attestation or SBOM but "+why,
			"referrer", h.String(), "found_as", where)
		return false, nil
	}
	return true, nil
}
