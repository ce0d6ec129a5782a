package sandbox

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Entry is one access-log record: one AWS API call or one registry request.
type Entry struct {
	Time time.Time `json:"time"`
	// Service is "ecr", "sts", "sqs", "events", "ssm", "registry", or "s3" for the presigned
	// storage blob GETs redirect to.
	Service string `json:"service"`
	// Operation is the API operation (PutImage, AssumeRole) or, for the registry,
	// the method and kind of resource ("PUT manifest", "HEAD blob", "PATCH upload"), or
	// for storage "GET object" / "HEAD object".
	Operation string `json:"operation"`
	// Action is the IAM action the request needs (ecr:PutImage, sts:AssumeRole); for
	// registry requests, the action ECR maps the request to.
	Action string `json:"action,omitempty"`
	// AlsoAuthorized lists further IAM actions the request needed (e.g. ecr:TagResource
	// for a CreateRepository with tags).
	AlsoAuthorized []string `json:"alsoAuthorized,omitempty"`
	// Account and Region are those acted on: the registry's, or the caller's for API calls.
	Account string `json:"account,omitempty"`
	Region  string `json:"region,omitempty"`
	// CallerAccount and Principal identify who made the request.
	CallerAccount string `json:"callerAccount,omitempty"`
	Principal     string `json:"principal,omitempty"`
	Repository    string `json:"repository,omitempty"`
	// Reference is the tag or digest of a registry or storage request, the tags and
	// digests an ECR image operation names (comma-separated), or the role of AssumeRole.
	Reference string `json:"reference,omitempty"`
	Status    int    `json:"status"`
	ErrorCode string `json:"errorCode,omitempty"`
	// DeniedAction is the IAM action a policy refused when the request failed for want of
	// it under another service's error code (ECR's KmsException for a kms: action).
	DeniedAction string `json:"deniedAction,omitempty"`
	// Bytes counts request body bytes received (uploads) or response body bytes sent
	// (GETs). A blob's bytes are sent by storage ("s3", "GET object"): the registry's blob
	// GET is a redirect without a body.
	Bytes int64 `json:"bytes,omitempty"`
	// MountFrom is the repository a blob upload POST asked to mount the blob from
	// (?mount=&from=); Mounted, that it was mounted (201) rather than a normal upload
	// started (mount.go).
	MountFrom string `json:"mountFrom,omitempty"`
	Mounted   bool   `json:"mounted,omitempty"`
	// Fault names the injected fault that answered this request, if any.
	Fault string `json:"fault,omitempty"`
	// Duration is how long the request was handled, measured from Time (after
	// Config.Latency): for registry and storage requests until the answer was written, so
	// that a blob upload or download counts the time its bytes took; for API calls until
	// the effect was applied (the answer is written after the entry is logged).
	Duration time.Duration `json:"duration,omitempty"`
}

type accessLog struct {
	mu      sync.Mutex
	entries []Entry
	sink    io.Writer
}

func newAccessLog(sink io.Writer) *accessLog { return &accessLog{sink: sink} }

func (l *accessLog) add(e Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, e)
	if l.sink != nil {
		b, _ := json.Marshal(e)
		l.sink.Write(append(b, '\n'))
	}
}

// AccessLog returns a copy of every entry recorded so far, oldest first.
func (s *Sandbox) AccessLog() []Entry {
	s.accessLog.mu.Lock()
	defer s.accessLog.mu.Unlock()
	return append([]Entry(nil), s.accessLog.entries...)
}

// AccessLogMark returns a position in the access log; AccessLogSince(mark) returns what
// came after it. Tests use the pair to look at the requests one operation made.
func (s *Sandbox) AccessLogMark() int {
	s.accessLog.mu.Lock()
	defer s.accessLog.mu.Unlock()
	return len(s.accessLog.entries)
}

// AccessLogSince returns the entries recorded after mark.
func (s *Sandbox) AccessLogSince(mark int) []Entry {
	s.accessLog.mu.Lock()
	defer s.accessLog.mu.Unlock()
	if mark > len(s.accessLog.entries) {
		return nil
	}
	return append([]Entry(nil), s.accessLog.entries[mark:]...)
}

// Filter returns the entries for which keep is true.
func Filter(entries []Entry, keep func(Entry) bool) []Entry {
	var out []Entry
	for _, e := range entries {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}
