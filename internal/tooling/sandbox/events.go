package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Amazon EventBridge over AWS JSON 1.1 (X-Amz-Target: AWSEvents.<Op>): PutEvents, which
// records what it accepts, and rules on event buses whose SQS targets receive the events
// that match (eventrules.go). Amazon ECR sends its "ECR Image Action" events to the
// default bus of its account and region (ecrevents.go).
// https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html
//
// Simplifications: every event bus exists (there is no CreateEventBus; any valid name or
// ARN is accepted and recorded as given, with no resource policy checks); EndpointId
// (global endpoints) is not supported; only SQS queues of the sandbox are targets.

const (
	eventsMaxEntries = 10
	eventsMaxSize    = 256 << 10 // total of the entries of one request
)

var (
	eventBusNamePattern = regexp.MustCompile(`^[/\.\-_A-Za-z0-9]{1,256}$`)
	eventBusARNPattern  = regexp.MustCompile(`^arn:aws[a-z-]*:events:([a-z0-9-]+):(\d{12}):event-bus/([/\.\-_A-Za-z0-9]{1,256})$`)
)

// RecordedEvent is an event PutEvents accepted.
type RecordedEvent struct {
	EventID string
	// Account and Region are those of the event bus (the caller's unless the bus was
	// named by an ARN).
	Account    string
	Region     string
	EventBus   string
	Source     string
	DetailType string
	Detail     json.RawMessage
	Resources  []string
	Time       time.Time
	// Principal is the caller that put the event; empty for events AWS services sent.
	Principal string
	// Event is the whole event as EventBridge hands it to targets (the envelope with
	// version, id, detail-type, source, account, time, region, resources and detail):
	// what an SQS target receives as the message body.
	Event json.RawMessage
	// Dropped is set on a service event the sandbox did not deliver to EventBridge (a
	// best-effort fault, see DropEvents): no rule saw it.
	Dropped bool
}

func (e RecordedEvent) clone() RecordedEvent {
	e.Detail = append(json.RawMessage(nil), e.Detail...)
	e.Event = append(json.RawMessage(nil), e.Event...)
	e.Resources = append([]string(nil), e.Resources...)
	return e
}

type eventsState struct {
	mu     sync.Mutex
	events []RecordedEvent // accepted by PutEvents
	// emitted lists the events AWS services (ECR) sent, dropped ones included.
	emitted []RecordedEvent
	rules   map[busKey]map[string]*ebRule
	// pending are events waiting for the deliverer (rule matching and SQS sends), oldest
	// first; delivering is set while it works on one.
	pending    []RecordedEvent
	delivering bool
	wake       chan struct{} // buffered(1): pending grew
	deliveries []Delivery
	drop       dropState
}

func newEventsState() *eventsState {
	return &eventsState{rules: map[busKey]map[string]*ebRule{}, wake: make(chan struct{}, 1)}
}

func (s *Sandbox) events() *eventsState { return s.eventsState }

// PutEvents returns every event accepted so far, oldest first.
func (s *Sandbox) PutEvents() []RecordedEvent {
	st := s.events()
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]RecordedEvent, len(st.events))
	for i, e := range st.events {
		out[i] = e.clone()
	}
	return out
}

type putEventsEntry struct {
	Time         *float64 `json:"Time"` // epoch seconds
	Source       *string  `json:"Source"`
	Resources    []string `json:"Resources"`
	DetailType   *string  `json:"DetailType"`
	Detail       *string  `json:"Detail"`
	EventBusName *string  `json:"EventBusName"`
	TraceHeader  *string  `json:"TraceHeader"`
}

type putEventsResultEntry struct {
	EventID      string `json:"EventId,omitempty"`
	ErrorCode    string `json:"ErrorCode,omitempty"`
	ErrorMessage string `json:"ErrorMessage,omitempty"`
}

