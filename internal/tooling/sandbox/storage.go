package sandbox

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Blob storage as ECR serves it: a blob GET at the registry is answered with a redirect
// to a presigned URL of an S3 bucket ("prod-<region>-starport-layer-bucket"), and the
// layer's bytes come from there.
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html (the bucket
// layers are downloaded from); awsdocs/amazon-ecr-user-guide#24.
//
// The sandbox has one storage listener, on 127.0.0.1 like every other. Presigned URLs
// carry what S3 SigV4 query authentication carries
// (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html):
// X-Amz-Algorithm=AWS4-HMAC-SHA256, X-Amz-Credential (a random temporary key ID / date /
// region / s3 / aws4_request), X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders=host,
// X-Amz-Security-Token and X-Amz-Signature. The signature is not SigV4: an HMAC-SHA256,
// with a key only the sandbox knows, over the path, date, expiry, credential and token,
// which is all a client can tell apart.
//
// URLs name the host "localhost", not 127.0.0.1: on AWS the registry and the bucket are
// different hosts, so clients drop an Authorization header they set themselves when they
// follow the redirect (Go's http.Client does for any other hostname, whatever the port);
// with both on 127.0.0.1 Go would forward it and S3's refusal would fire where AWS's
// would not. A client whose transport adds credentials to every request still sends
// them, and that is what StorageViolations reports.

// defaultPresignExpiry is X-Amz-Expires when Config.PresignExpiry is zero. How long ECR's
// presigned layer URLs stay valid is not documented: a guess.
const defaultPresignExpiry = time.Hour

const (
	presignAlgorithm = "AWS4-HMAC-SHA256"
	alnum            = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// bucketName is the bucket ECR downloads layers from in a region.
func bucketName(region string) string { return "prod-" + region + "-starport-layer-bucket" }

type storage struct {
	sb     *Sandbox
	key    []byte
	ln     net.Listener
	server *http.Server
	host   string // as presigned URLs name it

	mu         sync.Mutex
	issued     map[string]*presigned // by signature
	violations []string
}

// presigned is one URL handed out: whom for, what for, and its secrets.
type presigned struct {
	account, region, repo, digest string
	principal, callerAccount      string
	keyID, token, signature       string
}

func newStorage(s *Sandbox) (*storage, error) {
	ln, err := listenLoopback("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		ln.Close()
		return nil, err
	}
	st := &storage{sb: s, key: key, ln: ln, issued: map[string]*presigned{}}
	st.host = "localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	st.server = &http.Server{Handler: st, ReadHeaderTimeout: 10 * time.Second}
	return st, nil
}

// presign returns a storage URL for a blob of repo, valid for Config.PresignExpiry.
func (st *storage) presign(account, region, repo, digest string, tok *registryToken) string {
	now := st.sb.now().UTC()
	p := &presigned{
		account: account, region: region, repo: repo, digest: digest,
		principal: tok.principal, callerAccount: tok.account,
		keyID: "ASIA" + randomString(16, upperAlnum),
		// Shaped like an STS session token, without characters a query would escape, so
		// that a log line holding the URL holds the token verbatim.
		token: "IQoJb3JpZ2luX2VjE" + randomString(280, alnum),
	}
	expires := int64((st.sb.presignExpiry() + time.Second - 1) / time.Second)
	q := url.Values{}
	q.Set("X-Amz-Algorithm", presignAlgorithm)
	q.Set("X-Amz-Credential", p.keyID+"/"+now.Format("20060102")+"/"+region+"/s3/aws4_request")
	q.Set("X-Amz-Date", now.Format("20060102T150405Z"))
	q.Set("X-Amz-Expires", strconv.FormatInt(max(expires, 1), 10))
	q.Set("X-Amz-SignedHeaders", "host")
	q.Set("X-Amz-Security-Token", p.token)
	path := objectPath(account, region, digest)
	p.signature = st.sign(path, q)
	q.Set("X-Amz-Signature", p.signature)
	st.mu.Lock()
	st.issued[p.signature] = p
	st.mu.Unlock()
	return "http://" + st.host + path + "?" + q.Encode()
}

func objectPath(account, region, digest string) string {
	return "/" + bucketName(region) + "/" + account + "-" + region + "/" + digest
}

// parseObjectPath splits /<bucket>/<account>-<region>/<digest>.
func parseObjectPath(p string) (account, region, digest string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(parts) != 3 || len(parts[1]) < 14 || parts[1][12] != '-' {
		return "", "", "", false
	}
	account, region, digest = parts[1][:12], parts[1][13:], parts[2]
	if parts[0] != bucketName(region) || !isAccountID(account) || !isDigest(digest) {
		return "", "", "", false
	}
	return account, region, digest, true
}

func (st *storage) sign(path string, q url.Values) string {
	m := hmac.New(sha256.New, st.key)
	for _, v := range []string{path, q.Get("X-Amz-Date"), q.Get("X-Amz-Expires"), q.Get("X-Amz-Credential"), q.Get("X-Amz-Security-Token")} {
		m.Write([]byte(v))
		m.Write([]byte{'\n'})
	}
	return hex.EncodeToString(m.Sum(nil))
}

// secrets lists every secret of every URL handed out.
func (st *storage) secrets() []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]string, 0, 3*len(st.issued))
	for _, p := range st.issued {
		out = append(out, p.keyID, p.token, p.signature)
	}
	return out
}

