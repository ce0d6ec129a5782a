package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// image is one seeded source image.
type image struct {
	label     string // for the report, e.g. "4.0 GiB, 1 layer"
	repo, tag string
	digest    string // of the top manifest (image or index)
	mediaType types.MediaType
	bytes     int64 // blobs and manifests, what a copy moves
}

// pusher writes blobs and manifests to one repository of a registry. Blobs are sent
// as generated, never held: a 4 GiB layer must not cost the benchmark 4 GiB either.
type pusher struct {
	client *http.Client
	base   *url.URL // http://host
	repo   string
}

func newPusher(ctx context.Context, host string, auth authn.Authenticator, repo string) (*pusher, error) {
	reg, err := name.NewRegistry(host, name.Insecure)
	if err != nil {
		return nil, err
	}
	rt, err := transport.NewWithContext(ctx, reg, auth, http.DefaultTransport, []string{reg.Repo(repo).Scope(transport.PushScope)})
	if err != nil {
		return nil, fmt.Errorf("authenticate to %s: %w", host, err)
	}
	return &pusher{client: &http.Client{Transport: rt}, base: &url.URL{Scheme: "http", Host: host}, repo: repo}, nil
}

// randomBlob is size bytes of ChaCha8 output from seed: incompressible, reproducible,
// generated at about 1.4 GB/s with its SHA-256 on this machine's cores.
func randomBlob(seed string, size int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8(sha256.Sum256([]byte(seed))), size)
}

// blob uploads r and returns its descriptor. The digest is not known before the bytes
// are generated, so this is the distribution spec's chunked form with a single chunk: a
// POST opens the upload, one PATCH streams the body while it is hashed, and the closing
// PUT names the digest (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-a-blob-in-chunks).
func (p *pusher) blob(ctx context.Context, r io.Reader, size int64, mt types.MediaType) (v1.Descriptor, error) {
	resp, err := p.do(ctx, http.MethodPost, p.base.String()+"/v2/"+p.repo+"/blobs/uploads/", nil, 0, "", http.StatusAccepted)
	if err != nil {
		return v1.Descriptor{}, err
	}
	loc, err := p.location(resp)
	if err != nil {
		return v1.Descriptor{}, err
	}
	h := sha256.New()
	n := &countingReader{r: io.TeeReader(r, h)}
	resp, err = p.do(ctx, http.MethodPatch, loc.String(), n, size, "application/octet-stream", http.StatusAccepted, http.StatusCreated, http.StatusNoContent)
	if err != nil {
		return v1.Descriptor{}, err
	}
	if n.n != size {
		return v1.Descriptor{}, fmt.Errorf("blob: sent %d bytes, meant %d", n.n, size)
	}
	if loc, err = p.location(resp); err != nil {
		return v1.Descriptor{}, err
	}
	digest := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
	q := loc.Query()
	q.Set("digest", digest.String())
	loc.RawQuery = q.Encode()
	if _, err := p.do(ctx, http.MethodPut, loc.String(), nil, 0, "", http.StatusCreated); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Size: size, Digest: digest}, nil
}

// manifest puts a manifest or index under ref (a tag or its digest) and returns its
// descriptor.
func (p *pusher) manifest(ctx context.Context, ref string, v any, mt types.MediaType) (v1.Descriptor, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return v1.Descriptor{}, err
	}
	digest, size, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, err
	}
	if ref == "" {
		ref = digest.String()
	}
	if _, err := p.do(ctx, http.MethodPut, p.base.String()+"/v2/"+p.repo+"/manifests/"+ref, bytes.NewReader(raw), int64(len(raw)), string(mt), http.StatusCreated); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Size: size, Digest: digest}, nil
}

// singleImage pushes an image of one layer of layerSize bytes and a config, and returns
// the manifest's descriptor and the bytes pushed.
func (p *pusher) singleImage(ctx context.Context, seed string, layerSize int64, platform v1.Platform, tag string) (v1.Descriptor, int64, error) {
	layer, err := p.blob(ctx, randomBlob(seed, layerSize), layerSize, types.OCIUncompressedLayer)
	if err != nil {
		return v1.Descriptor{}, 0, fmt.Errorf("layer: %w", err)
	}
	cfg, err := json.Marshal(v1.ConfigFile{
		Architecture: platform.Architecture, OS: platform.OS, Variant: platform.Variant,
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{layer.Digest}}, // uncompressed: the diff ID is the digest
	})
	if err != nil {
		return v1.Descriptor{}, 0, err
	}
	config, err := p.blob(ctx, bytes.NewReader(cfg), int64(len(cfg)), types.OCIConfigJSON)
	if err != nil {
		return v1.Descriptor{}, 0, fmt.Errorf("config: %w", err)
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: config, Layers: []v1.Descriptor{layer}}
	desc, err := p.manifest(ctx, tag, m, types.OCIManifestSchema1)
	if err != nil {
		return v1.Descriptor{}, 0, err
	}
	return desc, layer.Size + config.Size + desc.Size, nil
}

// platforms the index's images are for, in order.
var platforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"},
	{OS: "linux", Architecture: "arm", Variant: "v7"}, {OS: "linux", Architecture: "ppc64le"},
	{OS: "linux", Architecture: "s390x"}, {OS: "linux", Architecture: "riscv64"},
	{OS: "linux", Architecture: "386"}, {OS: "linux", Architecture: "mips64le"},
}

// index pushes n single-layer images of layerSize bytes, one per platform, and an OCI
// index of them under tag.
func (p *pusher) index(ctx context.Context, seed string, n int, layerSize int64, tag string) (v1.Descriptor, int64, error) {
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	var total int64
	for i := range n {
		pl := platforms[i]
		desc, size, err := p.singleImage(ctx, fmt.Sprintf("%s/%d", seed, i), layerSize, pl, "")
		if err != nil {
			return v1.Descriptor{}, 0, fmt.Errorf("platform %s: %w", pl, err)
		}
		desc.Platform = &pl
		idx.Manifests = append(idx.Manifests, desc)
		total += size
	}
	desc, err := p.manifest(ctx, tag, idx, types.OCIImageIndex)
	if err != nil {
		return v1.Descriptor{}, 0, err
	}
	return desc, total + desc.Size, nil
}

// do sends one request and checks its status; the answer's body is drained and closed.
func (p *pusher) do(ctx context.Context, method, u string, body io.Reader, size int64, contentType string, want ...int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	for _, w := range want {
		if resp.StatusCode == w {
			return resp, nil
		}
	}
	return nil, fmt.Errorf("%s %s: %s: %s", method, req.URL.Path, resp.Status, msg)
}

// location is an upload answer's Location, resolved against the registry.
func (p *pusher) location(resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, fmt.Errorf("%s %s: no Location", resp.Request.Method, resp.Request.URL.Path)
	}
	u, err := url.Parse(loc)
	if err != nil {
		return nil, err
	}
	return p.base.ResolveReference(u), nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}
