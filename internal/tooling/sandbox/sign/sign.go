// Package sign signs images in a sandbox registry as cosign sign --key does: a
// simple-signing manifest (the payload naming the image's digest as the layer, the
// signature as an annotation) under the sha256-<hex>.sig tag, or as an OCI 1.1
// referrer. The demo signs with it; tests sign with internal/tooling/testing/signing, which
// builds on it and adds the other formats.
//
// The signature is made by the Sigstore library (sigstore/sigstore's signer); what is
// assembled here is the registry layout — the payload, the manifest, its annotations —
// as https://github.com/sigstore/cosign/blob/main/specs/SIGNATURE_SPEC.md describes it.
package sign

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

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Media and artifact types of cosign's simple signing.
const (
	MediaTypeSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	ArtifactTypeCosign     = "application/vnd.dev.cosign.artifact.sig.v1+json"
	AnnotationSignature    = "dev.cosignproject.cosign/signature"
	mediaTypeEmpty         = "application/vnd.oci.empty.v1+json"
)

// Repo is a repository to sign in: its name (host/repository) and credentials.
type Repo struct {
	Name name.Repository
	Auth authn.Authenticator
}

// Subject is the descriptor of the image at digest (media type, size, digest): what a
// signature signs.
func (r Repo) Subject(digest string) (v1.Descriptor, error) {
	d, err := remote.Get(r.Name.Digest(digest), remote.WithAuth(r.Auth))
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: d.MediaType, Size: d.Size, Digest: d.Digest}, nil
}

// Key is a cosign key pair (ECDSA P-256, as cosign generate-key-pair makes).
type Key struct{ priv *ecdsa.PrivateKey }

// NewKey generates a key pair.
func NewKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Key{priv: priv}, nil
}

// PrivateKey is the key's private half.
func (k *Key) PrivateKey() *ecdsa.PrivateKey { return k.priv }

// PublicPEM is the public key as cosign.pub holds it.
func (k *Key) PublicPEM() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.priv.Public())
	return string(b), err
}

// PublicDER is the public key as KMS's GetPublicKey answers it (DER SubjectPublicKeyInfo).
func (k *Key) PublicDER() ([]byte, error) { return x509.MarshalPKIXPublicKey(k.priv.Public()) }

// Sign signs payload (ECDSA over its SHA-256).
func (k *Key) Sign(payload []byte) ([]byte, error) {
	s, err := signature.LoadECDSASignerVerifier(k.priv, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return s.SignMessage(bytes.NewReader(payload))
}

// Payload is cosign's simple-signing payload for an image digest of repo.
func Payload(repo name.Repository, digest string) ([]byte, error) {
	return json.Marshal(map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": repo.String()},
			"image":    map[string]string{"docker-manifest-digest": digest},
			"type":     "cosign container image signature",
		},
		"optional": nil,
	})
}

// Cosign signs subject as cosign sign --key does and pushes the signature under the
// sha256-<hex>.sig tag; it returns the signature manifest's digest.
func (k *Key) Cosign(r Repo, subject v1.Descriptor) (v1.Hash, error) {
	payload, err := Payload(r.Name, subject.Digest.String())
	if err != nil {
		return v1.Hash{}, err
	}
	sig, err := k.Sign(payload)
	if err != nil {
		return v1.Hash{}, err
	}
	return PushSimpleSigning(r, subject, []Layer{{Data: payload, MediaType: MediaTypeSimpleSigning,
		Annotations: map[string]string{AnnotationSignature: base64.StdEncoding.EncodeToString(sig)}}}, false)
}

// Layer is one layer of an artifact manifest.
type Layer struct {
	Data        []byte
	MediaType   string
	Annotations map[string]string
}

// PushSimpleSigning pushes a simple-signing manifest with the layers: under the
// sha256-<hex>.sig tag, or as a referrer of subject.
func PushSimpleSigning(r Repo, subject v1.Descriptor, layers []Layer, referrer bool) (v1.Hash, error) {
	if !referrer {
		return PushArtifact(r, r.Name.Tag(subject.Digest.Algorithm+"-"+subject.Digest.Hex+".sig"), "", nil, layers)
	}
	return PushArtifact(r, nil, ArtifactTypeCosign, &subject, layers)
}

// rawManifest is a manifest pushed as written.
type rawManifest struct {
	body []byte
	mt   types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// PushArtifact pushes an OCI image manifest of layers with an empty config: by tag when
// tag is set, else by digest, as a referrer of subject with artifactType. It returns the
// manifest's digest.
func PushArtifact(r Repo, tag name.Reference, artifactType string, subject *v1.Descriptor, layers []Layer) (v1.Hash, error) {
	opts := []remote.Option{remote.WithAuth(r.Auth)}
	empty := static.NewLayer([]byte("{}"), mediaTypeEmpty)
	if err := remote.WriteLayer(r.Name, empty, opts...); err != nil {
		return v1.Hash{}, err
	}
	cd, _ := empty.Digest()
	m := map[string]any{
		"schemaVersion": 2, "mediaType": types.OCIManifestSchema1,
		"config": v1.Descriptor{MediaType: mediaTypeEmpty, Size: 2, Digest: cd},
	}
	var ds []v1.Descriptor
	for _, l := range layers {
		sl := static.NewLayer(l.Data, types.MediaType(l.MediaType))
		if err := remote.WriteLayer(r.Name, sl, opts...); err != nil {
			return v1.Hash{}, err
		}
		d, _ := sl.Digest()
		ds = append(ds, v1.Descriptor{MediaType: types.MediaType(l.MediaType), Size: int64(len(l.Data)), Digest: d, Annotations: l.Annotations})
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
		return v1.Hash{}, err
	}
	sum := sha256.Sum256(body)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if tag == nil {
		tag = r.Name.Digest(h.String())
	}
	return h, remote.Put(tag, rawManifest{body: body, mt: types.OCIManifestSchema1}, opts...)
}