// StorageViolations lists the requests to presigned storage that real S3 refuses for a
// client's own mistake (an Authorization header alongside the presigned query), each
// naming the request and why. Tests assert it is empty.
func (s *Sandbox) StorageViolations() []string {
	s.storage.mu.Lock()
	defer s.storage.mu.Unlock()
	return append([]string(nil), s.storage.violations...)
}

func (s *Sandbox) presignExpiry() time.Duration {
	if s.cfg.PresignExpiry > 0 {
		return s.cfg.PresignExpiry
	}
	return defaultPresignExpiry
}

// s3Error is S3's REST error body.
// https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
type s3Error struct {
	XMLName       xml.Name `xml:"Error"`
	Code          string   `xml:"Code"`
	Message       string   `xml:"Message"`
	ArgumentName  string   `xml:"ArgumentName,omitempty"`
	ArgumentValue string   `xml:"ArgumentValue,omitempty"`
	XAmzExpires   string   `xml:"X-Amz-Expires,omitempty"`
	Expires       string   `xml:"Expires,omitempty"`
	ServerTime    string   `xml:"ServerTime,omitempty"`
	RequestID     string   `xml:"RequestId"`
	HostID        string   `xml:"HostId"`
	status        int
}

func s3Err(status int, code, message string) *s3Error {
	return &s3Error{status: status, Code: code, Message: message}
}

// s3FaultErrors are what S3 answers for each injected status: InternalError and SlowDown
// are S3's documented 500 and 503 codes; S3 documents no 429, 502 or 504, so those codes
// are guesses.
var s3FaultErrors = map[int]*s3Error{
	http.StatusInternalServerError: s3Err(500, "InternalError", "We encountered an internal error. Please try again."),
	http.StatusBadGateway:          s3Err(502, "ServiceUnavailable", "Service is unable to handle request."),
	http.StatusServiceUnavailable:  s3Err(503, "SlowDown", "Please reduce your request rate."),
	http.StatusGatewayTimeout:      s3Err(504, "ServiceUnavailable", "Service is unable to handle request."),
	http.StatusTooManyRequests:     s3Err(429, "SlowDown", "Please reduce your request rate."),
}

func (st *storage) fail(w http.ResponseWriter, entry *Entry, e *s3Error) {
	entry.ErrorCode = e.Code
	e.RequestID = w.Header().Get("X-Amz-Request-Id")
	e.HostID = randomString(24, alnum)
	body, _ := xml.Marshal(e)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(body)))
	w.WriteHeader(e.status)
	w.Write([]byte(xml.Header))
	w.Write(body)
}

