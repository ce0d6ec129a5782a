package demo

// Review of issue 23: `ecr-replicator demo` outside the repository. Failed on the merged
// tree (efb334f / c64154b).

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/lambdarun"
)

// TestReview23DemoEmulatorOffline: the demo is the product's offline story ("no AWS
// account, no Docker"; the sandbox runs everything on 127.0.0.1). Outside the repository
// it builds the Runtime Interface Emulator with `go install <pkg>@<version>`, which asks
// the module proxy first even when every module it needs is already in the local module
// cache (the precondition below proves they are: the same build succeeds with the cache as
// its only proxy). On a machine without network — the proxy unreachable, here a closed
// port on 127.0.0.1 — the first `ecr-replicator demo` fails with a Go module error, though
// nothing needs downloading.
func TestReview23DemoEmulatorOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the emulator")
	}
	// Precondition: everything the emulator's build needs is in the local module cache —
	// the same go install succeeds with the cache itself as the only proxy (no network).
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	check := exec.Command("go", "install", lambdarun.RIEPackage+"@"+lambdarun.RIEVersion)
	check.Dir = t.TempDir()
	check.Env = append(os.Environ(), "GOBIN="+t.TempDir(), "CGO_ENABLED=0", "GOSUMDB=off",
		"GOPROXY=file://"+filepath.Join(strings.TrimSpace(string(modcache)), "cache", "download"))
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("precondition: the emulator cannot be built from the module cache alone (%v): %s", err, out)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	// f23: the build cache stays the shared one (as TestDemoOutsideTheRepository keeps it):
	// it holds compiled packages, no module, so the build is as offline as before, and does
	// not compile the standard library again (two minutes of make test on two cores).
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOCACHE", strings.TrimSpace(string(gocache)))
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("PATH", filepath.Dir(goBin))
	t.Setenv("GOPROXY", "http://127.0.0.1:9") // no network: nothing answers
	var progress bytes.Buffer
	rie, err := emulator(t.Context(), &progress)
	if err != nil {
		t.Fatalf("offline, with every module it needs cached, the demo cannot build its emulator:\n%v", err)
	}
	if _, err := os.Stat(rie); err != nil {
		t.Errorf("emulator %s: %v", rie, err)
	}
}
