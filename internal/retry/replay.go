package retry

import (
	"errors"
	"net/http"
)

// ErrNotReplayable: the request's body was streamed and cannot be sent again.
var ErrNotReplayable = errors.New("request body cannot be replayed (no GetBody)")

// Replayable reports whether req can be sent again: it has no body, or GetBody re-opens it.
func Replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// Rewind returns a copy of req to send again — same context, URL and headers — with a
// fresh body from GetBody (a RoundTripper must not reuse a body it has consumed).
func Rewind(req *http.Request) (*http.Request, error) {
	if !Replayable(req) {
		return nil, ErrNotReplayable
	}
	next := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		next.Body = body
	}
	return next, nil
}
