package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
	"testing"
	"time"
)

type coded struct {
	code string
	ok   bool
}

func (c coded) Error() string     { return "coded " + c.code }
func (c coded) ErrorCode() string { return c.code }
func (c coded) Retryable() bool   { return c.ok }

type waitErr struct {
	coded
	d time.Duration
}

func (w waitErr) RetryAfter() time.Duration { return w.d }

func TestClassify(t *testing.T) {
	denied := coded{"AccessDenied", false}
	for _, tc := range []struct {
		name  string
		err   error
		code  string
		retry bool
	}{
		{"nil", nil, "", false},
		{"classified", denied, "AccessDenied", false},
		// http.Client wraps a transport's refusal in *url.Error, which is a net.Error: the
		// denial inside must keep its class (issue: errors change class on the way up).
		{"classified inside url.Error", &url.Error{Op: "Get", URL: "https://x/v2/", Err: denied}, "AccessDenied", false},
		{"classified wrapped twice", fmt.Errorf("copy: %w", &url.Error{Op: "Put", URL: "u", Err: coded{"ThrottlingException", true}}), "ThrottlingException", true},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), CodeDeadlineExceeded, true},
		{"canceled in url.Error", &url.Error{Op: "Get", URL: "u", Err: context.Canceled}, CodeCanceled, true},
		{"reset", &url.Error{Op: "Get", URL: "u", Err: &net.OpError{Op: "read", Err: syscall.ECONNRESET}}, CodeConnReset, true},
		{"eof", &url.Error{Op: "Post", URL: "u", Err: io.EOF}, CodeEOF, true},
		{"unexpected eof", io.ErrUnexpectedEOF, CodeEOF, true},
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, CodeNetwork, true},
		{"no such host", &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}, CodeNetwork, false},
		{"dns timeout", &net.DNSError{Err: "timeout", Name: "x", IsTimeout: true}, CodeNetwork, true},
		{"unknown inside url.Error", &url.Error{Op: "Get", URL: "u", Err: errors.New("http: read on closed response body")}, "", false},
		{"unknown", errors.New("boom"), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, retry := Classify(tc.err)
			if code != tc.code || retry != tc.retry {
				t.Fatalf("Classify(%v) = %q, %v; want %q, %v", tc.err, code, retry, tc.code, tc.retry)
			}
		})
	}
}

func fast(attempts int) Policy {
	return Policy{Attempts: attempts, Initial: time.Millisecond, Max: 5 * time.Millisecond}
}

func TestDoRetriesTransientThenSucceeds(t *testing.T) {
	calls := 0
	err := Do(context.Background(), fast(5), func(context.Context) error {
		if calls++; calls < 3 {
			return coded{"UNAVAILABLE", true}
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("err %v after %d calls; want nil after 3", err, calls)
	}
}

func TestDoStopsOnPermanent(t *testing.T) {
	calls := 0
	err := Do(context.Background(), fast(5), func(context.Context) error {
		calls++
		return coded{"DENIED", false}
	})
	if calls != 1 || err == nil || err.Error() != "coded DENIED" {
		t.Fatalf("calls %d err %v; want one call and the DENIED error", calls, err)
	}
}

func TestDoReturnsLastErrorWhenAttemptsRunOut(t *testing.T) {
	calls := 0
	err := Do(context.Background(), fast(4), func(context.Context) error {
		calls++
		return coded{fmt.Sprint("E", calls), true}
	})
	if calls != 4 || err.Error() != "coded E4" {
		t.Fatalf("calls %d err %v; want 4 calls ending in E4", calls, err)
	}
}

func TestDoHonoursRetryAfterWithinMax(t *testing.T) {
	var waits []time.Duration
	p := Policy{Attempts: 3, Initial: time.Millisecond, Max: 40 * time.Millisecond,
		OnRetry: func(_ error, _ int, w time.Duration) { waits = append(waits, w) }}
	start := time.Now()
	_ = Do(context.Background(), p, func(context.Context) error {
		return waitErr{coded{"TOOMANYREQUESTS", true}, time.Hour}
	})
	if len(waits) != 2 || waits[0] != 40*time.Millisecond || waits[1] != 40*time.Millisecond {
		t.Fatalf("waits %v; want the Retry-After capped at Max, twice", waits)
	}
	if el := time.Since(start); el < 80*time.Millisecond {
		t.Fatalf("returned after %v; the waits were not slept", el)
	}
}

func TestDoDoesNotSleepPastTheDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	calls := 0
	err := Do(ctx, Policy{Attempts: 10, Initial: time.Second}, func(context.Context) error {
		calls++
		return coded{"UNAVAILABLE", true}
	})
	// The first wait (about 1 s) cannot end before the deadline: the real error comes
	// back at once instead of DEADLINE_EXCEEDED after the deadline.
	if calls != 1 || err.Error() != "coded UNAVAILABLE" {
		t.Fatalf("calls %d err %v", calls, err)
	}
	if ctx.Err() != nil {
		t.Fatal("Do waited until the deadline")
	}
}

func TestDoJitterStaysWithinBounds(t *testing.T) {
	var waits []time.Duration
	p := Policy{Attempts: 6, Initial: 10 * time.Millisecond, Multiplier: 2, Jitter: 0.2, Max: 50 * time.Millisecond,
		OnRetry: func(_ error, _ int, w time.Duration) { waits = append(waits, w) }}
	_ = Do(context.Background(), p, func(context.Context) error { return coded{"UNAVAILABLE", true} })
	base := []time.Duration{10, 20, 40, 50, 50}
	for i, w := range waits {
		lo, hi := base[i]*time.Millisecond*8/10, min(base[i]*time.Millisecond*12/10, 50*time.Millisecond)
		if w < lo || w > hi {
			t.Fatalf("wait %d = %v, want within [%v, %v]", i, w, lo, hi)
		}
	}
}
