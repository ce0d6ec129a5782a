package sandbox_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// stepWorld is a source registry with an image pushed, and one request per step.
type stepWorld struct {
	t        *testing.T
	e        *env
	c        regClient
	digest   string // the image's layer
	manifest []byte
	mt       string
	n        int
}

func newStepWorld(t *testing.T) *stepWorld {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	createRepo(t, e.ctx, src, "steps", "")
	host, auth := registryAuth(t, e.ctx, src)
	img, digest, _ := pushedBlob(t, e, host, auth, "steps")
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	// Fresh connections for every request: Go's Transport silently retries an idempotent
	// request once when a reused connection closes before answering, which would hide a
	// reset-before-headers from the test.
	client := &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil, DialContext: (&net.Dialer{}).DialContext},
		CheckRedirect: noRedirect,
		Timeout:       5 * time.Second,
	}
	return &stepWorld{t: t, e: e, c: regClient{t: t, host: host, pass: auth.(*authn.Basic).Password, http: client}, digest: digest, manifest: raw, mt: string(mt)}
}

// result is what a client saw of one request.
type result struct {
	status int
	header http.Header
	body   []byte
	err    error // from Do or from reading the body
}

func (w *stepWorld) send(client *http.Client, method, u string, body []byte, hdr map[string]string) result {
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, _ := http.NewRequest(method, u, rd)
	if strings.Contains(u, w.c.host) {
		req.SetBasicAuth("AWS", w.c.pass)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{err: err}
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return result{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

func randomBlob(n int) ([]byte, string) {
	b := make([]byte, n)
	rand.Read(b)
	sum := sha256.Sum256(b)
	return b, "sha256:" + hex.EncodeToString(sum[:])
}

// request makes exactly one request at step (preparing it with requests at other steps)
// and returns what the client saw.
func (w *stepWorld) request(step sandbox.Step, client *http.Client) result {
	t, base := w.t, "http://"+w.c.host+"/v2/steps"
	w.n++
	must := func(r result, want int) result {
		t.Helper()
		if r.err != nil || r.status != want {
			t.Fatalf("preparing %s: %d %v %s", step, r.status, r.err, r.body)
		}
		return r
	}
	upload := func() string {
		r := must(w.send(w.c.http, http.MethodPost, base+"/blobs/uploads/", nil, nil), http.StatusAccepted)
		return "http://" + w.c.host + r.header.Get("Location")
	}
	switch step {
	case sandbox.StepPing:
		return w.send(client, http.MethodGet, "http://"+w.c.host+"/v2/", nil, nil)
	case sandbox.StepManifestGET:
		return w.send(client, http.MethodGet, base+"/manifests/v1", nil, map[string]string{"Accept": w.mt})
	case sandbox.StepManifestHEAD:
		return w.send(client, http.MethodHead, base+"/manifests/v1", nil, map[string]string{"Accept": w.mt})
	case sandbox.StepManifestPUT:
		return w.send(client, http.MethodPut, fmt.Sprintf("%s/manifests/put-%d", base, w.n), w.manifest, map[string]string{"Content-Type": w.mt})
	case sandbox.StepBlobHEAD:
		return w.send(client, http.MethodHead, base+"/blobs/"+w.digest, nil, nil)
	case sandbox.StepBlobGET:
		return w.send(client, http.MethodGet, base+"/blobs/"+w.digest, nil, nil)
	case sandbox.StepStorageGET:
		r := must(w.send(w.c.http, http.MethodGet, base+"/blobs/"+w.digest, nil, nil), http.StatusTemporaryRedirect)
		return w.send(client, http.MethodGet, r.header.Get("Location"), nil, nil)
	case sandbox.StepUploadPOST:
		return w.send(client, http.MethodPost, base+"/blobs/uploads/", nil, nil)
	case sandbox.StepUploadPATCH:
		data, _ := randomBlob(8 << 10)
		return w.send(client, http.MethodPatch, upload(), data, map[string]string{"Content-Type": "application/octet-stream"})
	case sandbox.StepUploadPUT:
		data, d := randomBlob(8 << 10)
		return w.send(client, http.MethodPut, upload()+"?digest="+d, data, map[string]string{"Content-Type": "application/octet-stream"})
	case sandbox.StepTagsList:
		return w.send(client, http.MethodGet, base+"/tags/list", nil, nil)
	case sandbox.StepReferrers:
		return w.send(client, http.MethodGet, base+"/referrers/"+w.digest, nil, nil)
	}
	t.Fatalf("no request for step %s", step)
	return result{}
}

var stepSuccess = map[sandbox.Step]int{
	sandbox.StepPing: 200, sandbox.StepManifestGET: 200, sandbox.StepManifestHEAD: 200, sandbox.StepManifestPUT: 201,
	sandbox.StepBlobHEAD: 200, sandbox.StepBlobGET: 307, sandbox.StepStorageGET: 200, sandbox.StepUploadPOST: 202,
	sandbox.StepUploadPATCH: 201, sandbox.StepUploadPUT: 201, sandbox.StepTagsList: 200, sandbox.StepReferrers: 200,
}

var noBodyAt = map[sandbox.Step]bool{
	sandbox.StepPing: true, sandbox.StepManifestHEAD: true, sandbox.StepBlobHEAD: true, sandbox.StepBlobGET: true, sandbox.StepUploadPOST: true,
}

func TestFaultEveryStepAndKind(t *testing.T) {
	w := newStepWorld(t)
	kinds := []sandbox.FaultKind{sandbox.Fault500, sandbox.Fault502, sandbox.Fault503, sandbox.Fault504, sandbox.Fault429,
		sandbox.FaultResetBeforeHeaders, sandbox.FaultResetMidBody, sandbox.FaultSlow}
	impatient := *w.c.http
	impatient.Timeout = 150 * time.Millisecond
	for step := range stepSuccess {
		for _, kind := range kinds {
			t.Run(string(step)+"/"+string(kind), func(t *testing.T) {
				w.t = t
				f := sandbox.RegistryFault{Account: sandbox.SourceAccount, Step: step, Fault: kind, Delay: 10 * time.Second}
				err := w.e.sb.InjectRegistryFault(f)
				if kind == sandbox.FaultResetMidBody && noBodyAt[step] {
					if err == nil || !strings.Contains(err.Error(), "no body at step "+string(step)) {
						t.Fatalf("arming reset-mid-body at %s: %v, want an error", step, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				key := "registry:" + string(step) + ":" + string(kind)
				before := w.e.sb.FaultsFired()[key]
				client := w.c.http
				if kind == sandbox.FaultSlow {
					client = &impatient
				}
				checkFault(t, step, kind, w.request(step, client))
				if got := w.e.sb.FaultsFired()[key]; got != before+1 {
					t.Errorf("FaultsFired[%s] = %d, want %d", key, got, before+1)
				}
				if n := w.e.sb.PendingFaults(); n != 0 {
					t.Fatalf("%d faults still armed", n)
				}
				if r := w.request(step, w.c.http); r.err != nil || r.status != stepSuccess[step] {
					t.Fatalf("the next request: %d %v %s, want %d", r.status, r.err, r.body, stepSuccess[step])
				}
			})
		}
	}
}

// checkFault says whether the client saw the fault kind.
func checkFault(t *testing.T, step sandbox.Step, kind sandbox.FaultKind, r result) {
	t.Helper()
	storage := step == sandbox.StepStorageGET
	switch kind {
	case sandbox.Fault500, sandbox.Fault502, sandbox.Fault503, sandbox.Fault504, sandbox.Fault429:
		code := map[sandbox.FaultKind]string{sandbox.Fault500: "UNKNOWN", sandbox.Fault429: "TOOMANYREQUESTS"}[kind]
		if code == "" {
			code = "UNAVAILABLE"
		}
		if storage {
			code = map[sandbox.FaultKind]string{sandbox.Fault500: "InternalError", sandbox.Fault503: "SlowDown", sandbox.Fault429: "SlowDown"}[kind]
			if code == "" {
				code = "ServiceUnavailable"
			}
			code = "<Code>" + code + "</Code>"
		}
		if r.err != nil || fmt.Sprint(r.status) != string(kind) {
			t.Fatalf("got %d %v, want %s", r.status, r.err, kind)
		}
		if step != sandbox.StepManifestHEAD && step != sandbox.StepBlobHEAD && !strings.Contains(string(r.body), code) {
			t.Errorf("body %s lacks %s", r.body, code)
		}
		if kind == sandbox.Fault429 && r.header.Get("Retry-After") != "1" {
			t.Errorf("Retry-After %q, want 1", r.header.Get("Retry-After"))
		}
	case sandbox.FaultResetBeforeHeaders:
		if r.err == nil || r.status != 0 {
			t.Fatalf("got %d %v, want a connection error before any header", r.status, r.err)
		}
	case sandbox.FaultResetMidBody:
		if r.err == nil {
			t.Fatalf("got %d with %d body bytes, want the connection cut", r.status, len(r.body))
		}
		if !noBodyAt[step] && stepSuccess[step] == 200 && (r.status != 200 || !errors.Is(r.err, io.ErrUnexpectedEOF)) {
			t.Errorf("response cut: %d %v, want 200 headers and an unexpected EOF mid-body", r.status, r.err)
		}
	case sandbox.FaultSlow:
		var ne net.Error
		if !errors.As(r.err, &ne) || !ne.Timeout() {
			t.Fatalf("got %d %v, want the client's timeout", r.status, r.err)
		}
	}
}

// A fault answers instead of applying the request: nothing is stored. A slow answer a
// client waits out is the normal answer.
func TestFaultNothingApplied(t *testing.T) {
	w := newStepWorld(t)
	impatient := *w.c.http
	impatient.Timeout = 150 * time.Millisecond
	for _, kind := range []sandbox.FaultKind{sandbox.Fault500, sandbox.Fault503, sandbox.Fault429, sandbox.FaultResetBeforeHeaders, sandbox.FaultResetMidBody, sandbox.FaultSlow} {
		t.Run(string(kind), func(t *testing.T) {
			w.t = t
			for _, step := range []sandbox.Step{sandbox.StepManifestPUT, sandbox.StepUploadPUT} {
				if err := w.e.sb.InjectRegistryFault(sandbox.RegistryFault{Account: sandbox.SourceAccount, Step: step, Fault: kind, Delay: 10 * time.Second}); err != nil {
					t.Fatal(err)
				}
			}
			client := w.c.http
			if kind == sandbox.FaultSlow {
				client = &impatient
			}
			tag := fmt.Sprintf("put-%d", w.n+1)
			mark := w.e.sb.AccessLogMark()
			w.request(sandbox.StepManifestPUT, client)
			waitHandled(t, w.e.sb, mark, "PUT manifest")
			if r := w.request(sandbox.StepManifestGET, w.c.http); r.status != 200 {
				t.Fatal("the image itself is gone")
			}
			r := w.send(w.c.http, http.MethodHead, "http://"+w.c.host+"/v2/steps/manifests/"+tag, nil, map[string]string{"Accept": w.mt})
			if r.status != http.StatusNotFound {
				t.Errorf("tag %s after a %s fault: %d, want 404 (nothing stored)", tag, kind, r.status)
			}

			// An upload PUT with its body: the blob is not stored.
			data, d := randomBlob(8 << 10)
			r = must(t, w.send(w.c.http, http.MethodPost, "http://"+w.c.host+"/v2/steps/blobs/uploads/", nil, nil), http.StatusAccepted)
			mark = w.e.sb.AccessLogMark()
			w.send(client, http.MethodPut, "http://"+w.c.host+r.header.Get("Location")+"?digest="+d, data, nil)
			waitHandled(t, w.e.sb, mark, "PUT upload")
			if r := w.send(w.c.http, http.MethodHead, "http://"+w.c.host+"/v2/steps/blobs/"+d, nil, nil); r.status != http.StatusNotFound {
				t.Errorf("blob after a %s fault on its upload: %d, want 404", kind, r.status)
			}
		})
	}
	t.Run("slow, waited out", func(t *testing.T) {
		w.t = t
		if err := w.e.sb.InjectRegistryFault(sandbox.RegistryFault{Account: sandbox.SourceAccount, Step: sandbox.StepManifestPUT, Fault: sandbox.FaultSlow, Delay: 100 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		if r := w.request(sandbox.StepManifestPUT, w.c.http); r.status != http.StatusCreated || time.Since(began) < 100*time.Millisecond {
			t.Fatalf("slow PUT: %d after %v, want 201 after the delay", r.status, time.Since(began))
		}
	})
}

func must(t *testing.T, r result, want int) result {
	t.Helper()
	if r.err != nil || r.status != want {
		t.Fatalf("%d %v %s, want %d", r.status, r.err, r.body, want)
	}
	return r
}

// waitHandled waits (bounded) until the access log shows a faulted request of op after
// mark: the server may finish after the client gave up.
func waitHandled(t *testing.T, sb *sandbox.Sandbox, mark int, op string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range sb.AccessLogSince(mark) {
			if e.Operation == op && e.Fault != "" {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no faulted %s in the access log", op)
}

func TestFaultPersistentUntilCleared(t *testing.T) {
	w := newStepWorld(t)
	if err := w.e.sb.InjectRegistryFault(sandbox.RegistryFault{Account: sandbox.SourceAccount, Step: sandbox.StepTagsList, Fault: sandbox.Fault503, Count: -1}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if r := w.request(sandbox.StepTagsList, w.c.http); r.status != http.StatusServiceUnavailable {
			t.Fatalf("request %d: %d, want 503", i, r.status)
		}
	}
	if n := w.e.sb.PendingFaults(); n != 1 {
		t.Fatalf("pending %d, want the persistent fault", n)
	}
	w.e.sb.ClearFaults()
	if r := w.request(sandbox.StepTagsList, w.c.http); r.status != http.StatusOK {
		t.Fatalf("after ClearFaults: %d", r.status)
	}
	if got := w.e.sb.FaultsFired(); got["registry:tags-list:503"] != 5 || got["registry:status:503"] != 5 {
		t.Errorf("fired %v", got)
	}
}

// The older helpers keep working: a download reset now cuts the storage GET.
func TestResetBlobDownloadsCutsStorage(t *testing.T) {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	createRepo(t, e.ctx, src, "dl", "")
	host, auth := registryAuth(t, e.ctx, src)
	img, _ := random.Image(64<<10, 1)
	if err := remote.Write(ref(t, host, "dl", "v1"), img, remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	if err := e.sb.ResetBlobDownloads(sandbox.SourceAccount, 1<<20, 1); err != nil { // more than the blob: cut at all but one byte
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	resp := regClient{t: t, host: host, pass: auth.(*authn.Basic).Password, http: http.DefaultClient}.do(http.MethodGet, "/v2/dl/blobs/"+d.String(), nil, nil)
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || int64(len(got)) != size-1 {
		t.Fatalf("read %d of %d bytes, err %v: want a cut one byte short", len(got), size, err)
	}
	fired := e.sb.FaultsFired()
	if fired["registry:reset:blob"] != 1 || fired["registry:storage-get:reset-mid-body"] != 1 {
		t.Errorf("fired %v", fired)
	}
	cut := sandbox.Filter(e.sb.AccessLog(), func(en sandbox.Entry) bool { return en.Service == "s3" && en.Fault != "" })
	if len(cut) != 1 || cut[0].ErrorCode != "CONNECTION_CLOSED" || cut[0].Bytes != size-1 {
		t.Errorf("storage entries %+v", cut)
	}
}
