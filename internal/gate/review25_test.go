package gate_test

import (
	"fmt"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/gate"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/signing"
)

// pushIndexOf pushes idx under tag v1 to a repository of its own.
func (e *env) pushIndexOf(t *testing.T, idx v1.ImageIndex) gate.Image {
	t.Helper()
	e.n++
	repo := fmt.Sprintf("team/review-%d", e.n)
	e.w.Source.EnsureRepository(t, e.w.Ctx, repo)
	d := e.w.Source.Push(t, repo, "v1", idx)
	return gate.Image{Repo: ecrname.Repo{Registry: ecrname.Registry{AccountID: sandbox.SourceAccount, Region: sandbox.DefaultRegion}, Name: repo}, Digest: d.String()}
}

// TestReview25IndexPlatformsEscapeTheScan: the scan requirement "applies to each platform
// image" of an index, but the gate only looks at children it recognises as platforms.
// A runnable image the index carries under a descriptor the gate leaves out — one
// annotated as a buildx attestation manifest while its platform is linux/amd64 (runtimes
// select children by platform, not by that annotation), or one reached through a nested
// index (containerd walks nested indexes) — is never scanned by the gate: an index whose
// only runnable image has a CRITICAL finding passes `scan: {severity: HIGH}` and is
// copied, image and all, to the gated destination.
func TestReview25IndexPlatformsEscapeTheScan(t *testing.T) {
	e := newEnv(t)
	critical := sandbox.ScanResult{Findings: []sandbox.ScanFinding{{Name: "CVE-2026-6666", Severity: "CRITICAL"}}}
	vulnerable := func(t *testing.T) v1.Image {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	scanned := func(t *testing.T, img gate.Image, child v1.Image) {
		d, _ := child.Digest()
		if err := e.w.SB.SetImageScan(img.Repo.AccountID, img.Repo.Region, img.Repo.Name, d.String(), critical); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("runnable child annotated as an attestation manifest", func(t *testing.T) {
		child := vulnerable(t)
		idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: child, Descriptor: v1.Descriptor{
			Platform:    &v1.Platform{OS: "linux", Architecture: "amd64"},
			Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"},
		}})
		img := e.pushIndexOf(t, idx)
		scanned(t, img, child)
		if d := e.decide(t, img, "scan"); d.Verdict == gate.Pass {
			t.Fatalf("an index whose linux/amd64 image has CRITICAL CVE-2026-6666 passed the HIGH scan gate: %s", d)
		}
	})

	t.Run("image behind a nested index", func(t *testing.T) {
		child := vulnerable(t)
		inner := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: child, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "linux", Architecture: "amd64"},
		}})
		outer := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: inner})
		img := e.pushIndexOf(t, outer)
		scanned(t, img, child)
		if d := e.decide(t, img, "scan"); d.Verdict == gate.Pass {
			t.Fatalf("an index nesting an index whose only image has CRITICAL CVE-2026-6666 passed the HIGH scan gate: %s", d)
		}
	})
}

// TestReview25AttestationsCrowdOutTheSignature: at most 32 "signatures" are read per
// image, counted before it is known whether they sign the image at all — attestations
// (Sigstore bundles of provenance, SBOM, vulnerability predicates) count — and cosign's
// sha256-<hex>.sig tag, read last, is dropped once referrers filled the cap. An image
// carrying 32 attestations (a pipeline that attests on each run; or anyone who can push
// to the build repository) and a valid signature by the trusted key under the .sig tag is
// held as unsigned, then blocked (SignatureTimeout): the trusted signature is never read.
func TestReview25AttestationsCrowdOutTheSignature(t *testing.T) {
	e := newEnv(t)
	img, r, subject := e.push(t, nil)
	for range 32 {
		e.sig.Bundle(t, r, subject, identity, issuer, "https://slsa.dev/provenance/v1")
	}
	e.key.Cosign(t, r, subject, signing.Options{}) // the sha256-<hex>.sig tag
	if d := e.decide(t, img, "key"); d.Verdict != gate.Pass {
		t.Fatalf("an image signed by the trusted key (its .sig tag) and carrying 32 attestations: %s, want pass", d)
	}
}
