package demo

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/lambdarun"
)

// TestDemo runs the demo end to end, as `make demo` does, with freshly built binaries.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	root, err := lambdarun.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bins := BinariesIn(dir)
	for _, b := range []struct {
		pkg, out string
		function bool
	}{
		{"./functions/replicate", bins.Replicate, true},
		{"./functions/backfill", bins.Backfill, true},
		{lambdarun.RIEPackage, bins.RIE, false},
	} {
		if err := lambdarun.Build(ctx, root, b.pkg, b.out, b.function); err != nil {
			t.Fatal(err)
		}
	}
	var out strings.Builder
	rows, err := Run(ctx, bins, &out)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	if len(rows) != 6 {
		t.Fatalf("%d rows, want 6", len(rows))
	}
	via := map[string]int{}
	for _, r := range rows {
		if !r.OK() || r.Before != "" {
			t.Errorf("%s:%s source %s before %q after %q", r.Repository, r.Tag, r.Source, r.Before, r.After)
		}
		via[r.Via]++
	}
	if via["backfill"] != 3 || via["replicate (push events)"] != 3 {
		t.Errorf("copied by: %v", via)
	}
	// The counts add up: 9 images (v0.9.0, worker v1, v2 and v3, the index and its 4
	// children) are 10 copies (the index has two tags); the backfill copies the 3 pushed
	// before the push path was deployed, the 7 the push events brought are in sync; then
	// all 10 are. Every push arrived by itself, nothing in the dead-letter queue.
	for _, want := range []string{
		`{"batchItemFailures":[]}`,
		"-> mirror/team-a/worker:v3 in the destination",
		"-> mirror/team-a/app:v1.0.0 in the destination",
		"-> mirror/team-a/app:latest in the destination",
		"-> promoted team-b/web:v1 to prod/team-b/web:v1",
		"-> blocked team-b/api:v1: ScanFindings: 1 finding(s) at or above CRITICAL: CVE-2026-1234 CRITICAL",
		"0 messages failed; 0 in the dead-letter queue",
		"backfill (inline) answered 2 repositories, 9 images; 10 copies (one per tag, or untagged image, and destination): 7 already in sync, 3 copied, 0 failed",
		"backfill again (dry run): 2 repositories, 9 images; 10 copies (one per tag, or untagged image, and destination): 10 in sync, 0 to copy",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
