package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	coresig "github.com/notaryproject/notation-core-go/signature"
	"github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/signer"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/sign"
)

// Notary is a certificate authority and a code-signing certificate it issued, as a
// Notation user (or AWS Signer) holds them.
type Notary struct {
	rootPEM string
	key     *ecdsa.PrivateKey
	chain   []*x509.Certificate
}

// NewNotary makes a root CA and a leaf code-signing certificate for subjectCN.
func NewNotary(t testing.TB, subjectCN string) *Notary {
	t.Helper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: subjectCN + " root", Organization: []string{"ecr-replicator tests"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: subjectCN, Organization: []string{"ecr-replicator tests"}, Country: []string{"US"}, Province: []string{"WA"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, leafKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	pem, err := cryptoutils.MarshalCertificateToPEM(root)
	if err != nil {
		t.Fatal(err)
	}
	return &Notary{rootPEM: string(pem), key: leafKey, chain: []*x509.Certificate{leaf, root}}
}

// RootPEM is the trust store a verifier is given.
func (n *Notary) RootPEM() string { return n.rootPEM }

// Subject is the leaf certificate's distinguished name, as a trusted identity names it.
func (n *Notary) Subject() string { return n.chain[0].Subject.String() }

// Sign signs subject as notation sign does (envelope "application/jose+json" or
// "application/cose") and pushes the signature as a referrer. signed, when set, is the
// descriptor the envelope names instead of the subject's.
func (n *Notary) Sign(t testing.TB, r Repo, subject v1.Descriptor, envelope string, signed *v1.Descriptor) v1.Hash {
	t.Helper()
	s, err := signer.NewGenericSigner(n.key, n.chain)
	if err != nil {
		t.Fatal(err)
	}
	target := subject
	if signed != nil {
		target = *signed
	}
	env, _, err := s.Sign(context.Background(), ocispec.Descriptor{
		MediaType: string(target.MediaType), Digest: digest.Digest(target.Digest.String()), Size: target.Size,
	}, notation.SignerSignOptions{SignatureMediaType: envelope})
	if err != nil {
		t.Fatal(err)
	}
	return pushReferrer(t, r, "application/vnd.cncf.notary.signature", subject, sign.Layer{Data: env, MediaType: envelope})
}

// Bundle signs subject with the key as cosign v3 sign --key does: a DSSE envelope of a
// sign/v1 statement in a Sigstore bundle whose verification material is the key (no
// transparency log), stored as a referrer.
func (k *Key) Bundle(t testing.TB, r Repo, subject v1.Descriptor, statementDigest v1.Hash) v1.Hash {
	t.Helper()
	sv, err := signature.LoadECDSASignerVerifier(k.PrivateKey(), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := dsse.NewEnvelopeSigner(&sigdsse.SignerAdapter{SignatureSigner: sv, Pub: &k.PrivateKey().PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	env, err := ds.SignPayload(context.Background(), "application/vnd.in-toto+json", Statement(t, statementDigest, "https://sigstore.dev/cosign/sign/v1"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.StdEncoding.DecodeString(env.Payload)
	sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	pb := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: "test-key"}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: payload, PayloadType: env.PayloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
	body, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	return pushReferrer(t, r, "application/vnd.dev.sigstore.bundle.v0.3+json", subject, sign.Layer{
		Data: body, MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
	})
}

// SignAsAWSSigner signs subject as AWS Signer (ECR managed signing) does: the signing
// authority scheme, the signing profile and job as signed attributes, and the AWS
// Signer verification plugin named as a critical attribute, which a verifier must run
// (https://docs.aws.amazon.com/signer/latest/developerguide/image-verification.html).
// plugin false leaves the plugin attribute out: a signing-authority signature that
// Notation alone verifies.
func (n *Notary) SignAsAWSSigner(t testing.TB, r Repo, subject v1.Descriptor, plugin bool) v1.Hash {
	t.Helper()
	payload, err := json.Marshal(map[string]any{"targetArtifact": ocispec.Descriptor{
		MediaType: string(subject.MediaType), Digest: digest.Digest(subject.Digest.String()), Size: subject.Size,
	}})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := coresig.NewLocalSigner(n.chain, n.key)
	if err != nil {
		t.Fatal(err)
	}
	profile := "arn:aws:signer:us-east-1:111111111111:/signing-profiles/ecr_signing_profile/abcdef1234"
	attrs := []coresig.Attribute{
		{Key: "com.amazonaws.signer.signingProfileVersion", Value: profile, Critical: true},
		{Key: "com.amazonaws.signer.signingJob", Value: "arn:aws:signer:us-east-1:111111111111:/signing-jobs/1234", Critical: true},
	}
	if plugin {
		attrs = append(attrs, coresig.Attribute{Key: "io.cncf.notary.verificationPlugin", Value: "com.amazonaws.signer.notation.plugin", Critical: true})
	} else {
		attrs = nil
	}
	env, err := coresig.NewEnvelope("application/jose+json")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := env.Sign(&coresig.SignRequest{
		Payload: coresig.Payload{ContentType: "application/vnd.cncf.notary.payload.v1+json", Content: payload},
		Signer:  signer, SigningTime: time.Now(), SigningScheme: coresig.SigningSchemeX509SigningAuthority,
		SigningAgent: "aws-signer-notation-plugin/1.0", ExtendedSignedAttributes: attrs,
	})
	if err != nil {
		t.Fatal(err)
	}
	return pushReferrer(t, r, "application/vnd.cncf.notary.signature", subject, sign.Layer{Data: sig, MediaType: "application/jose+json"})
}
