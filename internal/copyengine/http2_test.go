package copyengine

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// newH2CRegistry is a test registry that speaks HTTP/2 (cleartext, prior knowledge), as
// registries behind TLS do; its clients need h2cTransport.
func newH2CRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{reg: registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0)))}
	tr.srv = httptest.NewUnstartedServer(http.HandlerFunc(tr.serve))
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	tr.srv.Config.Protocols = p
	tr.srv.Start()
	t.Cleanup(tr.srv.Close)
	return tr
}

func h2cTransport() http.RoundTripper {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{Protocols: p}
}

// TestHTTP2StreamResetIsRetried: over HTTP/2, a registry that fails a request resets its
// stream (RST_STREAM INTERNAL_ERROR) rather than the connection. A reset blob upload and
// a reset manifest write are retried like a 500 and the copy completes; both were
// permanent failures, and the push was dropped.
func TestHTTP2StreamResetIsRetried(t *testing.T) {
	e := &env{src: newRegistry(t), dst: newH2CRegistry(t)}
	e.srcRepo = e.src.repo(t, "team/app")
	e.dstRepo = e.dst.repo(t, "mirror/team/app")
	d := pushImage(t, e.srcRepo.Tag("v1"), must[v1.Image](t)(random.Image(64<<10, 2)))
	var mu sync.Mutex
	resets := map[string]int{}
	var http1 []string // requests of the copy that were not HTTP/2
	e.dst.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.ProtoMajor != 2 {
			mu.Lock()
			http1 = append(http1, r.Method+" "+r.URL.Path)
			mu.Unlock()
		}
		kind := ""
		switch {
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/"):
			kind = "upload"
		case r.Method == http.MethodPut && isManifestPath(r.URL.Path):
			kind = "manifest"
		default:
			return false
		}
		mu.Lock()
		first := resets[kind] == 0
		if first {
			resets[kind]++
		}
		mu.Unlock()
		if first {
			panic(http.ErrAbortHandler) // net/http's HTTP/2 server resets the stream: INTERNAL_ERROR
		}
		return false
	})
	req := e.req(d, "v1")
	req.Destination.Transport = h2cTransport()
	res := fastCopier().Copy(context.Background(), req)
	e.dst.setHook(nil)
	wantOutcome(t, res, Copied)
	wantTag(t, e.dstRepo.Tag("v1"), d)
	mu.Lock()
	defer mu.Unlock()
	if len(http1) > 0 {
		t.Errorf("the copy sent %v over HTTP/1", http1)
	}
	if resets["upload"] != 1 || resets["manifest"] != 1 {
		t.Fatalf("resets %v: want one upload and one manifest write reset", resets)
	}
}