func (st *storage) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	st.sb.delay(req.Context())
	sw := &storageWriter{ResponseWriter: w, cut: -1}
	sw.Header().Set("X-Amz-Request-Id", randomString(16, upperAlnum))
	began := time.Now()
	entry := Entry{Time: st.sb.now(), Service: "s3", Operation: req.Method + " object"}
	account, region, digest, pathOK := parseObjectPath(req.URL.Path)
	entry.Account, entry.Region, entry.Reference = account, region, digest
	if p := st.lookup(req.URL.Query().Get("X-Amz-Signature")); p != nil && p.account == account {
		entry.Repository, entry.Principal, entry.CallerAccount = p.repo, p.principal, p.callerAccount
	}
	defer func() {
		if entry.Status == 0 {
			entry.Status = sw.status
		}
		entry.Bytes = sw.bytes
		entry.Duration = time.Since(began)
		if p := recover(); p != nil {
			entry.Status = 0
			if entry.ErrorCode == "" {
				entry.ErrorCode = "CONNECTION_CLOSED"
			}
			st.sb.accessLog.add(entry)
			panic(p)
		}
		st.sb.accessLog.add(entry)
	}()
	if auth := req.Header.Get("Authorization"); auth != "" {
		// S3 accepts one authentication per request: a presigned query and an
		// Authorization header together are refused (catalyst/moodle-tool_objectfs#303
		// shows the answer). On AWS that fails the download; here it is also recorded.
		scheme, _, _ := strings.Cut(auth, " ")
		st.violate(fmt.Sprintf("%s %s (account %s, %s@%s): an Authorization header (%s) alongside the presigned query: S3 answers 400 InvalidArgument",
			req.Method, req.URL.Path, account, entry.Repository, digest, scheme))
		e := s3Err(http.StatusBadRequest, "InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified")
		e.ArgumentName, e.ArgumentValue = "Authorization", auth
		st.fail(sw, &entry, e)
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		st.fail(sw, &entry, s3Err(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource."))
		return
	}
	if e := st.verify(req, pathOK); e != nil {
		st.fail(sw, &entry, e)
		return
	}
	step := Step("")
	if req.Method == http.MethodGet {
		step = StepStorageGET
	}
	if f := st.sb.faults.takeRegistry(faultTarget{account: account, region: region, method: req.Method, kind: "blob", repo: entry.Repository, step: step, storage: true}); f != nil {
		entry.Fault = faultLabel(StepStorageGET, f)
		if !st.applyFault(sw, req, &entry, f) {
			return
		}
	}
	reg := st.sb.lookupRegistry(account, region)
	var f *os.File
	var size int64
	if reg != nil {
		if p, err := reg.blobs.path(digest); err == nil {
			f, _ = os.Open(p)
		}
	}
	if f == nil {
		st.fail(sw, &entry, s3Err(http.StatusNotFound, "NoSuchKey", "The specified key does not exist."))
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	if step != "" {
		st.sb.hold(holdTarget{account: account, step: step, repo: entry.Repository, refs: []string{digest}}, entryWith(entry, http.StatusOK, size))
	}
	sw.Header().Set("Content-Type", "application/octet-stream")
	// ServeContent answers Range (bytes=a-b, a-, -n) with 206 and Content-Range, and an
	// unsatisfiable one with 416, as S3 does.
	http.ServeContent(sw, req, "", time.Time{}, f)
}

// entryWith is e as it will be logged with this status and size.
func entryWith(e Entry, status int, bytes int64) Entry {
	e.Status, e.Bytes = status, bytes
	return e
}

// applyFault answers with an injected fault, or arms a cut; false: the request is answered.
func (st *storage) applyFault(sw *storageWriter, req *http.Request, entry *Entry, f *RegistryFault) bool {
	switch f.Fault {
	case FaultResetBeforeHeaders:
		entry.ErrorCode = "CONNECTION_CLOSED"
		panic(http.ErrAbortHandler)
	case FaultSlow:
		if !st.sb.slow(req, f.Delay) {
			entry.ErrorCode = "CLIENT_CLOSED"
			panic(http.ErrAbortHandler)
		}
		return true
	case FaultResetMidBody:
		sw.cutAt = f.ResetAfterBytes
		sw.cutting = true
		return true
	}
	e := s3FaultErrors[f.Status]
	if e == nil {
		e = s3Err(f.Status, "InternalError", "injected fault")
	}
	if f.RetryAfter > 0 {
		sw.Header().Set("Retry-After", strconv.Itoa(int((f.RetryAfter+time.Second-1)/time.Second)))
	}
	copied := *e
	st.fail(sw, entry, &copied)
	return false
}

func (st *storage) lookup(signature string) *presigned {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.issued[signature]
}

func (st *storage) violate(v string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.violations = append(st.violations, v)
}

// verify checks the presigned query: complete, signed by the sandbox, not expired (by
// the sandbox clock). The codes are S3's; the wording of the malformed-query answers is a
// guess.
func (st *storage) verify(req *http.Request, pathOK bool) *s3Error {
	q := req.URL.Query()
	for _, k := range []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"} {
		if q.Get(k) == "" {
			if q.Get("X-Amz-Algorithm") == "" && q.Get("X-Amz-Signature") == "" {
				return s3Err(http.StatusForbidden, "AccessDenied", "Access Denied")
			}
			return s3Err(http.StatusBadRequest, "AuthorizationQueryParametersError", "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.")
		}
	}
	if q.Get("X-Amz-Algorithm") != presignAlgorithm {
		return s3Err(http.StatusBadRequest, "AuthorizationQueryParametersError", "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
	}
	date, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	expires, err2 := strconv.ParseInt(q.Get("X-Amz-Expires"), 10, 64)
	if err != nil || err2 != nil || expires < 1 || expires > 604800 {
		return s3Err(http.StatusBadRequest, "AuthorizationQueryParametersError", "X-Amz-Date must be in the ISO8601 Long Format and X-Amz-Expires between 1 and 604800 seconds")
	}
	want := st.sign(req.URL.Path, q)
	if !pathOK || !hmac.Equal([]byte(want), []byte(q.Get("X-Amz-Signature"))) || st.lookup(q.Get("X-Amz-Signature")) == nil {
		return s3Err(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
	}
	now := st.sb.now().UTC()
	if deadline := date.Add(time.Duration(expires) * time.Second); now.After(deadline) {
		e := s3Err(http.StatusForbidden, "AccessDenied", "Request has expired")
		e.XAmzExpires = strconv.FormatInt(expires, 10)
		e.Expires = deadline.Format("2006-01-02T15:04:05Z")
		e.ServerTime = now.Format("2006-01-02T15:04:05Z")
		return e
	}
	return nil
}

// storageWriter records what storage answered and applies a reset-mid-body fault to a
// streamed answer: the cut is placed once Content-Length is known (at WriteHeader).
type storageWriter struct {
	http.ResponseWriter
	status  int
	bytes   int64
	cutting bool
	cutAt   int64 // the fault's ResetAfterBytes (0: half)
	cut     int64 // resolved cut point; -1: none
	swallow bool  // the body was replaced by an S3 error
}

func (w *storageWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	if code == http.StatusRequestedRangeNotSatisfiable {
		// ServeContent's 416 body is plain text; S3's is an InvalidRange error.
		e := s3Err(code, "InvalidRange", "The requested range is not satisfiable")
		e.RequestID, e.HostID = w.Header().Get("X-Amz-Request-Id"), randomString(24, alnum)
		body, _ := xml.Marshal(e)
		body = append([]byte(xml.Header), body...)
		w.Header().Set("Content-Type", "application/xml")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.ResponseWriter.WriteHeader(code)
		n, _ := w.ResponseWriter.Write(body)
		w.bytes += int64(n)
		w.swallow = true
		return
	}
	if w.cutting {
		size, _ := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64)
		if w.cut = cutPoint(w.cutAt, size); w.cut < 0 {
			panic(http.ErrAbortHandler) // nothing to cut inside: close before the headers
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *storageWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return len(b), nil
	}
	if w.cut >= 0 && w.bytes+int64(len(b)) > w.cut {
		n, _ := w.ResponseWriter.Write(b[:w.cut-w.bytes])
		w.bytes += int64(n)
		if f, ok := w.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}
