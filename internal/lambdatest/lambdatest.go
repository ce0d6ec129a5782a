// Package lambdatest runs a Lambda function's real `bootstrap` under the AWS Lambda
// Runtime Interface Emulator (RIE) for end-to-end tests: it builds the function for the
// host (CGO_ENABLED=0, -tags lambda.norpc) and the RIE (pinned in go.mod as a tool),
// starts them listening on 127.0.0.1 only, captures the function's output (its logs and
// EMF lines) and invokes it over the RIE's HTTP API.
//
// Built binaries are cached for the test process; call Main from TestMain to remove the
// cache when the tests end.
package lambdatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// RIEPackage is the emulator's main package, pinned in go.mod as a tool.
const RIEPackage = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"

var (
	cacheMu  sync.Mutex
	cacheDir string
	built    = map[string]string{} // package → binary
)

// Main runs the tests and removes the build cache: func TestMain(m *testing.M) { lambdatest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	cacheMu.Lock()
	if cacheDir != "" {
		os.RemoveAll(cacheDir)
	}
	cacheMu.Unlock()
	os.Exit(code)
}

// build compiles pkg once per test process (tags lambda.norpc, CGO off) and returns the
// binary's path. pkg is an import path, or a path relative to the module root ("./functions/x").
func build(t testing.TB, pkg string, lambdaTags bool) string {
	t.Helper()
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	if cacheDir == "" {
		d, err := os.MkdirTemp("", "lambdatest-")
		if err != nil {
			t.Fatal(err)
		}
		cacheDir = d
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(cacheDir, fmt.Sprintf("bin%d", len(built)), filepath.Base(pkg))
	args := []string{"build", "-o", out}
	if lambdaTags {
		args = append(args, "-tags", "lambda.norpc")
	}
	args = append(args, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	built[pkg] = out
	return out
}

func moduleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// Function is a bootstrap running under the RIE.
type Function struct {
	// URL is the invocation endpoint.
	URL string
	cmd *exec.Cmd
	out *syncBuffer // stdout: the function's logs, EMF lines, RIE's START/END reports
	err *syncBuffer // stderr: RIE's own diagnostics and the function's stderr
}

// Start builds pkgPath as a `bootstrap` and runs it under the RIE on a free 127.0.0.1
// port, with env as the function's environment (plus PATH, HOME, TMPDIR and defaults
// for AWS_LAMBDA_FUNCTION_NAME and AWS_LAMBDA_FUNCTION_TIMEOUT, which env overrides).
// The process is stopped when the test ends; its output is logged then if the test failed.
func Start(t testing.TB, pkgPath string, env map[string]string) *Function {
	t.Helper()
	bin := build(t, pkgPath, true)
	rie := build(t, RIEPackage, false)
	dir := t.TempDir()
	bootstrap := filepath.Join(dir, "bootstrap")
	if err := copyFile(bin, bootstrap); err != nil {
		t.Fatal(err)
	}
	rieAddr, apiAddr := freeAddr(t), freeAddr(t)
	vars := map[string]string{
		"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME"), "TMPDIR": os.TempDir(),
		"AWS_LAMBDA_FUNCTION_NAME": filepath.Base(pkgPath), "AWS_LAMBDA_FUNCTION_TIMEOUT": "60",
	}
	for k, v := range env {
		vars[k] = v
	}
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", rieAddr, "--runtime-api-address", apiAddr, bootstrap)
	cmd.Dir = dir
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	f := &Function{URL: "http://" + rieAddr + "/2015-03-31/functions/function/invocations", cmd: cmd, out: &syncBuffer{}, err: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = f.out, f.err
	if err := cmd.Start(); err != nil {
		t.Fatalf("start RIE: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("function stdout:\n%s\nfunction stderr:\n%s", f.Stdout(), f.Stderr())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", rieAddr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("RIE exited early:\n%s\n%s", f.Stdout(), f.Stderr())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("RIE did not listen on %s: %v\n%s", rieAddr, err, f.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return f
}

// FunctionError is a function's error answer (the handler returned an error or panicked).
type FunctionError struct {
	Message string `json:"errorMessage"`
	Type    string `json:"errorType"`
}

func (e *FunctionError) Error() string { return "function error " + e.Type + ": " + e.Message }

// Invoke sends payload and returns the function's answer. A function error is returned
// as *FunctionError; the RIE answering other than 200 is an error too.
func (f *Function) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("RIE answered %s: %s", resp.Status, body)
	}
	var fe FunctionError
	var probe map[string]json.RawMessage
	if json.Unmarshal(body, &probe) == nil && probe["errorMessage"] != nil && probe["errorType"] != nil && len(probe) <= 3 {
		if json.Unmarshal(body, &fe) == nil {
			return body, &fe
		}
	}
	return body, nil
}

// Stdout returns what the function (and RIE) wrote to stdout so far.
func (f *Function) Stdout() string { return f.out.String() }

// Stderr returns what was written to stderr so far.
func (f *Function) Stderr() string { return f.err.String() }

// JSONLines returns the stdout lines that are JSON objects (the function's slog lines
// and EMF documents), in order.
func (f *Function) JSONLines() []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(f.Stdout(), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			m["_raw"] = line
			out = append(out, m)
		}
	}
	return out
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
