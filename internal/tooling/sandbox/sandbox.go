// Package sandbox emulates, in-process and on 127.0.0.1 only, the parts of AWS that
// ecr-replicator talks to: for any number of accounts, an ECR registry per account and
// region (OCI distribution API behind ECR's rules), the ECR API (AWS JSON 1.1), STS
// (query protocol) with SigV4 checked on every call, SQS and EventBridge: ECR emits its
// "ECR Image Action" events to the default bus, and rules deliver matching events (those
// clients put too) to SQS queues (ecrevents.go, eventrules.go; the eventsource
// subpackage then plays Lambda's SQS event source mapping). It keeps an access log tests
// can read and offers fault hooks.
//
// The real AWS SDK for Go v2 talks to it unchanged through AWS_ENDPOINT_URL_<SERVICE>;
// registries are plain-http loopback endpoints, announced through ECR's own answers
// (GetAuthorizationToken's proxyEndpoint, a repository's repositoryUri).
//
// Blob GETs redirect to presigned storage, as ECR's do: the registry answers GET
// /v2/<repo>/blobs/<digest> with 307 and a Location on the sandbox's storage listener
// (http://localhost:<port>/prod-<region>-starport-layer-bucket/<account>-<region>/<digest>),
// whose query carries X-Amz-Algorithm=AWS4-HMAC-SHA256, X-Amz-Credential (a random key ID
// per URL), X-Amz-Date, X-Amz-Expires (Config.PresignExpiry, default 3600 s: ECR's real
// validity is not documented, a guess), X-Amz-SignedHeaders=host, X-Amz-Security-Token and
// X-Amz-Signature (random per URL; all three are in IssuedSecrets). Storage checks the
// signature and expiry, honours Range, refuses a request that also carries an
// Authorization header (recorded in StorageViolations) and logs as service "s3", where the
// blob's bytes are counted. Blob HEADs are still answered by the registry. See
// docs/SANDBOX.md.
//
// Manifests may reference non-distributable (foreign) layers that were never pushed, as
// ECR accepts for Windows images; a zero-byte blob is refused, as ECR refuses it. The OCI
// conformance suite runs against the sandbox (internal/tooling/sandbox/conformance).
//
// Faults (RegistryFault with a Step and a FaultKind) and holds (HoldRequests, pausing a
// request between its effect and its answer) let tests reach every step deterministically.
//
// What is emulated follows the AWS pages cited next to each behaviour; what is simplified
// is said there too (see also docs/SANDBOX.md).
package sandbox

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Config describes the accounts the sandbox emulates.
type Config struct {
	// Accounts lists the emulated AWS accounts. Registries exist per account and region and
	// are started on first use, so regions need not be declared.
	Accounts []AccountConfig
	// DataDir holds blob storage. Empty: a temporary directory removed by Close.
	DataDir string
	// APIAddr is the listen address of the AWS API endpoint (ECR, STS, SQS, EventBridge).
	// Empty: 127.0.0.1 on a free port. Only loopback addresses are accepted.
	APIAddr string
	// Logger receives the sandbox's own diagnostics (not the access log). Nil: discarded.
	Logger *slog.Logger
	// AccessLog, when set, also receives every access-log entry as a JSON line.
	AccessLog io.Writer
	// ReferrersPageSize makes the registries paginate the referrers API with Link headers
	// after this many descriptors (0: no pagination, as observed of ECR, which caps a
	// subject at 100 referrers anyway).
	ReferrersPageSize int
	// Now overrides the clock (tests). Nil: time.Now.
	Now func() time.Time
	// PresignExpiry is how long the presigned storage URLs blob GETs redirect to stay
	// valid (X-Amz-Expires, whole seconds). Zero: one hour (ECR's is not documented).
	PresignExpiry time.Duration
	// Latency delays every API, registry and storage request by this much before it is
	// handled, as a region away would (benchmarks). Zero: none.
	Latency time.Duration
	// PutImageRate is ECR's PutImage quota per account and region (manifest writes per
	// second, through the API or the registry; ECR's default is 10). Zero: no quota.
	// Writes over it are refused as ECR throttles: ThrottlingException from the API, 429
	// TOOMANYREQUESTS from the registry.
	PutImageRate float64
	// RestoreDuration is how long an archived image stays ACTIVATING after a restore
	// (UpdateImageStorageClass to STANDARD) before it is ACTIVE. Zero: until
	// CompleteRestores (ECR documents no duration).
	RestoreDuration time.Duration
}

