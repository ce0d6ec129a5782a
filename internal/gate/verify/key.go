package verify

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/gate"
)

// keyVerifier verifies signatures made with one long-lived key: cosign's simple-signing
// manifests and Sigstore bundles whose verification material is a public key.
type keyVerifier struct {
	load func(ctx context.Context) (signature.Verifier, error)
}

// newPEMKey parses a PEM public key (ECDSA, RSA or Ed25519, as cosign generates them).
func newPEMKey(pem []byte, field string) (*keyVerifier, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pem)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PEM public key: %w", field, err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return &keyVerifier{load: func(context.Context) (signature.Verifier, error) { return v, nil }}, nil
}

// newKMSKey verifies with the public key of an AWS KMS key, fetched (kms:GetPublicKey)
// at the first verification and kept; a failed fetch is tried again next time.
// https://docs.aws.amazon.com/kms/latest/APIReference/API_GetPublicKey.html
func newKMSKey(arn string, api KMS) *keyVerifier {
	var mu sync.Mutex
	var cached signature.Verifier
	return &keyVerifier{load: func(ctx context.Context) (signature.Verifier, error) {
		mu.Lock()
		defer mu.Unlock()
		if cached != nil {
			return cached, nil
		}
		if api == nil {
			return nil, fmt.Errorf("kmsKey %s: no KMS client here to fetch its public key", arn)
		}
		out, err := api.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(arn)}, inKeyRegion(arn))
		if err != nil {
			return nil, ecraccess.WrapAWS("kms:GetPublicKey", err)
		}
		pub, err := x509.ParsePKIXPublicKey(out.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("kmsKey %s: the public key KMS returned does not parse: %w", arn, err)
		}
		v, err := signature.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("kmsKey %s: %w", arn, err)
		}
		cached = v
		return v, nil
	}}
}

func (k *keyVerifier) Verify(ctx context.Context, sig *gate.Signature, subject v1.Descriptor) error {
	if sig.Format != gate.FormatCosign && sig.Format != gate.FormatBundle {
		return gate.ErrOtherFormat
	}
	v, err := k.load(ctx)
	if err != nil {
		return &keyUnavailable{err}
	}
	if sig.Format == gate.FormatBundle {
		return verifyBundle(sig, subject, func(b *bundle.Bundle) error { return k.verifyBundle(v, b, subject) })
	}
	var why []string
	for _, l := range cosignLayers(sig) {
		err := v.VerifySignature(bytes.NewReader(l.signature), bytes.NewReader(l.payload))
		if err == nil {
			err = checkPayload(l.payload, subject)
		} else {
			err = errors.New("the signature does not verify with this key (signed by another key, or the payload was changed)")
		}
		if err == nil {
			return nil
		}
		why = append(why, err.Error())
	}
	return failures(why)
}

// verifyBundle checks a Sigstore bundle signed with the key: no certificate, no
// transparency log or timestamp (offline, and a key needs none).
func (k *keyVerifier) verifyBundle(v signature.Verifier, b *bundle.Bundle, subject v1.Descriptor) error {
	material := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		return root.NewExpiringKey(v, time.Time{}, time.Time{}), nil
	})
	sv, err := sgverify.NewVerifier(material, sgverify.WithNoObserverTimestamps())
	if err != nil {
		return err
	}
	_, err = sv.Verify(b, sgverify.NewPolicy(artifactDigest(subject), sgverify.WithKey()))
	return err
}

// keyUnavailable is a key that could not be had (KMS failed): no verdict on the
// signature, so the decision fails and is retried.
type keyUnavailable struct{ err error }

func (e *keyUnavailable) Error() string { return e.err.Error() }
func (e *keyUnavailable) Unwrap() error { return e.err }

// inKeyRegion sends a KMS call to the Region of the key's ARN: KMS keys are regional, and
// another Region's endpoint answers NotFoundException ("Invalid arn <region>";
// https://docs.aws.amazon.com/kms/latest/developerguide/multi-region-keys-overview.html),
// so a release key kept in a central signing Region is asked there, not in the function's.
func inKeyRegion(arn string) func(*kms.Options) {
	return func(o *kms.Options) {
		if parts := strings.SplitN(arn, ":", 5); len(parts) == 5 && parts[0] == "arn" && parts[3] != "" {
			o.Region = parts[3]
		}
	}
}
