package backfill

import (
	"sort"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// finish completes the response's totals and reports them (a log line, the metrics).
func (b *Backfill) finish(r *invocation, start time.Time) *Response {
	resp := r.resp
	busiest := 0
	for _, n := range r.outstand {
		busiest = max(busiest, n)
	}
	resp.EstimatedSecondsAtQuota = float64(busiest) / PutImageQuota
	resp.DurationMs = b.now().Sub(start).Milliseconds()
	var mr *metrics.Recorder
	if b.EMF != nil {
		mr = metrics.New(b.EMF, b.Namespace)
	}
	b.report(resp, mr)
	if mr != nil {
		if err := mr.Flush(); err != nil {
			b.log().Warn("writing metrics", "error", err.Error())
		}
	}
	return resp
}

// account adds one repository's plan to the response's totals and failures.
func (r *invocation) account(repo string, ex Expansion, diff Diff, dests map[ecrname.Repo]*Listing) {
	resp := r.resp
	resp.RepositoriesScanned++
	resp.ImagesSeen += ex.ImagesSeen
	resp.SkippedBeforeSince += ex.SkippedBefore
	resp.ArchivedAtSource += ex.Archived
	for _, reason := range ex.Invalid {
		resp.fail(Failure{Repository: repo, Reason: reason})
	}
	for _, t := range ex.Targets {
		if l := dests[t.Repo()]; l != nil && l.Err != nil {
			code, _ := retry.Classify(l.Err)
			resp.fail(Failure{Repository: repo, Destination: t.Repo().String(), Reason: "listing the destination: " + l.Err.Error(), Code: code})
		}
	}
	resp.Unplanned += diff.Unplanned
	resp.InSync += diff.InSync
	resp.Drift += len(diff.Work)
	if len(diff.Work) > 0 {
		r.b.log().Info("backfill drift", "repository", repo, "work", len(diff.Work), "inSync", diff.InSync)
	}
}

// describe adds one repository's plan to a dry run's answer.
func (r *invocation) describe(repo string, diff Diff) {
	resp := r.resp
	dsts := make([]ecrname.Repo, 0, len(diff.PerTarget))
	for k := range diff.PerTarget {
		dsts = append(dsts, k)
	}
	sort.Slice(dsts, func(i, j int) bool { return dsts[i].String() < dsts[j].String() })
	for _, k := range dsts {
		resp.Plan = append(resp.Plan, RepositoryPlan{Repository: repo, Destination: k.String(), TargetTotals: *diff.PerTarget[k]})
	}
	resp.Remaining += len(diff.Work)
	resp.Work = append(resp.Work, diff.Work...)
	for i := range diff.Work {
		r.outstanding(&diff.Work[i], 1)
		if len(resp.WorkItems) < MaxPlanItems {
			resp.WorkItems = append(resp.WorkItems, r.workItem(&diff.Work[i]))
		}
	}
}

// report writes the totals as one JSON log line and records the metrics.
func (b *Backfill) report(resp *Response, mr *metrics.Recorder) {
	b.log().Info("backfill totals",
		"mode", resp.Mode, "repositoriesScanned", resp.RepositoriesScanned, "imagesSeen", resp.ImagesSeen,
		"skippedBeforeSince", resp.SkippedBeforeSince, "archivedAtSource", resp.ArchivedAtSource, "inSync", resp.InSync, "drift", resp.Drift,
		"enqueued", resp.Enqueued, "copied", resp.Copied, "skipped", resp.Skipped, "failed", resp.Failed, "bytesCopied", resp.BytesCopied,
		"bytesMounted", resp.BytesMounted, "bytesMountable", resp.BytesMountable, "referrersRefused", resp.ReferrersRefused,
		"remaining", resp.Remaining, "estimatedSecondsAtQuota", resp.EstimatedSecondsAtQuota,
		"continues", resp.ContinuationToken != "", "durationMs", resp.DurationMs)
	for _, m := range resp.Mounting {
		b.log().Info("blob mounting", "registry", m.Registry, "blobMounting", m.BlobMounting, "bytesMountable", m.BytesMountable,
			"imagesRead", m.ImagesRead, "partial", m.Partial, "reason", m.Reason)
	}
	if m := mr; m != nil {
		// Not Drift and ImagesEnqueued: those are the reconcile's, on the dashboard.
		m.Add("BackfillDrift", metrics.Count, float64(resp.Drift))
		m.Add("BackfillImagesEnqueued", metrics.Count, float64(resp.Enqueued))
		m.Add("ImagesCopied", metrics.Count, float64(resp.Copied))
		m.Add("BackfillFailures", metrics.Count, float64(resp.Failed))
		m.Add("BytesCopied", metrics.Bytes, float64(resp.BytesCopied))
		m.Add("BytesMounted", metrics.Bytes, float64(resp.BytesMounted))
		if resp.ReferrersRefused > 0 {
			m.Add("GateReferrersRefused", metrics.Count, float64(resp.ReferrersRefused))
		}
	}
}