// AccountConfig is one emulated AWS account.
type AccountConfig struct {
	ID string // 12 digits
	// OrgID is the AWS Organizations organization the account belongs to (o-…; "": none):
	// the value of aws:ResourceOrgID and aws:PrincipalOrgID in conditions.
	OrgID string
	Users []UserConfig
	Roles []RoleConfig
	// PullTimeUpdateExclusions are registered when the sandbox starts (pulltime.go).
	PullTimeUpdateExclusions []PullTimeUpdateExclusion
}

// UserConfig is an IAM user with a long-lived access key.
type UserConfig struct {
	Name            string
	AccessKeyID     string // generated when empty
	SecretAccessKey string // generated when empty
	// Policies are the user's identity policies (JSON). None: the user may do anything.
	Policies []string
}

// RoleConfig is an IAM role that STS AssumeRole can hand out.
type RoleConfig struct {
	Name string
	// Trusted lists who may assume the role: account IDs (any principal of that account,
	// like "arn:aws:iam::ACCOUNT:root" in a trust policy) or principal ARNs (a user, or a
	// role whose sessions may assume this one).
	Trusted []string
	// ExternalID, when set, must be passed exactly (the sts:ExternalId condition).
	ExternalID string
	// MaxSessionDuration caps DurationSeconds (default 1 hour, AWS's default).
	MaxSessionDuration time.Duration
	// Policies are the role's identity policies (JSON), in force for its sessions. None:
	// sessions may do anything.
	Policies []string
	// TrustPolicy, when set, decides who may assume the role instead of Trusted and
	// ExternalID: its Principal.AWS entries and sts:ExternalId conditions are evaluated.
	TrustPolicy string
}

// Sandbox is a running emulation. Close stops it.
type Sandbox struct {
	cfg     Config
	now     func() time.Time
	log     *slog.Logger
	dataDir string
	ownDir  bool

	api      *http.Server
	apiURL   string
	apiLn    net.Listener
	accounts map[string]*account

	mu         sync.Mutex
	registries map[regionKey]*registry
	keys       map[string]*credential // access key ID → credential
	tokens     map[string]*registryToken
	// pullExclusions: per registry, the principals whose pulls leave pull times alone.
	pullExclusions map[regionKey]map[string]time.Time

	accessLog   *accessLog
	faults      *faults
	holds       holds
	quotas      *quotas
	latency     atomic.Int64 // time.Duration
	storage     *storage
	sqsState    *sqsState
	eventsState *eventsState
	ssmState    *ssmState
	kms         kmsState // AWS KMS public keys (kms.go)

	wg     sync.WaitGroup
	closed bool
	done   chan struct{} // closed by Close
}

type regionKey struct{ account, region string }

type account struct {
	id    string
	orgID string // the AWS Organizations organization it belongs to ("": none)
	roles map[string]RoleConfig
	users []UserConfig
	// Parsed policies by role name.
	rolePolicies map[string][]PolicyDocument
	trust        map[string]*PolicyDocument
}

// credential is what an access key ID stands for.
type credential struct {
	accessKeyID  string
	secret       string
	sessionToken string // temporary credentials only
	account      string
	principalARN string // the user ARN or the assumed-role session ARN
	roleARN      string // for sessions: the role assumed
	// policies restrict what the principal may do; nil means unrestricted.
	policies []PolicyDocument
	// session is the session policy a role session was given at AssumeRole (nil: none):
	// it narrows policies further.
	session []PolicyDocument
	// tags are the session tags a role session was given at AssumeRole: the principal's
	// tags in conditions (aws:PrincipalTag/<key>).
	tags    map[string]string
	expires time.Time
	expired bool // forced by ExpireSessions
}

