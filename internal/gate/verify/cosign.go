package verify

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/ecr-replicator/ecr-replicator/internal/gate"
)

// Annotations of a cosign simple-signing layer
// (https://github.com/sigstore/cosign/blob/main/specs/SIGNATURE_SPEC.md).
const (
	annotationSignature   = "dev.cosignproject.cosign/signature"
	annotationCertificate = "dev.sigstore.cosign/certificate"
	annotationChain       = "dev.sigstore.cosign/chain"
	annotationBundle      = "dev.sigstore.cosign/bundle"
	annotationTimestamp   = "dev.sigstore.cosign/rfc3161timestamp"
)

// Statement types that mean "this image is signed": cosign's simple-signing payload
// type, and the predicate type of a cosign v3 signature (an in-toto statement in a
// Sigstore bundle).
const (
	simpleSigningType = "cosign container image signature"
	cosignSignV1      = "https://sigstore.dev/cosign/sign/v1"
)

// cosignLayer is one signature of a simple-signing manifest.
type cosignLayer struct {
	payload, signature []byte
	annotations        map[string]string
}

// cosignLayers lists the simple-signing layers of sig that carry a signature.
func cosignLayers(sig *gate.Signature) []cosignLayer {
	var out []cosignLayer
	for _, l := range sig.Layers {
		if string(l.MediaType) != gate.MediaTypeSimpleSigning || l.Data == nil {
			continue
		}
		s, err := base64.StdEncoding.DecodeString(l.Annotations[annotationSignature])
		if err != nil || len(s) == 0 {
			continue
		}
		out = append(out, cosignLayer{payload: l.Data, signature: s, annotations: l.Annotations})
	}
	return out
}

// checkPayload checks that a verified simple-signing payload signs subject: the
// signature is over the payload, and the payload names the digest. A signature copied
// from another image verifies, and names the other image.
func checkPayload(p []byte, subject v1.Descriptor) error {
	var ci payload.SimpleContainerImage
	if err := json.Unmarshal(p, &ci); err != nil {
		return fmt.Errorf("the signed payload is not a cosign payload: %w", err)
	}
	if t := ci.Critical.Type; t != simpleSigningType && t != cosignSignV1 {
		return fmt.Errorf("the signed payload is of type %q, not an image signature", t)
	}
	if got := ci.Critical.Image.DockerManifestDigest; got != subject.Digest.String() {
		return fmt.Errorf("a signature of %s, not of this image (%s)", got, subject.Digest)
	}
	return nil
}

// failures sums up why every signature of a manifest failed.
func failures(why []string) error {
	if len(why) == 0 {
		return errors.New("no signature in the manifest (no simple-signing layer with a signature annotation)")
	}
	return errors.New(strings.Join(why, "; "))
}

// artifactDigest is the policy of a statement about subject: its subject digest must be
// the image's.
func artifactDigest(subject v1.Descriptor) sgverify.ArtifactPolicyOption {
	raw, _ := hex.DecodeString(subject.Digest.Hex)
	return sgverify.WithArtifactDigest(subject.Digest.Algorithm, raw)
}

// verifyBundle reads the Sigstore bundle of a referrer and hands it to check when it is
// an image signature: a DSSE envelope whose in-toto statement is of cosign's sign/v1
// predicate type. Other bundles (attestations: provenance, SBOMs) sign no image.
func verifyBundle(sig *gate.Signature, subject v1.Descriptor, check func(*bundle.Bundle) error) error {
	var why []string
	for _, l := range sig.Layers {
		if !strings.HasPrefix(string(l.MediaType), "application/vnd.dev.sigstore.bundle") || l.Data == nil {
			continue
		}
		var b bundle.Bundle
		if err := b.UnmarshalJSON(l.Data); err != nil {
			why = append(why, "the bundle does not parse: "+err.Error())
			continue
		}
		env, err := b.Envelope()
		if err != nil || env == nil {
			return gate.ErrNotSignature // a message signature: of some blob, not of an image
		}
		st, err := env.Statement()
		if err != nil {
			why = append(why, "the bundle's statement does not parse: "+err.Error())
			continue
		}
		if st.GetPredicateType() != cosignSignV1 {
			return gate.ErrNotSignature
		}
		if err := check(&b); err != nil {
			why = append(why, err.Error())
			continue
		}
		return nil
	}
	if len(why) == 0 {
		return gate.ErrNotSignature
	}
	return errors.New(strings.Join(why, "; "))
}
