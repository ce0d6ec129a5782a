// Package verify builds the promotion gate's signature verifiers (gate.Verifier) from
// the signers of a rules document, with the libraries the signature formats come from:
// sigstore/sigstore (cosign signatures made with a key: PEM or AWS KMS), sigstore-go
// (Sigstore bundles, and keyless signatures: certificate chain, identity, transparency
// log and timestamps against a trusted root the user supplies) and notation-go (Notary
// Project signatures against a trust store the user supplies). No cryptography is
// written here: this package reads the formats, picks the library and checks that what
// was signed is the image asked about.
//
// Everything is verified offline, from the rules document and what the registry holds:
// nothing is fetched from a transparency log, a TUF repository, an OCSP responder or a
// CRL. docs/PROMOTION.md lists what that verifies and what it does not.
//
// Only the replicate function and the CLI (which serves as the functions' bootstrap in
// the demo) import this package: the libraries are
// large, and the functions that never verify stay small.
package verify

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/ecr-replicator/ecr-replicator/internal/gate"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// KMS is the part of the KMS client a key kept in AWS KMS needs: its public key.
type KMS interface {
	GetPublicKey(ctx context.Context, in *kms.GetPublicKeyInput, optFns ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
}

// Options are what Compile reads besides the document.
type Options struct {
	// ReadFile reads publicKeyFile, trustedRootFile and trustStoreFile (default
	// os.ReadFile).
	ReadFile func(string) ([]byte, error)
	// Dir is what a relative file path is relative to ("": the working directory). The
	// replicate function gives its code directory (LAMBDA_TASK_ROOT), where the build
	// puts trust/ (sam.mk, TRUST_DIR).
	Dir string
	// KMS fetches the public keys of kmsKey signers, at their first use (nil: a kmsKey
	// signer fails every verification, saying so).
	KMS KMS
	// Now is the clock of keyless verification's certificate checks against the
	// transparency log's time (default time.Now).
	Now func() time.Time
}

// Compile builds a verifier for every signer of every requirement of doc. An error
// names the signer's field: a key that is no PEM public key, a trusted root or trust
// store that does not parse, a file that cannot be read.
func Compile(doc *rules.Document, o Options) (gate.Verifiers, error) {
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	out := gate.Verifiers{}
	if doc == nil {
		return out, nil
	}
	add := func(path string, r *rules.Require) error {
		if r == nil || r.Signatures == nil {
			return nil
		}
		for k := range r.Signatures.Signers {
			sg := &r.Signatures.Signers[k]
			p := fmt.Sprintf("%s.signatures.signers[%d]", path, k)
			v, err := compile(sg, p, o)
			if err != nil {
				return err
			}
			out[sg] = v
		}
		return nil
	}
	for i := range doc.Rules {
		r := &doc.Rules[i]
		if err := add(fmt.Sprintf("rules[%d].require", i), r.Require); err != nil {
			return nil, err
		}
		for j := range r.Destinations {
			if err := add(fmt.Sprintf("rules[%d].destinations[%d].require", i, j), r.Destinations[j].Require); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// ForLambda compiles doc's signers as the replicate function does (wiring.VerifyFunc): a
// kmsKey's public key through cfg's KMS, files relative to the code directory
// (LAMBDA_TASK_ROOT in the environment getenv reads, where the build copies TRUST_DIR as
// trust/; unset: the working directory).
func ForLambda(doc *rules.Document, cfg aws.Config, getenv func(string) string) (gate.Verifiers, error) {
	return Compile(doc, Options{KMS: kms.NewFromConfig(cfg), Dir: getenv("LAMBDA_TASK_ROOT")})
}

// compile builds one signer's verifier.
func compile(sg *rules.Signer, path string, o Options) (gate.Verifier, error) {
	material := func(inline, file, field, fileField string) ([]byte, string, error) {
		if inline != "" {
			return []byte(inline), path + "." + field, nil
		}
		if o.Dir != "" && !filepath.IsAbs(file) {
			file = filepath.Join(o.Dir, file)
		}
		b, err := o.ReadFile(file)
		if err != nil {
			return nil, "", fmt.Errorf("%s.%s: %w", path, fileField, err)
		}
		return b, path + "." + fileField, nil
	}
	switch {
	case sg.PublicKey != "" || sg.PublicKeyFile != "":
		pem, field, err := material(sg.PublicKey, sg.PublicKeyFile, "publicKey", "publicKeyFile")
		if err != nil {
			return nil, err
		}
		return newPEMKey(pem, field)
	case sg.KMSKey != "":
		return newKMSKey(sg.KMSKey, o.KMS), nil
	case sg.Keyless != nil:
		k := sg.Keyless
		root, field, err := material(k.TrustedRoot, k.TrustedRootFile, "keyless.trustedRoot", "keyless.trustedRootFile")
		if err != nil {
			return nil, err
		}
		return newKeyless(k, root, field)
	case sg.Notation != nil:
		n := sg.Notation
		store, field, err := material(n.TrustStore, n.TrustStoreFile, "notation.trustStore", "notation.trustStoreFile")
		if err != nil {
			return nil, err
		}
		return newNotation(n, store, field, path)
	}
	return nil, fmt.Errorf("%s: no kind of signer set", path)
}
