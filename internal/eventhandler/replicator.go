// Package replicator is the replicate function's logic, plain Go so it can be tested
// without Lambda: it takes a raw invocation payload (an SQS batch, a direct EventBridge
// "ECR Image Action" event or a backfill work item), works out where each image goes
// from the rules, replicates or deletes through the mirror, and reports through logs,
// EMF metrics, optional result events and the invocation's answer.
package eventhandler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// EnvResultEventBus names the EventBridge bus result events go to (unset: none).
const EnvResultEventBus = "RESULT_EVENT_BUS"

// Result event envelope.
const (
	ResultSource     = "ecr-replicator"
	ResultDetailType = "ECR Image Replication"
)

// ErrNoRuleAllows is the permanent failure of a work item whose destination is not a
// target of the rules for its source.
var ErrNoRuleAllows = errors.New("work item names a destination no rule allows")

// EventPublisher is the part of the EventBridge client result events need.
type EventPublisher interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// Mirror is what the handler needs of a destinations.Mirror.
type Mirror interface {
	Replicate(ctx context.Context, src destinations.Source, targets []rules.Target) []destinations.Result
	Delete(ctx context.Context, src destinations.Source, targets []rules.Target) []destinations.Result
}

// Config is what a Handler is built from. Rules/RulesErr come from wiring.Deps.
type Config struct {
	Rules    *rules.Document
	RulesErr error
	// NewMirror returns the mirror for one invocation (wiring.Deps.NewMirror(0)).
	NewMirror func() Mirror
	Log       *slog.Logger
	// Metrics receives EMF values; flushed once per invocation. Nil: no metrics.
	Metrics *metrics.Recorder
	// Events and EventBus enable result events (both needed).
	Events   EventPublisher
	EventBus string
	// Parallel bounds how many images are processed at once (default 4).
	Parallel int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Reserve is the time kept back before the invocation's deadline to answer: copies
	// still running then are cut and their messages listed in batchItemFailures, and
	// images not started are left for redelivery, so that the partial-batch answer is
	// delivered. Lambda returns the whole batch to the queue — successes included, each
	// counting toward maxReceiveCount — when a function times out instead ("Handling
	// errors for an SQS event source in Lambda",
	// https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html).
	// Zero: a tenth of the time left, at least 2 s and at most 15 s.
	Reserve time.Duration
}

// Handler handles invocations. It is safe for concurrent use.
type Handler struct {
	c Config

	// Invocations that overlap share one mirror (one run: its blob cache dedupes their
	// uploads); the mirror is dropped when the last one ends, so no cache outlives a run.
	mu     sync.Mutex
	active int
	shared Mirror
}

// acquire returns the mirror of the current run, starting one if none is active.
func (h *Handler) acquire() Mirror {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.active == 0 {
		h.shared = h.c.NewMirror()
	}
	h.active++
	return h.shared
}

func (h *Handler) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.active--; h.active == 0 {
		h.shared = nil
	}
}

