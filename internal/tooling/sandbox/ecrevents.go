package sandbox

import (
	"encoding/json"
	"math/rand/v2"
	"time"
)

// Amazon ECR sends an "ECR Image Action" event to the default event bus of its account
// and region for every image push and delete, "on a best effort basis":
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-eventbridge.html
// The sandbox does the same, and its rules (eventrules.go) route them.
//
// What the sandbox emits, and what of it is a guess:
//   - PUSH: one event per manifest stored, whether by a registry manifest PUT or by the
//     ECR API's PutImage; a PUT by tag carries image-tag, a PUT by digest has none (the
//     docs never show a digest-only push; AWS's own SOCI index builder treats a missing
//     tag as normal, awslabs/cfn-ecr-aws-soci-index-builder#8). An index's children
//     are pushed by digest before the index, so each has its own tagless event first.
//     A re-push of a manifest already stored under the same tag emits again (guess:
//     every successful PUT counts as a push). A manifest with a subject (a referrer)
//     emits an Image Action PUSH as any other (guess: whether ECR sends an "ECR Referrer
//     Action" instead, or too, is not documented).
//   - manifest-media-type is the stored manifest's media type; artifact-media-type is
//     the image's config media type (or the manifest's artifactType). For an index,
//     which has no config, it is the index's artifactType or else the index media type
//     itself (guess); for a Docker schema 1 manifest it is absent (guess).
//   - DELETE: one event per image ID BatchDeleteImage (or a registry manifest DELETE)
//     removed: by tag, the tag and the digest it pointed at; by digest, the digest and no
//     tag, even when tags pointed at it (guess: whether ECR sends one event per removed
//     tag is not documented). DELETE events carry no media types, as the docs' DELETE
//     example (guess for what ECR sends today).
//   - Deleting a repository with force emits nothing (guess).
//   - Events are emitted when the push or delete is applied, before its answer; the
//     delivery to rule targets is asynchronous (eventrules.go).

// Event shape constants, from the page above.
const (
	ecrEventSource      = "aws.ecr"
	ecrImageActionType  = "ECR Image Action"
	ecrActionPush       = "PUSH"
	ecrActionDelete     = "DELETE"
	ecrResultSuccess    = "SUCCESS"
	faultKeyEventDrop   = "events:dropped"
	defaultEventBusName = "default"
)

// imageActionDetail is the detail of an ECR Image Action event, in the docs' field order.
type imageActionDetail struct {
	Result            string `json:"result"`
	RepositoryName    string `json:"repository-name"`
	ImageDigest       string `json:"image-digest"`
	ActionType        string `json:"action-type"`
	ImageTag          string `json:"image-tag,omitempty"`
	ManifestMediaType string `json:"manifest-media-type,omitempty"`
	ArtifactMediaType string `json:"artifact-media-type,omitempty"`
	// UPDATE_STORAGE_CLASS (archive and restore) only.
	TargetStorageClass string `json:"target-storage-class,omitempty"`
	LastActivatedAt    string `json:"last-activated-at,omitempty"`
}

// emitPush sends the PUSH event of a stored manifest (tag "" for a push by digest).
func (r *registry) emitPush(repo string, rec *manifestRecord, tag string) {
	artifact := rec.artifactType
	if artifact == "" && isIndexType(rec.mediaType) {
		artifact = rec.mediaType
	}
	r.sb.emitServiceEvent(r.account, r.region, ecrEventSource, ecrImageActionType, imageActionDetail{
		Result: ecrResultSuccess, RepositoryName: repo, ImageDigest: rec.digest, ActionType: ecrActionPush,
		ImageTag: tag, ManifestMediaType: rec.mediaType, ArtifactMediaType: artifact,
	})
}

// emitDelete sends the DELETE event of a removed image ID (tag "" when deleted by digest).
func (r *registry) emitDelete(repo, digest, tag string) {
	r.sb.emitServiceEvent(r.account, r.region, ecrEventSource, ecrImageActionType, imageActionDetail{
		Result: ecrResultSuccess, RepositoryName: repo, ImageDigest: digest, ActionType: ecrActionDelete, ImageTag: tag,
	})
}