// New starts a sandbox. Every listener is bound to 127.0.0.1.
func New(cfg Config) (*Sandbox, error) {
	if len(cfg.Accounts) == 0 {
		return nil, errors.New("sandbox: no accounts configured")
	}
	s := &Sandbox{
		cfg:            cfg,
		now:            cfg.Now,
		quotas:         &quotas{rate: cfg.PutImageRate, buckets: map[string]*rate.Limiter{}},
		log:            cfg.Logger,
		accounts:       map[string]*account{},
		registries:     map[regionKey]*registry{},
		keys:           map[string]*credential{},
		tokens:         map[string]*registryToken{},
		pullExclusions: map[regionKey]map[string]time.Time{},
		faults:         newFaults(),
		done:           make(chan struct{}),
		sqsState:       newSQSState(),
		eventsState:    newEventsState(),
		ssmState:       newSSMState(),
	}
	s.latency.Store(int64(cfg.Latency))
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.accessLog = newAccessLog(cfg.AccessLog)
	for i, ac := range cfg.Accounts {
		if !isAccountID(ac.ID) {
			return nil, fmt.Errorf("sandbox: accounts[%d].id %q is not a 12-digit account ID", i, ac.ID)
		}
		if _, dup := s.accounts[ac.ID]; dup {
			return nil, fmt.Errorf("sandbox: account %s configured twice", ac.ID)
		}
		a := &account{id: ac.ID, orgID: ac.OrgID, roles: map[string]RoleConfig{}, rolePolicies: map[string][]PolicyDocument{}, trust: map[string]*PolicyDocument{}}
		for j, u := range ac.Users {
			if u.Name == "" {
				return nil, fmt.Errorf("sandbox: accounts[%d].users[%d].name is empty", i, j)
			}
			if u.AccessKeyID == "" {
				u.AccessKeyID = "AKIA" + randomString(16, upperAlnum)
			}
			if u.SecretAccessKey == "" {
				u.SecretAccessKey = randomString(40, secretAlphabet)
			}
			if _, dup := s.keys[u.AccessKeyID]; dup {
				return nil, fmt.Errorf("sandbox: access key %s configured twice", u.AccessKeyID)
			}
			a.users = append(a.users, u)
			pols, err := parsePolicies(u.Policies)
			if err != nil {
				return nil, fmt.Errorf("sandbox: accounts[%d].users[%d] (%s): %w", i, j, u.Name, err)
			}
			s.keys[u.AccessKeyID] = &credential{
				accessKeyID:  u.AccessKeyID,
				secret:       u.SecretAccessKey,
				account:      ac.ID,
				principalARN: fmt.Sprintf("arn:aws:iam::%s:user/%s", ac.ID, u.Name),
				policies:     pols,
			}
		}
		for _, r := range ac.Roles {
			if r.MaxSessionDuration == 0 {
				r.MaxSessionDuration = time.Hour
			}
			a.roles[r.Name] = r
			pols, err := parsePolicies(r.Policies)
			if err != nil {
				return nil, fmt.Errorf("sandbox: role %s in account %s: %w", r.Name, ac.ID, err)
			}
			a.rolePolicies[r.Name] = pols
			if r.TrustPolicy != "" {
				tp, err := ParsePolicy(r.TrustPolicy)
				if err != nil {
					return nil, fmt.Errorf("sandbox: trust policy of role %s in account %s: %w", r.Name, ac.ID, err)
				}
				a.trust[r.Name] = &tp
			}
		}
		s.accounts[ac.ID] = a
		if err := s.registerPullExclusions(ac.ID, ac.PullTimeUpdateExclusions); err != nil {
			return nil, err
		}
	}
	s.dataDir = cfg.DataDir
	if s.dataDir == "" {
		dir, err := os.MkdirTemp("", "ecr-replicator-sandbox-")
		if err != nil {
			return nil, fmt.Errorf("sandbox: data dir: %w", err)
		}
		s.dataDir, s.ownDir = dir, true
	}
	addr := cfg.APIAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := listenLoopback(addr)
	if err != nil {
		s.cleanup()
		return nil, err
	}
	s.apiLn = ln
	s.apiURL = "http://" + ln.Addr().String()
	s.api = &http.Server{Handler: http.HandlerFunc(s.serveAPI), ReadHeaderTimeout: 10 * time.Second}
	if s.storage, err = newStorage(s); err != nil {
		ln.Close()
		s.cleanup()
		return nil, err
	}
	s.serve(s.api, ln)
	s.serve(s.storage.server, s.storage.ln)
	s.wg.Add(1)
	go s.deliverEvents()
	return s, nil
}

