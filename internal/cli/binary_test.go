package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The command as a user runs it: cmd/ecr-replicator built once per test binary, run as a
// process with the sandbox's environment (what `ecr-replicator sandbox` prints), its
// stdout and stderr pipes, files or a terminal.
var (
	buildOnce sync.Once
	builtDir  string
	builtBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// cliBinary builds cmd/ecr-replicator (once) and returns its path.
func cliBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if builtDir, buildErr = os.MkdirTemp("", "ecr-replicator-cli-"); buildErr != nil {
			return
		}
		builtBin = filepath.Join(builtDir, "ecr-replicator")
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(goBin, "build", "-o", builtBin, "github.com/ecr-replicator/ecr-replicator/cmd/ecr-replicator")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building cmd/ecr-replicator: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// cliResult is what one run of the command left: its exit code and output.
type cliResult struct {
	code           int
	stdout, stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// cliCommand is the command with the test's environment (the sandbox's, set by
// sandboxtest.Start), plus env, and these guards: no Docker credentials of the machine,
// and an HTTP(S) proxy that refuses every connection, so that nothing reaches the
// internet (Go never proxies loopback, where the sandbox is).
func cliCommand(t testing.TB, ctx context.Context, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, cliBinary(t), args...)
	base := []string{"DOCKER_CONFIG=" + t.TempDir(), "HTTPS_PROXY=http://127.0.0.1:1", "HTTP_PROXY=http://127.0.0.1:1", "NO_PROXY=", "TERM=dumb"}
	cmd.Env = append(append(os.Environ(), base...), env...)
	return cmd
}

// runCLI runs the command with stdout and stderr on separate pipes.
func runCLI(t testing.TB, ctx context.Context, env []string, args ...string) cliResult {
	t.Helper()
	cmd := cliCommand(t, ctx, env, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	return cliResult{code: exitCode(t, cmd.Run()), stdout: out.String(), stderr: errOut.String()}
}

// runCLICombined runs the command with stdout and stderr on one pipe, as `cmd 2>&1 | less`.
func runCLICombined(t testing.TB, ctx context.Context, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := cliCommand(t, ctx, env, args...)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	return exitCode(t, cmd.Run()), out.String()
}

func exitCode(t testing.TB, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("running ecr-replicator: %v", err)
	return -1
}

// lockedBuffer is one buffer written by two pipes' copiers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines splits output into its lines, without the last newline.
func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// fixedImage is a one-layer image whose digest and size depend on content only (golden
// files name them).
func fixedImage(t testing.TB, content string) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, static.NewLayer([]byte(content), types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// fixedIndex is a multi-platform index of fixed images, one per platform.
func fixedIndex(t testing.TB, content string, archs ...string) v1.ImageIndex {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	for _, arch := range archs {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        fixedImage(t, content+"-"+arch),
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	return idx
}