// New returns a Handler.
func New(c Config) *Handler {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Parallel <= 0 {
		c.Parallel = 4
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Handler{c: c}
}

// Outcome is one image at one destination, as reported in the direct-invocation summary.
type Outcome struct {
	MessageID   string `json:"messageId,omitempty"`
	EventID     string `json:"eventId,omitempty"`
	Action      string `json:"action"` // replicate or delete
	SourceAcct  string `json:"sourceAccount"`
	SourceReg   string `json:"sourceRegion"`
	Repository  string `json:"repository"`
	Digest      string `json:"digest"`
	Tag         string `json:"tag,omitempty"`
	Destination string `json:"destination"`
	Rule        string `json:"rule,omitempty"`
	Outcome     string `json:"outcome"`
	Reason      string `json:"reason,omitempty"`
	Code        string `json:"code,omitempty"`
	Retryable   bool   `json:"retryable,omitempty"`
	Error       string `json:"error,omitempty"`
	Bytes       int64  `json:"bytes,omitempty"`
}

// Problem is a message that was not acted on: malformed or not allowed.
type Problem struct {
	MessageID string `json:"messageId,omitempty"`
	Error     string `json:"error"`
}

// Summary is the answer to a direct invocation.
type Summary struct {
	Results    []Outcome `json:"results"`
	Ignored    int       `json:"ignored"`
	Malformed  []Problem `json:"malformed,omitempty"`
	Succeeded  int       `json:"succeeded"`
	Failed     int       `json:"failed"`
	Retryable  int       `json:"retryable"`
	Duplicates int       `json:"duplicates,omitempty"`
}

// Handle answers one invocation: an SQS batch (payload with "Records") gets an
// events.SQSEventResponse listing the retryable failures; anything else is one direct
// event or work item and gets a Summary, with an error only when something retryable
// failed. An invalid rules document fails every invocation.
func (h *Handler) Handle(ctx context.Context, payload json.RawMessage) (any, error) {
	if h.c.RulesErr != nil {
		h.c.Log.Error("invalid rules document; fix the configuration (REPLICATION_RULES)", "error", h.c.RulesErr.Error())
		return nil, fmt.Errorf("configuration error: invalid rules document: %w", h.c.RulesErr)
	}
	if h.c.Rules == nil {
		return nil, errors.New("configuration error: no rules document")
	}
	var probe struct {
		Records json.RawMessage `json:"Records"`
	}
	_ = json.Unmarshal(payload, &probe) // a body that is not an object is a malformed event below
	if len(probe.Records) > 0 && string(probe.Records) != "null" {
		var batch events.SQSEvent
		if err := json.Unmarshal(payload, &batch); err != nil {
			return nil, fmt.Errorf("malformed SQS batch: %w", err)
		}
		msgs := make([]message, len(batch.Records))
		for i, r := range batch.Records {
			msgs[i] = message{id: r.MessageId, body: []byte(r.Body)}
		}
		run := h.run(ctx, msgs)
		resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
		for _, id := range run.retry {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: id})
		}
		return resp, nil
	}
	run := h.run(ctx, []message{{body: payload}})
	if run.summary.Retryable > 0 {
		b, _ := json.Marshal(run.summary)
		return nil, fmt.Errorf("%d retryable replication failure(s): %s", run.summary.Retryable, b)
	}
	return run.summary, nil
}

type message struct {
	id   string // SQS messageId; "" when invoked directly
	body []byte
}

// job is one image action to one set of targets; several messages may share it.
type job struct {
	delete   bool
	src      destinations.Source
	eventID  string
	at       time.Time // event time, for latency
	targets  []rules.Target
	messages []int // indexes into the batch
}

type runResult struct {
	summary Summary
	retry   []string
}

