package copyengine

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// plainUpload answers a mount POST as the registry answers a POST without the mount: 202
// and a Location (an upload started, nothing mounted).
func plainUpload(reg http.Handler, w http.ResponseWriter, r *http.Request) {
	plain := r.Clone(r.Context())
	plain.URL.RawQuery = ""
	plain.RequestURI = ""
	rec := httptest.NewRecorder()
	reg.ServeHTTP(rec, plain)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
}

// TestRefusedMountIsNotAskedAgain: a mount refused with a 4xx other than 202 (403: the
// identity may not read the repository named), when the plain upload that follows is
// accepted, makes the engine forget that repository as a source of the blob, as a 202
// does: the next copy of the blob does not ask again. A refusal into a repository that
// refuses the plain upload too is the destination's: the source is kept (review 26b).
func TestRefusedMountIsNotAskedAgain(t *testing.T) {
	e := newEnv(t)
	img := must[v1.Image](t)(random.Image(1024, 1))
	d := pushImage(t, e.srcRepo.Tag("v1"), img)
	run := fastCopier()
	mount := Mounting{Enabled: true, Encryption: "AES256"}
	req := func(dst string) Request {
		return Request{Source: Endpoint{Repository: e.srcRepo}, Destination: Endpoint{Repository: e.dst.repo(t, dst), Mounting: mount}, Digest: d.String()}
	}
	if r := run.Copy(context.Background(), req("mirror/a")); r.Err != nil {
		t.Fatal(r.Err)
	}
	var mu sync.Mutex
	mounts := map[string]map[string]bool{} // repository → blobs asked to mount from mirror/a
	e.dst.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/sha256:") && !strings.HasPrefix(r.URL.Path, "/v2/mirror/a/"):
			w.WriteHeader(http.StatusNotFound) // ggcr's registry has every blob in every repository
			return true
		case r.Method == http.MethodPost && r.URL.Query().Get("mount") != "":
			repo := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v2/"), "/blobs/uploads/")
			if mounts[repo] == nil {
				mounts[repo] = map[string]bool{}
			}
			if r.URL.Query().Get("from") == "mirror/a" {
				mounts[repo][r.URL.Query().Get("mount")] = true
			}
			writeRegError(w, http.StatusForbidden, "DENIED", "not authorized to perform: ecr:GetDownloadUrlForLayer")
			return true
		case strings.HasPrefix(r.URL.Path, "/v2/other/b/blobs/uploads/"):
			writeRegError(w, http.StatusForbidden, "DENIED", "not authorized to perform: ecr:InitiateLayerUpload")
			return true
		}
		return false
	})
	// Into a repository the identity may not write: the copy fails, nothing is learnt
	// about other/b, and the refused mounts were from mirror/a.
	if r := run.Copy(context.Background(), req("other/b")); r.Err == nil {
		t.Fatalf("a copy into a repository refusing writes: %s, want failed", r.Outcome)
	}
	for _, repo := range []string{"mirror/c", "mirror/d"} {
		if r := run.Copy(context.Background(), req(repo)); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	e.dst.setHook(nil)
	if len(mounts["other/b"]) == 0 || len(mounts["mirror/c"]) == 0 {
		t.Fatalf("mounts asked: %v; want some into other/b and mirror/c", mounts)
	}
	for blob := range mounts["mirror/c"] {
		if mounts["mirror/d"][blob] {
			t.Errorf("blob %s: its mount from mirror/a was refused for mirror/c (whose upload was accepted), and asked again for mirror/d", blob)
		}
	}
}

// TestUnusedMountUploadIsCancelled: a mount answered 202 opens an upload before the
// transfer slot, the deadline check and the source download; when the upload does not go
// ahead (here the source cannot serve the blob), the session is cancelled, not left open.
func TestUnusedMountUploadIsCancelled(t *testing.T) {
	e := newEnv(t)
	img := must[v1.Image](t)(random.Image(1024, 2))
	d := pushImage(t, e.srcRepo.Tag("v1"), img)
	run := fastCopier()
	mount := Mounting{Enabled: true, Encryption: "AES256"}
	req := func(dst string) Request {
		return Request{Source: Endpoint{Repository: e.srcRepo}, Destination: Endpoint{Repository: e.dst.repo(t, dst), Mounting: mount}, Digest: d.String()}
	}
	if r := run.Copy(context.Background(), req("mirror/a")); r.Err != nil {
		t.Fatal(r.Err)
	}
	// One blob only is missing from mirror/b (ggcr's registry has every blob in every
	// repository): one upload at a time, no copy cancelled mid-request.
	blob := must[v1.Hash](t)(must[[]v1.Layer](t)(img.Layers())[0].Digest()).String()
	e.src.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+blob) {
			writeRegError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
			return true
		}
		return false
	})
	var mu sync.Mutex
	var mounted, opened int
	e.dst.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodHead && r.URL.Path == "/v2/mirror/b/blobs/"+blob:
			w.WriteHeader(http.StatusNotFound)
			return true
		case r.Method == http.MethodPost && r.URL.Path == "/v2/mirror/b/blobs/uploads/":
			opened++
			if r.URL.Query().Get("mount") != "" {
				mounted++
				plainUpload(e.dst.reg, w, r)
				return true
			}
		}
		return false
	})
	e.dst.reset()
	res := run.Copy(context.Background(), req("mirror/b"))
	e.dst.setHook(nil)
	e.src.setHook(nil)
	if res.Err == nil {
		t.Fatalf("a copy whose source blob is gone: %s, want failed", res.Outcome)
	}
	cancelled := e.dst.count(func(h hit) bool {
		return h.method == http.MethodDelete && strings.HasPrefix(h.path, "/v2/mirror/b/blobs/uploads/")
	})
	mu.Lock()
	defer mu.Unlock()
	if mounted != 1 || cancelled != opened {
		t.Errorf("%d uploads opened (%d by a mount answered 202), %d cancelled; want one mount asked and every upload cancelled", opened, mounted, cancelled)
	}
}
