package sandbox

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// registry is the OCI distribution endpoint of one account in one region, fronted by
// ECR's rules (see the package comment and each handler).
type registry struct {
	sb      *Sandbox
	account string
	region  string
	host    string
	ln      net.Listener
	server  *http.Server
	blobs   blobStore

	mu      sync.Mutex
	repos   map[string]*repository
	uploads map[string]*upload
	// blobMounting is the registry's BLOB_MOUNTING account setting (mount.go).
	blobMounting bool
	// scanPolicy scans pushed images (scan.go); nil: only SetImageScan sets results.
	scanPolicy *ScanPolicy
}

type upload struct {
	mu       sync.Mutex
	repo     string
	file     string
	size     int64
	hash     hash.Hash
	parts    int
	lastPart int64
}

type registryToken struct {
	account, region, principal string
	role                       string           // a session's role ARN
	policies                   []PolicyDocument // the principal's; nil: unrestricted
	session                    []PolicyDocument // the session policy of a role session; nil: none
	cred                       *credential      // who it was issued to: the principal's condition keys
	expires                    time.Time
	expired                    bool
}

// tokenLifetime: "The authorization token is valid for 12 hours."
// https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_GetAuthorizationToken.html
const tokenLifetime = 12 * time.Hour

// minPartSize: chunked uploads must send parts of at least 5 MiB except the last
// (ECR service quotas; LayerPartTooSmallException seen through the registry API).
const minPartSize = 5 << 20

func newRegistry(s *Sandbox, accountID, region string) (*registry, error) {
	dir := filepath.Join(s.dataDir, accountID+"-"+region)
	if err := os.MkdirAll(filepath.Join(dir, "uploads"), 0o755); err != nil {
		return nil, fmt.Errorf("sandbox: registry storage: %w", err)
	}
	ln, err := listenLoopback("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &registry{
		sb:      s,
		account: accountID,
		region:  region,
		host:    ln.Addr().String(),
		ln:      ln,
		blobs:   blobStore{dir: dir},
		repos:   map[string]*repository{},
		uploads: map[string]*upload{},
	}
	r.server = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	return r, nil
}

// issueToken mints a registry password for a principal of this registry's account.
func (s *Sandbox) issueToken(c *credential, region string) (string, time.Time) {
	tok := randomString(48, secretAlphabet)
	exp := s.now().Add(tokenLifetime)
	s.mu.Lock()
	s.tokens[tok] = &registryToken{account: c.account, region: region, principal: c.principalARN, role: c.roleARN, policies: c.policies, session: c.session, cred: c, expires: exp}
	s.mu.Unlock()
	return base64.StdEncoding.EncodeToString([]byte("AWS:" + tok)), exp
}

// ExpireRegistryTokens makes every registry token of an account expired now; the next
// registry request with one gets ECR's "authorization token has expired" denial.
func (s *Sandbox) ExpireRegistryTokens(accountID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		if t.account == accountID {
			t.expired = true
		}
	}
}

type regError struct {
	status  int
	code    string
	message string
}

func (e *regError) Error() string { return e.code + ": " + e.message }

func regErr(status int, code, format string, args ...any) *regError {
	return &regError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// recorder holds a handler's answer until it is written: a hold pauses between the two,
// and a reset-mid-body fault cuts the written answer knowing its full length. Registry
// answers are small (manifests are at most 4 MiB; blob GETs redirect to storage), so
// buffering them costs little.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	sent   int64 // body bytes written to the client
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}

