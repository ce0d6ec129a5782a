package sandbox

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// Step is one kind of registry or storage request: what a fault or a hold is aimed at.
type Step string

// The steps of the distribution protocol as ECR serves it. A blob download is two steps:
// the registry's answer (a redirect) and the GET at the presigned storage URL.
const (
	StepPing         Step = "ping"
	StepManifestGET  Step = "manifest-get"
	StepManifestHEAD Step = "manifest-head"
	StepManifestPUT  Step = "manifest-put"
	StepBlobHEAD     Step = "blob-head"
	StepBlobGET      Step = "blob-get"    // the registry's answer: the redirect
	StepStorageGET   Step = "storage-get" // at the presigned target
	StepUploadPOST   Step = "upload-post"
	StepUploadPATCH  Step = "upload-patch"
	StepUploadPUT    Step = "upload-put"
	StepTagsList     Step = "tags-list"
	StepReferrers    Step = "referrers"
)

// stepBodies says, per step, whether its request carries a body (request) and whether its
// answer does (response): what a reset-mid-body fault can cut.
var stepBodies = map[Step]struct{ request, response bool }{
	StepPing:         {},
	StepManifestGET:  {response: true},
	StepManifestHEAD: {},
	StepManifestPUT:  {request: true},
	StepBlobHEAD:     {},
	StepBlobGET:      {}, // a 307 without a body
	StepStorageGET:   {response: true},
	StepUploadPOST:   {}, // a monolithic POST could carry one; ECR clients do not send it
	StepUploadPATCH:  {request: true},
	StepUploadPUT:    {request: true}, // a monolithic PUT; a PUT without a body is not cut
	StepTagsList:     {response: true},
	StepReferrers:    {response: true},
}

// stepFor names the step of a registry request; "" for requests outside the list
// (catalog, DELETE).
func stepFor(method, kind string) Step {
	switch kind + " " + method {
	case "ping GET":
		return StepPing
	case "manifest GET":
		return StepManifestGET
	case "manifest HEAD":
		return StepManifestHEAD
	case "manifest PUT":
		return StepManifestPUT
	case "blob HEAD":
		return StepBlobHEAD
	case "blob GET":
		return StepBlobGET
	case "upload POST":
		return StepUploadPOST
	case "upload PATCH":
		return StepUploadPATCH
	case "upload PUT":
		return StepUploadPUT
	case "tags GET":
		return StepTagsList
	case "referrers GET":
		return StepReferrers
	}
	return ""
}

// FaultKind is how a fault answers.
type FaultKind string

// Which (step, kind) pairs make sense:
//   - the status kinds and FaultResetBeforeHeaders and FaultSlow apply at every step;
//   - FaultResetMidBody needs a body to cut: the request body at manifest-put,
//     upload-patch and upload-put (only requests that carry one match), the answer at
//     manifest-get, tags-list, referrers and storage-get. ping, manifest-head, blob-head,
//     blob-get (a redirect) and upload-post have none: arming it there is an error.
//
// Every kind answers instead of applying the request (nothing is stored), except
// FaultResetMidBody on an answer, which applies the request and then cuts the answer, and
// FaultSlow, which applies the request if the client is still there after the delay.
const (
	Fault500 FaultKind = "500" // registry: UNKNOWN; storage: InternalError
	Fault502 FaultKind = "502" // registry: UNAVAILABLE
	Fault503 FaultKind = "503" // registry: UNAVAILABLE; storage: SlowDown
	Fault504 FaultKind = "504" // registry: UNAVAILABLE
	// Fault429 is TOOMANYREQUESTS with Retry-After (RegistryFault.RetryAfter, default 1 s).
	Fault429 FaultKind = "429"
	// FaultResetBeforeHeaders closes the connection before any byte of the answer. Go's
	// Transport retries an idempotent request once by itself when a *reused* connection
	// closes like this, so a client may never see it: expected, as with a real reset.
	FaultResetBeforeHeaders FaultKind = "reset-before-headers"
	// FaultResetMidBody resets the connection after ResetAfterBytes of the request body
	// (default 1 KiB, capped to half the body) or, for steps whose answer has the body,
	// cuts the answer after ResetAfterBytes (default half of it, at least 1 byte; capped so
	// that the cut is always inside the body) with Content-Length announcing it all.
	FaultResetMidBody FaultKind = "reset-mid-body"
	// FaultSlow delays the answer by Delay (default 30 s) before any header. A client that
	// goes away meanwhile gets nothing applied; one that waits gets the normal answer.
	FaultSlow FaultKind = "slow"
)

