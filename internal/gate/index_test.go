package gate_test

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/gate"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// attestationManifest is what buildx stores next to each platform: an image manifest of
// in-toto layers, platform unknown/unknown.
func attestationManifest(t *testing.T) v1.Image {
	t.Helper()
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1),
		mutate.Addendum{Layer: static.NewLayer([]byte(`{"_type":"https://in-toto.io/Statement/v0.1"}`), "application/vnd.in-toto+json")})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

var unknownPlatform = &v1.Platform{OS: "unknown", Architecture: "unknown"}

// TestIndexAttestations: buildx's attestation manifests are no image to scan (ECR does
// not scan them); a child claiming unknown/unknown that is no attestation is scanned as
// any image; an index with no image at all is not passed on nothing.
func TestIndexAttestations(t *testing.T) {
	e := newEnv(t)
	platform, _ := random.Image(256, 1)
	clean := func(t *testing.T, img gate.Image, child v1.Image) {
		t.Helper()
		d, _ := child.Digest()
		if err := e.w.SB.SetImageScan(img.Repo.AccountID, img.Repo.Region, img.Repo.Name, d.String(), sandbox.ScanResult{}); err != nil {
			t.Fatal(err)
		}
	}
	base := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)

	t.Run("attestation left out", func(t *testing.T) {
		img := e.pushIndexOf(t, mutate.AppendManifests(base,
			mutate.IndexAddendum{Add: platform, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
			mutate.IndexAddendum{Add: attestationManifest(t), Descriptor: v1.Descriptor{Platform: unknownPlatform,
				Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"}}}))
		clean(t, img, platform)
		expect(t, e.decide(t, img, "scan"), gate.Pass, "", "nothing at or above HIGH")
	})
	t.Run("unknown/unknown image scanned", func(t *testing.T) {
		hidden, _ := random.Image(256, 1)
		img := e.pushIndexOf(t, mutate.AppendManifests(base,
			mutate.IndexAddendum{Add: platform, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
			mutate.IndexAddendum{Add: hidden, Descriptor: v1.Descriptor{Platform: unknownPlatform}}))
		clean(t, img, platform)
		d, _ := hidden.Digest()
		expect(t, e.decide(t, img, "scan"), gate.Hold, gate.CodeScanPending, "no scan yet (platform "+d.String())
	})
	t.Run("attestations only", func(t *testing.T) {
		img := e.pushIndexOf(t, mutate.AppendManifests(base,
			mutate.IndexAddendum{Add: attestationManifest(t), Descriptor: v1.Descriptor{Platform: unknownPlatform}}))
		expect(t, e.decide(t, img, "scan"), gate.Block, gate.CodeScanFailed, "no image to scan")
	})
}