// emitStorageClass sends the UPDATE_STORAGE_CLASS event of an archive (target ARCHIVE) or
// a restore (STANDARD, with the last activation's time when there was one: a guess at
// when ECR sets it).
func (r *registry) emitStorageClass(repo, digest, tag, target string, lastActivated time.Time) {
	d := imageActionDetail{Result: ecrResultSuccess, RepositoryName: repo, ImageDigest: digest, ActionType: "UPDATE_STORAGE_CLASS",
		ImageTag: tag, TargetStorageClass: target}
	if target == "STANDARD" && !lastActivated.IsZero() {
		d.LastActivatedAt = lastActivated.UTC().Format(time.RFC3339)
	}
	r.sb.emitServiceEvent(r.account, r.region, ecrEventSource, ecrImageActionType, d)
}

// emitServiceEvent records an event an AWS service sends to the default bus of an
// account and region and, unless a drop fault takes it, queues it for the bus's rules.
func (s *Sandbox) emitServiceEvent(account, region, source, detailType string, detail any) {
	s.emitServiceEventWith(account, region, source, detailType, []string{}, detail)
}

// emitServiceEventWith is emitServiceEvent for an event whose resources are not empty.
func (s *Sandbox) emitServiceEventWith(account, region, source, detailType string, resources []string, detail any) {
	b, err := json.Marshal(detail)
	if err != nil {
		panic(err) // the details are plain structs of strings
	}
	ev := RecordedEvent{
		EventID: newUUID(), Account: account, Region: region, EventBus: defaultEventBusName,
		Source: source, DetailType: detailType, Detail: b, Resources: resources, Time: s.now().UTC(),
	}
	ev.Event = eventEnvelope(ev)
	st := s.events()
	st.mu.Lock()
	ev.Dropped = st.drop.take()
	st.emitted = append(st.emitted, ev)
	st.mu.Unlock()
	if ev.Dropped {
		s.faults.mu.Lock()
		s.faults.fired[faultKeyEventDrop]++
		s.faults.mu.Unlock()
		return
	}
	s.enqueueEvent(ev)
}

// ECREvents returns every event ECR emitted so far, oldest first, those a drop fault
// took included (Dropped set). Events clients put with PutEvents are in PutEvents.
func (s *Sandbox) ECREvents() []RecordedEvent {
	st := s.events()
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]RecordedEvent, len(st.emitted))
	for i, e := range st.emitted {
		out[i] = e.clone()
	}
	return out
}

// dropState is the best-effort fault on service events.
type dropState struct {
	next     int        // drop this many events, then stop
	fraction float64    // then drop each event with this probability
	rng      *rand.Rand // for fraction
}

// take says whether the next event is dropped; the events lock must be held.
func (d *dropState) take() bool {
	if d.next > 0 {
		d.next--
		return true
	}
	return d.fraction > 0 && d.rng.Float64() < d.fraction
}

// DropEvents makes ECR lose its next n events (ECR emits them "on a best effort
// basis"): they are recorded in ECREvents with Dropped set, reach no rule, and count in
// FaultsFired under "events:dropped". n <= 0 disarms it.
func (s *Sandbox) DropEvents(n int) {
	st := s.events()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.drop.next = max(n, 0)
}

// DropEventFraction makes ECR lose each later event with probability fraction (0
// disarms it), drawn from a generator seeded with seed so a run can be replayed. It
// applies after any DropEvents count is used up.
func (s *Sandbox) DropEventFraction(fraction float64, seed uint64) {
	st := s.events()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.drop.fraction = min(max(fraction, 0), 1)
	st.drop.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// clearDrops disarms the event drop faults (ClearFaults).
func (s *Sandbox) clearDrops() {
	st := s.events()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.drop = dropState{}
}
