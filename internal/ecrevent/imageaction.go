package ecrevent

import (
	"cmp"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

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

// Validate checks an actionable (Push or Delete) image action: its registry, its
// class, its image. parseEvent makes the same checks one by one, in the order the
// event's parts are read.
func (a *ImageAction) Validate() error {
	if err := validateRegistry(a.Account, a.Region); err != nil {
		return err
	}
	if class, why := a.class(); class == Ignored {
		field := "detail.action-type"
		if a.Result != ResultSuccess {
			field = "detail.result"
		}
		return malformed(field, "not an action to replicate: %s", why)
	}
	return a.validateImage()
}

// class says what the action asks for: Push or Delete, or Ignored and why (a failed
// action, an archive or restore, an action type of another kind).
func (a *ImageAction) class() (Class, string) {
	if a.Result != ResultSuccess {
		return Ignored, fmt.Sprintf("result %s is not %s", ecrname.Quote(a.Result), ResultSuccess)
	}
	switch a.ActionType {
	case ActionPush:
		return Push, ""
	case ActionDelete:
		return Delete, ""
	case actionStorageMove:
		// Archive/restore shares the detail-type but changes no content
		// (ecr-eventbridge.html).
		return Ignored, "action-type UPDATE_STORAGE_CLASS (archive/restore) changes no image content"
	}
	return Ignored, fmt.Sprintf("action-type %s is neither %s nor %s", ecrname.Quote(a.ActionType), ActionPush, ActionDelete)
}

// validateImage checks the image an action names: repository, digest, tag.
func (a *ImageAction) validateImage() error {
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
	var d detail
	if err := env.decodeDetail(&d); err != nil {
		return Message{}, err
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
	if msg.Class, msg.IgnoredReason = a.class(); msg.Class == Ignored {
		return msg, nil
	}
	if d.RepositoryName == nil {
		return Message{}, malformed("detail.repository-name", "required")
	}
	if d.ImageDigest == nil && a.ActionType == ActionPush {
		return Message{}, malformed("detail.image-digest", "required")
	}
	if err := a.validateImage(); err != nil {
		return Message{}, err
	}
	return msg, nil
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
