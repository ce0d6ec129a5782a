package copyengine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// The engine's HTTP stack for one endpoint, from the top:
//
//	go-containerregistry's auth (Basic for ECR, Bearer elsewhere), built once per run by
//	  transport.NewWithContext and handed to ggcr as its *transport.Wrapper, so that ggcr
//	  adds no retry layer of its own (its retry reuses consumed request bodies and sleeps
//	  without watching the context)
//	retryTransport: the engine's one retry layer (this file)
//	Endpoint.Transport: ecraccess's token refresh, then net/http

// retryTransport retries a request that failed in a way a retry may fix — a connection
// error, an answer slower than the request timeout, or 408/429/5xx — when its body can
// be replayed (retry.Rewind), with the engine's policy and honouring Retry-After. When
// retries run out on a status, the last response is returned unread, so the caller
// reads the registry's error code from its body.
//
// Requests whose context says withoutRetry are sent once: a blob upload retries its
// whole sequence (HEAD, POST, PUT and the source download) itself, and reads of a body
// retry the read (readRetry); retrying those here as well would multiply the attempts.
type retryTransport struct {
	inner   http.RoundTripper
	policy  retry.Policy
	timeout time.Duration // per attempt, from the request written to the response headers
	// pace returns the pacer of a request that writes a manifest (nil: not paced); each
	// attempt waits for it, and tells it whether the registry throttled.
	pace func(*http.Request) *pacer
}

type noRetryKey struct{}

// throttleCountKey holds, in a copy's context, the count of its throttled manifest writes
// (Result.ManifestsThrottled).
type throttleCountKey struct{}

func countThrottles(ctx context.Context) (context.Context, *atomic.Int64) {
	n := new(atomic.Int64)
	return context.WithValue(ctx, throttleCountKey{}, n), n
}

// withoutRetry marks requests the retry transport sends only once.
func withoutRetry(ctx context.Context) context.Context {
	return context.WithValue(ctx, noRetryKey{}, true)
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = secureScheme(req)
	if req.Context().Value(noRetryKey{}) != nil || !retry.Replayable(req) {
		return t.attempt(req)
	}
	var last *http.Response
	first := true
	err := retry.Do(req.Context(), t.policy, func(context.Context) error {
		r := req
		if !first {
			if last != nil {
				discard(last)
				last = nil
			}
			var err error
			if r, err = retry.Rewind(req); err != nil {
				return err
			}
		}
		first = false
		resp, err := t.attempt(r)
		if err != nil {
			return err
		}
		last = resp
		if retryableStatus(resp.StatusCode) {
			return &statusError{status: resp.StatusCode, wait: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
		}
		return nil
	})
	if last != nil {
		return last, nil
	}
	return nil, &exhausted{err}
}

// attempt sends req once — paced, if it writes a manifest — cutting it when the
// response headers take longer than the timeout after the request was written (a large
// upload's body does not count).
func (t *retryTransport) attempt(req *http.Request) (*http.Response, error) {
	var p *pacer
	if t.pace != nil {
		p = t.pace(req)
	}
	if p == nil {
		return t.timed(req)
	}
	if err := p.wait(req.Context()); err != nil {
		return nil, err
	}
	sent := time.Now()
	resp, err := t.timed(req)
	switch {
	case err != nil:
	case resp.StatusCode == http.StatusTooManyRequests:
		p.throttled(sent, time.Now())
		if n, ok := req.Context().Value(throttleCountKey{}).(*atomic.Int64); ok {
			n.Add(1)
		}
	case resp.StatusCode < 300:
		p.accepted(time.Now())
	}
	return resp, err
}

func (t *retryTransport) timed(req *http.Request) (*http.Response, error) {
	if t.timeout <= 0 {
		return t.inner.RoundTrip(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	var (
		mu       sync.Mutex
		timer    *time.Timer
		answered bool
	)
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
		mu.Lock()
		defer mu.Unlock()
		if !answered && timer == nil {
			timer = time.AfterFunc(t.timeout, func() { cancel(errSlowAnswer) })
		}
	}}
	resp, err := t.inner.RoundTrip(req.WithContext(httptrace.WithClientTrace(ctx, trace)))
	mu.Lock()
	answered = true
	fired := timer != nil && !timer.Stop()
	mu.Unlock()
	if err == nil && fired {
		// The timer fired as the answer arrived: its body is being cut off.
		discard(resp)
		err = errSlowAnswer
	}
	if err != nil {
		timedOut := errors.Is(context.Cause(ctx), errSlowAnswer) || errors.Is(err, errSlowAnswer)
		cancel(nil)
		if timedOut && req.Context().Err() == nil {
			return nil, &slowAnswer{after: t.timeout}
		}
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
	return resp, nil
}

var errSlowAnswer = errors.New("no response within the request timeout")

// slowAnswer is a request cut because its answer took longer than the request timeout.
type slowAnswer struct{ after time.Duration }

func (e *slowAnswer) Error() string {
	return fmt.Sprintf("no response headers within %s of sending the request", e.after)
}
func (e *slowAnswer) ErrorCode() string { return retry.CodeTimeout }
func (e *slowAnswer) Retryable() bool   { return true }
func (e *slowAnswer) Timeout() bool     { return true }

// exhausted wraps the error of a request the transport already retried, so that
// readRetry does not retry it again.
type exhausted struct{ err error }

func (e *exhausted) Error() string { return e.err.Error() }
func (e *exhausted) Unwrap() error { return e.err }

// statusError is a retryable HTTP status inside retryTransport's loop.
type statusError struct {
	status int
	wait   time.Duration
}

func (e *statusError) Error() string             { return "HTTP " + strconv.Itoa(e.status) }
func (e *statusError) ErrorCode() string         { return codeForStatus(e.status) }
func (e *statusError) Retryable() bool           { return true }
func (e *statusError) RetryAfter() time.Duration { return e.wait }

type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// retryableStatus: the statuses go-containerregistry retries (408, 429, 5xx gateway and
// availability answers, 499 and Cloudflare's 522).
func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, 499,
		http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, 522:
		return true
	}
	return false
}

// retryAfter parses Retry-After (seconds, or an HTTP date).
// https://www.rfc-editor.org/rfc/rfc9110#name-retry-after
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// discard drains a little of a response body (so the connection can be reused) and
// closes it.
func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// secureScheme sends plain-http requests to non-loopback hosts over TLS. Plain http is
// for loopback registries only (the sandbox, a registry in a test); go-containerregistry
// guesses http for RFC 1918 addresses and *.local names too, where a registry's
// credentials would then cross a network in clear text.
func secureScheme(req *http.Request) *http.Request {
	if req.URL.Scheme != "http" || isLoopback(req.URL.Hostname()) {
		return req
	}
	r := req.Clone(req.Context())
	r.URL.Scheme = "https"
	return r
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readRetry runs a request whose answer has a body to read (a manifest, a tag list, a
// referrers page) again when reading failed — the connection reset mid-body, the body
// cut short — which retryTransport cannot see: it hands the response over once the
// headers arrive. What the transport already retried is not retried again.
func readRetry(ctx context.Context, p retry.Policy, fn func(ctx context.Context) error) error {
	p.RetryIf = func(err error) bool {
		var ex *exhausted
		var e *Error
		return retry.IsRetryable(err) && !errors.As(err, &ex) && !(errors.As(err, &e) && e.Status != 0)
	}
	return retry.Do(ctx, p, fn)
}