var kindStatus = map[FaultKind]int{
	Fault500: http.StatusInternalServerError,
	Fault502: http.StatusBadGateway,
	Fault503: http.StatusServiceUnavailable,
	Fault504: http.StatusGatewayTimeout,
	Fault429: http.StatusTooManyRequests,
}

// Defaults of the fault parameters.
const (
	defaultRetryAfter      = time.Second
	defaultSlowDelay       = 30 * time.Second
	defaultRequestResetCut = 1 << 10
)

// RegistryFault answers some registry (or storage) requests of one account wrongly.
// Zero-valued selectors match anything.
//
// The precise form names a Step and a Fault. The older form (no Fault) still works:
// Status answers with that status, ResetAfterBytes resets a body; without a Step it
// selects by Method and Kind among registry requests, and a reset of a blob GET applies
// at the storage GET, where the download's bytes flow since blob GETs redirect.
type RegistryFault struct {
	Account string // required
	Region  string
	Method  string // GET, HEAD, PUT, PATCH, POST, DELETE
	// Kind is the resource kind: "manifest", "blob", "upload", "tags", "referrers", "ping".
	Kind       string
	Repository string
	// Step selects one kind of request (see Step); empty: any, by Method and Kind.
	Step Step
	// Fault is how to answer (see FaultKind); empty: Status or ResetAfterBytes.
	Fault FaultKind
	// Count is how many matching requests the fault answers (0: 1; -1: until ClearFaults).
	Count int
	// Status answers with this HTTP status (500, 503, 429…) and a registry error body.
	Status int
	// RetryAfter, with a 429 or 503, sets the Retry-After header (Fault429: default 1 s).
	RetryAfter time.Duration
	// ResetAfterBytes is where a reset cuts: request body bytes for requests that carry
	// a body, answer body bytes otherwise (see FaultResetMidBody for the defaults).
	ResetAfterBytes int64
	// Delay is how long FaultSlow holds the answer (default 30 s).
	Delay time.Duration

	answered int // requests this fault answered (ArmedFault.Answered)
}

