// Package retry is the project's one answer to "retry or drop": the interface every error
// type of the project implements (an AWS or registry error code, and whether trying again
// may succeed), the classifier that reads it, and the one backoff loop.
//
// The decision matters more than any other the code makes: a transient failure
// acknowledged as permanent loses a push until the next reconcile, and a permanent one
// retried fills the dead-letter queue. So every layer classifies its errors once, where
// it knows what they mean (the engine: registry answers; ecraccess: AWS API errors), and
// every layer above reads that class with Classify instead of guessing again.
package retry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Codes of failures that carry no AWS or registry error code of their own.
const (
	CodeDeadlineExceeded = "DEADLINE_EXCEEDED" // a context deadline: the Lambda deadline, a request timeout
	CodeCanceled         = "CANCELED"
	CodeConnReset        = "ECONNRESET"
	CodeEOF              = "EOF" // the peer closed the connection (ECR does so on some refusals)
	CodeTimeout          = "TIMEOUT"
	CodeNetwork          = "NETWORK"
	CodeTLS              = "TLS"
	// CodeHTTP2 prefixes the HTTP/2 error code of a stream reset or a GOAWAY (RFC 9113,
	// section 7), e.g. HTTP2_REFUSED_STREAM.
	CodeHTTP2 = "HTTP2_"
)

// Classified is implemented by every error type the project makes.
type Classified interface {
	error
	// ErrorCode is the AWS error code (ThrottlingException, AccessDenied, …), the
	// registry's (TAG_INVALID, MANIFEST_UNKNOWN, DENIED, …) or one of the Code* constants.
	ErrorCode() string
	// Retryable reports whether the same work may succeed later without anyone changing
	// anything: throttling, 5xx, timeouts, resets. Denials, missing sources and invalid
	// input are not.
	Retryable() bool
}

// Classify returns err's code and whether it is retryable. The outermost Classified
// error in the chain decides — the project's error types copy the class of a Classified
// error they wrap, so that is also the innermost, most precise one — and only an error
// that no layer classified is judged from the standard library's errors. An error nobody
// can explain is permanent: retrying the unknown fills the dead-letter queue.
func Classify(err error) (code string, retryable bool) {
	if err == nil {
		return "", false
	}
	var c Classified
	if errors.As(err, &c) {
		return c.ErrorCode(), c.Retryable()
	}
	return classifyStd(err)
}

// IsRetryable is Classify's second answer.
func IsRetryable(err error) bool {
	_, r := Classify(err)
	return r
}

// classifyStd classifies what the standard library returns. *url.Error is deliberately
// not taken as a network error: http.Client wraps every failure in one, including a
// refusal the transport made (a denied registry token, a redirect refused).
func classifyStd(err error) (string, bool) {
	var (
		dns  *net.DNSError
		op   *net.OpError
		ne   net.Error
		cert *tls.CertificateVerificationError
		ua   x509.UnknownAuthorityError
		hn   x509.HostnameError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadlineExceeded, true
	case errors.Is(err, context.Canceled):
		return CodeCanceled, true
	case errors.As(err, &cert), errors.As(err, &ua), errors.As(err, &hn):
		return CodeTLS, false
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return CodeConnReset, true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return CodeEOF, true
	case errors.As(err, &dns):
		// A name that does not exist is a configuration error; a resolver that did not
		// answer is not.
		return CodeNetwork, !dns.IsNotFound
	case errors.As(err, &ne) && ne.Timeout():
		return CodeTimeout, true
	case errors.As(err, &op):
		return CodeNetwork, true
	}
	return classifyHTTP2(err)
}

// HTTP/2 failures that net/http's transport reports. Its HTTP/2 error types are
// unexported (the bundled copy of golang.org/x/net/http2), and a stream reset on a
// request whose body was already sent is reported as text only ("cannot retry err [...]
// after Request.Body was written", formatted with %v), so the error's text is all there
// is to read: "stream error: stream ID 3; REFUSED_STREAM; received from peer" and "http2:
// server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=INTERNAL_ERROR".
var (
	http2StreamRE = regexp.MustCompile(`stream error: stream ID \d+; ([A-Z_0-9]+)`)
	http2GoAwayRE = regexp.MustCompile(`http2: server sent GOAWAY and closed the connection; LastStreamID=\d+, ErrCode=([A-Z_0-9]+)`)
)

