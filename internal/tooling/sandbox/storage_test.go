package sandbox_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// regClient is a logged-in registry client for raw requests.
type regClient struct {
	t    *testing.T
	host string
	pass string
	http *http.Client
}

// noRedirect answers a redirect to the caller instead of following it.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (c regClient) do(method, path string, body []byte, hdr map[string]string) *http.Response {
	c.t.Helper()
	u := path
	if !strings.HasPrefix(path, "http") {
		u = "http://" + c.host + path
	}
	req, _ := http.NewRequest(method, u, bytes.NewReader(body))
	if body == nil {
		req.Body = nil
	}
	if strings.Contains(u, c.host) {
		req.SetBasicAuth("AWS", c.pass)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return b
}

// pushedBlob pushes a one-layer image to repo and returns the image and its layer's
// digest and bytes.
func pushedBlob(t *testing.T, e *env, host string, auth authn.Authenticator, repo string) (v1.Image, string, []byte) {
	t.Helper()
	img, _ := random.Image(4096, 1)
	if err := remote.Write(ref(t, host, repo, "v1"), img, remote.WithAuth(auth), remote.WithContext(e.ctx)); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	data, _ := io.ReadAll(rc)
	return img, d.String(), data
}

func TestBlobGetRedirectsToPresignedStorage(t *testing.T) {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	createRepo(t, e.ctx, src, "team-a/app", "")
	host, auth := registryAuth(t, e.ctx, src)
	img, digest, data := pushedBlob(t, e, host, auth, "team-a/app")
	c := regClient{t: t, host: host, pass: auth.(*authn.Basic).Password, http: &http.Client{CheckRedirect: noRedirect}}

	mark := e.sb.AccessLogMark()
	resp := c.do(http.MethodGet, "/v2/team-a/app/blobs/"+digest, nil, nil)
	readAll(t, resp)
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("blob GET: %d, want 307", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "/prod-us-east-1-starport-layer-bucket/" + sandbox.SourceAccount + "-us-east-1/" + digest; loc.Path != want {
		t.Errorf("storage path %q, want %q", loc.Path, want)
	}
	q := loc.Query()
	if q.Get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" || q.Get("X-Amz-SignedHeaders") != "host" || q.Get("X-Amz-Expires") != "3600" ||
		!strings.HasSuffix(q.Get("X-Amz-Credential"), "/us-east-1/s3/aws4_request") || len(q.Get("X-Amz-Date")) != 16 {
		t.Errorf("presigned query %v", q)
	}
	secrets := map[string]bool{}
	for _, s := range e.sb.IssuedSecrets() {
		secrets[s] = true
	}
	keyID, _, _ := strings.Cut(q.Get("X-Amz-Credential"), "/")
	for _, v := range []string{keyID, q.Get("X-Amz-Security-Token"), q.Get("X-Amz-Signature")} {
		if v == "" || !secrets[v] {
			t.Errorf("presigned value %.8s… is not among IssuedSecrets", v)
		}
		if !strings.Contains(loc.String(), v) {
			t.Errorf("presigned value %.8s… is escaped in the URL: a log scan would miss it", v)
		}
	}

	// A plain client follows the redirect and gets the bytes; it set Authorization on the
	// request, and Go drops it on the way to another host, as it would on AWS.
	resp = regClient{t: t, host: host, pass: c.pass, http: http.DefaultClient}.do(http.MethodGet, "/v2/team-a/app/blobs/"+digest, nil, nil)
	if got := readAll(t, resp); resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("followed blob GET: %d, %d bytes, want 200 and %d bytes", resp.StatusCode, len(got), len(data))
	}
	// go-containerregistry pulls through the redirect too.
	pulled, err := remote.Image(ref(t, host, "team-a/app", "v1"), remote.WithAuth(auth), remote.WithContext(e.ctx))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(pulled); err != nil {
		t.Fatalf("validate pulled image: %v", err)
	}
	if a, b := mustDigest(t, pulled), mustDigest(t, img); a != b {
		t.Fatalf("pulled %s, pushed %s", a, b)
	}
	if v := e.sb.StorageViolations(); len(v) != 0 {
		t.Errorf("violations: %v", v)
	}

	// The access log attributes storage requests and counts the bytes there.
	log := e.sb.AccessLogSince(mark)
	var redirect, object *sandbox.Entry
	for i := range log {
		en := &log[i]
		if en.Operation == "GET blob" && redirect == nil {
			redirect = en
		}
		if en.Service == "s3" && object == nil {
			object = en
		}
	}
	if redirect == nil || redirect.Status != http.StatusTemporaryRedirect || redirect.Bytes != 0 || redirect.Action != "ecr:GetDownloadUrlForLayer" {
		t.Errorf("registry entry %+v", redirect)
	}
	if object == nil || object.Operation != "GET object" || object.Account != sandbox.SourceAccount || object.Region != sandbox.DefaultRegion ||
		object.Repository != "team-a/app" || object.Reference != digest || object.Bytes != int64(len(data)) || object.Status != http.StatusOK ||
		!strings.HasSuffix(object.Principal, ":user/"+sandbox.SourceUser) {
		t.Errorf("storage entry %+v", object)
	}
	for _, en := range log {
		for _, s := range []string{q.Get("X-Amz-Security-Token"), q.Get("X-Amz-Signature")} {
			if strings.Contains(en.Fault+en.ErrorCode+en.Reference+en.Operation, s) {
				t.Errorf("access log entry holds a presigned secret: %+v", en)
			}
		}
	}
}

