package backfill

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Modes.
const (
	ModeEnqueue   = "enqueue"
	ModeInline    = "inline"
	ModeReconcile = "reconcile" // fan out one reconcile item per repository (Reconcile)
)

// Request is the backfill invocation payload; every field is optional.
//
//	{"repositories": ["team-a/*"], "tags": ["v*"], "since": "2024-01-01T00:00:00Z",
//	 "dryRun": true, "mode": "enqueue", "continuationToken": ""}
type Request struct {
	Repositories      []string  `json:"repositories,omitempty"`
	Tags              []string  `json:"tags,omitempty"`
	Since             time.Time `json:"-"`
	DryRun            bool      `json:"dryRun,omitempty"`
	Mode              string    `json:"mode,omitempty"`
	ContinuationToken string    `json:"continuationToken,omitempty"`
}

type rawRequest struct {
	Repositories      []string `json:"repositories"`
	Tags              []string `json:"tags"`
	Since             *string  `json:"since"`
	DryRun            bool     `json:"dryRun"`
	Mode              string   `json:"mode"`
	ContinuationToken string   `json:"continuationToken"`
}

// ParseRequest decodes a request strictly: an unknown field is an error naming it. An
// empty payload (or null) is the empty request.
func ParseRequest(data []byte) (Request, error) {
	var req Request
	data = bytes.TrimSpace(data)
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		return req, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var raw rawRequest
	if err := dec.Decode(&raw); err != nil {
		if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
			return req, fmt.Errorf("backfill request: unknown field %s", strings.TrimPrefix(msg, "json: unknown field "))
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return req, fmt.Errorf("backfill request: %s: expected %s, got %s", te.Field, te.Type, te.Value)
		}
		return req, fmt.Errorf("backfill request: %v", err)
	}
	if dec.More() {
		return req, errors.New("backfill request: trailing data after the JSON object")
	}
	req.Repositories, req.Tags, req.DryRun, req.ContinuationToken = raw.Repositories, raw.Tags, raw.DryRun, raw.ContinuationToken
	if raw.Since != nil && *raw.Since != "" {
		t, err := time.Parse(time.RFC3339, *raw.Since)
		if err != nil {
			return req, fmt.Errorf("backfill request: since: %q is not an RFC 3339 timestamp", *raw.Since)
		}
		req.Since = t
	}
	switch raw.Mode {
	case "", ModeEnqueue, ModeInline, ModeReconcile:
		req.Mode = raw.Mode
	default:
		return req, fmt.Errorf("backfill request: mode: %q is not %q, %q or %q", raw.Mode, ModeReconcile, ModeEnqueue, ModeInline)
	}
	if req.ContinuationToken != "" {
		if _, err := decodeToken(req.ContinuationToken); err != nil {
			return req, fmt.Errorf("backfill request: continuationToken: %v", err)
		}
	}
	return req, nil
}

// position is what a continuation token encodes: the repository to resume in (its index
// in the sorted scope, and its name, which wins if the scope changed), the key of the
// last work item handled there, and how many runs in a row ended at this same position
// (an inline copy failing retryably holds it there; see maxStalls).
type position struct {
	V          int    `json:"v"`
	RepoIndex  int    `json:"i"`
	Repository string `json:"r"`
	After      string `json:"a,omitempty"`
	Stalls     int    `json:"s,omitempty"`
}

// maxStalls is how many runs in a row may end at the same position before the next one
// lets retryable copy failures there go as failures (reported, the position moving on):
// retryable failures cannot hold a caller looping on the continuation token forever.
const maxStalls = 2

func encodeToken(p position) string {
	p.V = 1
	b, _ := json.Marshal(p)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s string) (position, error) {
	var p position
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return p, errors.New("not a token this function issued (not base64)")
	}
	if err := json.Unmarshal(b, &p); err != nil || p.V != 1 || p.Repository == "" || p.RepoIndex < 0 {
		return p, errors.New("not a token this function issued")
	}
	return p, nil
}