// eventsCall emulates Amazon EventBridge (AWS JSON 1.1, X-Amz-Target: AWSEvents.<Op>).
func (s *Sandbox) eventsCall(c *caller, op string, body []byte, entry *Entry) (any, *apiError) {
	if op != "PutEvents" {
		return s.rulesCall(c, op, body, entry)
	}
	var in struct {
		Entries    []putEventsEntry `json:"Entries"`
		EndpointID *string          `json:"EndpointId"`
	}
	if aerr := decodeInput(body, &in); aerr != nil {
		return nil, aerr
	}
	if in.EndpointID != nil {
		return nil, errorf(400, "ValidationException", "the sandbox does not emulate global endpoints (EndpointId)")
	}
	if n := len(in.Entries); n < 1 || n > eventsMaxEntries {
		return nil, errorf(400, "ValidationException", "1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length less than or equal to %d and greater than or equal to 1", eventsMaxEntries)
	}
	// Entry size as the EventBridge guide computes it: time, source, detail type, detail,
	// resources.
	total := 0
	for _, e := range in.Entries {
		if e.Time != nil {
			total += 14
		}
		total += len(deref(e.Source)) + len(deref(e.DetailType)) + len(deref(e.Detail))
		for _, r := range e.Resources {
			total += len(r)
		}
	}
	if total > eventsMaxSize {
		return nil, errorf(400, "ValidationException", "Total size of the entries in the request is over the limit.")
	}
	now := s.now()
	var out struct {
		FailedEntryCount int                    `json:"FailedEntryCount"`
		Entries          []putEventsResultEntry `json:"Entries"`
	}
	var accepted []RecordedEvent
	var buses []string
	for _, e := range in.Entries {
		ev, code, msg := s.checkEvent(c, e, now)
		if code != "" {
			out.FailedEntryCount++
			out.Entries = append(out.Entries, putEventsResultEntry{ErrorCode: code, ErrorMessage: msg})
			continue
		}
		accepted = append(accepted, ev)
		if !containsString(buses, ev.EventBus) {
			buses = append(buses, ev.EventBus)
		}
		out.Entries = append(out.Entries, putEventsResultEntry{EventID: ev.EventID})
	}
	entry.Reference = strings.Join(buses, ",")
	st := s.events()
	st.mu.Lock()
	st.events = append(st.events, accepted...)
	st.mu.Unlock()
	// Events put by clients go through the bus's rules as well.
	for _, ev := range accepted {
		s.enqueueEvent(ev)
	}
	return out, nil
}

// checkEvent validates one entry; a failure is reported in the entry's result.
func (s *Sandbox) checkEvent(c *caller, e putEventsEntry, now time.Time) (RecordedEvent, string, string) {
	ev := RecordedEvent{Account: c.cred.account, Region: c.region, EventBus: "default", Principal: c.cred.principalARN, Time: now}
	invalid := func(param string) (RecordedEvent, string, string) {
		return ev, "InvalidArgument", fmt.Sprintf("Parameter %s is not valid. Reason: %s is a required argument.", param, param)
	}
	if bus := deref(e.EventBusName); bus != "" {
		if m := eventBusARNPattern.FindStringSubmatch(bus); m != nil {
			ev.Region, ev.Account, ev.EventBus = m[1], m[2], m[3]
		} else if eventBusNamePattern.MatchString(bus) && !strings.HasPrefix(bus, "arn:") {
			ev.EventBus = bus
		} else {
			return ev, "InvalidArgument", fmt.Sprintf("Parameter EventBusName is not valid. Reason: %q is neither an event bus name nor an event bus ARN.", bus)
		}
	}
	switch {
	case deref(e.Source) == "":
		return invalid("Source")
	case deref(e.DetailType) == "":
		return invalid("DetailType")
	case deref(e.Detail) == "":
		return invalid("Detail")
	}
	ev.Source, ev.DetailType = *e.Source, *e.DetailType
	// Sources starting with "aws." are reserved to AWS services.
	if strings.HasPrefix(ev.Source, "aws.") {
		return ev, "NotAuthorizedForSourceException", "Not authorized for the source."
	}
	detail := bytes.TrimSpace([]byte(*e.Detail))
	var obj map[string]json.RawMessage
	if len(detail) == 0 || detail[0] != '{' || json.Unmarshal(detail, &obj) != nil {
		return ev, "MalformedDetail", "Detail is malformed."
	}
	ev.Detail = append(json.RawMessage(nil), detail...)
	for _, r := range e.Resources {
		if r == "" {
			return ev, "InvalidArgument", "Parameter Resources is not valid. Reason: a resource must not be empty."
		}
	}
	ev.Resources = append([]string(nil), e.Resources...)
	if e.Time != nil && !math.IsNaN(*e.Time) && !math.IsInf(*e.Time, 0) {
		sec, frac := math.Modf(*e.Time)
		ev.Time = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	}
	ev.EventID = newUUID()
	ev.Event = eventEnvelope(ev)
	return ev, "", ""
}

// eventEnvelope renders an event as EventBridge delivers it to targets.
// https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-events-structure.html
func eventEnvelope(ev RecordedEvent) json.RawMessage {
	resources := ev.Resources
	if resources == nil {
		resources = []string{}
	}
	b, _ := json.Marshal(struct {
		Version    string          `json:"version"`
		ID         string          `json:"id"`
		DetailType string          `json:"detail-type"`
		Source     string          `json:"source"`
		Account    string          `json:"account"`
		Time       string          `json:"time"`
		Region     string          `json:"region"`
		Resources  []string        `json:"resources"`
		Detail     json.RawMessage `json:"detail"`
	}{"0", ev.EventID, ev.DetailType, ev.Source, ev.Account, ev.Time.UTC().Format(time.RFC3339), ev.Region, resources, ev.Detail})
	return b
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
