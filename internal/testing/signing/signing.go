// Package signing signs images in tests the way the signing tools store their
// signatures in a registry, with keys and authorities the tests generate: cosign's
// simple-signing manifests (under the sha256-<hex>.sig tag, or as an OCI 1.1 referrer),
// keyed or keyless (a virtual Sigstore: certificate authority, transparency log,
// timestamp authority); cosign v3's Sigstore bundles as referrers; and Notary Project
// signatures (notation sign, and what ECR managed signing stores) as referrers.
//
// It signs with the libraries the formats come from (sigstore, sigstore-go's test
// authority, notation-go's signer); what it assembles by hand is the registry layout —
// manifests, annotations — which is what the gate has to read right.
package signing

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Repo is a repository to sign in: its name (host/repository) and credentials.
type Repo struct {
	Name name.Repository
	Auth authn.Authenticator
}

// NewRepo names a repository of a registry host.
func NewRepo(t testing.TB, host, repository string, auth authn.Authenticator) Repo {
	t.Helper()
	r, err := name.NewRepository(host + "/" + repository)
	if err != nil {
		t.Fatal(err)
	}
	return Repo{Name: r, Auth: auth}
}

// Subject is the descriptor of the image at digest (media type, size, digest): what a
// signature signs.
func (r Repo) Subject(t testing.TB, digest string) v1.Descriptor {
	t.Helper()
	d, err := remote.Get(r.Name.Digest(digest), remote.WithAuth(r.Auth))
	if err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: d.MediaType, Size: d.Size, Digest: d.Digest}
}

// Key is a cosign key pair (ECDSA P-256, as cosign generate-key-pair makes).
type Key struct{ priv *ecdsa.PrivateKey }

// NewKey generates a key pair.
func NewKey(t testing.TB) *Key {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Key{priv: priv}
}

// PublicPEM is the public key as cosign.pub holds it.
func (k *Key) PublicPEM(t testing.TB) string {
	t.Helper()
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// PublicDER is the public key as KMS's GetPublicKey answers it (DER SubjectPublicKeyInfo).
func (k *Key) PublicDER(t testing.TB) []byte {
	t.Helper()
	b, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (k *Key) sign(t testing.TB, payload []byte) []byte {
	t.Helper()
	s, err := signature.LoadECDSASignerVerifier(k.priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.SignMessage(bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	return sig
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
	b, err := json.Marshal(map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": r.Name.String()},
			"image":    map[string]string{"docker-manifest-digest": digest},
			"type":     "cosign container image signature",
		},
		"optional": nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
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
	sig := k.sign(t, payload)
	if o.Tamper {
		payload = bytes.Replace(payload, []byte(`"optional":null`), []byte(`"optional":{"x":"y"}`), 1)
	}
	return PushSimpleSigning(t, r, subject, []SimpleSigningLayer{{Payload: payload, Annotations: map[string]string{
		"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString(sig),
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
	var ls []artifactLayer
	for _, l := range layers {
		ls = append(ls, artifactLayer{data: l.Payload, mediaType: "application/vnd.dev.cosign.simplesigning.v1+json", annotations: l.Annotations})
	}
	if !referrer {
		tag := r.Name.Tag(subject.Digest.Algorithm + "-" + subject.Digest.Hex + ".sig")
		return PushArtifact(t, r, tag, "", nil, ls)
	}
	return PushArtifact(t, r, nil, "application/vnd.dev.cosign.artifact.sig.v1+json", &subject, ls)
}

type artifactLayer struct {
	data        []byte
	mediaType   string
	annotations map[string]string
}

// rawManifest is a manifest pushed as written.
type rawManifest struct {
	body []byte
	mt   types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// PushArtifact pushes an OCI image manifest of layers, with an empty config: by tag when
// tag is set, else by digest as a referrer of subject with artifactType. It returns the
// manifest's digest.
func PushArtifact(t testing.TB, r Repo, tag name.Reference, artifactType string, subject *v1.Descriptor, layers []artifactLayer) v1.Hash {
	t.Helper()
	opts := []remote.Option{remote.WithAuth(r.Auth)}
	empty := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	if err := remote.WriteLayer(r.Name, empty, opts...); err != nil {
		t.Fatal(err)
	}
	cd, _ := empty.Digest()
	m := map[string]any{
		"schemaVersion": 2, "mediaType": types.OCIManifestSchema1,
		"config": v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Size: 2, Digest: cd},
	}
	var ds []v1.Descriptor
	for _, l := range layers {
		sl := static.NewLayer(l.data, types.MediaType(l.mediaType))
		if err := remote.WriteLayer(r.Name, sl, opts...); err != nil {
			t.Fatal(err)
		}
		d, _ := sl.Digest()
		ds = append(ds, v1.Descriptor{MediaType: types.MediaType(l.mediaType), Size: int64(len(l.data)), Digest: d, Annotations: l.annotations})
	}
	m["layers"] = ds
	if artifactType != "" {
		m["artifactType"] = artifactType
	}
	if subject != nil {
		m["subject"] = subject
	}
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	ref := tag
	if ref == nil {
		ref = r.Name.Digest(h.String())
	}
	if err := remote.Put(ref, rawManifest{body: body, mt: types.OCIManifestSchema1}, opts...); err != nil {
		t.Fatal(err)
	}
	return h
}