func (h *Handler) run(ctx context.Context, msgs []message) runResult {
	var out runResult
	out.summary.Results = []Outcome{}
	var jobs []*job
	seen := map[string]*job{} // dedupe key → job holding it
	failedMsg := make([]bool, len(msgs))
	for i, m := range msgs {
		action, targets, err := h.plan(m)
		if err != nil {
			h.c.Log.Error("message not processed (permanent failure, acknowledged)", "message_id", m.id, "error", err.Error())
			out.summary.Malformed = append(out.summary.Malformed, Problem{MessageID: m.id, Error: err.Error()})
			if h.c.Metrics != nil {
				reason := "Malformed"
				if errors.Is(err, ErrNoRuleAllows) {
					reason = "NotAllowed"
				}
				h.c.Metrics.Add("ReplicationFailures", metrics.Count, 1, "Reason", reason)
			}
			continue
		}
		if action == nil {
			out.summary.Ignored++
			continue
		}
		// Dedupe: the same (action, repo, digest, tag, destination) is done once per batch.
		var fresh []rules.Target
		for _, t := range targets {
			key := fmt.Sprintf("%t|%s|%s|%s|%s|%s|%s", action.delete, action.src.AccountID, action.src.Region, action.src.Repository, action.src.Digest, action.src.Tag, t.Key())
			if j, ok := seen[key]; ok {
				j.messages = appendUnique(j.messages, i)
				out.summary.Duplicates++
				continue
			}
			fresh = append(fresh, t)
			seen[key] = action
		}
		if len(fresh) == 0 {
			continue
		}
		action.targets = fresh
		action.messages = []int{i}
		jobs = append(jobs, action)
	}

	var m Mirror
	if len(jobs) > 0 {
		m = h.acquire()
		defer h.release()
	}
	results := make([][]destinations.Result, len(jobs))
	workCtx, cancel := h.workContext(ctx)
	defer cancel()
	g := new(errgroup.Group)
	g.SetLimit(h.c.Parallel)
	for i, j := range jobs {
		g.Go(func() error {
			switch {
			case workCtx.Err() != nil:
				results[i] = notStarted(j)
			case j.delete:
				results[i] = m.Delete(workCtx, j.src, j.targets)
			default:
				results[i] = m.Replicate(workCtx, j.src, j.targets)
			}
			return nil
		})
	}
	g.Wait()

	var reports []Outcome
	done := h.c.Now()
	for i, j := range jobs {
		for _, r := range results[i] {
			o := h.report(ctx, j, r, msgs, done)
			reports = append(reports, o)
			switch {
			case o.Retryable:
				out.summary.Retryable++
				out.summary.Failed++
				for _, mi := range j.messages {
					failedMsg[mi] = true
				}
			case o.Outcome == string(copyengine.Failed) || o.Outcome == string(copyengine.Conflict):
				out.summary.Failed++
			default:
				out.summary.Succeeded++
			}
		}
	}
	out.summary.Results = append(out.summary.Results, reports...)
	for i, f := range failedMsg {
		if f && msgs[i].id != "" {
			out.retry = append(out.retry, msgs[i].id)
		}
	}
	h.publish(ctx, reports)
	if h.c.Metrics != nil {
		if err := h.c.Metrics.Flush(); err != nil {
			h.c.Log.Warn("writing metrics", "error", err.Error())
		}
	}
	return out
}

// workContext is ctx shortened by the reserve, so the copies end in time for the answer.
func (h *Handler) workContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	reserve := h.c.Reserve
	if reserve <= 0 {
		reserve = min(max(time.Until(dl)/10, 2*time.Second), 15*time.Second)
	}
	return context.WithDeadline(ctx, dl.Add(-reserve))
}

// errNotStarted is the failure of an image the invocation had no time left to start.
var errNotStarted = &notStartedError{}

type notStartedError struct{}

func (*notStartedError) Error() string {
	return "not started: the invocation's deadline is near; left for redelivery"
}
func (*notStartedError) ErrorCode() string { return retry.CodeDeadlineExceeded }
func (*notStartedError) Retryable() bool   { return true }

// notStarted reports every target of a job the invocation did not start.
func notStarted(j *job) []destinations.Result {
	out := make([]destinations.Result, len(j.targets))
	for i, t := range j.targets {
		out[i] = destinations.Result{Rule: t.Rule, AccountID: t.Destination.AccountID, Region: t.Destination.Region, Repository: t.Repository,
			Digest: j.src.Digest, Tag: j.src.Tag, Outcome: copyengine.Failed, Err: errNotStarted,
			Code: retry.CodeDeadlineExceeded, Retryable: true}
	}
	return out
}

