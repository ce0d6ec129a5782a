package demo

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/lambdarun"
)

// TestDemoOutsideTheRepository runs `ecr-replicator demo` as a user who downloaded the
// binary would: from a directory with no repository, no built bootstraps and no emulator
// on PATH, with Go installed. The binary serves as both functions, builds the emulator
// once into the user cache directory, and the demo ends with every tag replicated, each
// by the path that should have copied it. (`make demo` — the bootstraps built from
// functions/ into --bin — runs the same Run; CI runs it.)
func TestDemoOutsideTheRepository(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI and the emulator")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	root, err := lambdarun.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	// Built as the bootstraps are (the packages they share come from the build cache).
	cli := filepath.Join(t.TempDir(), "ecr-replicator")
	if err := lambdarun.Build(ctx, root, "./cmd/ecr-replicator", cli, true); err != nil {
		t.Fatal(err)
	}
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	cmd := exec.CommandContext(ctx, cli, "demo")
	cmd.Dir = t.TempDir() // no go.mod, no .demo/bin
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "PATH", "XDG_CACHE_HOME", "GOCACHE":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	// PATH: Go, and nothing else of this machine's (no aws-lambda-rie).
	cmd.Env = append(cmd.Env, "PATH="+filepath.Dir(goBin), "XDG_CACHE_HOME="+cache, "GOCACHE="+strings.TrimSpace(string(gocache)))
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err != nil {
		t.Fatalf("ecr-replicator demo: %v\n%s", err, out)
	}
	t.Log("\n" + out)
	// The counts add up: 9 images (v0.9.0, worker v1, v2 and v3, the index and its 4
	// children) are 10 copies (the index has two tags); the backfill copies the 3 pushed
	// before the push path was deployed, the 7 the push events brought are in sync; then
	// all 10 are. Every push arrived by itself, nothing in the dead-letter queue.
	for _, want := range []string{
		"building the AWS Lambda Runtime Interface Emulator into " + filepath.Join(cache, "ecr-replicator"),
		"rules document in the source account's Parameter Store: /ecr-replicator/rules (version 1)",
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
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	var push, backfill int
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasPrefix(f[0], "team-a/") {
			continue
		}
		// SOURCE IMAGE, SOURCE DIGEST, DESTINATION BEFORE (-), DESTINATION AFTER, COPIED BY, MATCH
		if f[1] != f[3] || f[2] != "-" || f[len(f)-1] != "yes" {
			t.Errorf("row %q: want the source digest after, nothing before", line)
		}
		switch {
		case strings.Contains(line, viaPush):
			push++
		case strings.Contains(line, viaBackfill):
			backfill++
		}
	}
	if push != 3 || backfill != 3 {
		t.Errorf("copied by push events %d, by the backfill %d; want 3 and 3", push, backfill)
	}

	// Built once: the next demo finds it.
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("PATH", filepath.Dir(goBin))
	var progress bytes.Buffer
	if rie, err := emulator(ctx, &progress); err != nil || progress.Len() > 0 || !strings.HasPrefix(rie, cache) {
		t.Errorf("the second time: %s, %v, %q", rie, err, progress.String())
	}
}

// TestLocate: binaries named on the command line must be there; the version of the
// emulator the demo builds is the one go.mod pins.
func TestLocate(t *testing.T) {
	if _, err := Locate(context.Background(), t.TempDir(), true, nil); err == nil || !strings.Contains(err.Error(), "replicate-bootstrap is missing") {
		t.Errorf("missing binaries in a named directory: %v", err)
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/aws/aws-lambda-runtime-interface-emulator").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != lambdarun.RIEVersion {
		t.Errorf("go.mod pins the emulator at %s, lambdarun.RIEVersion is %s", got, lambdarun.RIEVersion)
	}
}
