package sandbox

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventpattern"
)

// EventBridge rules: each event bus of an (account, region) holds rules, each an event
// pattern and targets. An event put on a bus (by PutEvents, or by ECR on the default bus)
// goes, as the SQS message body, to every target of every enabled rule whose pattern
// matches it.
// https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rules.html
//
// Emulated: PutRule, DescribeRule, DeleteRule, ListRules, PutTargets, RemoveTargets and
// ListTargetsByRule over AWS JSON 1.1, and Sandbox.PutRule for Go callers. Patterns are
// evaluated by internal/tooling/sandbox/eventpattern, which implements the subset of the pattern
// language it documents ("$or" and "cidr" are refused at PutRule).
//
// Delivery is asynchronous: one goroutine per sandbox takes events in the order they
// were put or emitted and sends each to its matching targets with SendMessage's checks
// and limits (the message shows up for ReceiveMessage, counts in the queue's attributes,
// is refused when too large), without an access-log entry: no caller made that call.
// EventBridge promises no order; the sandbox happens to keep one. Deliveries() records
// each send and its outcome; WaitEventsDelivered waits for the queue to empty.
//
// Simplifications:
//   - Targets are SQS queues of the sandbox only (another ARN is refused, per entry, by
//     PutTargets). Input, InputPath and InputTransformer are refused: the event is always
//     delivered whole. Queue policies are not evaluated (the sandbox has none), so any
//     sandbox queue receives.
//   - A send that fails (no such queue, message too large) is recorded in Deliveries
//     and dropped: no retry policy, no target dead-letter queue (DeadLetterConfig and
//     RetryPolicy are stored and listed, not used).
//   - Scheduled rules (ScheduleExpression), managed rules, archives and replays are not
//     emulated; rule tags are accepted and ignored.
//   - DeleteRule of a rule that does not exist succeeds (guess).

// Quotas from https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-quota.html and
// the API reference's parameter constraints.
const (
	maxTargetsPerRule   = 5
	maxPutTargetsBatch  = 10
	maxListRulesLimit   = 100
	eventBridgeSenderID = "AIDAEVENTBRIDGESANDBOX" // guess: the SenderId of messages EventBridge sends
)

var (
	ruleNamePattern = regexp.MustCompile(`^[\.\-_A-Za-z0-9]{1,64}$`)
	targetIDPattern = regexp.MustCompile(`^[\.\-_A-Za-z0-9]{1,64}$`)
)

// Rule is an EventBridge rule, as Sandbox.PutRule takes it and Sandbox.Rules lists it.
type Rule struct {
	Name string
	// EventBus is the bus's name; empty: "default", where ECR's events arrive.
	EventBus string
	// EventPattern is the pattern, as JSON.
	EventPattern string
	// State is ENABLED (when empty) or DISABLED.
	State       string
	Description string
	// Targets are the ARNs of sandbox SQS queues (arn:aws:sqs:<region>:<account>:<name>).
	// Through Sandbox.PutRule each gets the queue name as its target ID.
	Targets []string
}

// Delivery is one send of an event to one rule target.
type Delivery struct {
	EventID   string
	Account   string // the bus's
	Region    string
	EventBus  string
	Rule      string
	TargetID  string
	TargetARN string
	// MessageID is the SQS message ID of a successful send.
	MessageID string
	// Error, for a failed send, is SQS's error ("QueueDoesNotExist: …").
	Error string
	Time  time.Time
}

type busKey struct{ account, region, bus string }

type ebRule struct {
	name, description, state string
	pattern                  string
	compiled                 *eventpattern.Pattern
	arn                      string
	targets                  []ebTarget
}

// ebTarget is a rule target as PutTargets takes it; only Id and Arn are acted on.
type ebTarget struct {
	ID               string          `json:"Id"`
	Arn              string          `json:"Arn"`
	RoleArn          string          `json:"RoleArn,omitempty"`
	DeadLetterConfig json.RawMessage `json:"DeadLetterConfig,omitempty"`
	RetryPolicy      json.RawMessage `json:"RetryPolicy,omitempty"`
	SqsParameters    json.RawMessage `json:"SqsParameters,omitempty"`
	Input            *string         `json:"Input,omitempty"`
	InputPath        *string         `json:"InputPath,omitempty"`
	InputTransformer json.RawMessage `json:"InputTransformer,omitempty"`
}

