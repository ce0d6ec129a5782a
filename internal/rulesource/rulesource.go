// Package rulesource keeps the rules document a function works with current. The
// document comes from the environment — REPLICATION_RULES (the document) or
// REPLICATION_RULES_FILE (a path), fixed for the life of the process — or from a Systems
// Manager parameter (REPLICATION_RULES_PARAMETER), which is read at cold start and read
// again at most every REPLICATION_RULES_CHECK_SECONDS (default 60): a warm function picks up
// a new version of the parameter within that time, without a deployment.
//
// A document is usable only if it parses and validates (internal/rules) and, when
// DESTINATION_ROLE_ARNS is set, every role it names is one the function may assume:
// the deployment grants sts:AssumeRole on exactly those ARN patterns (template.yaml's
// DestinationRoleArns), so a document naming another role could only fail at every copy.
// REPOSITORY_PREFIX_FILTER, when set, bounds every rule to the source repositories under
// that prefix, as the stack's event rule and read grants are bounded.
//
// A document must also be one the stack's EventBridge rule can feed: with MIRROR_DELETES
// "false" (no DELETE events) no rule may have mirrorDeletes, and with
// REPOSITORY_PREFIX_FILTER every rule must be able to select a repository under it, with
// PROMOTION_GATES "false" no rule may have `require`, and with SOURCE_ACCOUNT_IDS
// source.roleArn must be in one of those accounts — else the rule would silently do
// nothing.
//
// There is no silent fallback: a document that is missing, invalid, not covered by the
// grant or the events, or a parameter Systems Manager refuses (ParameterNotFound,
// AccessDeniedException) is an error every invocation reports (the functions count it as
// ConfigurationErrors, which the template alarms on) until it is fixed. A new version
// that is invalid, or the parameter deleted, replaces the valid one before it in the same
// way — every execution environment refuses it, old and new alike, instead of some
// copying with the old rules and some refusing. Only a transient failure (throttling, a
// 5xx, a timeout) keeps what was read: nothing says it changed. With nothing read yet it
// fails the invocation as Unavailable: retried, not a configuration error.
package rulesource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// Environment the Loader reads (beside rules.EnvRules and rules.EnvRulesFile).
const (
	// EnvParameter names the Systems Manager parameter holding the document.
	EnvParameter = "REPLICATION_RULES_PARAMETER"
	// EnvCheckSeconds is the most seconds between two reads of the parameter.
	EnvCheckSeconds = "REPLICATION_RULES_CHECK_SECONDS"
)

// DefaultCheckInterval is how long a parameter read is trusted. Every execution
// environment reads on its own: 1,000 of them checking every 60 s make about 17
// GetParameter calls per second, within Parameter Store's default 40 per second shared by
// the account and region ("Systems Manager endpoints and quotas",
// https://docs.aws.amazon.com/general/latest/gr/ssm.html).
const DefaultCheckInterval = 60 * time.Second

// readTimeout bounds one read of the parameter (the SDK's retries included), so that a
// Parameter Store that does not answer costs an invocation seconds, not its whole time.
const readTimeout = 5 * time.Second

// ParameterReader is the part of the Systems Manager client the Loader needs.
type ParameterReader interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
}

// Loader keeps the rules document of a function. It is safe for concurrent use.
type Loader struct {
	getenv   func(string) string
	readFile func(string) ([]byte, error)
	ssm      ParameterReader
	log      *slog.Logger
	now      func() time.Time
	param    string
	interval time.Duration
	scope    scope

	mu      sync.Mutex
	fixed   bool // doc and err are final: the environment's document, or a configuration error
	doc     *rules.Document
	err     error
	version int64         // the parameter version doc (or err) is of; 0: none
	value   string        // and its text
	next    time.Time     // until when doc and err stand without a read
	wait    time.Duration // the next wait after a failed read with no version to keep
}

// Option configures a Loader.
type Option func(*Loader)

// WithParameterReader sets the Systems Manager client (needed when EnvParameter is set).
func WithParameterReader(r ParameterReader) Option { return func(s *Loader) { s.ssm = r } }

// WithLogger sets the logger: document loads (info) and failed checks that keep the
// previous version (warn). Default: discard.
func WithLogger(l *slog.Logger) Option { return func(s *Loader) { s.log = l } }

// WithClock sets the clock that times the checks (tests).
func WithClock(now func() time.Time) Option { return func(s *Loader) { s.now = now } }

// New returns the Source the environment describes. A configuration error (no source,
// several, an unreadable check interval) is not returned here: it is what Current
// answers, so that a function reports it on every invocation.
func New(getenv func(string) string, readFile func(string) ([]byte, error), opts ...Option) *Loader {
	s := &Loader{getenv: getenv, readFile: readFile, log: slog.New(slog.DiscardHandler), now: time.Now,
		param: strings.TrimSpace(getenv(EnvParameter)), interval: DefaultCheckInterval}
	for _, o := range opts {
		o(s)
	}
	if err := s.configure(); err != nil {
		s.fixed, s.err = true, err
	}
	return s
}

