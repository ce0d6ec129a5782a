package verify

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	_ "github.com/notaryproject/notation-core-go/signature/cose" // registers the COSE envelope
	_ "github.com/notaryproject/notation-core-go/signature/jws"  // registers the JWS envelope
	"github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/verifier"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/ecr-replicator/ecr-replicator/internal/gate"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// Notation envelope media types
// (https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md).
const (
	mediaTypeJWS  = "application/jose+json"
	mediaTypeCOSE = "application/cose"
)

// storeName names the one trust store of a signer's trust policy.
const storeName = "ecr-replicator"

// notationVerifier verifies Notary Project signatures with notation-go: the envelope's
// integrity, the signing certificate chaining to the trust store, the trusted
// identities, the certificates' validity now, and that the signed payload names the
// image's descriptor. Revocation (OCSP, CRL) needs the network and is skipped; a
// signature that names a verification plugin (AWS Signer's does) cannot be verified
// here, and says so.
type notationVerifier struct{ v notation.Verifier }

func newNotation(n *rules.Notation, pem []byte, field, path string) (*notationVerifier, error) {
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM(pem)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate (%v)", field, err)
	}
	if err := truststore.ValidateCertificates(certs); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	policy := &trustpolicy.Document{Version: "1.0", TrustPolicies: []trustpolicy.TrustPolicy{{
		Name: "ecr-replicator", RegistryScopes: []string{"*"},
		SignatureVerification: trustpolicy.SignatureVerification{
			VerificationLevel: trustpolicy.LevelStrict.Name,
			Override:          map[trustpolicy.ValidationType]trustpolicy.ValidationAction{trustpolicy.TypeRevocation: trustpolicy.ActionSkip},
		},
		TrustStores:       []string{n.TrustStoreType + ":" + storeName},
		TrustedIdentities: n.TrustedIdentities,
	}}}
	v, err := verifier.New(policy, memoryStore{typ: truststore.Type(n.TrustStoreType), certs: certs}, nil)
	if err != nil {
		return nil, fmt.Errorf("%s.notation.trustedIdentities: %w", path, err)
	}
	return &notationVerifier{v: v}, nil
}

func (nv *notationVerifier) Verify(ctx context.Context, sig *gate.Signature, subject v1.Descriptor) error {
	if sig.Format != gate.FormatNotation {
		return gate.ErrOtherFormat
	}
	desc := ocispec.Descriptor{MediaType: string(subject.MediaType), Digest: digest.Digest(subject.Digest.String()), Size: subject.Size}
	var why []string
	for _, l := range sig.Layers {
		mt := string(l.MediaType)
		if (mt != mediaTypeJWS && mt != mediaTypeCOSE) || l.Data == nil {
			continue
		}
		outcome, err := nv.v.Verify(ctx, desc, l.Data, notation.VerifierVerifyOptions{
			ArtifactReference: sig.Repository + "@" + subject.Digest.String(), SignatureMediaType: mt,
		})
		if err == nil {
			return nil
		}
		why = append(why, explain(err, outcome))
	}
	return failures(why)
}

// explain says why notation refused a signature, naming the plugin a signature asks for.
func explain(err error, outcome *notation.VerificationOutcome) string {
	var inconclusive notation.ErrorVerificationInconclusive
	if errors.As(err, &inconclusive) && outcome != nil && outcome.EnvelopeContent != nil {
		for _, a := range outcome.EnvelopeContent.SignerInfo.SignedAttributes.ExtendedAttributes {
			if a.Key == "io.cncf.notary.verificationPlugin" {
				return fmt.Sprintf("the signature requires the Notation verification plugin %v (AWS Signer's, for its signing-profile and revocation checks), which cannot run here (docs/PROMOTION.md)", a.Value)
			}
		}
	}
	if err.Error() == "content descriptor mismatch" {
		return "a signature of another artifact (the signed descriptor is not this image's)"
	}
	return err.Error()
}

// memoryStore is the trust store of one signer, from the rules document.
type memoryStore struct {
	typ   truststore.Type
	certs []*x509.Certificate
}

func (m memoryStore) GetCertificates(_ context.Context, t truststore.Type, name string) ([]*x509.Certificate, error) {
	if t != m.typ || name != storeName {
		return nil, fmt.Errorf("no trust store %s:%s", t, name)
	}
	return m.certs, nil
}