func ruleARN(k busKey, name string) string {
	if k.bus == defaultEventBusName {
		return fmt.Sprintf("arn:aws:events:%s:%s:rule/%s", k.region, k.account, name)
	}
	return fmt.Sprintf("arn:aws:events:%s:%s:rule/%s/%s", k.region, k.account, k.bus, name)
}

// busFor resolves an EventBusName parameter (a name or an ARN; empty: default) for a
// caller, who may only manage the rules of its own account's buses.
func busFor(c *caller, name string) (busKey, *apiError) {
	k := busKey{c.cred.account, c.region, defaultEventBusName}
	switch {
	case name == "":
	case eventBusARNPattern.MatchString(name):
		m := eventBusARNPattern.FindStringSubmatch(name)
		k = busKey{m[2], m[1], m[3]}
		if k.account != c.cred.account {
			return k, errorf(400, "AccessDeniedException", "User: %s is not authorized to manage rules on event bus %s (the sandbox manages the caller's own buses only)", c.cred.principalARN, name)
		}
	case eventBusNamePattern.MatchString(name) && !strings.HasPrefix(name, "arn:"):
		k.bus = name
	default:
		return k, errorf(400, "ValidationException", "1 validation error detected: Value '%s' at 'eventBusName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:aws[\\w-]*:events:[a-z]{2}-[a-z]+-[\\w-]+:[0-9]{12}:event-bus\\/)?[/\\.\\-_A-Za-z0-9]+", name)
	}
	return k, nil
}

func (st *eventsState) rule(k busKey, name string) *ebRule {
	return st.rules[k][name]
}

func ruleNotFound(k busKey, name string) *apiError {
	return errorf(400, "ResourceNotFoundException", "Rule %s does not exist on EventBus %s.", name, k.bus)
}

// putRule creates or replaces a rule's pattern, state and description, keeping its
// targets; st.mu must be held.
func (st *eventsState) putRule(k busKey, name, pattern, state, description string) (*ebRule, *apiError) {
	if !ruleNamePattern.MatchString(name) {
		return nil, errorf(400, "ValidationException", "1 validation error detected: Value '%s' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+ and have length between 1 and 64", name)
	}
	switch state {
	case "":
		state = "ENABLED"
	case "ENABLED", "DISABLED":
	case "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS":
		// Only matters for CloudTrail events, which the sandbox has none of.
	default:
		return nil, errorf(400, "ValidationException", "1 validation error detected: Value '%s' at 'state' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED, ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS]", state)
	}
	if pattern == "" {
		return nil, errorf(400, "ValidationException", "Parameter(s) EventPattern or ScheduleExpression must be specified.")
	}
	compiled, err := eventpattern.Compile([]byte(pattern))
	if err != nil {
		return nil, errorf(400, "InvalidEventPatternException", "Event pattern is not valid. Reason: %v", err)
	}
	rules := st.rules[k]
	if rules == nil {
		rules = map[string]*ebRule{}
		st.rules[k] = rules
	}
	r := rules[name]
	if r == nil {
		r = &ebRule{name: name, arn: ruleARN(k, name)}
		rules[name] = r
	}
	r.pattern, r.compiled, r.state, r.description = pattern, compiled, state, description
	return r, nil
}

// checkTarget says why a target cannot be used, or "".
func checkTarget(t ebTarget) (code, msg string) {
	switch {
	case !targetIDPattern.MatchString(t.ID):
		return "ValidationException", fmt.Sprintf("Target Id %q must match [\\.\\-_A-Za-z0-9]+ and be 1 to 64 characters long.", t.ID)
	case !sqsARNPattern.MatchString(t.Arn):
		return "ValidationException", fmt.Sprintf("Target %s: the sandbox delivers to SQS queues only (arn:aws:sqs:<region>:<account>:<queue>), not %q.", t.ID, t.Arn)
	case t.Input != nil || t.InputPath != nil || len(t.InputTransformer) > 0:
		return "ValidationException", fmt.Sprintf("Target %s: the sandbox does not emulate Input, InputPath or InputTransformer; targets receive the whole event.", t.ID)
	}
	return "", ""
}

