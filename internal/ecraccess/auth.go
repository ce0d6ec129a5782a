package ecraccess

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// Authenticator returns registry credentials for go-containerregistry, from the cached
// token (renewed shortly before it expires).
func (g *Client) Authenticator() authn.Authenticator { return registryAuth{g} }

type registryAuth struct{ g *Client }

func (a registryAuth) Authorization() (*authn.AuthConfig, error) {
	return a.AuthorizationContext(context.Background())
}

func (a registryAuth) AuthorizationContext(ctx context.Context) (*authn.AuthConfig, error) {
	secret, err := a.g.token(ctx, "")
	if err != nil {
		return nil, err
	}
	a.g.mu.Lock()
	user := a.g.user
	a.g.mu.Unlock()
	return &authn.AuthConfig{Username: user, Password: secret}, nil
}

// Transport wraps base so that a request the registry refuses because the token expired
// (401 on a request that carried credentials, or 403 DENIED "…token has expired") is
// retried once with a freshly issued token. A second refusal is returned as is. A
// request whose body cannot be replayed (a streamed blob upload) is not sent again: the
// token is renewed and the request fails with a retryable ExpiredToken error, so the
// caller's retry starts over with the new token instead of taking the refusal as a
// permanent denial.
//
// The same base gets the same RoundTripper back, so that callers caching clients by
// transport (the engine reuses one per repository for a run) find it again.
func (g *Client) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if !reflect.TypeOf(base).Comparable() {
		return &refreshTransport{g: g, base: base}
	}
	t, _ := g.transports.LoadOrStore(base, &refreshTransport{g: g, base: base})
	return t.(*refreshTransport)
}

type refreshTransport struct {
	g    *Client
	base http.RoundTripper
}

func (t *refreshTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || req.Header.Get("Authorization") == "" || !tokenRefused(resp) {
		return resp, err
	}
	_, used, _ := req.BasicAuth()
	secret, terr := t.g.refresh(req.Context(), used)
	if terr != nil {
		return resp, nil
	}
	t.g.resolver.log.Info("registry refused the token; retrying with a new one", "account", t.g.access.AccountID, "region", t.g.access.Region, "status", resp.StatusCode)
	again, rerr := retry.Rewind(req)
	if rerr != nil {
		resp.Body.Close()
		return nil, &Error{Op: "registry " + req.Method, Code: "ExpiredToken",
			Err: fmt.Errorf("the registry refused the token (HTTP %d); a new one was issued for the next attempt", resp.StatusCode)}
	}
	resp.Body.Close()
	t.g.mu.Lock()
	user := t.g.user
	t.g.mu.Unlock()
	again.SetBasicAuth(user, secret)
	return t.base.RoundTrip(again)
}

// tokenRefused recognises ECR's answers to a bad or expired token. The 401 is the
// registry's challenge; the expiry wording is "denied: Your authorization token has
// expired. Reauthenticate and try again." (its status, 403, is a guess). A 403 to a HEAD
// has no body to tell, so it earns one refresh too.
func tokenRefused(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return true
	case http.StatusForbidden:
		if resp.Request != nil && resp.Request.Method == http.MethodHead {
			return true
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return err == nil && strings.Contains(strings.ToLower(string(body)), "token has expired")
	}
	return false
}

// WrapAWS classifies an AWS SDK error from op (e.g. "ecr:PutImage", "sqs:SendMessageBatch"), keeping its code: the project's one conversion of AWS errors into the retry model.
func WrapAWS(op string, err error) error {
	e := &Error{Op: op, Err: err}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		e.Code = ae.ErrorCode()
	}
	return e
}

// ErrorCode is the AWS error code, or the class of the failure that carried none
// (retry.Code*); *Error is a retry.Classified.
func (e *Error) ErrorCode() string {
	if e.Code != "" {
		return e.Code
	}
	code, _ := retry.Classify(e.Err)
	return code
}

// Retryable reports whether trying again later may succeed: throttling, service-side
// faults, timeouts and connection errors. Access denied, missing resources and invalid
// input are permanent.
func (e *Error) Retryable() bool {
	if e.Code != "" {
		switch e.Code {
		case "LimitExceededException":
			// "The operation did not succeed because it would have exceeded a service
			// limit for your account" (ECR API, e.g. API_CreateRepository, API_PutImage): a
			// quota reached, not a throttle, so retrying cannot help — though the SDK's
			// retryer counts it among the throttling codes (aws/retry
			// DefaultThrottleErrorCodes) and would send it round to the dead-letter queue.
			return false
		case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
			"ServiceUnavailable", "ServiceUnavailableException", "ServerException", "InternalFailure",
			"InternalError", "RequestTimeout", "RequestTimeoutException", "ExpiredToken", "ExpiredTokenException",
			"IDPCommunicationError":
			return true
		}
		return awsretry.IsErrorRetryables(awsretry.DefaultRetryables).IsErrorRetryable(e.Err).Bool()
	}
	return awsretry.IsErrorRetryables(awsretry.DefaultRetryables).IsErrorRetryable(e.Err).Bool() || retry.IsRetryable(e.Err)
}

// ErrorCode returns the AWS error code of an SDK error, or "".
func ErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
