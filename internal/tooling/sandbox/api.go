package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// maxAPIBody bounds API request bodies (ECR's largest request, PutImage, carries a
// manifest of at most 4 MiB).
const maxAPIBody = 8 << 20

// caller is the authenticated identity of an API request.
type caller struct {
	cred    *credential
	region  string
	service string
}

// apiError is an AWS-shaped error.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// serveAPI routes an AWS API request by the service named in its SigV4 credential scope,
// after checking the signature.
func (s *Sandbox) serveAPI(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAPIBody+1))
	if err != nil {
		return
	}
	s.delay(r.Context())
	scope, scopeErr := parseAuthorization(r.Header.Get("Authorization"))
	service := scope.service
	if service == "" {
		service = guessService(r)
	}
	op := operationName(service, r, body)
	began := time.Now()
	entry := Entry{Time: s.now(), Service: service, Operation: op, Action: service + ":" + iamAction(service, op), Region: scope.region}
	var c *caller
	var aerr *apiError
	switch {
	case len(body) > maxAPIBody:
		aerr = errorf(413, "RequestEntityTooLarge", "request body exceeds %d bytes", maxAPIBody)
	case scopeErr != nil:
		aerr = scopeErr
	default:
		c, aerr = s.authenticate(r, body, scope)
	}
	if c != nil {
		entry.CallerAccount, entry.Principal, entry.Account = c.cred.account, c.cred.principalARN, c.cred.account
	}
	var fault *APIFault
	ctx := r.Context()
	if aerr == nil {
		fault = s.faults.takeAPI(apiCall{service: service, operation: op, account: entry.CallerAccount,
			region: scope.region, principal: entry.Principal, resources: apiResources(c, service, op, body)})
		switch {
		case fault == nil, fault.Entries > 0, fault.LostAnswer:
		case fault.ImageFailure != "":
			entry.Fault = "image:" + fault.ImageFailure
			ctx = context.WithValue(ctx, imageFailureKey{}, fault.ImageFailure)
		case fault.Reset:
			entry.Fault, entry.ErrorCode = "reset", "CONNECTION_CLOSED"
			entry.Duration = time.Since(began)
			s.accessLog.add(entry)
			panic(http.ErrAbortHandler) // closes the connection before the answer
		default:
			entry.Fault = fault.Code
			aerr = errorf(faultStatus(fault.Code), fault.Code, "%s", faultMessage(fault.Code))
		}
	}
	if aerr == nil {
		aerr = s.authorizeAPI(c, service, op, body, &entry)
	}
	if aerr == nil && service == "ecr" && op == "PutImage" && !s.quotas.allowPutImage(c.cred.account, scope.region) {
		s.faults.count1("quota:PutImage")
		aerr = errorf(400, "ThrottlingException", "Rate exceeded")
	}
	var resp any
	if aerr == nil {
		switch service {
		case "ecr":
			resp, aerr = s.ecrCall(ctx, c, op, body, &entry)
		case "sts":
			resp, aerr = s.stsCall(c, op, body, &entry)
		case "sqs":
			resp, aerr = s.sqsCall(r.Context(), c, op, body, &entry, fault)
		case "events":
			resp, aerr = s.eventsCall(c, op, body, &entry)
		case "ssm":
			resp, aerr = s.ssmCall(c, op, body, &entry)
		case "kms":
			resp, aerr = s.kmsCall(c, op, body, &entry)
		default:
			aerr = errorf(400, "UnknownOperationException", "the sandbox does not emulate service %q", service)
		}
	}
	if aerr != nil {
		entry.Status, entry.ErrorCode = aerr.Status, aerr.Code
		entry.Duration = time.Since(began)
		s.accessLog.add(entry)
		s.writeAPIError(w, service, aerr)
		return
	}
	entry.Status = http.StatusOK
	// The operation's effect is applied: a hold pauses here, before the answer.
	s.hold(holdTarget{account: entry.Account, operation: op, repo: entry.Repository, refs: splitRefs(entry.Reference)}, entry)
	entry.Duration = time.Since(began)
	if fault != nil && fault.LostAnswer {
		entry.Fault, entry.ErrorCode = "lost-answer", "CONNECTION_CLOSED"
		s.accessLog.add(entry)
		panic(http.ErrAbortHandler) // applied, and the answer never leaves
	}
	s.accessLog.add(entry)
	s.writeAPIResponse(w, service, op, resp)
}

