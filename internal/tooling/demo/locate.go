package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/lambdarun"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// Locate finds what the demo runs. In dir, when `make demo` built the bootstraps and
// the emulator there (or required, when the caller named dir: an error says what is
// missing). Otherwise — the binary run anywhere, without the repository — the running
// program is both functions' bootstrap (wiring.EnvServe) and the Runtime Interface
// Emulator is aws-lambda-rie on PATH, one built before into the user cache directory, or
// one built there now with the Go toolchain (`go install` of the version go.mod pins; it
// says so on progress).
func Locate(ctx context.Context, dir string, required bool, progress io.Writer) (Binaries, error) {
	bins := BinariesIn(dir)
	err := bins.Check()
	if err == nil || required {
		return bins, err
	}
	self, err := os.Executable()
	if err != nil {
		return Binaries{}, fmt.Errorf("the demo runs this program as its functions: %w", err)
	}
	rie, err := emulator(ctx, progress)
	if err != nil {
		return Binaries{}, err
	}
	return Binaries{Replicate: self, Backfill: self, RIE: rie, Serve: true}, nil
}

// emulator returns the path of an aws-lambda-rie, building it if there is none.
func emulator(ctx context.Context, progress io.Writer) (string, error) {
	if p, err := exec.LookPath("aws-lambda-rie"); err == nil {
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no aws-lambda-rie on PATH, and no cache directory to build one in: %w", err)
	}
	dir := filepath.Join(cache, "ecr-replicator", "aws-lambda-rie@"+lambdarun.RIEVersion)
	bin := filepath.Join(dir, "aws-lambda-rie")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("the demo needs the AWS Lambda Runtime Interface Emulator: put aws-lambda-rie on PATH, or install Go, which builds it (" +
			"go install " + lambdarun.RIEPackage + "@" + lambdarun.RIEVersion + ")")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := buildEmulator(ctx, goTool, dir, progress); err != nil {
		return "", err
	}
	return bin, nil
}

// buildEmulator runs `go install` of the pinned emulator into dir. `go install pkg@version`
// asks the module proxy even when the local module cache holds every module it needs; when
// that fails (no network), the same build is tried with the module cache as the only
// proxy: the modules there were checked against the checksum database when the go command
// downloaded them, and that database cannot be reached either, hence GOSUMDB=off for this
// build only.
func buildEmulator(ctx context.Context, goTool, dir string, progress io.Writer) error {
	target := lambdarun.RIEPackage + "@" + lambdarun.RIEVersion
	fmt.Fprintf(progress, "building the AWS Lambda Runtime Interface Emulator into %s, once (go install %s)\n", dir, target)
	install := func(env ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, goTool, "install", target)
		cmd.Dir = dir // outside any module: the version pinned, not a module's
		cmd.Env = append(append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0"), env...)
		return cmd.CombinedOutput()
	}
	out, err := install()
	if err == nil {
		return nil
	}
	if modcache, cerr := exec.CommandContext(ctx, goTool, "env", "GOMODCACHE").Output(); cerr == nil && strings.TrimSpace(string(modcache)) != "" {
		proxy := "file://" + filepath.ToSlash(filepath.Join(strings.TrimSpace(string(modcache)), "cache", "download"))
		if _, cacheErr := install("GOPROXY="+proxy, "GOSUMDB=off", "GOTOOLCHAIN=local"); cacheErr == nil {
			fmt.Fprintln(progress, "built from the local module cache (the module proxy did not answer)")
			return nil
		}
	}
	return fmt.Errorf("go install %s: %v\n%s\n"+
		"The first build downloads the emulator's modules through the Go module proxy (GOPROXY), and needs Go 1.26.6 or later "+
		"(the emulator's go.mod; an older go downloads that toolchain): run it once where the proxy answers, or put aws-lambda-rie on PATH",
		target, err, strings.TrimSpace(string(out)))
}

// serveEnv is what a function's environment needs when the bootstrap is this program.
func (b Binaries) serveEnv(function string, env map[string]string) map[string]string {
	if !b.Serve {
		return env
	}
	out := map[string]string{wiring.EnvServe: function}
	for k, v := range env {
		out[k] = v
	}
	return out
}