// classifyHTTP2 classifies a stream reset (RST_STREAM) or a connection the server ended
// (GOAWAY). A server that resets a stream with INTERNAL_ERROR failed as with a 500;
// REFUSED_STREAM says it processed nothing, so another attempt is safe (RFC 9113, 8.7);
// ENHANCE_YOUR_CALM is HTTP/2's throttling; a GOAWAY ends one connection, not the
// service. What is permanent is a protocol violation between the two ends (PROTOCOL,
// FRAME_SIZE, COMPRESSION), an insecure connection or a server that wants HTTP/1.1: the
// same client would meet it again. https://www.rfc-editor.org/rfc/rfc9113#section-7
func classifyHTTP2(err error) (string, bool) {
	msg := err.Error()
	if m := http2GoAwayRE.FindStringSubmatch(msg); m != nil {
		return CodeHTTP2 + "GOAWAY", true
	}
	if strings.Contains(msg, "http2: client connection lost") || strings.Contains(msg, "http2: Transport received Server's graceful shutdown GOAWAY") {
		return CodeHTTP2 + "GOAWAY", true
	}
	m := http2StreamRE.FindStringSubmatch(msg)
	if m == nil {
		return "", false
	}
	switch m[1] {
	case "PROTOCOL_ERROR", "FRAME_SIZE_ERROR", "COMPRESSION_ERROR", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED":
		return CodeHTTP2 + m[1], false
	}
	return CodeHTTP2 + m[1], true
}

// Waiter is implemented by errors that carry the wait a server asked for (HTTP
// Retry-After on 429 and 503).
type Waiter interface {
	RetryAfter() time.Duration
}

// After returns the wait err asks for, if it carries one.
func After(err error) (time.Duration, bool) {
	var w Waiter
	if errors.As(err, &w) && w.RetryAfter() > 0 {
		return w.RetryAfter(), true
	}
	return 0, false
}

// Policy is how often and how patiently to retry.
type Policy struct {
	// Attempts is the number of tries in all (default 5; 1 means no retry).
	Attempts int
	// Initial is the first wait (default 500 ms); each later wait is Multiplier times the
	// one before (default 2), randomised by ±Jitter (default 0.2) and capped at Max
	// (default 20 s). A server's Retry-After replaces the computed wait, capped at Max too.
	Initial    time.Duration
	Multiplier float64
	Jitter     float64
	Max        time.Duration
	// RetryIf, when set, replaces IsRetryable as the test of whether an error is retried.
	RetryIf func(err error) bool
	// OnRetry, when set, is told about each failure that will be retried.
	OnRetry func(err error, attempt int, wait time.Duration)
}

func (p Policy) withDefaults() Policy {
	if p.Attempts <= 0 {
		p.Attempts = 5
	}
	if p.Initial <= 0 {
		p.Initial = 500 * time.Millisecond
	}
	if p.Multiplier < 1 {
		p.Multiplier = 2
	}
	if p.Jitter < 0 || p.Jitter >= 1 {
		p.Jitter = 0.2
	}
	if p.Max <= 0 {
		p.Max = 20 * time.Second
	}
	if p.RetryIf == nil {
		p.RetryIf = IsRetryable
	}
	return p
}

// Do calls fn until it succeeds, fails permanently (Classify, or Policy.RetryIf), runs out of attempts, or
// the next wait would not end before ctx does. It returns fn's last error — never ctx's in
// its place, so the caller reports what actually failed.
//
// The waits come from cenkalti/backoff's ExponentialBackOff; the loop is ours because
// backoff.Retry returns the context's error instead of the operation's when cut short,
// and honours a Retry-After only by replacing the operation's error with its own.
func Do(ctx context.Context, p Policy, fn func(ctx context.Context) error) error {
	p = p.withDefaults()
	b := &backoff.ExponentialBackOff{InitialInterval: p.Initial, RandomizationFactor: p.Jitter, Multiplier: p.Multiplier, MaxInterval: p.Max}
	b.Reset()
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if !p.RetryIf(err) || attempt >= p.Attempts || ctx.Err() != nil {
			return err
		}
		wait := min(b.NextBackOff(), p.Max)
		if ra, ok := After(err); ok {
			wait = min(ra, p.Max)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
			return err
		}
		if p.OnRetry != nil {
			p.OnRetry(err, attempt, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}