func appendUnique(s []int, v int) []int {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// plan parses a message and returns the job it asks for: nil job and nil error when it
// is ignored (logged here), an error when it is a permanent failure.
func (h *Handler) plan(m message) (*job, []rules.Target, error) {
	msg, err := ecrevent.Parse(m.body)
	if err != nil {
		return nil, nil, err
	}
	switch msg.Kind {
	case ecrevent.KindWorkItem:
		return h.planWorkItem(m, msg.WorkItem)
	case ecrevent.KindImageAction:
	default:
		return nil, nil, fmt.Errorf("%w: unknown message kind", ecrevent.ErrMalformed)
	}
	a := msg.Image
	if msg.Class == ecrevent.Ignored {
		attrs := []any{"message_id", m.id, "reason", msg.IgnoredReason}
		if a != nil {
			attrs = append(attrs, "event_id", a.EventID, "repository", a.Repository, "digest", a.Digest, "tag", a.Tag, "action_type", a.ActionType)
		}
		h.c.Log.Info("event ignored", attrs...)
		return nil, nil, nil
	}
	j := &job{
		delete:  msg.Class == ecrevent.Delete,
		src:     destinations.Source{AccountID: a.Account, Region: a.Region, Repository: a.Repository, Digest: a.Digest, Tag: a.Tag},
		eventID: a.EventID,
		at:      a.Time,
	}
	ok, invalid := rules.Split(h.c.Rules.Targets(a.Repository, a.Tag))
	targets := append(ok, invalid...)
	if j.delete {
		var del []rules.Target
		for _, t := range targets {
			if t.MirrorDeletes {
				del = append(del, t)
			}
		}
		targets = del
	}
	if len(targets) == 0 {
		reason := "no rule selects this repository and tag"
		if a.Tag == "" {
			reason = "no rule selects this digest-only image (untagged: false, or no rule for the repository)"
		}
		if j.delete {
			reason = "no rule mirrors deletes for this repository and tag"
		}
		h.c.Log.Info("event ignored", "message_id", m.id, "event_id", a.EventID, "repository", a.Repository, "digest", a.Digest, "tag", a.Tag, "action_type", a.ActionType, "reason", reason)
		return nil, nil, nil
	}
	return j, targets, nil
}

func (h *Handler) planWorkItem(m message, w *ecrevent.WorkItem) (*job, []rules.Target, error) {
	j := &job{
		delete:  w.Action == ecrevent.WorkDelete,
		src:     destinations.Source{AccountID: w.Source.AccountID, Region: w.Source.Region, Repository: w.Source.Repository, Digest: w.Source.Digest, Tag: w.Source.Tag},
		eventID: "work-item:" + w.Rule,
		at:      w.CreatedAt,
	}
	want := w.Destination.AccountID + "/" + w.Destination.Region + "/" + w.Destination.Repository
	for _, t := range h.c.Rules.Targets(w.Source.Repository, w.Source.Tag) {
		if t.Key() == want {
			if j.delete && !t.MirrorDeletes {
				// Mirror.Delete would skip it; say why up front.
				break
			}
			return j, []rules.Target{t}, nil
		}
	}
	return nil, nil, fmt.Errorf("%w: %s (%s)", ErrNoRuleAllows, want, w.String())
}

// report logs one result, records its metrics and returns its summary entry.
func (h *Handler) report(ctx context.Context, j *job, r destinations.Result, msgs []message, done time.Time) Outcome {
	action := "replicate"
	if j.delete {
		action = "delete"
	}
	o := Outcome{
		EventID: j.eventID, Action: action, SourceAcct: j.src.AccountID, SourceReg: j.src.Region,
		Repository: j.src.Repository, Digest: j.src.Digest, Tag: j.src.Tag,
		Destination: r.Destination(), Rule: r.Rule, Outcome: string(r.Outcome), Reason: r.Reason,
		Code: r.Code, Retryable: r.Retryable, Bytes: r.BytesCopied,
	}
	if len(j.messages) > 0 {
		o.MessageID = msgs[j.messages[0]].id
	}
	failed := r.Err != nil || r.Outcome == copyengine.Failed || r.Outcome == copyengine.Conflict
	if failed {
		if o.Outcome == "" {
			o.Outcome = string(copyengine.Failed)
		}
		if o.Code == "" {
			o.Code = string(r.Outcome)
			if r.Outcome == "" || r.Outcome == copyengine.Failed {
				o.Code = "Unknown"
			}
		}
		if r.Err != nil {
			o.Error = r.Err.Error()
		}
	}
	level := slog.LevelInfo
	msg := "image replicated"
	switch {
	case failed && r.Retryable:
		level, msg = slog.LevelWarn, "image replication failed (will retry)"
	case failed:
		level, msg = slog.LevelError, "image replication failed (permanent)"
	case j.delete:
		msg = "image deletion mirrored"
	}
	attrs := []slog.Attr{
		slog.String("message_id", o.MessageID), slog.String("event_id", o.EventID), slog.String("action", action),
		slog.String("source_account", j.src.AccountID), slog.String("source_region", j.src.Region),
		slog.String("repository", o.Repository), slog.String("digest", o.Digest), slog.String("tag", o.Tag),
		slog.String("destination", o.Destination), slog.String("rule", o.Rule), slog.String("outcome", o.Outcome),
		slog.String("reason", o.Reason), slog.Int64("bytes", r.BytesCopied), slog.Int("blobs", r.BlobsCopied),
		slog.Int("blobs_skipped", r.BlobsSkipped), slog.Int64("duration_ms", r.Duration.Milliseconds()),
		slog.String("error_code", o.Code), slog.Bool("retryable", o.Retryable),
	}
	if o.Error != "" {
		attrs = append(attrs, slog.String("error", o.Error))
	}
	h.c.Log.LogAttrs(ctx, level, msg, attrs...)

	if mr := h.c.Metrics; mr != nil {
		switch {
		case failed:
			mr.Add("ReplicationFailures", metrics.Count, 1, "Reason", o.Code)
		case j.delete:
			mr.Add("ImagesDeleted", metrics.Count, 1)
		default:
			mr.Add("ImagesReplicated", metrics.Count, 1)
			mr.Add("BytesCopied", metrics.Bytes, float64(r.BytesCopied))
			if !j.at.IsZero() {
				mr.Add("ReplicationLatency", metrics.Milliseconds, float64(done.Sub(j.at).Milliseconds()))
			}
		}
	}
	return o
}

// resultDetail reuses the field names of ECR's "ECR Replication Action" event.
type resultDetail struct {
	ActionType            string `json:"action-type"`
	Result                string `json:"result"`
	RepositoryName        string `json:"repository-name"`
	ImageDigest           string `json:"image-digest"`
	ImageTag              string `json:"image-tag,omitempty"`
	SourceAccount         string `json:"source-account"`
	SourceRegion          string `json:"source-region"`
	DestinationAccount    string `json:"destination-account"`
	DestinationRegion     string `json:"destination-region"`
	DestinationRepository string `json:"destination-repository"`
	Outcome               string `json:"outcome"`
	Reason                string `json:"reason,omitempty"`
	Rule                  string `json:"rule,omitempty"`
	ErrorCode             string `json:"error-code,omitempty"`
}

// maxEntries is PutEvents' limit of entries per call.
const maxEntries = 10

// publish sends one result event per replication result. Failures are logged only.
func (h *Handler) publish(ctx context.Context, reports []Outcome) {
	if h.c.Events == nil || h.c.EventBus == "" || len(reports) == 0 {
		return
	}
	var entries []eventEntry
	for _, o := range reports {
		if o.Action != "replicate" {
			continue
		}
		result := "SUCCESS"
		if o.Code != "" {
			result = "FAILED"
		}
		acct, region, repo := splitDestination(o.Destination)
		reason := o.Reason
		if reason == "" && o.Error != "" {
			reason = o.Error
		}
		d, _ := json.Marshal(resultDetail{
			ActionType: "REPLICATE", Result: result, RepositoryName: o.Repository, ImageDigest: o.Digest, ImageTag: o.Tag,
			SourceAccount: o.SourceAcct, SourceRegion: o.SourceReg,
			DestinationAccount: acct, DestinationRegion: region, DestinationRepository: repo,
			Outcome: o.Outcome, Reason: reason, Rule: o.Rule, ErrorCode: o.Code,
		})
		entries = append(entries, eventEntry{detail: string(d), repo: o.Repository})
	}
	var wg sync.WaitGroup
	for start := 0; start < len(entries); start += maxEntries {
		batch := entries[start:min(start+maxEntries, len(entries))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.putEvents(ctx, batch)
		}()
	}
	wg.Wait()
}

type eventEntry struct{ detail, repo string }

func splitDestination(d string) (acct, region, repo string) {
	for i, n := 0, 0; i < len(d); i++ {
		if d[i] == '/' {
			n++
			switch n {
			case 1:
				acct = d[:i]
			case 2:
				region = d[len(acct)+1 : i]
				return acct, region, d[i+1:]
			}
		}
	}
	return acct, region, repo
}
