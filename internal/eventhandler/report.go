package eventhandler

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
)

// Report is one image at one destination, as reported in the direct-invocation summary.
type Report struct {
	MessageID   string `json:"messageId,omitempty"`
	EventID     string `json:"eventId,omitempty"`
	Action      string `json:"action"` // replicate or delete
	SourceAcct  string `json:"sourceAccount"`
	SourceReg   string `json:"sourceRegion"`
	Repository  string `json:"repository"`
	Digest      string `json:"digest"`
	Tag         string `json:"tag,omitempty"`
	Destination string `json:"destination"` // account/region/repository
	Rule        string `json:"rule,omitempty"`
	Outcome     string `json:"outcome"`
	Reason      string `json:"reason,omitempty"`
	Code        string `json:"code,omitempty"`
	Retryable   bool   `json:"retryable,omitempty"`
	Error       string `json:"error,omitempty"`
	Bytes       int64  `json:"bytes,omitempty"`

	dst ecrname.Repo
}

// Problem is a message that was not acted on: malformed, naming another source, or not
// allowed (Code: CodeMalformed, CodeForeignSource, CodeNotAllowed).
type Problem struct {
	MessageID string `json:"messageId,omitempty"`
	Code      string `json:"code"`
	Error     string `json:"error"`
}

// Summary is the answer to a direct invocation.
type Summary struct {
	Results   []Report  `json:"results"`
	Ignored   int       `json:"ignored"`
	Malformed []Problem `json:"malformed,omitempty"`
	Succeeded int       `json:"succeeded"`
	Failed    int       `json:"failed"`
	Retryable int       `json:"retryable"`
	// Held and Blocked count copies promotion gates held or blocked (docs/PROMOTION.md).
	Held       int `json:"held,omitempty"`
	Blocked    int `json:"blocked,omitempty"`
	Duplicates int `json:"duplicates,omitempty"`
}

// report logs every result and records its metrics, and sums them up: the summary and
// the messages to retry (every message of a job with a retryable failure).
func (h *Handler) report(ctx context.Context, p plan, results [][]destinations.Result, msgs []message, mr *metrics.Recorder) invocation {
	out := invocation{summary: Summary{Results: []Report{}, Ignored: p.ignored, Malformed: p.malformed, Duplicates: p.duplicates}}
	retry := make([]bool, len(msgs))
	for _, i := range p.unsettled {
		retry[i] = true
		out.summary.Retryable++
		out.summary.Failed++
	}
	done := h.c.Now()
	for i, j := range p.jobs {
		for _, r := range results[i] {
			o := h.outcome(ctx, j, r, msgs, done, mr)
			out.summary.Results = append(out.summary.Results, o)
			switch {
			case o.Outcome == string(Held):
				out.summary.Held++
			case o.Outcome == string(Blocked):
				out.summary.Blocked++
			case o.Retryable:
				out.summary.Retryable++
				out.summary.Failed++
				for _, mi := range j.messages {
					retry[mi] = true
				}
			case o.Code != "":
				out.summary.Failed++
			default:
				out.summary.Succeeded++
			}
		}
	}
	for i, r := range retry {
		if r && msgs[i].id != "" {
			out.retry = append(out.retry, msgs[i].id)
		}
	}
	return out
}

// outcome logs one result, records its metrics and returns its summary entry.
func (h *Handler) outcome(ctx context.Context, j *job, r destinations.Result, msgs []message, done time.Time, mr *metrics.Recorder) Report {
	action := "replicate"
	if j.delete {
		action = "delete"
	}
	o := Report{
		EventID: j.eventID, Action: action, SourceAcct: j.src.Repo.AccountID, SourceReg: j.src.Repo.Region,
		Repository: j.src.Repo.Name, Digest: j.src.Digest, Tag: j.src.Tag,
		Destination: r.Destination.String(), Rule: r.Rule, Outcome: string(r.Outcome), Reason: r.Reason,
		Code: r.Code, Retryable: r.Retryable, Bytes: r.BytesCopied, dst: r.Destination,
	}
	if len(j.messages) > 0 {
		o.MessageID = msgs[j.messages[0]].id
	}
	if j.trigger {
		// A trigger's results are of the images it re-decided; one that found nothing to
		// decide has no destination.
		o.Digest, o.Tag = r.Digest, r.Tag
		if r.Destination == (ecrname.Repo{}) {
			o.Destination = ""
		}
	}
	failed := r.Err != nil || r.Outcome.Failure()
	if failed {
		if o.Outcome == "" {
			o.Outcome = string(destinations.Failed)
		}
		if o.Code == "" {
			o.Code = string(r.Outcome)
			if r.Outcome == "" || r.Outcome == destinations.Failed {
				o.Code = "Unknown"
			}
		}
		if r.Err != nil {
			o.Error = r.Err.Error()
		}
	}
	h.logReport(ctx, j, o, r, failed)
	if mr != nil {
		record(mr, j, r, o.Code, failed, done)
	}
	return o
}

