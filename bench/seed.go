package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// randLayer is an uncompressed OCI layer of incompressible pseudo-random bytes, generated
// on every read from a seed (never held in memory).
type randLayer struct {
	seed   [32]byte
	size   int64
	digest v1.Hash
}

func newRandLayer(id string, size int64) (*randLayer, error) {
	l := &randLayer{seed: sha256.Sum256([]byte(id)), size: size}
	h := sha256.New()
	if _, err := io.Copy(h, l.reader()); err != nil {
		return nil, err
	}
	l.digest = v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
	return l, nil
}

func (l *randLayer) reader() io.Reader { return io.LimitReader(rand.NewChaCha8(l.seed), l.size) }

func (l *randLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *randLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *randLayer) Compressed() (io.ReadCloser, error)   { return io.NopCloser(l.reader()), nil }
func (l *randLayer) Uncompressed() (io.ReadCloser, error) { return io.NopCloser(l.reader()), nil }
func (l *randLayer) Size() (int64, error)                 { return l.size, nil }
func (l *randLayer) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }

// newImage builds an OCI image of the given layers for a platform.
func newImage(platform v1.Platform, layers ...v1.Layer) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: platform.Architecture, OS: platform.OS, Variant: platform.Variant,
		RootFS: v1.RootFS{Type: "layers"},
		Config: v1.Config{Env: []string{"PATH=/usr/bin:/bin"}},
	})
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(img, layers...)
}

// registryProc is one CNCF distribution registry with filesystem storage.
type registryProc struct {
	cmd  *exec.Cmd
	dir  string
	addr string
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startRegistry(bin, dir string) (*registryProc, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Env = append(os.Environ(), "OTEL_SDK_DISABLED=true", "OTEL_TRACES_EXPORTER=none")
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &registryProc{cmd: cmd, dir: dir, addr: addr}
	for i := 0; i < 200; i++ { // ≤ 10 s
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.stop()
	return nil, fmt.Errorf("registry on %s did not start (see %s)", addr, filepath.Join(dir, "registry.log"))
}

func (r *registryProc) stop() {
	if r == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
}

// push writes an image or index to host/repo:tag.
func push(ctx context.Context, host, repo, tag string, t remote.Taggable, auth authn.Authenticator) error {
	ref, err := name.NewTag(host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		return err
	}
	if auth == nil {
		auth = authn.Anonymous
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth), remote.WithJobs(4)}
	switch x := t.(type) {
	case v1.ImageIndex:
		return remote.WriteIndex(ref, x, opts...)
	case v1.Image:
		return remote.Write(ref, x, opts...)
	}
	return fmt.Errorf("cannot push %T", t)
}
