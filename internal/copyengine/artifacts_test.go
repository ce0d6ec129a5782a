package copyengine

import (
	"encoding/json"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestRunnable: what a gated copy admits as a referrer — signatures (cosign simple
// signing, Sigstore bundles, Notation), attestations and SBOMs — and what it leaves
// out: anything with a filesystem layer, and indexes.
func TestRunnable(t *testing.T) {
	manifest := func(mt types.MediaType, layers ...types.MediaType) *rawManifest {
		h := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
		m := v1.Manifest{SchemaVersion: 2, MediaType: mt, Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Digest: h}}
		for _, l := range layers {
			m.Layers = append(m.Layers, v1.Descriptor{MediaType: l, Digest: h})
		}
		raw, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return &rawManifest{raw: raw, desc: v1.Descriptor{MediaType: mt}}
	}
	for _, c := range []struct {
		name     string
		m        *rawManifest
		runnable bool
	}{
		{"cosign signature", manifest(types.OCIManifestSchema1, "application/vnd.dev.cosign.simplesigning.v1+json"), false},
		{"cosign attestation", manifest(types.OCIManifestSchema1, "application/vnd.dsse.envelope.v1+json"), false},
		{"sigstore bundle", manifest(types.OCIManifestSchema1, "application/vnd.dev.sigstore.bundle.v0.3+json"), false},
		{"notation signature", manifest(types.OCIManifestSchema1, "application/jose+json"), false},
		{"spdx sbom", manifest(types.OCIManifestSchema1, "text/spdx+json"), false},
		{"oci image", manifest(types.OCIManifestSchema1, types.OCILayer), true},
		{"oci zstd image", manifest(types.OCIManifestSchema1, types.OCILayerZStd), true},
		{"oci encrypted layer", manifest(types.OCIManifestSchema1, "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"), true},
		{"docker image", manifest(types.DockerManifestSchema2, types.DockerLayer), true},
		{"docker foreign layer", manifest(types.DockerManifestSchema2, types.DockerForeignLayer), true},
		{"index", &rawManifest{raw: []byte(`{"schemaVersion":2,"manifests":[]}`), desc: v1.Descriptor{MediaType: types.OCIImageIndex}}, true},
		{"unparsable image manifest", &rawManifest{raw: []byte(`{`), desc: v1.Descriptor{MediaType: types.OCIManifestSchema1}}, true},
	} {
		if got := runnable(c.m) != ""; got != c.runnable {
			t.Errorf("%s: runnable %v, want %v (%q)", c.name, got, c.runnable, runnable(c.m))
		}
	}
}