func mustDigest(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// presignedURL asks the registry for a blob and returns where it redirects.
func presignedURL(t *testing.T, c regClient, repo, digest string) string {
	t.Helper()
	nc := c
	nc.http = &http.Client{CheckRedirect: noRedirect}
	resp := nc.do(http.MethodGet, "/v2/"+repo+"/blobs/"+digest, nil, nil)
	readAll(t, resp)
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("blob GET: %d, want 307", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

func TestStorageRangesAndRefusals(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	cfg := sandbox.TwoAccounts(extID)
	cfg.PresignExpiry = 90 * time.Second
	cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	e := &env{sb: sb, ctx: ctx}
	t.Setenv("AWS_ENDPOINT_URL_ECR", sb.APIURL())
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	createRepo(t, ctx, src, "app", "")
	host, auth := registryAuth(t, ctx, src)
	_, digest, data := pushedBlob(t, e, host, auth, "app")
	c := regClient{t: t, host: host, pass: auth.(*authn.Basic).Password, http: http.DefaultClient}
	u := presignedURL(t, c, "app", digest)
	if q, _ := url.Parse(u); q.Query().Get("X-Amz-Expires") != "90" {
		t.Errorf("X-Amz-Expires = %q, want Config.PresignExpiry", q.Query().Get("X-Amz-Expires"))
	}
	n := len(data)

	t.Run("ranges", func(t *testing.T) {
		for _, tc := range []struct {
			rng       string
			from, to  int // inclusive
			wantRange string
		}{
			{"bytes=10-19", 10, 19, "bytes 10-19/"},
			{"bytes=100-", 100, n - 1, "bytes 100-"},
			{"bytes=-7", n - 7, n - 1, "bytes " + strconv.Itoa(n-7) + "-"},
		} {
			resp := c.do(http.MethodGet, u, nil, map[string]string{"Range": tc.rng})
			got := readAll(t, resp)
			if resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Range"), tc.wantRange) || !bytes.Equal(got, data[tc.from:tc.to+1]) {
				t.Errorf("%s: %d %q, %d bytes", tc.rng, resp.StatusCode, resp.Header.Get("Content-Range"), len(got))
			}
		}
		resp := c.do(http.MethodGet, u, nil, map[string]string{"Range": "bytes=" + strconv.Itoa(n+10) + "-"})
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || !strings.Contains(string(body), "<Code>InvalidRange</Code>") {
			t.Errorf("unsatisfiable range: %d %s", resp.StatusCode, body)
		}
		resp = c.do(http.MethodHead, u, nil, nil)
		readAll(t, resp)
		if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(n) {
			t.Errorf("HEAD object: %d, length %d", resp.StatusCode, resp.ContentLength)
		}
	})

	t.Run("tampered signature", func(t *testing.T) {
		bad := strings.Replace(u, "X-Amz-Expires=90", "X-Amz-Expires=900", 1)
		resp := c.do(http.MethodGet, bad, nil, nil)
		if body := readAll(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "<Code>SignatureDoesNotMatch</Code>") {
			t.Errorf("longer expiry than signed: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("authorization header", func(t *testing.T) {
		if v := sb.StorageViolations(); len(v) != 0 {
			t.Fatalf("violations before: %v", v)
		}
		resp := c.do(http.MethodGet, u, nil, map[string]string{"Authorization": "Basic QVdTOnNlY3JldA=="})
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "<Code>InvalidArgument</Code>") || !strings.Contains(string(body), "Only one auth mechanism allowed") {
			t.Errorf("presigned query plus Authorization: %d %s", resp.StatusCode, body)
		}
		v := sb.StorageViolations()
		if len(v) != 1 || !strings.Contains(v[0], "app@"+digest) || !strings.Contains(v[0], "Authorization header (Basic)") || strings.Contains(v[0], "QVdTOnNlY3JldA") {
			t.Errorf("violations %v", v)
		}
		// A transport that authenticates every request is what it catches.
		leaky := &http.Client{Transport: authEverywhere{pass: c.pass}}
		resp, err := leaky.Get("http://" + host + "/v2/app/blobs/" + digest)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != http.StatusBadRequest || len(sb.StorageViolations()) != 2 {
			t.Errorf("leaky transport: %d, violations %v", resp.StatusCode, sb.StorageViolations())
		}
	})

	t.Run("expired", func(t *testing.T) {
		mu.Lock()
		now = now.Add(91 * time.Second)
		mu.Unlock()
		resp := c.do(http.MethodGet, u, nil, nil)
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "<Code>AccessDenied</Code><Message>Request has expired</Message>") {
			t.Errorf("expired URL: %d %s", resp.StatusCode, body)
		}
		// A new redirect is valid again.
		resp = c.do(http.MethodGet, presignedURL(t, c, "app", digest), nil, nil)
		if got := readAll(t, resp); resp.StatusCode != http.StatusOK || len(got) != n {
			t.Errorf("fresh URL: %d", resp.StatusCode)
		}
	})
}

// authEverywhere adds the registry password to every request, whatever its host: the
// mistake S3 refuses.
type authEverywhere struct{ pass string }

func (a authEverywhere) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth("AWS", a.pass)
	return http.DefaultTransport.RoundTrip(r)
}
