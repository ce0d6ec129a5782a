package eventhandler_test

// Review of issue 23: the dashboard's "Push to replica latency" widget. Failed on the merged
// tree (efb334f / c64154b).

import (
	"strings"
	"testing"
	"time"
)

// TestReview23PushLatencyIsPushOnly: template.yaml's dashboard widget "Push to replica
// latency (ms)" plots p50/p90/p99 of ReplicationLatency with no dimension. The replicate
// function records that same undimensioned metric for every copy it makes — also for the
// work items a backfill or a reconcile run enqueued, measured from the item's createdAt:
// how long it waited in the copy queue, which a run paced at the destination's PutImage
// quota (10/s) makes minutes to hours. During every reconcile that finds drift the widget
// shows hours of "push to replica" latency while pushes replicate in seconds, and an
// operator cannot tell the two apart.
func TestReview23PushLatencyIsPushOnly(t *testing.T) {
	f := newFixture(t, rulesDoc(true, false))
	d := f.push(t, "team-a/app", "v2")
	h, logs := f.handler(t)
	enqueued := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339) // a reconcile item, an hour in the copy queue
	item := `{"kind":"ecr-replicator/work-item","version":1,"action":"copy","rule":"prod","source":{"accountId":"111111111111","region":"us-east-1","repository":"team-a/app","digest":"` + d + `","tag":"v2"},"destination":{"accountId":"222222222222","region":"us-east-1","repository":"mirror/team-a/app"},"reason":"tag missing","createdAt":"` + enqueued + `"}`
	if _, err := h.Handle(f.ctx, sqsBatch(item)); err != nil {
		t.Fatal(err)
	}
	if f.destinationHead(t, "mirror/team-a/app", "v2") != d {
		t.Fatalf("work item not copied:\n%s", logs)
	}
	waited := false // f23: the wait is measured, under its own name
	for _, l := range jsonLines(logs.String()) {
		if v, ok := l["WorkItemLatency"].(float64); ok && v >= 3600000 {
			waited = true
		}
		v, ok := l["ReplicationLatency"].(float64)
		if !ok {
			continue
		}
		raw := l["_raw"].(string)
		// The widget reads the metric without dimensions: an EMF directive for
		// ReplicationLatency with an empty dimension set.
		if strings.Contains(raw, `"Dimensions":[[]]`) {
			t.Errorf("a reconcile/backfill copy that waited %.0f s in the copy queue is in the metric the dashboard plots as push-to-replica latency:\n%s", v/1000, raw)
		}
	}
	if !waited {
		t.Errorf("no WorkItemLatency of the hour the work item waited:\n%s", logs)
	}
}