func (s *Loader) configure() error {
	if v := strings.TrimSpace(s.getenv(EnvCheckSeconds)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("%s: %q is not a number of seconds", EnvCheckSeconds, v)
		}
		s.interval = time.Duration(n) * time.Second
	}
	s.scope = newScope(s.getenv)
	if s.param == "" {
		return nil
	}
	if s.getenv(rules.EnvRules) != "" || s.getenv(rules.EnvRulesFile) != "" {
		return fmt.Errorf("%s is set together with %s or %s; set exactly one", EnvParameter, rules.EnvRules, rules.EnvRulesFile)
	}
	if s.ssm == nil {
		return errors.New("rulesource: a rules parameter needs a Systems Manager client")
	}
	return nil
}

// Current returns the document to work with now, or why there is none. From a parameter,
// it reads the parameter when the last read is older than the check interval — or, while
// no version could be read at all, after a wait that doubles from a second up to the
// check interval; ctx bounds the read.
func (s *Loader) Current(ctx context.Context) (*rules.Document, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.fixed:
		return s.doc, s.err
	case s.param == "":
		s.fixed = true
		s.doc, s.err = s.fromEnvironment()
		s.logLoad("environment", 0)
		return s.doc, s.err
	case s.now().Before(s.next):
		return s.doc, s.err
	}
	s.read(ctx)
	return s.doc, s.err
}

// fromEnvironment loads REPLICATION_RULES or REPLICATION_RULES_FILE.
func (s *Loader) fromEnvironment() (*rules.Document, error) {
	if s.getenv(rules.EnvRules) == "" && s.getenv(rules.EnvRulesFile) == "" {
		return nil, fmt.Errorf("no replication rules: set %s (a Systems Manager parameter holding the document), %s (the document) or %s (a path to it)",
			EnvParameter, rules.EnvRules, rules.EnvRulesFile)
	}
	doc, err := rules.Load(s.getenv, s.readFile)
	if err != nil {
		return nil, err
	}
	if err := s.scope.check(doc); err != nil {
		return nil, err
	}
	return s.scoped(doc), nil
}

// scoped is doc bounded by the repository prefix, when there is one.
func (s *Loader) scoped(doc *rules.Document) *rules.Document {
	if s.scope.eventPrefix == "" {
		return doc
	}
	return doc.WithRepositoryPrefix(s.scope.eventPrefix)
}

// read reads the parameter and, when its version changed, parses it. The caller holds mu.
func (s *Loader) read(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	out, err := s.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(s.param), WithDecryption: aws.Bool(true)})
	if err == nil && out.Parameter == nil {
		err = errors.New("the answer has no parameter")
	}
	if err != nil {
		s.failed(err)
		return
	}
	s.next, s.wait = s.now().Add(s.interval), 0
	p := out.Parameter
	// The text too: a parameter deleted and created again starts over at version 1.
	if p.Version == s.version && aws.ToString(p.Value) == s.value {
		return // unchanged: the document (or the error) read before stands
	}
	s.version, s.value = p.Version, aws.ToString(p.Value)
	doc, err := rules.Parse([]byte(aws.ToString(p.Value)))
	if err == nil {
		err = s.scope.check(doc)
	}
	if err != nil {
		s.doc, s.err = nil, fmt.Errorf("rules parameter %s version %d: %w", s.param, p.Version, err)
	} else {
		s.doc, s.err = s.scoped(doc), nil
	}
	s.logLoad("parameter "+s.param, p.Version)
}

// failed takes a read that got no parameter. An AWS answer that is not transient
// (ParameterNotFound, AccessDeniedException, …) is the parameter's state: the document
// is gone for every execution environment alike, until a check reads one again. A
// transient failure (throttling, a 5xx, a timeout) says nothing changed: the version read
// stands; with none read, the invocation fails as Unavailable (retried, not a
// configuration error) and the next read waits a little longer each time. The caller
// holds mu.
func (s *Loader) failed(err error) {
	code, transient := retry.Classify(ecraccess.WrapAWS("ssm:GetParameter", err))
	answered := ecraccess.ErrorCode(err) != ""
	err = fmt.Errorf("reading the rules parameter %s: %w", s.param, err)
	now := s.now()
	switch {
	case answered && !transient:
		s.doc, s.err, s.version, s.value = nil, err, 0, ""
		s.next, s.wait = now.Add(s.interval), 0
		s.log.Error("rules parameter refused; no rules until it can be read", "parameter", s.param, "code", code, "error", err.Error())
	case s.version != 0 || (s.err != nil && !Unavailable(s.err)):
		// What was read (a version, or a refusal) stands: nothing says it changed.
		s.next = now.Add(s.interval)
		s.log.Warn("rules parameter not read; keeping what was read before", "parameter", s.param, "version", s.version, "error", err.Error())
	default:
		s.wait = min(max(2*s.wait, time.Second), s.interval)
		s.doc, s.err, s.next = nil, &unavailableError{err: err}, now.Add(s.wait)
		s.log.Warn("rules parameter not read; no rules yet, read again after a wait", "parameter", s.param, "wait", s.wait.String(), "error", err.Error())
	}
}

// unavailableError is a failed read with no version to keep: worth retrying as is.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

// Unavailable reports whether err (from Current) is a transient failure to read the
// rules parameter, not a document or parameter that needs fixing: the invocation is
// retried, and it is not counted as a configuration error.
func Unavailable(err error) bool {
	var u *unavailableError
	return errors.As(err, &u)
}

func (s *Loader) logLoad(from string, version int64) {
	if s.err != nil {
		s.log.Error("invalid rules document", "source", from, "version", version, "error", s.err.Error())
		return
	}
	s.log.Info("rules loaded", "source", from, "version", version, "rules", s.doc.String())
}