func parsePolicies(docs []string) ([]PolicyDocument, error) {
	if docs == nil {
		return nil, nil
	}
	out := []PolicyDocument{}
	for k, d := range docs {
		p, err := ParsePolicy(d)
		if err != nil {
			return nil, fmt.Errorf("policy %d: %w", k, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("sandbox: listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("sandbox: listen address %q is not a loopback address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sandbox: listen %s: %w", addr, err)
	}
	return ln, nil
}

func (s *Sandbox) serve(srv *http.Server, ln net.Listener) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("sandbox server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
}

// Close stops every listener and removes the temporary data directory.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	regs := make([]*registry, 0, len(s.registries))
	for _, r := range s.registries {
		regs = append(regs, r)
	}
	s.mu.Unlock()
	// Close, not Shutdown: clients keep idle keep-alive and never-used connections open,
	// and a test sandbox has nothing in flight worth waiting for.
	errs := []error{s.api.Close(), s.storage.server.Close()}
	for _, r := range regs {
		errs = append(errs, r.server.Close())
	}
	s.wg.Wait()
	s.cleanup()
	return errors.Join(errs...)
}

func (s *Sandbox) cleanup() {
	if s.ownDir {
		os.RemoveAll(s.dataDir)
	}
}

// APIURL is the endpoint of every emulated AWS API (set it as AWS_ENDPOINT_URL_ECR, _STS,
// _SQS and _EVENTBRIDGE).
func (s *Sandbox) APIURL() string { return s.apiURL }

// Credentials returns the access key of an account's user.
func (s *Sandbox) Credentials(accountID, user string) (accessKeyID, secret string, err error) {
	a, ok := s.accounts[accountID]
	if !ok {
		return "", "", fmt.Errorf("sandbox: no account %s", accountID)
	}
	for _, u := range a.users {
		if u.Name == user {
			return u.AccessKeyID, u.SecretAccessKey, nil
		}
	}
	return "", "", fmt.Errorf("sandbox: account %s has no user %q", accountID, user)
}

// RoleARN is the ARN of an account's role.
func RoleARN(accountID, role string) string {
	return fmt.Sprintf("arn:aws:iam::%s:role/%s", accountID, role)
}

// RegistryHost returns the host:port of the registry of an account in a region, starting
// it if needed. Clients should learn it from ECR's answers; tests may ask directly.
func (s *Sandbox) RegistryHost(accountID, region string) (string, error) {
	r, err := s.registry(accountID, region)
	if err != nil {
		return "", err
	}
	return r.host, nil
}

// Env returns the environment a client of the sandbox needs, for the given account user
// and region: endpoints, keys and region. The names are the standard AWS SDK ones.
func (s *Sandbox) Env(accountID, user, region string) (map[string]string, error) {
	key, secret, err := s.Credentials(accountID, user)
	if err != nil {
		return nil, err
	}
	return map[string]string{
		"AWS_ENDPOINT_URL_ECR":         s.apiURL,
		"AWS_ENDPOINT_URL_STS":         s.apiURL,
		"AWS_ENDPOINT_URL_SQS":         s.apiURL,
		"AWS_ENDPOINT_URL_EVENTBRIDGE": s.apiURL,
		"AWS_ENDPOINT_URL_SSM":         s.apiURL,
		"AWS_ENDPOINT_URL_KMS":         s.apiURL,
		"AWS_ACCESS_KEY_ID":            key,
		"AWS_SECRET_ACCESS_KEY":        secret,
		"AWS_REGION":                   region,
		// Keep the SDK from looking for other credential sources on this machine.
		"AWS_EC2_METADATA_DISABLED": "true",
	}, nil
}

// registry returns the registry of (account, region), starting its listener on first use.
func (s *Sandbox) registry(accountID, region string) (*registry, error) {
	if _, ok := s.accounts[accountID]; !ok {
		return nil, fmt.Errorf("sandbox: no account %s", accountID)
	}
	if !isRegion(region) {
		return nil, fmt.Errorf("sandbox: %q is not a region name", region)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("sandbox: closed")
	}
	k := regionKey{accountID, region}
	if r, ok := s.registries[k]; ok {
		return r, nil
	}
	r, err := newRegistry(s, accountID, region)
	if err != nil {
		return nil, err
	}
	s.registries[k] = r
	s.serve(r.server, r.ln)
	return r, nil
}

// lookupRegistry returns an already started registry, or nil.
func (s *Sandbox) lookupRegistry(accountID, region string) *registry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.registries[regionKey{accountID, region}]
}

// Registries lists the started registries as "account/region".
func (s *Sandbox) Registries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.registries {
		out = append(out, k.account+"/"+k.region)
	}
	sort.Strings(out)
	return out
}

const (
	upperAlnum     = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	secretAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
)

func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isRegion accepts names shaped like AWS regions (us-east-1, us-gov-west-1, cn-north-1).
func isRegion(s string) bool {
	parts := strings.Split(s, "-")
	if len(parts) < 3 || len(parts[0]) != 2 {
		return false
	}
	for _, p := range parts[:len(parts)-1] {
		if p == "" || strings.Trim(p, "abcdefghijklmnopqrstuvwxyz") != "" {
			return false
		}
	}
	last := parts[len(parts)-1]
	return last != "" && strings.Trim(last, "0123456789") == ""
}
