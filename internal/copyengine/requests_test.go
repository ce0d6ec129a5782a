package copyengine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// TestTagRequestResolvesWithOneGet: a request naming only a tag copies what the tag
// points at, reading the source manifest once (by tag) and asking nothing else of the
// source before writing; the result carries the resolved digest.
func TestTagRequestResolvesWithOneGet(t *testing.T) {
	e := newEnv(t)
	d := pushImage(t, e.srcRepo.Tag("v1"), must[v1.Image](t)(random.Image(256, 2)))
	e.src.reset()
	res := fastCopier().Copy(context.Background(), Request{Source: Endpoint{Repository: e.srcRepo}, Destination: Endpoint{Repository: e.dstRepo}, Tag: "v1"})
	wantOutcome(t, res, Copied)
	if res.Digest != d.String() {
		t.Fatalf("result digest %s, want %s", res.Digest, d)
	}
	wantTag(t, e.dstRepo.Tag("v1"), d)
	byTag := func(m string) int {
		return e.src.count(func(h hit) bool { return h.method == m && strings.HasSuffix(h.path, "/manifests/v1") })
	}
	// One GET resolves; one HEAD re-checks the tag after writing.
	if g, h := byTag("GET"), byTag("HEAD"); g != 1 || h != 1 {
		t.Fatalf("source tag requests: %d GET, %d HEAD; want 1 and 1 (%v)", g, h, e.src.summary())
	}
	if n := e.src.count(func(h hit) bool { return h.method == "GET" && strings.Contains(h.path, "/manifests/sha256:") }); n != 0 {
		t.Fatalf("manifest fetched again by digest %d times", n)
	}

	res = fastCopier().Copy(context.Background(), Request{Source: Endpoint{Repository: e.srcRepo}, Destination: Endpoint{Repository: e.dstRepo}, Tag: "nope"})
	if res.Outcome != Failed || retry.IsRetryable(res.Err) {
		t.Fatalf("missing source tag: %s %v, want a permanent failure", res.Outcome, res.Err)
	}
	if res := fastCopier().Copy(context.Background(), Request{Source: Endpoint{Repository: e.srcRepo}, Destination: Endpoint{Repository: e.dstRepo}}); res.Outcome != Failed || !strings.Contains(res.Err.Error(), "a digest or a tag is required") {
		t.Fatalf("neither digest nor tag: %s %v", res.Outcome, res.Err)
	}
}

// TestBlobsUploadMonolithically: each new blob is one POST and one PUT carrying the
// whole body (no PATCH), and nothing else of the upload protocol.
func TestBlobsUploadMonolithically(t *testing.T) {
	e := newEnv(t)
	img := must[v1.Image](t)(random.Image(64<<10, 3))
	d := pushImage(t, e.srcRepo.Tag("v1"), img)
	var bodies []int64
	e.dst.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") {
			e.dst.mu.Lock()
			bodies = append(bodies, r.ContentLength)
			e.dst.mu.Unlock()
		}
		return false
	})
	res := fastCopier().Copy(context.Background(), e.req(d, "v1"))
	wantOutcome(t, res, Copied)
	if p := e.dst.count(method("PATCH", "")); p != 0 {
		t.Fatalf("%d PATCH requests, want none", p)
	}
	posts, puts := e.dst.count(method("POST", "upload")), e.dst.count(method("PUT", "upload"))
	if posts != 4 || puts != 4 || res.BlobsCopied != 4 {
		t.Fatalf("%d POST, %d PUT uploads for %d blobs; want 4, 4, 4", posts, puts, res.BlobsCopied)
	}
	var total int64
	for _, n := range bodies {
		if n <= 0 {
			t.Fatalf("a blob PUT without a Content-Length: %v", bodies)
		}
		total += n
	}
	if total != res.BytesCopied {
		t.Fatalf("PUT bodies carried %d bytes, result says %d", total, res.BytesCopied)
	}
}

// TestManyTagsListDestinationOnce: a run copying many tags of one repository stops
// HEADing each destination tag before writing after a few, and lists the tags once.
func TestManyTagsListDestinationOnce(t *testing.T) {
	e := newEnv(t)
	const n = 30
	var reqs []Request
	for i := range n {
		tag := fmt.Sprintf("t%02d", i)
		reqs = append(reqs, e.req(pushImage(t, e.srcRepo.Tag(tag), must[v1.Image](t)(random.Image(64, 1))), tag))
	}
	c := fastCopier()
	for _, r := range reqs {
		wantOutcome(t, c.Copy(context.Background(), r), Copied)
	}
	lists := e.dst.count(func(h hit) bool { return strings.HasSuffix(h.path, "/tags/list") })
	// Each tag is HEADed once to verify it after writing; before writing, only the
	// first probesBeforeListing are.
	heads := e.dst.count(func(h hit) bool { return h.method == "HEAD" && strings.Contains(h.path, "/manifests/t") })
	if lists != 1 || heads != n+probesBeforeListing {
		t.Fatalf("%d tag listings, %d tag HEADs for %d tags; want 1 and %d", lists, heads, n, n+probesBeforeListing)
	}
	for _, r := range reqs {
		wantTag(t, e.dstRepo.Tag(r.Tag), must[v1.Hash](t)(v1.NewHash(r.Digest)))
	}
	// A second run finds every tag in place, from the listing, and writes nothing.
	e.dst.reset()
	c = fastCopier()
	for _, r := range reqs {
		wantOutcome(t, c.Copy(context.Background(), r), AlreadyPresent)
	}
	if w := e.dst.count(method("PUT", "")); w != 0 {
		t.Fatalf("second run wrote %d times", w)
	}
}

