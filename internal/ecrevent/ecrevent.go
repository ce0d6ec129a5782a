// Package ecrevent parses what arrives on the replicator's queues (or in a
// direct Lambda invocation): an EventBridge "ECR Image Action" event, a
// scan-complete event, or an item of our own format — a work item (a copy or
// a delete the backfill or a reconcile run found; see WorkItem) or a piece of
// a reconcile run (see Reconcile).
//
// Parse sorts every body into one of four outcomes:
//   - a Push or Delete to act on, with its fields validated (a reconcile
//     item is a Push: work to do);
//   - a Trigger: a scan ended, and the images a promotion gate may hold are
//     decided again;
//   - Ignored, with a reason: events that are well-formed but not ours to
//     act on (failed actions, archive/restore, other detail-types). This is
//     not an error;
//   - an error wrapping ErrMalformed, naming the offending field. Retrying
//     cannot fix such a body, so callers treat it as a permanent failure.
package ecrevent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// MaxBodySize is the largest body accepted: the SQS maximum message size,
// 256 KiB (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html).
// Anything larger cannot have come from the queue.
const MaxBodySize = 256 << 10

// ErrMalformed is wrapped by every error Parse returns.
var ErrMalformed = errors.New("malformed message")

// malformed builds an error that names the field and wraps ErrMalformed.
func malformed(field, format string, args ...any) error {
	return &malformedError{msg: field + ": " + fmt.Sprintf(format, args...)}
}

type malformedError struct{ msg string }

func (e *malformedError) Error() string        { return e.msg }
func (e *malformedError) Is(target error) bool { return target == ErrMalformed }

// Kind says what a message was.
type Kind int

const (
	KindImageAction Kind = iota + 1 // EventBridge ECR Image Action
	KindWorkItem                    // work item of the backfill or a reconcile run
	KindReconcile                   // a piece of a distributed reconcile run
	KindImageScan                   // a scan-complete event (ECR Image Scan, Inspector2 Scan)
)

func (k Kind) String() string {
	switch k {
	case KindImageAction:
		return "image-action"
	case KindWorkItem:
		return "work-item"
	case KindReconcile:
		return "reconcile"
	case KindImageScan:
		return "image-scan"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Class says what to do with a message.
type Class int

const (
	Push    Class = iota + 1 // copy the image (work item action "copy")
	Delete                   // mirror a deletion (work item action "delete")
	Ignored                  // nothing to do; see Message.IgnoredReason
	// Trigger: something a promotion gate may be waiting for happened (a scan ended);
	// re-decide the images it names (docs/PROMOTION.md).
	Trigger
)

func (c Class) String() string {
	switch c {
	case Push:
		return "push"
	case Delete:
		return "delete"
	case Ignored:
		return "ignored"
	case Trigger:
		return "trigger"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Message is a parsed body.
type Message struct {
	Kind  Kind
	Class Class
	// IgnoredReason explains Class Ignored, for logs.
	IgnoredReason string
	// Image is set for KindImageAction. For Ignored events it carries
	// whatever envelope and detail fields were present, unvalidated.
	Image *ImageAction
	// WorkItem is set for KindWorkItem.
	WorkItem *WorkItem
	// Reconcile is set for KindReconcile.
	Reconcile *Reconcile
	// ImageScan is set for KindImageScan.
	ImageScan *ImageScan
}

// Parse classifies and validates one message body.
func Parse(body []byte) (Message, error) {
	if len(body) > MaxBodySize {
		return Message{}, malformed("body", "%d bytes is over the %d-byte (256 KiB) SQS message limit", len(body), MaxBodySize)
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return Message{}, malformed("body", "empty")
	}
	var probe struct {
		Kind       *string         `json:"kind"`
		DetailType *string         `json:"detail-type"`
		Records    json.RawMessage `json:"Records"`
	}
	if body[0] != '{' {
		return Message{}, malformed("body", "not a JSON object")
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return Message{}, jsonError("body", err)
	}
	switch {
	case probe.Kind != nil && *probe.Kind == ReconcileKind:
		return parseReconcile(body)
	case probe.Kind != nil:
		return parseWorkItem(body)
	case probe.DetailType != nil:
		return parseEvent(body)
	case probe.Records != nil:
		return Message{}, malformed("body", "is an event batch (Records); parse each record's body instead")
	}
	return Message{}, malformed("body", "neither an EventBridge event (no detail-type) nor a work item (no kind)")
}

// envelope is the EventBridge envelope. aws-lambda-go's
// events.EventBridgeEvent has the same fields, but decoding time into a
// time.Time there yields an error that does not name the field, and an
// absent time must not be an error; so the envelope is decoded here.
type envelope struct {
	Version    string          `json:"version"`
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account"`
	Time       string          `json:"time"`
	Region     string          `json:"region"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// validate checks the envelope's time, account and region, and sets a's time.
func (env *envelope) validate(a *ImageAction) error {
	if env.Time != "" {
		t, err := time.Parse(time.RFC3339, env.Time)
		if err != nil {
			return malformed("time", "%s is not an RFC 3339 timestamp", ecrname.Quote(env.Time))
		}
		a.Time = t
	}
	return validateRegistry(env.Account, env.Region)
}

// validateRegistry checks the account and region of an event: the source registry.
func validateRegistry(account, region string) error {
	if account == "" {
		return malformed("account", "required")
	}
	if err := ecrname.AccountID(account); err != nil {
		return malformed("account", "%v", err)
	}
	if region == "" {
		return malformed("region", "required")
	}
	if err := ecrname.Region(region); err != nil {
		return malformed("region", "%v", err)
	}
	return nil
}

// decodeDetail decodes the event's detail, which is required, into v.
func (env *envelope) decodeDetail(v any) error {
	if len(env.Detail) == 0 || string(env.Detail) == "null" {
		return malformed("detail", "required")
	}
	if err := json.Unmarshal(env.Detail, v); err != nil {
		return jsonError("detail", err)
	}
	return nil
}

// jsonError names the field of a JSON type error; prefix is the path of
// the object being decoded ("" for the top level).
func jsonError(prefix string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field == "" {
		// The value itself (not one of its fields) has the wrong type.
		if prefix == "" {
			prefix = "body"
		}
		return malformed(prefix, "want a JSON object, got %s", te.Value)
	}
	if errors.As(err, &te) {
		field := te.Field
		if prefix != "" && prefix != "body" {
			field = prefix + "." + field
		}
		return malformed(field, "want a JSON %s, got %s", te.Type.String(), te.Value)
	}
	if prefix == "" {
		prefix = "body"
	}
	return malformed(prefix, "%s", strings.TrimPrefix(err.Error(), "json: "))
}
