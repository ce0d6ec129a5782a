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
	"cmp"
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

// ImageAction is the normalized content of an ECR Image Action event.
type ImageAction struct {
	EventID           string    // envelope id (may be empty)
	Account           string    // envelope account: the source registry
	Region            string    // envelope region
	Time              time.Time // envelope time (zero if absent)
	Repository        string    // detail.repository-name
	Digest            string    // detail.image-digest
	Tag               string    // detail.image-tag; "" = digest-only (absent, null or "")
	ActionType        string    // detail.action-type: PUSH or DELETE
	Result            string    // detail.result: SUCCESS
	ManifestMediaType string    // detail.manifest-media-type (may be empty)
	ArtifactMediaType string    // detail.artifact-media-type (may be empty)
}

// ECR event constants, from
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-eventbridge.html
const (
	EventSource       = "aws.ecr"
	DetailTypeImage   = "ECR Image Action"
	ActionPush        = "PUSH"
	ActionDelete      = "DELETE"
	ResultSuccess     = "SUCCESS"
	actionStorageMove = "UPDATE_STORAGE_CLASS"
)

// Validate checks an actionable (Push or Delete) image action.
func (a *ImageAction) Validate() error {
	if err := ecrname.AccountID(a.Account); err != nil {
		return malformed("account", "%v", err)
	}
	if err := ecrname.Region(a.Region); err != nil {
		return malformed("region", "%v", err)
	}
	if a.Result != ResultSuccess {
		return malformed("detail.result", "%s is not %s", ecrname.Quote(a.Result), ResultSuccess)
	}
	if a.ActionType != ActionPush && a.ActionType != ActionDelete {
		return malformed("detail.action-type", "%s is neither %s nor %s", ecrname.Quote(a.ActionType), ActionPush, ActionDelete)
	}
	if err := ecrname.Repository(a.Repository); err != nil {
		return malformed("detail.repository-name", "%v", err)
	}
	// A DELETE by tag alone would still be actionable, so a DELETE needs a
	// digest or a tag. Whether ECR ever sends one without a digest is
	// unconfirmed (the docs example has both); this is a guess.
	if a.Digest != "" || a.ActionType == ActionPush {
		if err := ecrname.Digest(a.Digest); err != nil {
			return malformed("detail.image-digest", "%v", err)
		}
	}
	if a.Tag != "" {
		if err := ecrname.Tag(a.Tag); err != nil {
			return malformed("detail.image-tag", "%v", err)
		}
	}
	if a.Digest == "" && a.Tag == "" {
		return malformed("detail.image-digest", "required (a DELETE needs image-digest or image-tag)")
	}
	return nil
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

// detail holds ECR Image Action detail fields; pointers tell absent from
// empty where that matters for the error message.
type detail struct {
	Result            *string `json:"result"`
	RepositoryName    *string `json:"repository-name"`
	ImageDigest       *string `json:"image-digest"`
	ActionType        *string `json:"action-type"`
	ImageTag          *string `json:"image-tag"`
	ManifestMediaType string  `json:"manifest-media-type"`
	ArtifactMediaType string  `json:"artifact-media-type"`
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func parseEvent(body []byte) (Message, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return Message{}, jsonError("", err)
	}
	if isImageScan(&env) {
		return parseImageScan(&env)
	}
	a := &ImageAction{EventID: env.ID, Account: env.Account, Region: env.Region}
	msg := Message{Kind: KindImageAction, Class: Ignored, Image: a}
	// Not ours: other services, and other ECR events (scan, replication,
	// referrer, pull-through cache). Referrers are copied with their
	// subject, so ECR Referrer Action is ignored too.
	if env.Source != EventSource {
		msg.IgnoredReason = fmt.Sprintf("source %s is not %s", ecrname.Quote(env.Source), EventSource)
		return msg, nil
	}
	if env.DetailType != DetailTypeImage {
		msg.IgnoredReason = fmt.Sprintf("detail-type %s is not %q", ecrname.Quote(env.DetailType), DetailTypeImage)
		return msg, nil
	}
	if err := env.validate(a); err != nil {
		return Message{}, err
	}
	if len(env.Detail) == 0 || string(env.Detail) == "null" {
		return Message{}, malformed("detail", "required")
	}
	var d detail
	if err := json.Unmarshal(env.Detail, &d); err != nil {
		return Message{}, jsonError("detail", err)
	}
	a.Repository, a.Digest, a.Tag = str(d.RepositoryName), str(d.ImageDigest), str(d.ImageTag)
	a.ActionType, a.Result = str(d.ActionType), str(d.Result)
	a.ManifestMediaType, a.ArtifactMediaType = d.ManifestMediaType, d.ArtifactMediaType

	if d.Result == nil {
		return Message{}, malformed("detail.result", "required")
	}
	if d.ActionType == nil {
		return Message{}, malformed("detail.action-type", "required")
	}
	if a.Result != ResultSuccess {
		msg.IgnoredReason = fmt.Sprintf("result %s is not %s", ecrname.Quote(a.Result), ResultSuccess)
		return msg, nil
	}
	switch a.ActionType {
	case ActionPush:
		msg.Class = Push
	case ActionDelete:
		msg.Class = Delete
	case actionStorageMove:
		// Archive/restore shares the detail-type but changes no content
		// (ecr-eventbridge.html).
		msg.IgnoredReason = "action-type UPDATE_STORAGE_CLASS (archive/restore) changes no image content"
		return msg, nil
	default:
		msg.IgnoredReason = fmt.Sprintf("action-type %s is neither %s nor %s", ecrname.Quote(a.ActionType), ActionPush, ActionDelete)
		return msg, nil
	}
	if d.RepositoryName == nil {
		return Message{}, malformed("detail.repository-name", "required")
	}
	if d.ImageDigest == nil && a.ActionType == ActionPush {
		return Message{}, malformed("detail.image-digest", "required")
	}
	if err := a.Validate(); err != nil {
		return Message{}, err
	}
	return msg, nil
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
	if env.Account == "" {
		return malformed("account", "required")
	}
	if err := ecrname.AccountID(env.Account); err != nil {
		return malformed("account", "%v", err)
	}
	if env.Region == "" {
		return malformed("region", "required")
	}
	if err := ecrname.Region(env.Region); err != nil {
		return malformed("region", "%v", err)
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

// Event renders the action as the "ECR Image Action" event ECR sends to EventBridge — the
// shape Parse reads — for replaying pushes (the demo, tests). An empty Result is SUCCESS;
// an empty Tag leaves image-tag out, as ECR does for digest-only pushes.
func (a ImageAction) Event() []byte {
	detail := map[string]any{
		"result": cmp.Or(a.Result, ResultSuccess), "repository-name": a.Repository,
		"image-digest": a.Digest, "action-type": a.ActionType,
	}
	if a.Tag != "" {
		detail["image-tag"] = a.Tag
	}
	if a.ManifestMediaType != "" {
		detail["manifest-media-type"] = a.ManifestMediaType
	}
	if a.ArtifactMediaType != "" {
		detail["artifact-media-type"] = a.ArtifactMediaType
	}
	b, _ := json.Marshal(map[string]any{
		"version": "0", "id": a.EventID, "detail-type": DetailTypeImage, "source": EventSource,
		"account": a.Account, "time": a.Time.UTC().Format(time.RFC3339), "region": a.Region,
		"resources": []string{}, "detail": detail,
	})
	return b
}

// Repo is the repository the event is about: the envelope's account and region (ECR
// Image Action events carry no repository ARN), the detail's repository name.
func (a *ImageAction) Repo() ecrname.Repo {
	return ecrname.Repo{Registry: ecrname.Registry{AccountID: a.Account, Region: a.Region}, Name: a.Repository}
}
