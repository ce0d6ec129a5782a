package copyengine

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// Error codes of the engine's own failures (beside the registry's codes and retry's).
const (
	CodeInvalid        = "INVALID"         // bad request (digest/tag/repository), rejected before any network call
	CodeDigestMismatch = "DIGEST_MISMATCH" // destination does not serve what we wrote
	CodeTagUnstable    = "TAG_UNSTABLE"    // source tag kept moving while we converged
	// CodeTooLarge: a layer that cannot be uploaded within a whole run (the function's
	// timeout) at the best rate the link has shown: permanent, copy it with the CLI
	// (budget.go).
	CodeTooLarge = "TOO_LARGE_FOR_FUNCTION"
	// CodeNoTimeLeft: a layer that cannot be uploaded in what is left of this run:
	// retryable, the next delivery has a whole run.
	CodeNoTimeLeft = "NO_TIME_LEFT"
)

// Error describes why one step of a copy failed. Code is the registry's error code when
// it sent one (TAG_INVALID, MANIFEST_UNKNOWN, DENIED, ...), the code of a classified
// error it wraps (an ecraccess error from the token source), or one of the Code*
// constants here and in package retry. Transient tells the caller whether re-delivering
// the same event later can succeed; *Error is a retry.Classified.
type Error struct {
	Op        string // e.g. "get source manifest", "put destination tag"
	Code      string
	Status    int  // HTTP status, 0 when no response was received
	AtDest    bool // the destination registry failed (otherwise the source, or neither)
	Transient bool
	Err       error
}

func (e *Error) Error() string {
	s := "replication: " + e.Op
	if e.Code != "" {
		s += ": " + e.Code
	}
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error     { return e.Err }
func (e *Error) ErrorCode() string { return e.Code }
func (e *Error) Retryable() bool   { return e.Transient }

// side says which registry an operation talked to: a 404 from the source means
// the image is gone (permanent), a 404 from the destination during a write is
// eventual consistency or a repository still being created (retryable).
type side int

const (
	onSource side = iota
	onDest
)

// classify wraps err into an *Error. Already classified errors pass through unchanged so
// that the innermost, most precise Op wins; an error another layer classified (an
// ecraccess error inside the *url.Error http.Client returns) keeps its code and class.
func classify(op string, s side, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	e = &Error{Op: op, AtDest: s == onDest, Err: redact(err)}
	var (
		terr *transport.Error
		c    retry.Classified
	)
	switch {
	case errors.As(err, &c):
		e.Code, e.Transient = c.ErrorCode(), c.Retryable()
	case errors.As(err, &terr):
		e.Status = terr.StatusCode
		if len(terr.Errors) > 0 {
			e.Code = string(terr.Errors[0].Code)
		} else {
			// HEAD responses carry no body, so synthesize a code from the status.
			e.Code = codeForStatus(terr.StatusCode)
		}
		e.Transient = retryableRegistryError(e.Code, e.Status, s)
	default:
		e.Code, e.Transient = retry.Classify(err)
	}
	return e
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return string(transport.UnauthorizedErrorCode)
	case http.StatusForbidden:
		return string(transport.DeniedErrorCode)
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusTooManyRequests:
		return string(transport.TooManyRequestsErrorCode)
	}
	if status >= 500 {
		return string(transport.UnavailableErrorCode)
	}
	return ""
}

func retryableRegistryError(code string, status int, s side) bool {
	switch transport.ErrorCode(code) {
	case transport.TooManyRequestsErrorCode, transport.UnavailableErrorCode, transport.UnknownErrorCode,
		transport.BlobUploadInvalidErrorCode, transport.BlobUploadUnknownErrorCode:
		return true
	case transport.DeniedErrorCode, transport.TagInvalidErrorCode, transport.ManifestInvalidErrorCode,
		transport.NameInvalidErrorCode, transport.DigestInvalidErrorCode, transport.SizeInvalidErrorCode,
		transport.UnsupportedErrorCode:
		return false
	case transport.UnauthorizedErrorCode:
		// The caller refreshes credentials once before giving up; an auth error
		// after that is an expired token racing the run, and the next
		// delivery starts with fresh credentials.
		return true
	}
	switch {
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout, status >= 500:
		return true
	case status == http.StatusUnauthorized:
		return true
	case status == http.StatusNotFound:
		// Gone at the source: nothing a retry can fix. Missing at the
		// destination while writing: a repository being created or a
		// child manifest not yet visible.
		return s == onDest
	}
	return false
}

func invalid(format string, args ...any) *Error {
	return &Error{Op: "validate request", Code: CodeInvalid, Err: fmt.Errorf(format, args...)}
}

// redact removes the query of every URL an error carries. Real ECR answers a blob GET
// with a redirect to a presigned S3 URL whose query holds X-Amz-Credential,
// X-Amz-Security-Token and X-Amz-Signature; when the request to it fails at the
// connection level, Go's *url.Error prints that whole URL, and the error would travel
// into log lines, the function's answer and result events on other accounts' buses.
// go-containerregistry redacts only its own transport.Error. The error is changed in
// place (http.Client made it for this request alone), so the chain keeps its types for
// errors.Is and errors.As.
func redact(err error) error {
	switch e := err.(type) {
	case nil:
		return nil
	case *url.Error:
		e.URL = withoutQuery(e.URL)
		redact(e.Err)
	case *transport.Error:
		// ggcr prints the request URL with query values replaced by REDACTED, keys
		// kept; the keys alone say a presigned URL was involved, so drop the query.
		if e.Request != nil && e.Request.URL != nil && e.Request.URL.RawQuery != "" {
			r := *e.Request
			u := *r.URL
			u.RawQuery = ""
			r.URL = &u
			e.Request = &r
		}
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			redact(inner)
		}
	default:
		redact(errors.Unwrap(err))
	}
	return err
}

// withoutQuery drops a URL's query and fragment (a presigned URL's credentials), and
// anything that does not parse as a URL entirely.
func withoutQuery(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<url>"
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "", false
		u.Fragment, u.RawFragment = "", ""
		return u.String() + "?<redacted>"
	}
	return u.String()
}