func faultStatus(code string) int {
	if code == "ServiceUnavailableException" || code == "ServiceUnavailable" {
		return http.StatusServiceUnavailable
	}
	if code == "InternalFailure" || code == "ServerException" || code == "InternalError" || code == "InternalServerError" {
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

// faultMessage is the message an injected error code carries: the services' wordings
// where documented, a plain one otherwise.
func faultMessage(code string) string {
	switch {
	case code == "LimitExceededException":
		// ECR API, Common Errors / LimitExceededException (API_CreateRepository,
		// API_PutImage): a service quota, not a throttle.
		return "The operation did not succeed because it would have exceeded a service limit for your account."
	case code == "KmsException":
		return "The operation failed due to a KMS exception."
	case strings.Contains(code, "Throttl"), code == "TooManyRequestsException", code == "RequestLimitExceeded":
		return "Rate exceeded"
	case strings.HasPrefix(code, "AccessDenied"):
		return "User is not authorized to perform this action (injected fault)"
	case code == "RepositoryNotFoundException":
		return "The repository does not exist (injected fault)"
	}
	return "injected fault: " + code
}

func guessService(r *http.Request) string {
	target := r.Header.Get("X-Amz-Target")
	switch {
	case strings.HasPrefix(target, "AmazonEC2ContainerRegistry_V20150921."):
		return "ecr"
	case strings.HasPrefix(target, "AmazonSQS."):
		return "sqs"
	case strings.HasPrefix(target, "AWSEvents."):
		return "events"
	case strings.HasPrefix(target, "AmazonSSM."):
		return "ssm"
	case strings.HasPrefix(target, "TrentService."):
		return "kms"
	}
	return "sts"
}

func operationName(service string, r *http.Request, body []byte) string {
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		if i := strings.LastIndexByte(target, '.'); i >= 0 {
			return target[i+1:]
		}
		return target
	}
	if service == "sts" {
		if v, err := parseQuery(body); err == nil {
			return v.Get("Action")
		}
	}
	return ""
}

type credentialScope struct {
	accessKeyID, date, region, service string
	signedHeaders                      []string
	signature                          string
}

// parseAuthorization reads an "AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…"
// header (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-signing-elements.html).
func parseAuthorization(h string) (credentialScope, *apiError) {
	var sc credentialScope
	if h == "" {
		return sc, errorf(400, "MissingAuthenticationTokenException", "Missing Authentication Token")
	}
	const algo = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(h, algo) {
		return sc, errorf(400, "IncompleteSignatureException", "Authorization header must use AWS4-HMAC-SHA256")
	}
	for _, part := range strings.Split(h[len(algo):], ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "Credential":
			f := strings.Split(v, "/")
			if len(f) != 5 || f[4] != "aws4_request" {
				return sc, errorf(400, "IncompleteSignatureException", "malformed Credential in Authorization header")
			}
			sc.accessKeyID, sc.date, sc.region, sc.service = f[0], f[1], f[2], f[3]
		case "SignedHeaders":
			sc.signedHeaders = strings.Split(v, ";")
		case "Signature":
			sc.signature = v
		}
	}
	if sc.accessKeyID == "" || sc.signature == "" || len(sc.signedHeaders) == 0 {
		return sc, errorf(400, "IncompleteSignatureException", "Authorization header lacks Credential, SignedHeaders or Signature")
	}
	return sc, nil
}

