package reliability_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestWindowsForeignLayersReplicate replicates a Windows-style image end to end: two
// foreign base layers (never pushed; ECR accepts such manifests, ECR User Guide "Amazon
// ECR interface VPC endpoints", "Considerations for Windows images"; moby/moby#34216) and
// one pushed layer. The destination gets the same digest, and the foreign layers are
// requested from nowhere: not from either registry or storage, and not from their urls
// (a local stand-in for the host Windows base layers come from, counting any request).
func TestWindowsForeignLayersReplicate(t *testing.T) {
	var foreignHits atomic.Int32
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		foreignHits.Add(1)
		http.NotFound(w, r)
	}))
	defer foreign.Close()

	f := newFx(t, 700)
	img := empty.Image
	var foreignDigests []string
	for i := 0; i < 2; i++ {
		l, err := random.Layer(4096, types.DockerForeignLayer)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := l.Digest()
		foreignDigests = append(foreignDigests, d.String())
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: types.DockerForeignLayer,
			URLs: []string{foreign.URL + "/v2/windows/servercore/blobs/" + d.String()}}); err != nil {
			t.Fatal(err)
		}
	}
	own, _ := random.Layer(8192, types.DockerLayer)
	img, err := mutate.Append(img, mutate.Addendum{Layer: own})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg.OS, cfg.Architecture, cfg.OSVersion = "windows", "amd64", "10.0.17763.6054"
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	mark := f.sb.AccessLogMark()
	digest := f.push(t, "team-a/windows", "ltsc2019", img)
	if foreignHits.Load() != 0 {
		t.Fatal("pushing fetched a foreign layer")
	}

	st := f.deliver(t, f.records(sandboxtest.ImageEvent("evt-win", "PUSH", "team-a/windows", digest, "ltsc2019")), nil)
	if st.invocations != 1 || len(st.failures[0]) != 0 {
		t.Errorf("deliveries %d, batchItemFailures %v: want one clean invocation", st.invocations, st.failures)
	}
	d := f.dest(t)
	if got := d.Digest(t, prefix+"team-a/windows", "ltsc2019"); got != digest {
		t.Fatalf("destination ltsc2019 = %q, source %s", got, digest)
	}
	srcRaw, _ := img.RawManifest()
	dst, err := remote.Get(d.Ref(t, prefix+"team-a/windows", digest), remote.WithAuth(d.Auth), remote.WithContext(f.ctx))
	if err != nil || !bytes.Equal(dst.Manifest, srcRaw) {
		t.Fatalf("destination manifest differs from the source's (%v)", err)
	}
	// The distributable blobs are there and intact (validate.Image would fetch the
	// foreign layers from their urls: not done here).
	m, _ := img.Manifest()
	for _, desc := range append(m.Layers, m.Config) {
		if !desc.MediaType.IsDistributable() {
			continue
		}
		l, err := remote.Layer(d.Ref(t, prefix+"team-a/windows", digest).Context().Digest(desc.Digest.String()), remote.WithAuth(d.Auth), remote.WithContext(f.ctx))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err == nil {
			_, err = io.Copy(io.Discard, rc) // verified against the digest at EOF
			rc.Close()
		}
		if err != nil {
			t.Errorf("destination blob %s: %v", desc.Digest, err)
		}
	}

	if n := foreignHits.Load(); n != 0 {
		t.Errorf("the foreign layers' host was asked %d time(s)", n)
	}
	for _, e := range f.sb.AccessLogSince(mark) {
		for _, fd := range foreignDigests {
			if e.Reference == fd {
				t.Errorf("a foreign layer was requested: %s %s %s in %s (%s)", e.Service, e.Operation, e.Reference, e.Account, e.Repository)
			}
		}
	}
	if v := f.sb.StorageViolations(); len(v) != 0 {
		t.Errorf("storage violations: %v", v)
	}
	report(t, "Windows-style image (2 foreign layers, 1 pushed) replicated: digest %s kept, %d invocation(s), foreign layers requested 0 times", digest, st.invocations)
}