// logReport logs one result: an error when it failed for good or a gate blocked it, a
// warning when it will be retried.
func (h *Handler) logReport(ctx context.Context, j *job, o Report, r destinations.Result, failed bool) {
	level, msg := slog.LevelInfo, "image replicated"
	switch {
	case r.Outcome == Blocked:
		level, msg = slog.LevelError, "image blocked by a promotion gate (permanent)"
	case r.Outcome == Held:
		msg = "image held by a promotion gate"
	case failed && r.Retryable:
		level, msg = slog.LevelWarn, "image replication failed (will retry)"
	case failed:
		level, msg = slog.LevelError, "image replication failed (permanent)"
	case j.delete:
		msg = "image deletion mirrored"
	}
	attrs := []slog.Attr{
		slog.String("message_id", o.MessageID), slog.String("event_id", o.EventID), slog.String("action", o.Action),
		slog.String("source_account", o.SourceAcct), slog.String("source_region", o.SourceReg),
		slog.String("repository", o.Repository), slog.String("digest", o.Digest), slog.String("tag", o.Tag),
		slog.String("destination", o.Destination), slog.String("rule", o.Rule), slog.String("outcome", o.Outcome),
		slog.String("reason", o.Reason), slog.Int64("bytes", r.BytesCopied), slog.Int("blobs", r.BlobsCopied),
		slog.Int("blobs_skipped", r.BlobsSkipped), slog.Int64("bytes_mounted", r.BytesMounted), slog.Int64("bytes_mountable", r.BytesMountable),
		slog.Int("referrers_refused", r.ReferrersRefused),
		slog.Int64("duration_ms", r.Duration.Milliseconds()),
		slog.String("error_code", o.Code), slog.Bool("retryable", o.Retryable),
	}
	if o.Error != "" {
		attrs = append(attrs, slog.String("error", o.Error))
	}
	h.c.Log.LogAttrs(ctx, level, msg, attrs...)
}

// record adds one result's metrics. Replications, failures and throttled manifest writes
// are also counted per destination registry (Destination = "account/region", as few
// values as the rules have destinations), for the dashboard's per-destination widgets.
func record(mr *metrics.Recorder, j *job, r destinations.Result, code string, failed bool, done time.Time) {
	dst := r.Destination.Registry.String()
	if !j.delete {
		mr.Add("PutImageThrottled", metrics.Count, float64(r.ManifestsThrottled), "Destination", dst)
	}
	if r.ReferrersRefused > 0 {
		// Referrers a gated copy left out, being runnable (docs/PROMOTION.md): content
		// that rode on a promoted image's subject and was not copied, by rule.
		mr.Add("GateReferrersRefused", metrics.Count, float64(r.ReferrersRefused), "Rule", r.Rule)
	}
	switch {
	case r.Outcome == Blocked:
		mr.Add("GateBlocked", metrics.Count, 1, "Rule", r.Rule, "Reason", code)
	case r.Outcome == Held:
		mr.Add("GateHeld", metrics.Count, 1, "Rule", r.Rule, "Reason", code)
	case failed:
		mr.Add("ReplicationFailures", metrics.Count, 1, "Reason", code)
		mr.Add("ReplicationFailures", metrics.Count, 1, "Destination", dst)
	case j.delete && r.Outcome == destinations.KeptImmutable:
		mr.Add("ImmutableTagsKept", metrics.Count, 1)
	case j.delete:
		mr.Add("ImagesDeleted", metrics.Count, 1)
	default:
		mr.Add("ImagesReplicated", metrics.Count, 1)
		mr.Add("ImagesReplicated", metrics.Count, 1, "Destination", dst)
		mr.Add("BytesCopied", metrics.Bytes, float64(r.BytesCopied))
		mr.Add("BytesMounted", metrics.Bytes, float64(r.BytesMounted))
		mr.Add("BytesMounted", metrics.Bytes, float64(r.BytesMounted), "Destination", dst)
		// Uploaded while another repository of the registry held the layers: what
		// enabling blob mounting there would save.
		mr.Add("BytesMountable", metrics.Bytes, float64(r.BytesMountable), "Destination", dst)
		switch {
		case j.at.IsZero():
		case j.workItem:
			// Enqueued to copied: a run paced at the PutImage quota waits minutes to hours
			// in the copy queue, which is no push's latency.
			mr.Add("WorkItemLatency", metrics.Milliseconds, float64(done.Sub(j.at).Milliseconds()))
		default:
			mr.Add("ReplicationLatency", metrics.Milliseconds, float64(done.Sub(j.at).Milliseconds()))
		}
	}
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
func (h *Handler) publish(ctx context.Context, reports []Report) {
	if h.c.Events == nil || h.c.EventBus == "" || len(reports) == 0 {
		return
	}
	var entries []eventEntry
	for _, o := range reports {
		if o.Action != "replicate" {
			continue
		}
		result := "SUCCESS"
		switch {
		case o.Outcome == string(Held):
			result = "PENDING" // a promotion gate waits: a later event says how it ended
		case o.Code != "":
			result = "FAILED"
		}
		reason := o.Reason
		if reason == "" && o.Error != "" {
			reason = o.Error
		}
		d, _ := json.Marshal(resultDetail{
			ActionType: "REPLICATE", Result: result, RepositoryName: o.Repository, ImageDigest: o.Digest, ImageTag: o.Tag,
			SourceAccount: o.SourceAcct, SourceRegion: o.SourceReg,
			DestinationAccount: o.dst.AccountID, DestinationRegion: o.dst.Region, DestinationRepository: o.dst.Name,
			Outcome: o.Outcome, Reason: reason, Rule: o.Rule, ErrorCode: o.Code,
		})
		entries = append(entries, eventEntry{detail: string(d), repo: o.Repository})
	}
	var wg sync.WaitGroup
	for start := 0; start < len(entries); start += maxEntries {
		batch := entries[start:min(start+maxEntries, len(entries))]
		wg.Go(func() { h.putEvents(ctx, batch) })
	}
	wg.Wait()
}

type eventEntry struct{ detail, repo string }
