package backfill

import (
	"context"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/sqssend"
)

func (r *invocation) workItem(w *Work) ecrevent.WorkItem {
	return WorkItem(w, ecrname.Registry{AccountID: r.srcAccount, Region: r.srcRegion}, "", r.b.now())
}

// WorkItem is the work item that asks the replicate function to make w's copy: from
// the source registry, found by the reconcile run run ("": a backfill).
func WorkItem(w *Work, source ecrname.Registry, run string, now time.Time) ecrevent.WorkItem {
	reason := "backfill: " + w.Reason
	if run != "" {
		reason = "reconcile: " + w.Reason
	}
	return ecrevent.WorkItem{
		Kind: ecrevent.WorkItemKind, Version: ecrevent.WorkItemVersion, Action: ecrevent.WorkCopy, Rule: w.Target.Rule,
		Source:      ecrevent.ImageRef{AccountID: source.AccountID, Region: source.Region, Repository: w.Repository, Digest: w.Digest, Tag: w.Tag},
		Destination: ecrevent.RefTo(w.Target.Repo()),
		Reason:      reason,
		Run:         run,
		CreatedAt:   now.UTC().Truncate(time.Second),
	}
}

// workQueue is the queue work items go to.
func (b *Backfill) workQueue() string {
	if b.CopyQueueURL != "" {
		return b.CopyQueueURL
	}
	return b.QueueURL
}

// enqueueChunk is how much work one Send carries: ten batches, sent a few at once.
const enqueueChunk = 10 * sqssend.MaxBatch

// enqueue sends work as work items until time is up — at least one chunk, so a
// continuation always moves on. What SQS did not take is a failure in the response
// (with SQS's code); an on-demand backfill is rerun with its continuation token.
func (r *invocation) enqueue(ctx context.Context, work []Work) (string, bool) {
	last := ""
	for start := 0; start < len(work); start += enqueueChunk {
		if start > 0 && r.timeUp() {
			return last, false
		}
		chunk := work[start:min(start+enqueueChunk, len(work))]
		msgs := make([]sqssend.Message, 0, len(chunk))
		sent := make([]*Work, 0, len(chunk))
		for i := range chunk {
			body, err := ecrevent.Marshal(r.workItem(&chunk[i]))
			if err != nil {
				r.failed(&chunk[i], "work item: "+err.Error(), "")
				continue
			}
			msgs, sent = append(msgs, sqssend.Message{Body: string(body)}), append(sent, &chunk[i])
		}
		for i, err := range r.b.Sender.Send(ctx, r.b.workQueue(), msgs) {
			if err != nil {
				code, _ := retry.Classify(err)
				r.failed(sent[i], err.Error(), code)
				continue
			}
			r.mu.Lock()
			r.resp.Enqueued++
			r.resp.Remaining--
			r.mu.Unlock()
		}
		last = chunk[len(chunk)-1].Key()
	}
	return last, true
}
