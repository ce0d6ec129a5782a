package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/ecr-replicator/ecr-replicator/internal/gate"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// keylessVerifier verifies Sigstore keyless signatures with sigstore-go against a trusted
// root the user supplies: the certificate chains to one of its certificate authorities
// at a time a transparency log of the root (or a timestamp authority) attests, carries
// the expected identity (and, when the root lists CT logs, an SCT of one), and the log
// entry's inclusion (its signed entry timestamp, or an inclusion proof with a signed
// checkpoint) verifies with the log's key. All of it offline.
type keylessVerifier struct {
	verifier *sgverify.Verifier
	identity sgverify.CertificateIdentity
}

func newKeyless(k *rules.Keyless, trustedRoot []byte, field string) (*keylessVerifier, error) {
	tr, err := root.NewTrustedRootFromJSON(trustedRoot)
	if err != nil {
		return nil, fmt.Errorf("%s: not a Sigstore trusted root (trusted_root.json): %w", field, err)
	}
	if len(tr.FulcioCertificateAuthorities()) == 0 {
		return nil, fmt.Errorf("%s: lists no certificate authority, so no keyless certificate can chain to it", field)
	}
	opts := []sgverify.VerifierOption{sgverify.WithTransparencyLog(1), sgverify.WithObserverTimestamps(1)}
	if len(tr.CTLogs()) > 0 {
		opts = append(opts, sgverify.WithSignedCertificateTimestamps(1))
	}
	v, err := sgverify.NewVerifier(tr, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	id, err := sgverify.NewShortCertificateIdentity(k.Issuer, rules.FullMatch(k.IssuerRegExp), k.Subject, rules.FullMatch(k.SubjectRegExp))
	if err != nil {
		return nil, fmt.Errorf("%s: identity: %w", field, err)
	}
	return &keylessVerifier{verifier: v, identity: id}, nil
}

func (k *keylessVerifier) Verify(_ context.Context, sig *gate.Signature, subject v1.Descriptor) error {
	switch sig.Format {
	case gate.FormatBundle:
		return verifyBundle(sig, subject, func(b *bundle.Bundle) error {
			_, err := k.verifier.Verify(b, sgverify.NewPolicy(artifactDigest(subject), sgverify.WithCertificateIdentity(k.identity)))
			return err
		})
	case gate.FormatCosign:
	default:
		return gate.ErrOtherFormat
	}
	var why []string
	for _, l := range cosignLayers(sig) {
		ent, err := legacyEntity(l)
		if err == nil {
			_, err = k.verifier.Verify(ent, sgverify.NewPolicy(sgverify.WithArtifact(bytes.NewReader(l.payload)), sgverify.WithCertificateIdentity(k.identity)))
		}
		if err == nil {
			err = checkPayload(l.payload, subject)
		}
		if err == nil {
			return nil
		}
		why = append(why, err.Error())
	}
	return failures(why)
}

// rekorBundle is the dev.sigstore.cosign/bundle annotation: the Rekor entry cosign
// recorded the signature in, with the log's signed entry timestamp.
type rekorBundle struct {
	SignedEntryTimestamp []byte `json:"SignedEntryTimestamp"`
	Payload              struct {
		Body           []byte `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogIndex       int64  `json:"logIndex"`
		LogID          string `json:"logID"`
	} `json:"Payload"`
}

// legacyEntity presents a keyless simple-signing layer to sigstore-go as the v0.1 bundle
// it amounts to: the certificate, a message signature over the payload, the Rekor entry
// with its inclusion promise (no inclusion proof: cosign's annotation has none), and an
// RFC 3161 timestamp when there is one.
func legacyEntity(l cosignLayer) (sgverify.SignedEntity, error) {
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(l.annotations[annotationCertificate]))
	if err != nil || len(certs) == 0 {
		return nil, errors.New("no certificate: not a keyless signature")
	}
	rb := l.annotations[annotationBundle]
	if rb == "" {
		return nil, errors.New("no transparency log entry (dev.sigstore.cosign/bundle): a keyless signature's time cannot be established offline")
	}
	var b rekorBundle
	if err := json.Unmarshal([]byte(rb), &b); err != nil {
		return nil, fmt.Errorf("the transparency log entry does not parse: %w", err)
	}
	var kind struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(b.Payload.Body, &kind); err != nil {
		return nil, fmt.Errorf("the transparency log entry's body does not parse: %w", err)
	}
	logID, err := hex.DecodeString(b.Payload.LogID)
	if err != nil {
		return nil, fmt.Errorf("the transparency log entry's logID: %w", err)
	}
	entry, err := tlog.NewTlogEntry(&protorekor.TransparencyLogEntry{
		LogIndex: b.Payload.LogIndex, LogId: &protocommon.LogId{KeyId: logID},
		KindVersion:       &protorekor.KindVersion{Kind: kind.Kind, Version: kind.APIVersion},
		IntegratedTime:    b.Payload.IntegratedTime,
		InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: b.SignedEntryTimestamp},
		CanonicalizedBody: b.Payload.Body,
	})
	if err != nil {
		return nil, fmt.Errorf("the transparency log entry: %w", err)
	}
	e := &legacy{cert: certs[0], entry: entry, sig: l.signature}
	e.digest = sha256.Sum256(l.payload)
	if ts := l.annotations[annotationTimestamp]; ts != "" {
		var t struct {
			SignedRFC3161Timestamp string `json:"SignedRFC3161Timestamp"`
		}
		if json.Unmarshal([]byte(ts), &t) == nil {
			if raw, err := base64.StdEncoding.DecodeString(t.SignedRFC3161Timestamp); err == nil {
				e.timestamps = [][]byte{raw}
			}
		}
	}
	return e, nil
}

// legacy is a keyless simple-signing signature as a sigstore-go SignedEntity.
type legacy struct {
	sgverify.BaseSignedEntity
	cert       *x509.Certificate
	entry      *tlog.Entry
	sig        []byte
	digest     [32]byte
	timestamps [][]byte
}

func (e *legacy) HasInclusionPromise() bool { return true }
func (e *legacy) Version() (string, error)  { return "v0.1", nil }
func (e *legacy) VerificationContent() (sgverify.VerificationContent, error) {
	return bundle.NewCertificate(e.cert), nil
}
func (e *legacy) SignatureContent() (sgverify.SignatureContent, error) {
	return bundle.NewMessageSignature(e.digest[:], "SHA2_256", e.sig), nil
}
func (e *legacy) TlogEntries() ([]*tlog.Entry, error) { return []*tlog.Entry{e.entry}, nil }
func (e *legacy) Timestamps() ([][]byte, error)       { return e.timestamps, nil }