// authenticate recomputes the request's SigV4 signature with the SDK's own signer, from
// the headers the client said it signed, and compares. Error codes follow the services'
// common errors: unknown key, bad signature, expired session token.
func (s *Sandbox) authenticate(r *http.Request, body []byte, sc credentialScope) (*caller, *apiError) {
	jsonStyle := sc.service != "sts"
	s.mu.Lock()
	cred := s.keys[sc.accessKeyID]
	s.mu.Unlock()
	if cred == nil {
		if jsonStyle {
			return nil, errorf(400, "UnrecognizedClientException", "The security token included in the request is invalid.")
		}
		return nil, errorf(403, "InvalidClientTokenId", "The security token included in the request is invalid.")
	}
	signingTime, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return nil, errorf(400, "IncompleteSignatureException", "missing or malformed X-Amz-Date")
	}
	if d := s.now().Sub(signingTime); d > 15*time.Minute || d < -15*time.Minute {
		code := "InvalidSignatureException"
		if !jsonStyle {
			code = "SignatureDoesNotMatch"
		}
		return nil, errorf(403, code, "Signature expired: %s is now earlier or later than 15 min from the current time", signingTime.Format("20060102T150405Z"))
	}
	clone, err := http.NewRequestWithContext(context.Background(), r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, errorf(400, "IncompleteSignatureException", "request URL: %v", err)
	}
	clone.Host = r.Host
	clone.Header = http.Header{}
	clone.ContentLength = 0
	for _, h := range sc.signedHeaders {
		switch h {
		case "host":
		case "content-length":
			clone.ContentLength = int64(len(body))
		default:
			if v, ok := r.Header[http.CanonicalHeaderKey(h)]; ok {
				clone.Header[http.CanonicalHeaderKey(h)] = v
			}
		}
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: cred.accessKeyID, SecretAccessKey: cred.secret, SessionToken: cred.sessionToken}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, clone, hex.EncodeToString(sum[:]), sc.service, sc.region, signingTime); err != nil {
		return nil, errorf(400, "IncompleteSignatureException", "signing: %v", err)
	}
	want, _ := parseAuthorization(clone.Header.Get("Authorization"))
	if subtle.ConstantTimeCompare([]byte(want.signature), []byte(sc.signature)) != 1 ||
		strings.Join(want.signedHeaders, ";") != strings.Join(sc.signedHeaders, ";") {
		if jsonStyle {
			return nil, errorf(400, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
		}
		return nil, errorf(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
	}
	if cred.sessionToken != "" && r.Header.Get("X-Amz-Security-Token") != cred.sessionToken {
		if jsonStyle {
			return nil, errorf(400, "UnrecognizedClientException", "The security token included in the request is invalid.")
		}
		return nil, errorf(403, "InvalidClientTokenId", "The security token included in the request is invalid.")
	}
	if cred.sessionToken != "" && (cred.expired || !s.now().Before(cred.expires)) {
		if jsonStyle {
			return nil, errorf(400, "ExpiredTokenException", "The security token included in the request is expired")
		}
		return nil, errorf(400, "ExpiredToken", "The security token included in the request is expired")
	}
	return &caller{cred: cred, region: sc.region, service: sc.service}, nil
}

// writeAPIError answers in the service's protocol: JSON (`__type`, HTTP 400) for the JSON
// protocols, an XML ErrorResponse for STS's query protocol.
func (s *Sandbox) writeAPIError(w http.ResponseWriter, service string, e *apiError) {
	reqID := randomString(16, upperAlnum)
	w.Header().Set("X-Amzn-RequestId", reqID)
	if service == "sts" {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(e.Status)
		kind := "Sender"
		if e.Status >= 500 {
			kind = "Receiver"
		}
		xml.NewEncoder(w).Encode(stsErrorResponse{
			Error:     stsError{Type: kind, Code: e.Code, Message: e.Message},
			RequestID: reqID,
		})
		return
	}
	typ := e.Code
	if service == "sqs" {
		typ = sqsErrorHeaders(w.Header(), e)
	}
	w.Header().Set("Content-Type", jsonContentType(service))
	w.Header().Set("X-Amzn-ErrorType", e.Code)
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": e.Message})
}

// jsonContentType is the protocol's media type: SQS speaks AWS JSON 1.0, ECR and
// EventBridge AWS JSON 1.1.
func jsonContentType(service string) string {
	if service == "sqs" {
		return "application/x-amz-json-1.0"
	}
	return "application/x-amz-json-1.1"
}

func (s *Sandbox) writeAPIResponse(w http.ResponseWriter, service, op string, resp any) {
	w.Header().Set("X-Amzn-RequestId", randomString(16, upperAlnum))
	if service == "sts" {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, xml.Header)
		xml.NewEncoder(w).Encode(resp)
		return
	}
	w.Header().Set("Content-Type", jsonContentType(service))
	w.WriteHeader(http.StatusOK)
	json.NewEncoder(w).Encode(resp)
}

// epoch is a timestamp as the AWS JSON protocols send it: seconds since 1970 as a number.
type epoch time.Time

func (t epoch) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%.3f", float64(time.Time(t).UnixMilli())/1000)), nil
}
