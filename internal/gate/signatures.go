package gate

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Signature formats a Verifier may be given.
const (
	// FormatCosign: cosign's simple-signing manifest — one layer per signature, the
	// payload ({"critical":{"image":{"docker-manifest-digest":…}}}) as the layer, the
	// signature and, for keyless, the certificate and the Rekor bundle as annotations —
	// under the sha256-<hex>.sig tag, or as an OCI 1.1 referrer
	// (https://github.com/sigstore/cosign/blob/main/specs/SIGNATURE_SPEC.md).
	FormatCosign = "cosign"
	// FormatBundle: a Sigstore bundle stored as an OCI 1.1 referrer, as cosign v3 signs
	// (https://github.com/sigstore/cosign/blob/main/specs/BUNDLE_SPEC.md).
	FormatBundle = "sigstore-bundle"
	// FormatNotation: a Notary Project signature envelope (JWS or COSE) stored as an OCI
	// 1.1 referrer, as notation sign and ECR managed signing with AWS Signer store it
	// (https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md).
	FormatNotation = "notation"
)

// Artifact and media types of signatures.
const (
	ArtifactTypeCosign       = "application/vnd.dev.cosign.artifact.sig.v1+json"
	MediaTypeSimpleSigning   = "application/vnd.dev.cosign.simplesigning.v1+json"
	ArtifactTypeNotation     = "application/vnd.cncf.notary.signature"
	artifactTypeBundlePrefix = "application/vnd.dev.sigstore.bundle"
)

// Bounds on what is read of signatures: ECR keeps at most 100 referrers per subject
// (service quotas); a signature's layers are small documents. maxSignatures is per
// format (cosign, Sigstore bundle, Notation), besides the .sig tag.
const (
	maxSignatures  = 32
	maxLayers      = 16
	maxLayerBytes  = 1 << 20
	maxManifestLen = 4 << 20
)

// Signature is one signature artifact found with an image.
type Signature struct {
	// Repository is the source repository it is in (host/name).
	Repository string
	// Ref says where it was found, for reasons: "sha256-<hex>.sig" or "referrer sha256:…".
	Ref      string
	Format   string
	Digest   v1.Hash // the signature manifest's digest
	Manifest *v1.Manifest
	// Layers are the manifest's layers with their content.
	Layers []Layer
}

// Layer is one layer of a signature manifest, read.
type Layer struct {
	v1.Descriptor
	Data []byte
}

// formatOf says which signature format an artifact type is ("": not a signature).
func formatOf(artifactType string) string {
	switch {
	case artifactType == ArtifactTypeCosign:
		return FormatCosign
	case artifactType == ArtifactTypeNotation:
		return FormatNotation
	case strings.HasPrefix(artifactType, artifactTypeBundlePrefix):
		return FormatBundle
	}
	return ""
}

// signatures finds and reads the signatures of subject: cosign's sha256-<hex>.sig tag
// first (always read: no number of referrers crowds it out), then its OCI 1.1 referrers
// of a signature artifact type (go-containerregistry falls back to the sha256-<hex> tag
// schema when the registry has no referrers API), at most maxSignatures of each format —
// so attestations, which cosign v3 stores as Sigstore bundles too, never crowd out a
// Notation or cosign signature — leaving out the bundles whose descriptor says they are
// attestations before counting.
func (r *registryReader) signatures(ctx context.Context, subject v1.Hash) ([]*Signature, error) {
	var out []*Signature
	tag := fmt.Sprintf("%s-%s.sig", subject.Algorithm, subject.Hex)
	s, err := r.signature(ctx, tag, FormatCosign, tag)
	switch {
	case isNotFound(err):
	case err != nil:
		return nil, err
	default:
		out = append(out, s)
	}
	idx, err := remote.Referrers(r.repo.Digest(subject.String()), append(r.opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, registryError("GET referrers "+subject.String(), err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, registryError("GET referrers "+subject.String(), err)
	}
	read := map[string]int{} // per format
	for _, d := range im.Manifests {
		f := formatOf(d.ArtifactType)
		if f == "" || attestation(f, d) || read[f] == maxSignatures {
			continue
		}
		read[f]++
		s, err := r.signature(ctx, "referrer "+d.Digest.String(), f, d.Digest.String())
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// annotationPredicateType is the annotation cosign v3 puts on a Sigstore bundle's
// referrer manifest (and so on its referrers descriptor): the in-toto predicate type of
// the DSSE statement it carries.
const annotationPredicateType = "dev.sigstore.bundle.predicateType"

// attestation says whether a referrer's descriptor says it is an attestation, not a
// signature: a bundle whose predicate type is not cosign's sign/v1. A claim, used only to
// leave something out: a bundle without it, or claiming sign/v1, is read and verified.
func attestation(format string, d v1.Descriptor) bool {
	pt, ok := d.Annotations[annotationPredicateType]
	return format == FormatBundle && ok && pt != "https://sigstore.dev/cosign/sign/v1"
}

// signature reads one signature manifest (by digest, or the cosign tag) and its layers.
func (r *registryReader) signature(ctx context.Context, ref, format, tagOrDigest string) (*Signature, error) {
	opts := append(r.opts, remote.WithContext(ctx))
	var target name.Reference = r.repo.Tag(tagOrDigest)
	if strings.HasPrefix(tagOrDigest, "sha256:") {
		target = r.repo.Digest(tagOrDigest)
	}
	desc, err := remote.Get(target, opts...)
	if err != nil {
		return nil, registryError("GET manifest "+ref, err)
	}
	if len(desc.Manifest) > maxManifestLen || desc.MediaType.IsIndex() {
		return &Signature{Repository: r.repo.Name(), Ref: ref, Format: format, Digest: desc.Digest}, nil // not a signature manifest: verifies nothing
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return &Signature{Repository: r.repo.Name(), Ref: ref, Format: format, Digest: desc.Digest}, nil
	}
	s := &Signature{Repository: r.repo.Name(), Ref: ref, Format: format, Digest: desc.Digest, Manifest: m}
	for i, l := range m.Layers {
		if i == maxLayers {
			break
		}
		layer := Layer{Descriptor: l}
		if l.Size <= maxLayerBytes {
			data, err := r.blob(opts, l.Digest)
			if err != nil {
				return nil, registryError("GET blob "+l.Digest.String()+" of "+ref, err)
			}
			layer.Data = data
		}
		s.Layers = append(s.Layers, layer)
	}
	return s, nil
}

// blob reads a small blob whole; go-containerregistry checks its digest as it reads.
func (r *registryReader) blob(opts []remote.Option, d v1.Hash) ([]byte, error) {
	l, err := remote.Layer(r.repo.Digest(d.String()), opts...)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxLayerBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxLayerBytes {
		return nil, fmt.Errorf("blob %s is over %d bytes", d, maxLayerBytes)
	}
	return data, nil
}