// setTargets adds or replaces targets by ID; st.mu must be held. It returns the failed
// entries (PutTargets' FailedEntries).
func (r *ebRule) setTargets(ts []ebTarget) []map[string]string {
	failed := []map[string]string{}
	for _, t := range ts {
		if code, msg := checkTarget(t); code != "" {
			failed = append(failed, map[string]string{"TargetId": t.ID, "ErrorCode": code, "ErrorMessage": msg})
			continue
		}
		replaced := false
		for i := range r.targets {
			if r.targets[i].ID == t.ID {
				r.targets[i], replaced = t, true
			}
		}
		if !replaced {
			r.targets = append(r.targets, t)
		}
	}
	return failed
}

// PutRule creates or replaces a rule on a bus of an account and region, with exactly the
// targets given, as PutRule followed by PutTargets (and RemoveTargets of the others)
// would. Events already on their way are matched against the rules in force when the
// deliverer reaches them.
func (s *Sandbox) PutRule(account, region string, r Rule) error {
	if _, ok := s.accounts[account]; !ok {
		return fmt.Errorf("sandbox: no account %s", account)
	}
	if !isRegion(region) {
		return fmt.Errorf("sandbox: %q is not a region name", region)
	}
	k := busKey{account, region, r.EventBus}
	if k.bus == "" {
		k.bus = defaultEventBusName
	}
	if len(r.Targets) > maxTargetsPerRule {
		return fmt.Errorf("sandbox: rule %s: %d targets, EventBridge allows %d per rule", r.Name, len(r.Targets), maxTargetsPerRule)
	}
	targets := make([]ebTarget, 0, len(r.Targets))
	for i, arn := range r.Targets {
		id := arn
		if m := sqsARNPattern.FindStringSubmatch(arn); m != nil {
			id = m[3]
		}
		for _, t := range targets {
			if t.ID == id {
				id = fmt.Sprintf("%s-%d", id, i+1)
			}
		}
		t := ebTarget{ID: id, Arn: arn}
		if code, msg := checkTarget(t); code != "" {
			return fmt.Errorf("sandbox: rule %s: %s: %s", r.Name, code, msg)
		}
		targets = append(targets, t)
	}
	st := s.events()
	st.mu.Lock()
	defer st.mu.Unlock()
	rule, aerr := st.putRule(k, r.Name, r.EventPattern, r.State, r.Description)
	if aerr != nil {
		return fmt.Errorf("sandbox: rule %s: %w", r.Name, aerr)
	}
	rule.targets = targets
	return nil
}