func TestUploadLocation(t *testing.T) {
	req := httptest.NewRequest(http.MethodPost, "http://registry.example:5000/v2/app/blobs/uploads/", nil)
	d := must[v1.Hash](t)(v1.NewHash("sha256:" + strings.Repeat("a", 64)))
	for _, tc := range []struct{ loc, want, err string }{
		{loc: "/v2/app/blobs/uploads/abc?_state=x", want: "http://registry.example:5000/v2/app/blobs/uploads/abc?_state=x&digest=" + url.QueryEscape(d.String())},
		{loc: "http://registry.example:5000/v2/app/blobs/uploads/abc", want: "http://registry.example:5000/v2/app/blobs/uploads/abc?digest=" + url.QueryEscape(d.String())},
		{loc: "", err: "without a Location"},
		{loc: "http://169.254.169.254/latest", err: "another host"},
		// Same host, other scheme: an https registry must not be told to upload in clear.
		{loc: "https://registry.example:5000/v2/app/blobs/uploads/abc", err: "another host or scheme"},
	} {
		resp := &http.Response{Request: req, Header: http.Header{}}
		if tc.loc != "" {
			resp.Header.Set("Location", tc.loc)
		}
		got, err := uploadLocation(resp, d)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: err %v, want %q", tc.loc, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%q: %q %v, want %q", tc.loc, got, err, tc.want)
		}
	}
}

// TestCorruptSourceBlobIsRefused: the engine streams blobs without hashing them itself;
// a source serving other bytes than the digest names is caught by the destination when
// the upload is committed (PUT ?digest=), and nothing is tagged.
func TestCorruptSourceBlobIsRefused(t *testing.T) {
	e := newEnv(t)
	img := must[v1.Image](t)(random.Image(4096, 1))
	d := pushImage(t, e.srcRepo.Tag("v1"), img)
	layer := must[[]v1.Layer](t)(img.Layers())[0]
	ld := digestOf(t, layer)
	e.src.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) {
			return false
		}
		rec := httptest.NewRecorder()
		e.src.reg.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		body[len(body)/2] ^= 0xff // same length, other bytes
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(rec.Code)
		w.Write(body)
		return true
	})
	res := fastCopier().Copy(context.Background(), e.req(d, "v1"))
	var re *Error
	if res.Outcome != Failed || !errors.As(res.Err, &re) || re.Code != "DIGEST_INVALID" {
		t.Fatalf("outcome %s, err %v: want the destination's DIGEST_INVALID", res.Outcome, res.Err)
	}
	if _, ok := headDigest(t, e.dstRepo.Tag("v1")); ok {
		t.Fatal("tagged although a blob was refused")
	}
	if _, ok := headDigest(t, e.dstRepo.Digest(d.String())); ok {
		t.Fatal("manifest written although a blob was refused")
	}
}

// TestPacedWriteOutOfTimeIsRetryable: when the destination's write rate leaves no turn
// before the invocation's deadline, the copy is out of time — retryable, as a deadline
// is — not refused as bad input. (golang.org/x/time/rate's Wait answers such a wait with
// an error of its own that wraps nothing.)
func TestPacedWriteOutOfTimeIsRetryable(t *testing.T) {
	e := newEnv(t)
	img := must[v1.Image](t)(random.Image(256, 1))
	pushImage(t, e.srcRepo.Tag("v1"), img)
	pushImage(t, e.srcRepo.Tag("v2"), img)
	run := fastCopier(WithManifestRate(0.1, 1)) // one write, then the next in 10 s
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	wantOutcome(t, run.Copy(ctx, Request{Source: Endpoint{Repository: e.srcRepo}, Destination: Endpoint{Repository: e.dstRepo}, Tag: "v1"}), Copied)
	res := run.Copy(ctx, Request{Source: Endpoint{Repository: e.srcRepo}, Destination: Endpoint{Repository: e.dstRepo}, Tag: "v2"})
	if code, retryable := retry.Classify(res.Err); res.Outcome != Failed || !retryable || code != retry.CodeDeadlineExceeded {
		t.Fatalf("copy with no turn to write before the deadline: outcome %s, code %q, retryable %v (%v); want a retryable %s",
			res.Outcome, code, retryable, res.Err, retry.CodeDeadlineExceeded)
	}
}