// APIFault makes an AWS API operation fail. The default error is the service's
// throttling error (ECR: ThrottlingException; STS: Throttling). Zero-valued selectors
// match anything.
type APIFault struct {
	Service   string // "ecr", "sts", "sqs", "events", "ssm"
	Operation string // e.g. "GetAuthorizationToken", "AssumeRole"; empty: any
	Account   string // caller account; empty: any
	Region    string // the request's region; empty: any
	// Resource, an IAM-style glob (* matches any run of characters), selects calls by the
	// resource they act on: a repository ARN (ECR), a role ARN (sts:AssumeRole), a queue
	// ARN (SQS). Empty: any.
	Resource string
	// Principal, an IAM-style glob, selects calls by who makes them (a user or
	// assumed-role session ARN). Empty: any.
	Principal string
	// Count is how many matching calls the fault answers (0: 1; -1: until ClearFaults
	// or Disarm).
	Count int
	Code  string // error code to answer with; empty: throttling
	// Reset closes the connection before any byte of the answer, instead of answering
	// with Code. Nothing is applied, unless LostAnswer is set too: then the call takes
	// effect and only its answer is lost (a client that retries repeats it).
	Reset      bool
	LostAnswer bool
	// Entries, for SQS batch sends (SendMessageBatch), fails that many entries of each
	// matching call, from the last, with Code (default InternalError) and SenderFault
	// false, as SQS reports a failure on its side; the other entries are sent. With
	// SenderFault the entries are refused as the sender's fault (SenderFault true).
	Entries     int
	SenderFault bool
	// ImageFailure, when set, lets the call succeed but fails every image it names with
	// this ImageFailure code (BatchGetImage and BatchDeleteImage answer per image:
	// KmsError, UpstreamUnavailable, … API_ImageFailure) instead of answering Code.
	ImageFailure string

	answered int
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
	if err := f.normalize(); err != nil {
		return err
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.registry = append(s.faults.registry, &f)
	return nil
}

// ArmedFault is one armed registry fault, for tests that run several at once.
type ArmedFault struct {
	sb *Sandbox
	f  *RegistryFault
}

// ArmRegistryFault arms a registry fault and returns a handle on it.
func (s *Sandbox) ArmRegistryFault(f RegistryFault) (*ArmedFault, error) {
	if err := f.normalize(); err != nil {
		return nil, err
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.registry = append(s.faults.registry, &f)
	return &ArmedFault{sb: s, f: &f}, nil
}

// Answered is how many requests the fault has answered.
func (a *ArmedFault) Answered() int {
	a.sb.faults.mu.Lock()
	defer a.sb.faults.mu.Unlock()
	return a.f.answered
}

// Disarm stops the fault, persistent or not; what it answered stays counted.
func (a *ArmedFault) Disarm() {
	a.sb.faults.mu.Lock()
	defer a.sb.faults.mu.Unlock()
	for i, rf := range a.sb.faults.registry {
		if rf == a.f {
			a.sb.faults.registry = append(a.sb.faults.registry[:i], a.sb.faults.registry[i+1:]...)
			return
		}
	}
}

// normalize checks a fault and fills in what the older form implies.
func (f *RegistryFault) normalize() error {
	if f.Account == "" {
		return fmt.Errorf("sandbox: registry fault needs an account")
	}
	switch {
	case f.Count == 0:
		f.Count = 1
	case f.Count < 0:
		f.Count = -1
	}
	if f.Step != "" {
		if _, ok := stepBodies[f.Step]; !ok {
			return fmt.Errorf("sandbox: unknown step %q", f.Step)
		}
	}
	switch {
	case f.Fault == "" && f.Status == 0 && f.ResetAfterBytes == 0:
		return fmt.Errorf("sandbox: registry fault needs a Fault, a Status or ResetAfterBytes")
	case f.Fault == "" && f.Status != 0:
		// The older form: any status, named by its kind when it has one.
		for k, st := range kindStatus {
			if st == f.Status {
				f.Fault = k
			}
		}
	case f.Fault == "":
		f.Fault = FaultResetMidBody
	}
	if st, ok := kindStatus[f.Fault]; ok {
		if f.Status != 0 && f.Status != st {
			return fmt.Errorf("sandbox: fault %s with Status %d", f.Fault, f.Status)
		}
		f.Status = st
		if f.Fault == Fault429 && f.RetryAfter == 0 {
			f.RetryAfter = defaultRetryAfter
		}
		return nil
	}
	switch f.Fault {
	case "": // a status without a kind (401…): answered as is
	case FaultResetBeforeHeaders:
	case FaultSlow:
		if f.Delay <= 0 {
			f.Delay = defaultSlowDelay
		}
	case FaultResetMidBody:
		if f.Step != "" && !stepBodies[f.Step].request && !stepBodies[f.Step].response {
			return fmt.Errorf("sandbox: no body at step %s to reset mid-body", f.Step)
		}
	default:
		return fmt.Errorf("sandbox: unknown fault kind %q", f.Fault)
	}
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

// ResetBlobDownloads closes the connection of the next n blob downloads of an account
// after afterBytes bytes of the body (at most all but one). Blob GETs redirect to
// presigned storage, so the cut happens there, at the storage GET.
func (s *Sandbox) ResetBlobDownloads(accountID string, afterBytes int64, n int) error {
	return s.InjectRegistryFault(RegistryFault{Account: accountID, Step: StepStorageGET, Fault: FaultResetMidBody, Count: n, ResetAfterBytes: afterBytes})
}

// InjectAPIFault arms an API fault.
func (s *Sandbox) InjectAPIFault(f APIFault) error {
	_, err := s.ArmAPIFault(f)
	return err
}

// ArmedAPIFault is one armed API fault.
type ArmedAPIFault struct {
	sb *Sandbox
	f  *APIFault
}

// ArmAPIFault arms an API fault and returns a handle on it.
func (s *Sandbox) ArmAPIFault(f APIFault) (*ArmedAPIFault, error) {
	if f.Service == "" {
		return nil, fmt.Errorf("sandbox: API fault needs a service")
	}
	if f.Count == 0 {
		f.Count = 1
	}
	if f.Count < -1 {
		return nil, fmt.Errorf("sandbox: API fault count %d (want > 0, or -1 for persistent)", f.Count)
	}
	if f.Entries > 0 && (f.Service != "sqs" || (f.Operation != "" && f.Operation != "SendMessageBatch")) {
		return nil, fmt.Errorf("sandbox: entry faults apply to sqs:SendMessageBatch only")
	}
	if f.Entries > 0 && f.Reset {
		return nil, fmt.Errorf("sandbox: an API fault fails entries or resets the connection, not both")
	}
	if f.LostAnswer && !f.Reset {
		return nil, fmt.Errorf("sandbox: LostAnswer needs Reset")
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.api = append(s.faults.api, &f)
	return &ArmedAPIFault{sb: s, f: &f}, nil
}

// Answered is how many calls the fault has answered.
func (a *ArmedAPIFault) Answered() int {
	a.sb.faults.mu.Lock()
	defer a.sb.faults.mu.Unlock()
	return a.f.answered
}

// Disarm stops the fault, persistent or not; what it answered stays counted.
func (a *ArmedAPIFault) Disarm() {
	a.sb.faults.mu.Lock()
	defer a.sb.faults.mu.Unlock()
	for i, af := range a.sb.faults.api {
		if af == a.f {
			a.sb.faults.api = append(a.sb.faults.api[:i], a.sb.faults.api[i+1:]...)
			return
		}
	}
}

// ThrottleAPI answers the next n calls of an operation with the service's throttling error.
func (s *Sandbox) ThrottleAPI(service, operation string, n int) error {
	return s.InjectAPIFault(APIFault{Service: service, Operation: operation, Count: n})
}

// ClearFaults disarms every registry and API fault and the event drops (DropEvents,
// DropEventFraction), persistent ones included (tests turn a persistent fault off before
// a redelivery). What already fired stays counted.
func (s *Sandbox) ClearFaults() {
	s.faults.mu.Lock()
	s.faults.registry, s.faults.api = nil, nil
	s.faults.mu.Unlock()
	s.clearDrops()
}

// FaultsFired reports how many requests each kind of fault has answered, keyed like
// "registry:status:503", "registry:reset:upload", "api:ecr:ThrottlingException" and, per
// step, "registry:<step>:<kind>" (e.g. "registry:storage-get:reset-mid-body"). A registry
// fault counts under both of its keys. ECR events lost to DropEvents or
// DropEventFraction count under "events:dropped".
func (s *Sandbox) FaultsFired() map[string]int {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	out := make(map[string]int, len(s.faults.fired))
	for k, v := range s.faults.fired {
		out[k] = v
	}
	return out
}

// PendingFaults counts armed faults that have not fired yet (persistent ones included;
// a DropEvents count not used up counts as one).
func (s *Sandbox) PendingFaults() int {
	st := s.events()
	st.mu.Lock()
	drops := 0
	if st.drop.next > 0 {
		drops = 1
	}
	st.mu.Unlock()
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	return len(s.faults.registry) + len(s.faults.api) + drops
}

// faultTarget describes a request faults are matched against.
type faultTarget struct {
	account, region, method, kind, repo string
	step                                Step
	hasBody                             bool // the request carries a body
	storage                             bool // at the presigned storage endpoint
}

// matches says whether an armed fault applies to a request.
func (rf *RegistryFault) matches(t faultTarget) bool {
	if rf.Account != t.account || (rf.Region != "" && rf.Region != t.region) ||
		(rf.Repository != "" && rf.Repository != t.repo) ||
		(rf.Method != "" && rf.Method != t.method) || (rf.Kind != "" && rf.Kind != t.kind) {
		return false
	}
	if rf.Step != "" {
		if rf.Step != t.step {
			return false
		}
		// A reset of a request body waits for a request that carries one.
		return rf.Fault != FaultResetMidBody || stepBodies[t.step].response || t.hasBody
	}
	if t.storage {
		// Only the older form's download reset reaches storage (see RegistryFault).
		return rf.Fault == FaultResetMidBody && t.method == http.MethodGet
	}
	if rf.Fault == FaultResetMidBody {
		// The older form: request bodies, or the answer of a GET that has one.
		return t.hasBody || (t.method == http.MethodGet && (stepBodies[t.step].response || t.kind == "catalog"))
	}
	return true
}

// takeRegistry consumes one use of the first fault matching the request.
func (f *faults) takeRegistry(t faultTarget) *RegistryFault {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, rf := range f.registry {
		if !rf.matches(t) {
			continue
		}
		if rf.Count > 0 {
			rf.Count--
			if rf.Count == 0 {
				f.registry = append(f.registry[:i], f.registry[i+1:]...)
			}
		}
		rf.answered++
		fired := *rf
		f.count(fired, t)
		return &fired
	}
	return nil
}

// count records a fired fault under its older key and its per-step key.
func (f *faults) count(rf RegistryFault, t faultTarget) {
	switch {
	case rf.Fault == FaultResetMidBody:
		f.fired["registry:reset:"+t.kind]++
	case rf.Status != 0:
		f.fired[fmt.Sprintf("registry:status:%d", rf.Status)]++
	}
	if t.step == "" {
		return
	}
	kind := string(rf.Fault)
	if kind == "" {
		kind = fmt.Sprintf("status-%d", rf.Status)
	}
	f.fired["registry:"+string(t.step)+":"+kind]++
}

// apiCall describes an API call faults are matched against.
type apiCall struct {
	service, operation, account, region, principal string
	resources                                      []string
}

// takeAPI consumes one use of the first API fault matching the call.
func (f *faults) takeAPI(call apiCall) *APIFault {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, af := range f.api {
		if !af.matches(call) {
			continue
		}
		if af.Count > 0 {
			af.Count--
			if af.Count == 0 {
				f.api = append(f.api[:i], f.api[i+1:]...)
			}
		}
		af.answered++
		fired := *af
		switch {
		case fired.ImageFailure != "":
			f.fired["api:"+call.service+":"+call.operation+":image:"+fired.ImageFailure]++
		case fired.Reset && fired.LostAnswer:
			f.fired["api:"+call.service+":lost-answer"]++
		case fired.Reset:
			f.fired["api:"+call.service+":reset"]++
		default:
			if fired.Code == "" {
				fired.Code = throttlingCode(call.service)
				if fired.Entries > 0 {
					fired.Code = "InternalError"
				}
			}
			key := "api:" + call.service + ":" + fired.Code
			if fired.Entries > 0 {
				key += ":entries"
			}
			f.fired[key]++
		}
		return &fired
	}
	return nil
}

func (af *APIFault) matches(call apiCall) bool {
	if af.Service != call.service || (af.Operation != "" && af.Operation != call.operation) ||
		(af.Account != "" && af.Account != call.account) || (af.Region != "" && af.Region != call.region) {
		return false
	}
	if af.Entries > 0 && call.operation != "SendMessageBatch" {
		return false
	}
	if af.Principal != "" && !globMatch(af.Principal, call.principal, false) {
		return false
	}
	return af.Resource == "" || anyResource(af.Resource, call.resources)
}

func anyResource(pattern string, resources []string) bool {
	for _, r := range resources {
		if globMatch(pattern, r, false) {
			return true
		}
	}
	return false
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

// cutPoint is where a reset-mid-body fault cuts an answer of size bytes: the fault's
// ResetAfterBytes or half the answer, at least 1, and always inside the body. -1: there is
// no body to cut in.
func cutPoint(resetAfter, size int64) int64 {
	if size <= 0 {
		return -1
	}
	n := resetAfter
	if n <= 0 {
		n = size / 2
	}
	return min(max(n, 1), size-1)
}

// requestCut is after how many bytes of a request body of length size (-1: unknown) a
// reset-mid-body fault closes the connection: ResetAfterBytes (default 1 KiB), capped to
// half the body.
func requestCut(resetAfter, size int64) int64 {
	n := resetAfter
	if n <= 0 {
		n = defaultRequestResetCut
	}
	if size > 0 {
		n = min(n, max(size/2, 1))
	}
	return n
}

// slow waits d before a request is answered (FaultSlow). false: the client went away, or
// the sandbox closed, first.
func (s *Sandbox) slow(req *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-req.Context().Done():
		return false
	case <-s.done:
		return false
	}
}

// slowRequest is slow for a request that may carry a body. Go's server only notices a
// client going away once the request body has been read, so the body is first spooled to
// a file (and the handler reads it from there); a body that cannot be read means the
// client is gone.
func (s *Sandbox) slowRequest(req *http.Request, d time.Duration) bool {
	if req.ContentLength != 0 && req.Body != nil && req.Body != http.NoBody {
		f, err := os.CreateTemp(s.dataDir, "slow-")
		if err != nil {
			return false
		}
		context.AfterFunc(req.Context(), func() { f.Close(); os.Remove(f.Name()) })
		if _, err := io.Copy(f, req.Body); err != nil {
			return false
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return false
		}
		req.Body = io.NopCloser(f)
	}
	return s.slow(req, d)
}

// count1 counts one event under key in FaultsFired (a quota refusal, say).
func (f *faults) count1(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fired[key]++
}