// reply writes the recorded answer (bodies not for HEAD). With cutting set, the
// connection closes inside the body, after cutAt bytes (0: half; see cutPoint), with
// Content-Length announcing the whole body (a fault).
func (w *recorder) reply(rw http.ResponseWriter, head, cutting bool, cutAt int64) {
	for k, v := range w.header {
		rw.Header()[k] = v
	}
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	body := w.body.Bytes()
	if head {
		body = nil
	} else if len(body) > 0 && rw.Header().Get("Content-Length") == "" {
		rw.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	if !cutting {
		rw.WriteHeader(status)
		n, _ := rw.Write(body)
		w.sent += int64(n)
		return
	}
	cut := cutPoint(cutAt, int64(len(body)))
	if cut < 0 {
		panic(http.ErrAbortHandler) // nothing to cut inside: close before the headers
	}
	rw.WriteHeader(status)
	n, _ := rw.Write(body[:cut])
	w.sent += int64(n)
	if f, ok := rw.(http.Flusher); ok {
		f.Flush()
	}
	panic(http.ErrAbortHandler)
}

// route is a parsed registry request path.
type route struct {
	kind string // ping, catalog, manifest, blob, upload, tags, referrers
	repo string
	ref  string // tag, digest or upload id
}

func parseRoute(p string) (route, bool) {
	if p == "/v2/" || p == "/v2" {
		return route{kind: "ping"}, true
	}
	if p == "/v2/_catalog" {
		return route{kind: "catalog"}, true
	}
	if !strings.HasPrefix(p, "/v2/") {
		return route{}, false
	}
	rest := p[len("/v2/"):]
	for _, m := range []struct{ sep, kind string }{
		{"/blobs/uploads/", "upload"},
		{"/manifests/", "manifest"},
		{"/blobs/", "blob"},
		{"/referrers/", "referrers"},
	} {
		if i := strings.LastIndex(rest, m.sep); i > 0 {
			return route{kind: m.kind, repo: rest[:i], ref: rest[i+len(m.sep):]}, true
		}
	}
	if strings.HasSuffix(rest, "/blobs/uploads") {
		return route{kind: "upload", repo: strings.TrimSuffix(rest, "/blobs/uploads")}, true
	}
	if strings.HasSuffix(rest, "/tags/list") {
		return route{kind: "tags", repo: strings.TrimSuffix(rest, "/tags/list")}, true
	}
	return route{}, false
}

// actionFor maps a registry request to the ECR API action IAM checks for it (INFERRED
// from the ECR quota descriptions; the referrers mapping is a guess).
func actionFor(method, kind string) string {
	switch kind + " " + method {
	case "manifest GET", "manifest HEAD":
		return "ecr:BatchGetImage"
	case "manifest PUT":
		return "ecr:PutImage"
	case "manifest DELETE":
		return "ecr:BatchDeleteImage"
	case "blob HEAD":
		return "ecr:BatchCheckLayerAvailability"
	case "blob GET":
		return "ecr:GetDownloadUrlForLayer"
	case "upload POST":
		return "ecr:InitiateLayerUpload"
	case "upload PATCH", "upload GET":
		return "ecr:UploadLayerPart"
	case "upload PUT":
		return "ecr:CompleteLayerUpload"
	case "tags GET", "referrers GET":
		return "ecr:ListImages"
	case "catalog GET":
		return "ecr:DescribeRepositories"
	}
	return ""
}

func (r *registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.sb.delay(req.Context())
	rec := newRecorder()
	rt, ok := parseRoute(req.URL.Path)
	step := stepFor(req.Method, rt.kind)
	began := time.Now()
	entry := Entry{
		Time: r.sb.now(), Service: "registry", Account: r.account, Region: r.region,
		Operation: req.Method + " " + rt.kind, Action: actionFor(req.Method, rt.kind),
		Repository: rt.repo, Reference: rt.ref,
	}
	defer func() {
		if entry.Status == 0 {
			entry.Status = rec.status
		}
		if req.Method == http.MethodGet {
			entry.Bytes = rec.sent
		}
		entry.Duration = time.Since(began)
		if p := recover(); p != nil {
			entry.Status = 0
			if entry.ErrorCode == "" {
				entry.ErrorCode = "CONNECTION_CLOSED"
			}
			r.sb.accessLog.add(entry)
			panic(p)
		}
		r.sb.accessLog.add(entry)
	}()
	rec.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	head := req.Method == http.MethodHead
	if !ok {
		r.fail(rec, &entry, regErr(404, "NAME_INVALID", "invalid request path %q", req.URL.Path))
		rec.reply(w, head, false, 0)
		return
	}
	// A fault answers after authentication, as a service does, except at the ping,
	// which clients send without credentials: its faults answer the unauthenticated
	// request (else a ping could never fail in a test).
	cutting, cutAt := false, int64(0)
	faulted := func() (answered bool) {
		target := faultTarget{account: r.account, region: r.region, method: req.Method, kind: rt.kind, repo: rt.repo, step: step, hasBody: req.ContentLength != 0}
		if f := r.sb.faults.takeRegistry(target); f != nil {
			entry.Fault = faultLabel(step, f)
			switch {
			case f.Fault == FaultResetBeforeHeaders:
				entry.ErrorCode = "CONNECTION_CLOSED"
				panic(http.ErrAbortHandler)
			case f.Fault == FaultSlow:
				if !r.sb.slowRequest(req, f.Delay) {
					entry.ErrorCode = "CLIENT_CLOSED"
					panic(http.ErrAbortHandler)
				}
			case f.Fault == FaultResetMidBody && target.hasBody:
				req.Body = &resettingBody{ReadCloser: req.Body, left: requestCut(f.ResetAfterBytes, req.ContentLength)}
			case f.Fault == FaultResetMidBody:
				cutting, cutAt = true, f.ResetAfterBytes
			default:
				r.faultAnswer(rec, &entry, f)
				rec.reply(w, head, false, 0)
				return true
			}
		}
		return false
	}
	if step == StepPing && faulted() {
		return
	}
	tok, rerr := r.authorize(req)
	if tok != nil {
		entry.Principal = tok.principal
		entry.CallerAccount = tok.account
	}
	if rerr == nil {
		rerr = r.allowed(tok, rt, &entry, req)
	}
	if rerr != nil {
		if rerr.status == http.StatusUnauthorized {
			rec.Header().Set("WWW-Authenticate", fmt.Sprintf(`Basic realm="https://%s/",service="ecr.amazonaws.com"`, r.host))
		}
		r.fail(rec, &entry, rerr)
		rec.reply(w, head, false, 0)
		return
	}
	if step != StepPing && faulted() {
		return
	}
	if step == StepManifestPUT && !r.sb.quotas.allowPutImage(r.account, r.region) {
		// ECR's registry answers a throttled push with 429 (the body's code and wording
		// are a guess: TOOMANYREQUESTS, as distribution names it).
		r.sb.faults.count1("quota:PutImage")
		r.fail(rec, &entry, regErr(http.StatusTooManyRequests, "TOOMANYREQUESTS", "Rate exceeded"))
		rec.reply(w, head, false, 0)
		return
	}
	var err *regError
	switch rt.kind {
	case "ping":
		rec.WriteHeader(http.StatusOK)
	case "catalog":
		err = r.catalog(rec, req)
	case "manifest":
		err = r.manifest(rec, req, rt, tok)
	case "blob":
		err = r.blob(rec, req, rt, tok)
	case "upload":
		err = r.upload(rec, req, rt, tok, &entry)
	case "tags":
		err = r.tags(rec, req, rt)
	case "referrers":
		err = r.referrers(rec, req, rt)
	}
	if err != nil {
		r.fail(rec, &entry, err)
	}
	if step != "" && rec.status < 400 {
		r.sb.hold(holdTarget{account: r.account, step: step, repo: rt.repo, refs: []string{rt.ref}}, entryWith(entry, rec.status, int64(rec.body.Len())))
	}
	rec.reply(w, head, cutting, cutAt)
}

// allowed checks that the token's principal may do what the request maps to.
func (r *registry) allowed(tok *registryToken, rt route, entry *Entry, req *http.Request) *regError {
	if rt.kind == "upload" && req.Method == http.MethodPut && req.ContentLength != 0 {
		// A monolithic PUT carries the layer's data as well as completing the upload;
		// ECR documents the push policy with both actions (image-push-iam.html), and
		// which of them it checks for such a PUT is not documented: a guess, require both.
		entry.AlsoAuthorized = append(entry.AlsoAuthorized, "ecr:UploadLayerPart")
	}
	// Each registry request needs the ECR action(s) it maps to, on the repository.
	if (tok.policies == nil && tok.session == nil) || entry.Action == "" || rt.repo == "" {
		return nil
	}
	res := repositoryARN(r.region, r.account, rt.repo)
	// A registry request is authorized as the ECR action it maps to, with the same
	// condition keys: the caller's, and the repository's tags.
	ctx := r.sb.principalContext(tok.cred, r.region)
	for k, v := range r.tagsOf(rt.repo) {
		ctx.set("aws:ResourceTag/"+k, v)
	}
	for _, action := range append([]string{entry.Action}, entry.AlsoAuthorized...) {
		if ok, why := decideSession(tok.policies, tok.session, request{action: action, resource: res, principal: tok.principal, context: ctx}); !ok {
			return regErr(http.StatusForbidden, "DENIED", "%s", accessDeniedMessage(tok.principal, action, res, why))
		}
	}
	return nil
}

// faultAnswer answers with an injected status: the registry error body ECR uses for it
// (UNKNOWN for 500, TOOMANYREQUESTS for 429, UNAVAILABLE otherwise), and Retry-After.
func (r *registry) faultAnswer(rec *recorder, entry *Entry, f *RegistryFault) {
	if f.RetryAfter > 0 {
		rec.Header().Set("Retry-After", strconv.Itoa(int((f.RetryAfter+time.Second-1)/time.Second)))
	}
	code := "UNAVAILABLE"
	switch f.Status {
	case http.StatusTooManyRequests:
		code = "TOOMANYREQUESTS"
	case http.StatusInternalServerError:
		code = "UNKNOWN"
	}
	r.fail(rec, entry, regErr(f.Status, code, "injected fault"))
}

// faultLabel is what the access log's Fault says of a fired fault.
func faultLabel(step Step, f *RegistryFault) string {
	kind := string(f.Fault)
	if kind == "" {
		kind = fmt.Sprintf("status %d", f.Status)
	}
	label := kind
	if step != "" {
		label = string(step) + ":" + kind
	}
	if f.Fault == FaultResetMidBody && f.ResetAfterBytes > 0 {
		label += fmt.Sprintf(" after %d bytes", f.ResetAfterBytes)
	}
	return label
}

// resettingBody ends a request body with a connection reset after some bytes (a fault).
type resettingBody struct {
	io.ReadCloser
	left int64
}

func (b *resettingBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		panic(http.ErrAbortHandler)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

func (r *registry) fail(w *recorder, entry *Entry, e *regError) {
	entry.ErrorCode = e.code
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": e.code, "message": e.message}}})
}

// authorize checks ECR's Basic auth: user AWS, password a token from this account's
// GetAuthorizationToken in this region.
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/registry_auth.html
func (r *registry) authorize(req *http.Request) (*registryToken, *regError) {
	user, pass, ok := req.BasicAuth()
	if !ok || user != "AWS" {
		return nil, regErr(http.StatusUnauthorized, "UNAUTHORIZED", "Not Authorized")
	}
	r.sb.mu.Lock()
	tok, found := r.sb.tokens[pass]
	var t registryToken
	if found {
		t = *tok
	}
	r.sb.mu.Unlock()
	if !found || t.account != r.account || t.region != r.region {
		return nil, regErr(http.StatusUnauthorized, "UNAUTHORIZED", "Not Authorized")
	}
	if t.expired || !r.sb.now().Before(t.expires) {
		// Seen as "denied: Your authorization token has expired. Reauthenticate and try
		// again." (CircleCI-Public/aws-ecr-orb#265); the status (403) is a guess.
		return &t, regErr(http.StatusForbidden, "DENIED", "Your authorization token has expired. Reauthenticate and try again.")
	}
	return &t, nil
}

func (r *registry) noRepo(name string) *regError {
	return regErr(http.StatusNotFound, "NAME_UNKNOWN", "The repository with name '%s' does not exist in the registry with id '%s'", name, r.account)
}

func isDigest(ref string) bool {
	algo, h, ok := strings.Cut(ref, ":")
	return ok && algo == "sha256" && len(h) == 64 && strings.Trim(h, "0123456789abcdef") == ""
}

// acceptable reports whether a manifest of media type mt may be returned for an Accept
// header. ECR converts the format when the client does not accept the stored type, which
// changes the digest; the sandbox refuses instead, so a client that forgets an Accept
// type fails loudly (simplification).
func acceptable(accept []string, mt string) bool {
	if len(accept) == 0 {
		return true
	}
	for _, h := range accept {
		for _, part := range strings.Split(h, ",") {
			t := strings.TrimSpace(strings.Split(part, ";")[0])
			if t == mt || t == "*/*" {
				return true
			}
		}
	}
	return false
}

// registryTagMax is the longest tag the registry API carries: the OCI distribution spec's
// tag grammar, [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests).
// ECR's PutImage accepts tags of up to 300 characters (API_PutImage, imageTag); such a tag
// can only be read and written through the ECR API. How ECR's registry answers a longer one
// is not documented: 400 TAG_INVALID is a guess.
const registryTagMax = 128

func (r *registry) manifest(w *recorder, req *http.Request, rt route, tok *registryToken) *regError {
	if !strings.Contains(rt.ref, ":") && len(rt.ref) > registryTagMax { // a tag, not a digest of any algorithm
		return regErr(http.StatusBadRequest, "TAG_INVALID", "tag of %d characters: the registry API takes at most %d (longer tags: the ECR API)", len(rt.ref), registryTagMax)
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		r.mu.Lock()
		repo, ok := r.repos[rt.repo]
		if !ok {
			r.mu.Unlock()
			return r.noRepo(rt.repo)
		}
		digest := rt.ref
		if !isDigest(rt.ref) {
			digest = repo.tagIndex[rt.ref]
		}
		m := repo.manifests[digest]
		pullable := m != nil && r.pullable(m)
		if pullable && req.Method == http.MethodGet && acceptable(req.Header.Values("Accept"), m.mediaType) {
			r.recordPull(m, tok)
		}
		r.mu.Unlock()
		if m == nil {
			return regErr(http.StatusNotFound, "MANIFEST_UNKNOWN", "Requested image not found")
		}
		if !pullable {
			// "Archived images cannot be pulled. Requests to pull the archived image will
			// fail with a 404 error." (archive-image.html)
			return regErr(http.StatusNotFound, "MANIFEST_UNKNOWN", "The image is archived and cannot be pulled; restore it first")
		}
		if !acceptable(req.Header.Values("Accept"), m.mediaType) {
			return regErr(http.StatusNotFound, "MANIFEST_UNKNOWN", "the stored manifest type %s is not in Accept (ECR would convert it and change its digest)", m.mediaType)
		}
		w.Header().Set("Content-Type", m.mediaType)
		w.Header().Set("Docker-Content-Digest", m.digest)
		w.Header().Set("Content-Length", strconv.Itoa(len(m.body)))
		w.WriteHeader(http.StatusOK)
		if req.Method == http.MethodGet {
			w.Write(m.body)
		}
		return nil
	case http.MethodPut:
		body, err := io.ReadAll(io.LimitReader(req.Body, maxManifestSize+1))
		if err != nil {
			return regErr(http.StatusBadRequest, "MANIFEST_INVALID", "reading the manifest: %v", err)
		}
		digest, rerr := r.putManifest(rt.repo, rt.ref, body, req.Header.Get("Content-Type"))
		if rerr != nil {
			return rerr
		}
		w.Header().Set("Location", "/v2/"+rt.repo+"/manifests/"+digest)
		w.Header().Set("Docker-Content-Digest", digest)
		r.mu.Lock()
		if m := r.repos[rt.repo].manifests[digest]; m != nil && m.subject != "" {
			w.Header().Set("OCI-Subject", m.subject)
		}
		r.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		return nil
	case http.MethodDelete:
		r.mu.Lock()
		defer r.mu.Unlock()
		repo, ok := r.repos[rt.repo]
		if !ok {
			return r.noRepo(rt.repo)
		}
		id := imageID{}
		if isDigest(rt.ref) {
			id.Digest = rt.ref
		} else {
			id.Tag = rt.ref
		}
		m, _, _ := repo.resolve(id)
		if f := repo.deleteImage(id); f != "" {
			return regErr(http.StatusNotFound, "MANIFEST_UNKNOWN", "Requested image not found")
		}
		r.emitDelete(rt.repo, m.digest, id.Tag)
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	return regErr(http.StatusMethodNotAllowed, "UNSUPPORTED", "method %s not allowed on manifests", req.Method)
}

// putManifest stores a manifest under a tag or its digest, with ECR's checks. The ECR
// API's PutImage shares it.
func (r *registry) putManifest(repoName, ref string, body []byte, contentType string) (string, *regError) {
	rec, err := parseManifest(body, contentType)
	if err != nil {
		return "", regErr(http.StatusBadRequest, "MANIFEST_INVALID", "%v", err)
	}
	isTag := !isDigest(ref)
	if !isTag && ref != rec.digest {
		return "", regErr(http.StatusBadRequest, "DIGEST_INVALID", "manifest digest %s does not match %s", rec.digest, ref)
	}
	if isTag && !tagPattern.MatchString(ref) {
		return "", regErr(http.StatusBadRequest, "TAG_INVALID", "invalid tag %q", ref)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	repo, ok := r.repos[repoName]
	if !ok {
		return "", r.noRepo(repoName)
	}
	if blobs, manifests := repo.missingReferences(rec); len(blobs)+len(manifests) > 0 {
		return "", regErr(http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", "the manifest references content missing from the repository: %s", strings.Join(append(blobs, manifests...), ", "))
	}
	if rec.subject != "" {
		n := 0
		for _, m := range repo.manifests {
			if m.subject == rec.subject && m.digest != rec.digest {
				n++
			}
		}
		// https://docs.aws.amazon.com/AmazonECR/latest/userguide/service-quotas.html (onyx PR #13996 for the wording)
		if n >= 100 {
			return "", regErr(http.StatusForbidden, "DENIED", "The subject of your artifact has the maximum number of artifacts (100) referring to it")
		}
	}
	if isTag {
		if _, exists := repo.tagIndex[ref]; exists && repo.tagImmutable(ref) {
			// ECR refuses even a re-push of the same digest (containers-roadmap#2380).
			return "", regErr(http.StatusBadRequest, "TAG_INVALID", "The image tag '%s' already exists in the '%s' repository and cannot be overwritten because the tag is immutable.", ref, repoName)
		}
	}
	if old, ok := repo.manifests[rec.digest]; ok {
		rec.pushedAt, rec.scan = old.pushedAt, old.scan
		// Pushing an archived image again restores it (archive.go).
		rec.lastArchivedAt, rec.lastActivatedAt = old.lastArchivedAt, old.lastActivatedAt
		rec.status, rec.activatingSince = old.status, old.activatingSince
		r.restored(rec)
	} else {
		rec.pushedAt = r.sb.now()
	}
	repo.manifests[rec.digest] = rec
	r.scanOnPush(repo, rec)
	tag := ""
	if isTag {
		repo.tagIndex[ref] = rec.digest
		tag = ref
	}
	r.emitPush(repoName, rec, tag)
	return rec.digest, nil
}

// blob answers a blob HEAD itself and a blob GET with a 307 redirect to a presigned
// storage URL, as ECR does (see storage.go); the bytes flow there.
func (r *registry) blob(w *recorder, req *http.Request, rt route, tok *registryToken) *regError {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return regErr(http.StatusMethodNotAllowed, "UNSUPPORTED", "method %s not allowed on blobs", req.Method)
	}
	r.mu.Lock()
	repo, ok := r.repos[rt.repo]
	linked := false
	if ok {
		_, linked = repo.blobs[rt.ref]
	}
	r.mu.Unlock()
	if !ok {
		return r.noRepo(rt.repo)
	}
	if !isDigest(rt.ref) {
		return regErr(http.StatusBadRequest, "DIGEST_INVALID", "invalid digest %q", rt.ref)
	}
	size, onDisk := r.blobs.stat(rt.ref)
	if !linked || !onDisk {
		return regErr(http.StatusNotFound, "BLOB_UNKNOWN", "blob %s is not in repository %s", rt.ref, rt.repo)
	}
	if req.Method == http.MethodHead {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.Header().Set("Docker-Content-Digest", rt.ref)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		return nil
	}
	// Which headers ECR sends beside Location is not documented: a guess.
	w.Header().Set("Location", r.sb.storage.presign(r.account, r.region, rt.repo, rt.ref, tok))
	w.Header().Set("Docker-Content-Digest", rt.ref)
	w.WriteHeader(http.StatusTemporaryRedirect)
	return nil
}

func (r *registry) upload(w *recorder, req *http.Request, rt route, tok *registryToken, entry *Entry) *regError {
	r.mu.Lock()
	_, repoOK := r.repos[rt.repo]
	r.mu.Unlock()
	if !repoOK {
		if req.Method == http.MethodPost {
			// ECR closes the connection of an upload to a repository that does not exist
			// (bitnami/charts-syncer PR #171; dotnet/sdk-container-builds PR #279).
			entry.ErrorCode = "CONNECTION_CLOSED"
			panic(http.ErrAbortHandler)
		}
		return r.noRepo(rt.repo)
	}
	switch req.Method {
	case http.MethodPost:
		// A cross-repository mount (?mount=&from=) answers 201 when ECR would mount the
		// blob; otherwise the POST starts a normal upload (mount.go).
		if mounted, err := r.mount(w, req, rt.repo, tok, entry); mounted || err != nil {
			return err
		}
		id := randomString(32, "0123456789abcdef")
		f, err := os.CreateTemp(filepath.Join(r.blobs.dir, "uploads"), "upload-")
		if err != nil {
			return regErr(http.StatusInternalServerError, "UNKNOWN", "creating upload: %v", err)
		}
		f.Close()
		u := &upload{repo: rt.repo, file: f.Name(), hash: sha256.New()}
		r.mu.Lock()
		r.uploads[id] = u
		r.mu.Unlock()
		if d := req.URL.Query().Get("digest"); d != "" {
			// Monolithic POST with the whole blob.
			if n, err := r.appendPart(u, req.Body, entry); err != nil {
				return err
			} else if n == 0 {
				return regErr(http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "monolithic upload without a body")
			}
			return r.finish(w, id, u, rt.repo, d)
		}
		w.Header().Set("Location", "/v2/"+rt.repo+"/blobs/uploads/"+id)
		w.Header().Set("Docker-Upload-UUID", id)
		w.Header().Set("Range", "0-0")
		w.WriteHeader(http.StatusAccepted)
		return nil
	case http.MethodPatch, http.MethodPut:
		r.mu.Lock()
		u := r.uploads[rt.ref]
		r.mu.Unlock()
		if u == nil || u.repo != rt.repo {
			return regErr(http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "upload %q unknown", rt.ref)
		}
		u.mu.Lock()
		defer u.mu.Unlock()
		if cr := req.Header.Get("Content-Range"); cr != "" && req.Method == http.MethodPatch {
			var start, end int64
			if _, err := fmt.Sscanf(cr, "%d-%d", &start, &end); err != nil || start != u.size {
				w.Header().Set("Range", fmt.Sprintf("0-%d", max(u.size-1, 0)))
				return regErr(http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID", "Content-Range %q does not continue the upload at %d", cr, u.size)
			}
		}
		if req.Method == http.MethodPut && req.ContentLength == 0 {
			return r.finish(w, rt.ref, u, rt.repo, req.URL.Query().Get("digest"))
		}
		if _, err := r.appendPart(u, req.Body, entry); err != nil {
			return err
		}
		if req.Method == http.MethodPut {
			return r.finish(w, rt.ref, u, rt.repo, req.URL.Query().Get("digest"))
		}
		w.Header().Set("Location", "/v2/"+rt.repo+"/blobs/uploads/"+rt.ref)
		w.Header().Set("Docker-Upload-UUID", rt.ref)
		w.Header().Set("Range", fmt.Sprintf("0-%d", max(u.size-1, 0)))
		// ECR answers each PATCH with 201 Created, not the spec's 202
		// (dotnet/sdk-container-builds PR #279).
		w.WriteHeader(http.StatusCreated)
		return nil
	case http.MethodGet:
		// Upload status, as the distribution spec has it: 204 with the Range received.
		// That ECR answers it (and with which IAM action) is a guess.
		r.mu.Lock()
		u := r.uploads[rt.ref]
		r.mu.Unlock()
		if u == nil || u.repo != rt.repo {
			return regErr(http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "upload %q unknown", rt.ref)
		}
		u.mu.Lock()
		size := u.size
		u.mu.Unlock()
		w.Header().Set("Location", "/v2/"+rt.repo+"/blobs/uploads/"+rt.ref)
		w.Header().Set("Docker-Upload-UUID", rt.ref)
		w.Header().Set("Range", fmt.Sprintf("0-%d", max(size-1, 0)))
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodDelete:
		r.mu.Lock()
		u := r.uploads[rt.ref]
		delete(r.uploads, rt.ref)
		r.mu.Unlock()
		if u == nil {
			return regErr(http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "upload %q unknown", rt.ref)
		}
		os.Remove(u.file)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return regErr(http.StatusMethodNotAllowed, "UNSUPPORTED", "method %s not allowed on uploads", req.Method)
}

// appendPart streams one request body onto an upload's file.
func (r *registry) appendPart(u *upload, body io.Reader, entry *Entry) (int64, *regError) {
	if u.parts > 0 && u.lastPart < minPartSize {
		return 0, regErr(http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "LayerPartTooSmallException: All layer parts except the last part should be at least 5MB")
	}
	f, err := os.OpenFile(u.file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return 0, regErr(http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "upload gone: %v", err)
	}
	defer f.Close()
	// A part that does not arrive whole is not kept (a reset fault panics mid-copy): the
	// upload stays where it was, as the Range a client reads back says.
	state, _ := u.hash.(encoding.BinaryMarshaler).MarshalBinary()
	rollback := func() {
		f.Truncate(u.size)
		u.hash.(encoding.BinaryUnmarshaler).UnmarshalBinary(state)
	}
	defer func() {
		if p := recover(); p != nil {
			rollback()
			panic(p)
		}
	}()
	n, err := io.Copy(io.MultiWriter(f, u.hash), body)
	entry.Bytes += n
	if err != nil {
		rollback()
		return n, regErr(http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "reading the upload body: %v", err)
	}
	u.size += n
	if n > 0 {
		u.parts++
		u.lastPart = n
	}
	return n, nil
}

func (r *registry) finish(w *recorder, id string, u *upload, repoName, digest string) *regError {
	r.mu.Lock()
	delete(r.uploads, id)
	r.mu.Unlock()
	if u.size == 0 {
		// ECR has no zero-byte blobs: CompleteLayerUpload fails with EmptyUploadException,
		// seen through the registry API as this 400 (radius-project/radius#7887;
		// devcontainers/cli#814).
		os.Remove(u.file)
		return regErr(http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "The upload with id '%s' in the repository with name '%s' in registry with id '%s' cannot be completed because it does not have any parts", id, repoName, r.account)
	}
	got := "sha256:" + hex.EncodeToString(u.hash.Sum(nil))
	if !isDigest(digest) || digest != got {
		os.Remove(u.file)
		return regErr(http.StatusBadRequest, "DIGEST_INVALID", "uploaded content has digest %s, not %q", got, digest)
	}
	if _, exists := r.blobs.stat(digest); exists {
		os.Remove(u.file)
	} else if err := r.blobs.commit(u.file, digest); err != nil {
		return regErr(http.StatusInternalServerError, "UNKNOWN", "storing blob: %v", err)
	}
	r.mu.Lock()
	if repo, ok := r.repos[repoName]; ok {
		repo.blobs[digest] = u.size
	}
	r.mu.Unlock()
	w.Header().Set("Location", "/v2/"+repoName+"/blobs/"+digest)
	w.Header().Set("Docker-Content-Digest", digest)
	w.WriteHeader(http.StatusCreated)
	return nil
}

// pageParams reads ?n= and ?last=; ECR refuses n over 1000 (go-containerregistry#1091).
func pageParams(req *http.Request) (int, string, *regError) {
	n := 0
	if v := req.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 || n > 1000 {
			return 0, "", regErr(http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", "n must be between 0 and 1000")
		}
	}
	return n, req.URL.Query().Get("last"), nil
}

func paginate(w *recorder, base string, items []string, n int, last string) []string {
	start := 0
	if last != "" {
		start = sort.SearchStrings(items, last)
		if start < len(items) && items[start] == last {
			start++
		}
	}
	items = items[start:]
	if n > 0 && len(items) > n {
		items = items[:n]
		w.Header().Set("Link", fmt.Sprintf(`<%s?n=%d&last=%s>; rel="next"`, base, n, items[len(items)-1]))
	}
	return items
}

func (r *registry) tags(w *recorder, req *http.Request, rt route) *regError {
	n, last, perr := pageParams(req)
	if perr != nil {
		return perr
	}
	r.mu.Lock()
	repo, ok := r.repos[rt.repo]
	var tags []string
	if ok {
		for t := range repo.tagIndex {
			tags = append(tags, t)
		}
	}
	r.mu.Unlock()
	if !ok {
		return r.noRepo(rt.repo)
	}
	sort.Strings(tags)
	tags = paginate(w, "/v2/"+rt.repo+"/tags/list", tags, n, last)
	if tags == nil {
		tags = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	return writeJSON(w, map[string]any{"name": rt.repo, "tags": tags})
}

func (r *registry) catalog(w *recorder, req *http.Request) *regError {
	n, last, perr := pageParams(req)
	if perr != nil {
		return perr
	}
	r.mu.Lock()
	names := make([]string, 0, len(r.repos))
	for name := range r.repos {
		names = append(names, name)
	}
	r.mu.Unlock()
	sort.Strings(names)
	names = paginate(w, "/v2/_catalog", names, n, last)
	w.Header().Set("Content-Type", "application/json")
	return writeJSON(w, map[string]any{"repositories": names})
}

// referrers answers the OCI 1.1 referrers API, with client-visible pagination when the
// sandbox is configured for it.
func (r *registry) referrers(w *recorder, req *http.Request, rt route) *regError {
	if !isDigest(rt.ref) {
		return regErr(http.StatusBadRequest, "DIGEST_INVALID", "invalid digest %q", rt.ref)
	}
	filter := req.URL.Query().Get("artifactType")
	r.mu.Lock()
	repo, ok := r.repos[rt.repo]
	var descs []descriptor
	if ok {
		for _, d := range repo.sortedDigests() {
			m := repo.manifests[d]
			if m.subject != rt.ref || (filter != "" && m.artifactType != filter) || !r.pullable(m) {
				continue
			}
			descs = append(descs, descriptor{MediaType: m.mediaType, Digest: m.digest, Size: int64(len(m.body)), ArtifactType: m.artifactType, Annotations: m.annotations})
		}
	}
	r.mu.Unlock()
	if !ok {
		return r.noRepo(rt.repo)
	}
	if size := r.sb.cfg.ReferrersPageSize; size > 0 {
		page, _ := strconv.Atoi(req.URL.Query().Get("page"))
		start := page * size
		if start > len(descs) {
			start = len(descs)
		}
		end := min(start+size, len(descs))
		if end < len(descs) {
			next := fmt.Sprintf("/v2/%s/referrers/%s?page=%d", rt.repo, rt.ref, page+1)
			if filter != "" {
				next += "&artifactType=" + filter
			}
			w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="next"`, next))
		}
		descs = descs[start:end]
	}
	if descs == nil {
		descs = []descriptor{}
	}
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	return writeJSON(w, map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descs})
}

func writeJSON(w http.ResponseWriter, v any) *regError {
	b, err := json.Marshal(v)
	if err != nil {
		return regErr(http.StatusInternalServerError, "UNKNOWN", "%v", err)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	return nil
}
