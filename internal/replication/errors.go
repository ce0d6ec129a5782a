package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Error codes that are not registry error codes but are useful to callers
// deciding what to do with a failed copy.
const (
	CodeInvalid          = "INVALID"           // bad request (digest/tag/repository), rejected before any network call
	CodeDigestMismatch   = "DIGEST_MISMATCH"   // destination does not serve what we wrote
	CodeTagUnstable      = "TAG_UNSTABLE"      // source tag kept moving while we converged
	CodeDeadlineExceeded = "DEADLINE_EXCEEDED" // context deadline (e.g. the Lambda deadline)
	CodeCanceled         = "CANCELED"
	CodeEOF              = "EOF"
	CodeConnReset        = "ECONNRESET"
	CodeTimeout          = "TIMEOUT"
	CodeNetwork          = "NETWORK"
)

// Error describes why one step of a copy failed. Code is the registry's error
// code when it sent one (TAG_INVALID, MANIFEST_UNKNOWN, DENIED, ...), or one of
// the Code* constants above. Retryable tells the caller whether re-delivering
// the same event later can succeed.
type Error struct {
	Op        string // e.g. "get source manifest", "put destination tag"
	Code      string
	Status    int // HTTP status, 0 when no response was received
	Retryable bool
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

func (e *Error) Unwrap() error { return e.Err }

// IsRetryable reports whether err (or an error it wraps) is a classified
// replication error that is worth retrying. Unclassified errors are not.
func IsRetryable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Retryable
}

// side says which registry an operation talked to: a 404 from the source means
// the image is gone (permanent), a 404 from the destination during a write is
// eventual consistency or a repository still being created (retryable).
type side int

const (
	onSource side = iota
	onDest
)

// classify wraps err into an *Error. Already classified errors pass through
// unchanged so that the innermost, most precise Op wins.
func classify(op string, s side, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	e = &Error{Op: op, Err: err}

	var terr *transport.Error
	switch {
	case errors.As(err, &terr):
		e.Status = terr.StatusCode
		if len(terr.Errors) > 0 {
			e.Code = string(terr.Errors[0].Code)
		} else {
			// HEAD responses carry no body, so synthesize a code from the status.
			e.Code = codeForStatus(terr.StatusCode)
		}
		e.Retryable = retryableRegistryError(e.Code, e.Status, s)
	case errors.Is(err, context.DeadlineExceeded):
		e.Code, e.Retryable = CodeDeadlineExceeded, true
	case errors.Is(err, context.Canceled):
		e.Code, e.Retryable = CodeCanceled, true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		e.Code, e.Retryable = CodeConnReset, true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// ECR ends the connection abruptly on some refusals (e.g. an upload
		// into a repository that does not exist yet), which surfaces as EOF.
		e.Code, e.Retryable = CodeEOF, true
	default:
		var nerr net.Error
		if errors.As(err, &nerr) {
			e.Code, e.Retryable = CodeNetwork, true
			if nerr.Timeout() {
				e.Code = CodeTimeout
			}
		}
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
