// Package signing signs images in tests the way the signing tools store their
// signatures in a registry, with keys and authorities the tests generate: cosign's
// simple-signing manifests (under the sha256-<hex>.sig tag, or as an OCI 1.1 referrer),
// keyed (internal/tooling/sandbox/sign) or keyless (a virtual Sigstore: certificate authority,
// transparency log, timestamp authority); cosign v3's Sigstore bundles as referrers;
// and Notary Project signatures (notation sign, and what ECR managed signing stores) as
// referrers.
//
// It signs with the libraries the formats come from (sigstore, sigstore-go's test
// authority, notation-go's signer); what it assembles by hand is the registry layout —
// manifests, annotations — which is what the gate has to read right.
package signing

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/sign"
)

// Repo is a repository to sign in.
type Repo struct{ sign.Repo }

// NewRepo names a repository of a registry host.
func NewRepo(t testing.TB, host, repository string, auth authn.Authenticator) Repo {
	t.Helper()
	r, err := name.NewRepository(host + "/" + repository)
	if err != nil {
		t.Fatal(err)
	}
	return Repo{sign.Repo{Name: r, Auth: auth}}
}

// Subject is the descriptor of the image at digest: what a signature signs.
func (r Repo) Subject(t testing.TB, digest string) v1.Descriptor {
	t.Helper()
	d, err := r.Repo.Subject(digest)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Key is a cosign key pair.
type Key struct{ *sign.Key }

// NewKey generates a key pair.
func NewKey(t testing.TB) *Key {
	t.Helper()
	k, err := sign.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return &Key{k}
}

// PublicPEM is the public key as cosign.pub holds it.
func (k *Key) PublicPEM(t testing.TB) string {
	t.Helper()
	s, err := k.Key.PublicPEM()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// PublicDER is the public key as KMS's GetPublicKey answers it.
func (k *Key) PublicDER(t testing.TB) []byte {
	t.Helper()
	b, err := k.Key.PublicDER()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Options change how a signature is made or stored.
type Options struct {
	// SignedDigest is the digest the payload names (default: the subject's): a signature
	// of another image.
	SignedDigest string
	// Tamper changes the payload after it was signed.
	Tamper bool
	// Referrer stores a simple-signing manifest as an OCI 1.1 referrer of the subject
	// instead of under the sha256-<hex>.sig tag.
	Referrer bool
}

// Payload is cosign's simple-signing payload for an image digest.
func Payload(t testing.TB, r Repo, digest string) []byte {
	t.Helper()
	p, err := sign.Payload(r.Name, digest)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Cosign signs subject with the key as cosign sign --key does, and pushes the
// signature; it returns the signature manifest's digest.
func (k *Key) Cosign(t testing.TB, r Repo, subject v1.Descriptor, o Options) v1.Hash {
	t.Helper()
	signed := subject.Digest.String()
	if o.SignedDigest != "" {
		signed = o.SignedDigest
	}
	payload := Payload(t, r, signed)
	sig, err := k.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	if o.Tamper {
		payload = bytes.Replace(payload, []byte(`"optional":null`), []byte(`"optional":{"x":"y"}`), 1)
	}
	return PushSimpleSigning(t, r, subject, []SimpleSigningLayer{{Payload: payload, Annotations: map[string]string{
		sign.AnnotationSignature: base64.StdEncoding.EncodeToString(sig),
	}}}, o.Referrer)
}

// SimpleSigningLayer is one signature of a simple-signing manifest.
type SimpleSigningLayer struct {
	Payload     []byte
	Annotations map[string]string
}

// PushSimpleSigning pushes a simple-signing manifest with the layers: under the
// sha256-<hex>.sig tag, or as a referrer of subject.
func PushSimpleSigning(t testing.TB, r Repo, subject v1.Descriptor, layers []SimpleSigningLayer, referrer bool) v1.Hash {
	t.Helper()
	var ls []sign.Layer
	for _, l := range layers {
		ls = append(ls, sign.Layer{Data: l.Payload, MediaType: sign.MediaTypeSimpleSigning, Annotations: l.Annotations})
	}
	h, err := sign.PushSimpleSigning(r.Repo, subject, ls, referrer)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// pushReferrer pushes an artifact manifest of layers as a referrer of subject.
func pushReferrer(t testing.TB, r Repo, artifactType string, subject v1.Descriptor, layers ...sign.Layer) v1.Hash {
	t.Helper()
	h, err := sign.PushArtifact(r.Repo, nil, artifactType, &subject, layers)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
