package metrics

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestFlushWritesEMF(t *testing.T) {
	var buf bytes.Buffer
	r := New(&buf, Namespace(func(string) string { return "" })).WithClock(func() time.Time { return time.UnixMilli(1700000000123) })
	r.Add("ImagesReplicated", Count, 1)
	r.Add("ImagesReplicated", Count, 1)
	r.Add("BytesCopied", Bytes, 2048)
	r.Add("ReplicationLatency", Milliseconds, 1500)
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one line, got %d: %s", len(lines), buf.String())
	}
	var doc struct {
		AWS struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
		ImagesReplicated []float64
		BytesCopied      float64
	}
	if err := json.Unmarshal([]byte(lines[0]), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.AWS.Timestamp != 1700000000123 || doc.AWS.CloudWatchMetrics[0].Namespace != "ECRReplicator" {
		t.Errorf("bad envelope: %s", lines[0])
	}
	if len(doc.AWS.CloudWatchMetrics[0].Metrics) != 3 || len(doc.ImagesReplicated) != 2 || doc.BytesCopied != 2048 {
		t.Errorf("bad metrics: %s", lines[0])
	}
	buf.Reset()
	if err := r.Flush(); err != nil || buf.Len() != 0 {
		t.Errorf("second flush wrote %q, %v", buf.String(), err)
	}
}

func TestFlushDimensions(t *testing.T) {
	var buf bytes.Buffer
	r := New(&buf, Namespace(func(string) string { return "Custom" }))
	r.Add("ImagesReplicated", Count, 1)
	r.Add("ReplicationFailures", Count, 1, "Reason", "ThrottlingException")
	r.Add("ReplicationFailures", Count, 1, "Reason", "MANIFEST_INVALID")
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want two lines (one per reason), got %s", buf.String())
	}
	if !strings.Contains(lines[0], `"Reason":"ThrottlingException"`) || !strings.Contains(lines[0], `"Dimensions":[[]]`) ||
		!strings.Contains(lines[0], `"Dimensions":[["Reason"]]`) || !strings.Contains(lines[0], `"Namespace":"Custom"`) {
		t.Errorf("line 0: %s", lines[0])
	}
	if strings.Contains(lines[1], "ImagesReplicated") || !strings.Contains(lines[1], "MANIFEST_INVALID") {
		t.Errorf("line 1: %s", lines[1])
	}
}

// TestFlushTotalBesideBreakdown: a metric recorded in all and by a dimension goes out as
// two lines, each with its own value: one name holds one value per line.
func TestFlushTotalBesideBreakdown(t *testing.T) {
	var buf bytes.Buffer
	r := New(&buf, DefaultNamespace)
	r.Add("ReconcileFailures", Count, 1)
	r.Add("ReconcileFailures", Count, 1, "Code", "AccessDeniedException")
	r.Add("ReconcileFailures", Count, 1)
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want two lines, got %s", buf.String())
	}
	if !strings.Contains(lines[0], `"ReconcileFailures":[1,1]`) || strings.Contains(lines[0], `"Code"`) {
		t.Errorf("total: %s", lines[0])
	}
	if !strings.Contains(lines[1], `"ReconcileFailures":1`) || !strings.Contains(lines[1], `"Code":"AccessDeniedException"`) {
		t.Errorf("breakdown: %s", lines[1])
	}
}