// Rules lists the rules of every bus of an account and region, by bus then name.
func (s *Sandbox) Rules(account, region string) []Rule {
	st := s.events()
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []Rule
	for k, rules := range st.rules {
		if k.account != account || k.region != region {
			continue
		}
		for _, r := range rules {
			rule := Rule{Name: r.name, EventBus: k.bus, EventPattern: r.pattern, State: r.state, Description: r.description}
			for _, t := range r.targets {
				rule.Targets = append(rule.Targets, t.Arn)
			}
			out = append(out, rule)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].EventBus != out[j].EventBus {
			return out[i].EventBus < out[j].EventBus
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// rulesCall answers the rule and target operations of EventBridge.
// https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_Operations.html
func (s *Sandbox) rulesCall(c *caller, op string, body []byte, entry *Entry) (any, *apiError) {
	var in struct {
		Name               string          `json:"Name"`
		Rule               string          `json:"Rule"`
		EventBusName       string          `json:"EventBusName"`
		EventPattern       string          `json:"EventPattern"`
		ScheduleExpression string          `json:"ScheduleExpression"`
		State              string          `json:"State"`
		Description        string          `json:"Description"`
		Targets            []ebTarget      `json:"Targets"`
		IDs                []string        `json:"Ids"`
		NamePrefix         string          `json:"NamePrefix"`
		NextToken          string          `json:"NextToken"`
		Limit              *int            `json:"Limit"`
		Tags               json.RawMessage `json:"Tags"`
	}
	switch op {
	case "PutRule", "DescribeRule", "DeleteRule", "ListRules", "PutTargets", "RemoveTargets", "ListTargetsByRule":
	default:
		return nil, errorf(400, "UnknownOperationException", "the sandbox does not emulate events:%s", op)
	}
	if aerr := decodeInput(body, &in); aerr != nil {
		return nil, aerr
	}
	k, aerr := busFor(c, in.EventBusName)
	if aerr != nil {
		return nil, aerr
	}
	entry.Account, entry.Region = k.account, k.region
	name := in.Name
	if in.Rule != "" {
		name = in.Rule
	}
	entry.Reference = name
	st := s.events()
	st.mu.Lock()
	defer st.mu.Unlock()
	switch op {
	case "PutRule":
		if in.ScheduleExpression != "" {
			return nil, errorf(400, "ValidationException", "the sandbox does not emulate scheduled rules (ScheduleExpression)")
		}
		r, aerr := st.putRule(k, in.Name, in.EventPattern, in.State, in.Description)
		if aerr != nil {
			return nil, aerr
		}
		return map[string]string{"RuleArn": r.arn}, nil
	case "DescribeRule":
		r := st.rule(k, in.Name)
		if r == nil {
			return nil, ruleNotFound(k, in.Name)
		}
		return ruleJSON(k, r), nil
	case "DeleteRule":
		r := st.rule(k, in.Name)
		if r == nil {
			return struct{}{}, nil
		}
		if len(r.targets) > 0 {
			return nil, errorf(400, "ValidationException", "Rule can't be deleted since it has targets.")
		}
		delete(st.rules[k], in.Name)
		return struct{}{}, nil
	case "ListRules":
		return st.listRules(k, in.NamePrefix, in.NextToken, in.Limit)
	case "PutTargets":
		r := st.rule(k, in.Rule)
		if r == nil {
			return nil, ruleNotFound(k, in.Rule)
		}
		if n := len(in.Targets); n < 1 || n > maxPutTargetsBatch {
			return nil, errorf(400, "ValidationException", "1 validation error detected: Value at 'targets' failed to satisfy constraint: Member must have length less than or equal to %d and greater than or equal to 1", maxPutTargetsBatch)
		}
		ids := map[string]bool{}
		for _, t := range r.targets {
			ids[t.ID] = true
		}
		for _, t := range in.Targets {
			ids[t.ID] = true
		}
		if len(ids) > maxTargetsPerRule {
			return nil, errorf(400, "LimitExceededException", "The requested resource exceeds the maximum number allowed (%d targets per rule).", maxTargetsPerRule)
		}
		failed := r.setTargets(in.Targets)
		return map[string]any{"FailedEntryCount": len(failed), "FailedEntries": failed}, nil
	case "RemoveTargets":
		r := st.rule(k, in.Rule)
		if r == nil {
			return nil, ruleNotFound(k, in.Rule)
		}
		keep := r.targets[:0]
		for _, t := range r.targets {
			if !contains(in.IDs, t.ID) {
				keep = append(keep, t)
			}
		}
		r.targets = keep
		return map[string]any{"FailedEntryCount": 0, "FailedEntries": []any{}}, nil
	default: // ListTargetsByRule
		r := st.rule(k, in.Rule)
		if r == nil {
			return nil, ruleNotFound(k, in.Rule)
		}
		return map[string]any{"Targets": append([]ebTarget{}, r.targets...)}, nil
	}
}

func ruleJSON(k busKey, r *ebRule) map[string]string {
	out := map[string]string{"Name": r.name, "Arn": r.arn, "EventPattern": r.pattern, "State": r.state, "EventBusName": k.bus}
	if r.description != "" {
		out["Description"] = r.description
	}
	return out
}

func (st *eventsState) listRules(k busKey, prefix, token string, limit *int) (any, *apiError) {
	n := maxListRulesLimit
	if limit != nil {
		if *limit < 1 || *limit > maxListRulesLimit {
			return nil, errorf(400, "ValidationException", "1 validation error detected: Value '%d' at 'limit' failed to satisfy constraint: Member must have value between 1 and %d", *limit, maxListRulesLimit)
		}
		n = *limit
	}
	var names []string
	for name := range st.rules[k] {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	start := 0
	if token != "" {
		raw, err := base64.RawURLEncoding.DecodeString(token)
		i, err2 := strconv.Atoi(string(raw))
		if err != nil || err2 != nil || i < 0 || i > len(names) {
			return nil, errorf(400, "ValidationException", "The NextToken is not valid.")
		}
		start = i
	}
	end := min(start+n, len(names))
	rules := []map[string]string{}
	for _, name := range names[start:end] {
		rules = append(rules, ruleJSON(k, st.rules[k][name]))
	}
	out := map[string]any{"Rules": rules}
	if end < len(names) {
		out["NextToken"] = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))
	}
	return out, nil
}

// enqueueEvent hands an event put on a bus to the deliverer.
func (s *Sandbox) enqueueEvent(ev RecordedEvent) {
	st := s.events()
	st.mu.Lock()
	st.pending = append(st.pending, ev)
	st.mu.Unlock()
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

type matchedTarget struct{ rule, ruleARN, id, arn string }

// matching lists the targets of the enabled rules of an event's bus whose pattern
// matches it, by rule name; st.mu must be held.
func (st *eventsState) matching(ev RecordedEvent) []matchedTarget {
	bus := busKey{ev.Account, ev.Region, ev.EventBus}
	rules := st.rules[bus]
	if len(rules) == 0 {
		return nil
	}
	var decoded map[string]any
	if err := json.Unmarshal(ev.Event, &decoded); err != nil {
		return nil // the sandbox built the envelope: cannot happen
	}
	names := make([]string, 0, len(rules))
	for name := range rules {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []matchedTarget
	for _, name := range names {
		r := rules[name]
		if r.state == "DISABLED" || !r.compiled.MatchEvent(decoded) {
			continue
		}
		for _, t := range r.targets {
			out = append(out, matchedTarget{rule: name, ruleARN: ruleARN(bus, name), id: t.ID, arn: t.Arn})
		}
	}
	return out
}

// deliverEvents is the sandbox's deliverer: it sends queued events to the targets of the
// rules they match, one event at a time, until the sandbox closes.
func (s *Sandbox) deliverEvents() {
	defer s.wg.Done()
	st := s.events()
	for {
		st.mu.Lock()
		if len(st.pending) == 0 {
			st.delivering = false
			st.mu.Unlock()
			select {
			case <-st.wake:
				continue
			case <-s.done:
				return
			}
		}
		ev := st.pending[0]
		st.pending[0] = RecordedEvent{}
		st.pending = st.pending[1:]
		st.delivering = true
		targets := st.matching(ev)
		st.mu.Unlock()
		var done []Delivery
		for _, t := range targets {
			d := Delivery{EventID: ev.EventID, Account: ev.Account, Region: ev.Region, EventBus: ev.EventBus, Rule: t.rule, TargetID: t.id, TargetARN: t.arn, Time: s.now()}
			id, aerr := s.sendInternal(t.arn, eventBridgeSenderID, string(ev.Event),
				serviceSender{service: "events.amazonaws.com", sourceARN: t.ruleARN, account: ev.Account})
			if aerr != nil {
				d.Error = aerr.Error()
				s.log.Warn("sandbox: event delivery failed", "event", ev.EventID, "rule", t.rule, "target", t.arn, "err", aerr)
			}
			d.MessageID = id
			done = append(done, d)
		}
		if len(done) > 0 {
			st.mu.Lock()
			st.deliveries = append(st.deliveries, done...)
			st.mu.Unlock()
		}
	}
}

// Deliveries returns every send of an event to a rule target so far, oldest first.
func (s *Sandbox) Deliveries() []Delivery {
	st := s.events()
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]Delivery(nil), st.deliveries...)
}

// WaitEventsDelivered returns once every event put or emitted so far has been matched
// against the rules and sent to their targets (or ctx ends, with its error).
func (s *Sandbox) WaitEventsDelivered(ctx context.Context) error {
	st := s.events()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		st.mu.Lock()
		idle := len(st.pending) == 0 && !st.delivering
		st.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return errors.New("sandbox: closed")
		case <-tick.C:
		}
	}
}
