package sandbox

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// RegistryFault answers some registry requests of one account wrongly. Zero-valued
// selectors match anything.
type RegistryFault struct {
	Account string // required
	Region  string
	Method  string // GET, HEAD, PUT, PATCH, POST, DELETE
	// Kind is the resource kind: "manifest", "blob", "upload", "tags", "referrers", "ping".
	Kind       string
	Repository string
	// Count is how many matching requests the fault answers (at least 1).
	Count int
	// Status answers with this HTTP status (500, 503, 429…) and a registry error body.
	Status int
	// RetryAfter, with Status 429 or 503, sets the Retry-After header.
	RetryAfter time.Duration
	// ResetAfterBytes, instead of Status, lets the request proceed and closes the
	// connection abruptly after this many body bytes: request body bytes for uploads
	// (only requests that carry a body: PATCH, a monolithic PUT), response body bytes
	// for blob downloads (GET blob).
	ResetAfterBytes int64
}

// APIFault makes an AWS API operation fail. The default error is the service's
// throttling error (ECR: ThrottlingException; STS: Throttling).
type APIFault struct {
	Service   string // "ecr", "sts", "sqs", "events"
	Operation string // e.g. "GetAuthorizationToken", "AssumeRole"; empty: any
	Account   string // caller account; empty: any
	Count     int
	Code      string // error code to answer with; empty: throttling
}

type faults struct {
	mu       sync.Mutex
	registry []*RegistryFault
	api      []*APIFault
	fired    map[string]int
}

func newFaults() *faults { return &faults{fired: map[string]int{}} }

// InjectRegistryFault arms a registry fault.
func (s *Sandbox) InjectRegistryFault(f RegistryFault) error {
	if f.Account == "" {
		return fmt.Errorf("sandbox: registry fault needs an account")
	}
	if f.Count < 1 {
		f.Count = 1
	}
	if f.Status == 0 && f.ResetAfterBytes == 0 {
		return fmt.Errorf("sandbox: registry fault needs a Status or ResetAfterBytes")
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.registry = append(s.faults.registry, &f)
	return nil
}

// FailRegistryRequests answers the next n registry requests of an account with status
// (500, 503, or 429 with Retry-After).
func (s *Sandbox) FailRegistryRequests(accountID string, n, status int, retryAfter time.Duration) error {
	return s.InjectRegistryFault(RegistryFault{Account: accountID, Count: n, Status: status, RetryAfter: retryAfter})
}

// ResetBlobUploads closes the connection of the next n blob upload requests that carry
// a body (a PATCH, or a monolithic PUT) to an account's registry after afterBytes bytes
// of the request body.
func (s *Sandbox) ResetBlobUploads(accountID string, afterBytes int64, n int) error {
	return s.InjectRegistryFault(RegistryFault{Account: accountID, Kind: "upload", Count: n, ResetAfterBytes: afterBytes})
}

// ResetBlobDownloads closes the connection of the next n blob downloads from an
// account's registry after afterBytes bytes of the response body.
func (s *Sandbox) ResetBlobDownloads(accountID string, afterBytes int64, n int) error {
	return s.InjectRegistryFault(RegistryFault{Account: accountID, Kind: "blob", Method: "GET", Count: n, ResetAfterBytes: afterBytes})
}

// InjectAPIFault arms an API fault.
func (s *Sandbox) InjectAPIFault(f APIFault) error {
	if f.Service == "" {
		return fmt.Errorf("sandbox: API fault needs a service")
	}
	if f.Count < 1 {
		f.Count = 1
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.api = append(s.faults.api, &f)
	return nil
}

// ThrottleAPI answers the next n calls of an operation with the service's throttling error.
func (s *Sandbox) ThrottleAPI(service, operation string, n int) error {
	return s.InjectAPIFault(APIFault{Service: service, Operation: operation, Count: n})
}

// FaultsFired reports how many requests each kind of fault has answered, keyed like
// "registry:status:503", "registry:reset:upload", "api:ecr:ThrottlingException".
func (s *Sandbox) FaultsFired() map[string]int {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	out := make(map[string]int, len(s.faults.fired))
	for k, v := range s.faults.fired {
		out[k] = v
	}
	return out
}

// PendingFaults counts armed faults that have not fired yet.
func (s *Sandbox) PendingFaults() int {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	return len(s.faults.registry) + len(s.faults.api)
}

// takeRegistry consumes one use of the first fault matching the request.
func (f *faults) takeRegistry(account, region, method, kind, repo string, hasBody bool) *RegistryFault {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, rf := range f.registry {
		if rf.Account != account || (rf.Region != "" && rf.Region != region) ||
			(rf.Method != "" && rf.Method != method) || (rf.Kind != "" && rf.Kind != kind) ||
			(rf.Repository != "" && rf.Repository != repo) ||
			(rf.ResetAfterBytes > 0 && method != http.MethodGet && !hasBody) {
			continue
		}
		rf.Count--
		if rf.Count <= 0 {
			f.registry = append(f.registry[:i], f.registry[i+1:]...)
		}
		fired := *rf
		if fired.ResetAfterBytes > 0 {
			f.fired["registry:reset:"+kind]++
		} else {
			f.fired[fmt.Sprintf("registry:status:%d", fired.Status)]++
		}
		return &fired
	}
	return nil
}

func (f *faults) takeAPI(service, operation, callerAccount string) *APIFault {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, af := range f.api {
		if af.Service != service || (af.Operation != "" && af.Operation != operation) ||
			(af.Account != "" && af.Account != callerAccount) {
			continue
		}
		af.Count--
		if af.Count <= 0 {
			f.api = append(f.api[:i], f.api[i+1:]...)
		}
		fired := *af
		if fired.Code == "" {
			fired.Code = throttlingCode(service)
		}
		f.fired["api:"+service+":"+fired.Code]++
		return &fired
	}
	return nil
}

// throttlingCode is the error code each service uses when it throttles a caller.
// ECR (JSON protocol): ThrottlingException; STS (query protocol): Throttling — see
// https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html (guess for STS
// beyond the common "Throttling" code; the SDK retries both).
func throttlingCode(service string) string {
	switch service {
	case "sts":
		return "Throttling"
	case "sqs":
		return "ThrottlingException"
	default:
		return "ThrottlingException"
	}
}
