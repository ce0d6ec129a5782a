package signing

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/sign"
)

// Sigstore is a private Sigstore (sigstore-go's virtual one): a certificate authority
// issuing short-lived certificates to OIDC identities, a transparency log and a
// timestamp authority, all with keys made for the test.
type Sigstore struct{ vs *ca.VirtualSigstore }

// NewSigstore starts a private Sigstore.
func NewSigstore(t testing.TB) *Sigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	return &Sigstore{vs: vs}
}

// TrustedRoot is the trusted_root.json of the private Sigstore, as a user would supply
// it. It lists no CT log: the virtual authority's certificates carry no SCT.
func (s *Sigstore) TrustedRoot(t testing.TB) string {
	t.Helper()
	var err error
	// The virtual log's ID is its hex string's bytes; a real trusted root holds the raw
	// key ID (sha256 of the log's public key), which is what log entries name.
	logs := map[string]*root.TransparencyLog{}
	for id, l := range s.vs.RekorLogs() {
		c := *l
		if c.ID, err = hex.DecodeString(id); err != nil {
			t.Fatal(err)
		}
		logs[id] = &c
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, s.vs.FulcioCertificateAuthorities(), nil,
		s.vs.TimestampingAuthorities(), logs)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Cosign signs subject keylessly as cosign sign does (cosign v2's default): a
// simple-signing layer with the certificate and the Rekor entry (with its signed entry
// timestamp) as annotations.
func (s *Sigstore) Cosign(t testing.TB, r Repo, subject v1.Descriptor, identity, issuer string, o Options) v1.Hash {
	t.Helper()
	signed := subject.Digest.String()
	if o.SignedDigest != "" {
		signed = o.SignedDigest
	}
	payload := Payload(t, r, signed)
	e, err := s.vs.Sign(identity, issuer, payload)
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := e.VerificationContent()
	cert, err := cryptoutils.MarshalCertificateToPEM(vc.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := e.SignatureContent()
	entries, _ := e.TlogEntries()
	tle := s.promised(t, entries[0])
	rb := map[string]any{
		"SignedEntryTimestamp": tle.GetInclusionPromise().GetSignedEntryTimestamp(),
		"Payload": map[string]any{
			"body": tle.GetCanonicalizedBody(), "integratedTime": tle.GetIntegratedTime(),
			"logIndex": tle.GetLogIndex(), "logID": hex.EncodeToString(tle.GetLogId().GetKeyId()),
		},
	}
	bundleJSON, err := json.Marshal(rb)
	if err != nil {
		t.Fatal(err)
	}
	if o.Tamper {
		payload = append(payload[:len(payload)-1:len(payload)-1], []byte(`,"x":1}`)...)
	}
	return PushSimpleSigning(t, r, subject, []SimpleSigningLayer{{Payload: payload, Annotations: map[string]string{
		"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString(sc.Signature()),
		"dev.sigstore.cosign/certificate":    string(cert),
		"dev.sigstore.cosign/bundle":         string(bundleJSON),
	}}}, o.Referrer)
}

// Statement is the in-toto statement cosign v3 signs for an image: predicate type
// https://sigstore.dev/cosign/sign/v1, the image's digest as subject.
func Statement(t testing.TB, digest v1.Hash, predicateType string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []map[string]any{{"digest": map[string]string{digest.Algorithm: digest.Hex}}},
		"predicateType": predicateType, "predicate": map[string]any{},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Bundle signs subject keylessly as cosign v3 does: a DSSE envelope of a sign/v1
// statement in a Sigstore bundle (certificate, Rekor entry), stored as a referrer.
// predicateType "" is cosign's signature predicate.
func (s *Sigstore) Bundle(t testing.TB, r Repo, subject v1.Descriptor, identity, issuer, predicateType string) v1.Hash {
	t.Helper()
	if predicateType == "" {
		predicateType = "https://sigstore.dev/cosign/sign/v1"
	}
	// The time the virtual authority's certificates are valid at; v0.3 bundles carry an
	// inclusion proof.
	e, err := s.vs.AttestAtTime(identity, issuer, Statement(t, subject.Digest, predicateType), time.Now().Add(5*time.Minute), true)
	if err != nil {
		t.Fatal(err)
	}
	return s.pushBundle(t, r, subject, e)
}

// promised is the log entry as Rekor v1 answers it: with its kind and its inclusion
// promise, the log's signed entry timestamp (the virtual log keeps the promise apart).
func (s *Sigstore) promised(t testing.TB, en *tlog.Entry) *protorekor.TransparencyLogEntry {
	t.Helper()
	tle := en.TransparencyLogEntry()
	var kind struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(tle.GetCanonicalizedBody(), &kind); err != nil {
		t.Fatal(err)
	}
	tle.KindVersion = &protorekor.KindVersion{Kind: kind.Kind, Version: kind.APIVersion}
	set, err := s.vs.RekorSignPayload(tlog.RekorPayload{
		Body: base64.StdEncoding.EncodeToString(tle.GetCanonicalizedBody()), IntegratedTime: tle.GetIntegratedTime(),
		LogIndex: tle.GetLogIndex(), LogID: hex.EncodeToString(tle.GetLogId().GetKeyId()),
	})
	if err != nil {
		t.Fatal(err)
	}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	return tle
}

// pushBundle pushes a sigstore-go entity as a v0.3 bundle referrer of subject, with
// its log entries and its RFC 3161 timestamps.
func (s *Sigstore) pushBundle(t testing.TB, r Repo, subject v1.Descriptor, e verify.SignedEntity) v1.Hash {
	t.Helper()
	vc, _ := e.VerificationContent()
	sc, _ := e.SignatureContent()
	entries, _ := e.TlogEntries()
	pb := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
		},
	}
	for _, en := range entries {
		pb.VerificationMaterial.TlogEntries = append(pb.VerificationMaterial.TlogEntries, s.promised(t, en))
	}
	stamps, _ := e.Timestamps()
	if len(stamps) > 0 {
		pb.VerificationMaterial.TimestampVerificationData = &protobundle.TimestampVerificationData{}
		for _, ts := range stamps {
			pb.VerificationMaterial.TimestampVerificationData.Rfc3161Timestamps = append(
				pb.VerificationMaterial.TimestampVerificationData.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: ts})
		}
	}
	env := sc.EnvelopeContent().RawEnvelope()
	payload, _ := base64.StdEncoding.DecodeString(env.Payload)
	sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	pb.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
		Payload: payload, PayloadType: env.PayloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
	}}
	body, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	return pushReferrer(t, r, "application/vnd.dev.sigstore.bundle.v0.3+json", subject, sign.Layer{
		Data: body, MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
	})
}
