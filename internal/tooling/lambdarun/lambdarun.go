// Package lambdarun runs a Lambda function's real `bootstrap` under the AWS Lambda
// Runtime Interface Emulator (RIE) on 127.0.0.1: it builds binaries with the Go
// toolchain, starts the emulator on free loopback ports, invokes the function over the
// emulator's HTTP API and keeps what the function printed. The end-to-end tests (through
// internal/lambdatest) and the demo use it.
package lambdarun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// RIEPackage is the emulator's main package, pinned in go.mod as a tool.
const RIEPackage = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"

// RIEVersion is the version go.mod pins (a test keeps them equal): what `go install
// RIEPackage@RIEVersion` builds where there is no module to build it in.
const RIEVersion = "v0.0.0-20261030222936-bef5c4ba774d"

// ModuleRoot is the directory of the main module's go.mod.
func ModuleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// Build compiles pkg (an import path, or "./functions/x" relative to root) for the host
// with CGO off — a function as sam.mk builds it for provided.al2023 (-trimpath, stripped,
// -tags lambda.norpc), so that what the tests and benchmarks run is what is deployed,
// down to the binary's size in memory.
func Build(ctx context.Context, root, pkg, out string, function bool) error {
	args := []string{"build", "-o", out}
	if function {
		args = append(args, "-trimpath", "-ldflags", "-s -w", "-tags", "lambda.norpc")
	}
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// Function is a bootstrap running under the RIE.
type Function struct {
	// URL is the invocation endpoint.
	URL    string
	cmd    *exec.Cmd
	out    *syncBuffer // stdout: the function's logs, EMF lines, RIE's START/END reports
	err    *syncBuffer // stderr: RIE's own diagnostics and the function's stderr
	exited chan struct{}
}

// Start runs bootstrap (copied into dir as "bootstrap") under the emulator rie, on free
// 127.0.0.1 ports, with env as the function's whole environment plus PATH, HOME, TMPDIR
// and defaults for AWS_LAMBDA_FUNCTION_NAME and AWS_LAMBDA_FUNCTION_TIMEOUT. Stop ends it.
func Start(rie, bootstrap, dir, name string, env map[string]string) (*Function, error) {
	target := filepath.Join(dir, "bootstrap")
	if err := copyFile(bootstrap, target); err != nil {
		return nil, err
	}
	rieAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	apiAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	vars := map[string]string{
		"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME"), "TMPDIR": os.TempDir(),
		"AWS_LAMBDA_FUNCTION_NAME": name, "AWS_LAMBDA_FUNCTION_TIMEOUT": "60",
	}
	for k, v := range env {
		vars[k] = v
	}
	// The emulator listens on 0.0.0.0:8080 and 127.0.0.1:9001 by default: both are
	// moved to free loopback ports, so several functions can run side by side.
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", rieAddr, "--runtime-api-address", apiAddr, target)
	cmd.Dir = dir
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	f := &Function{URL: "http://" + rieAddr + "/2015-03-31/functions/function/invocations", cmd: cmd, out: &syncBuffer{}, err: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = f.out, f.err
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start RIE: %w", err)
	}
	go func() { cmd.Wait(); close(f.exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", rieAddr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return f, nil
		}
		select {
		case <-f.exited:
			return nil, fmt.Errorf("RIE exited early:\n%s\n%s", f.Stdout(), f.Stderr())
		default:
		}
		if time.Now().After(deadline) {
			f.Stop()
			return nil, fmt.Errorf("RIE did not listen on %s: %v\n%s", rieAddr, err, f.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the emulator and waits for it to exit.
func (f *Function) Stop() {
	f.cmd.Process.Kill()
	<-f.exited
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

// Handle invokes the function as an execution environment of an in-process event
// source does (eventsource.Handler): the answer is the function's JSON.
func (f *Function) Handle(ctx context.Context, payload json.RawMessage) (any, error) {
	out, err := f.Invoke(ctx, payload)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(out), nil
}

// Pool starts a function's execution environments: each one its own emulator and
// bootstrap, as Lambda gives each concurrent invocation an environment of its own (the
// emulator runs one invocation at a time). Use New as an eventsource.Environments'
// newEnv; Stop ends them all.
type Pool struct {
	rie, bootstrap, dir, name string
	env                       map[string]string

	mu      sync.Mutex
	made    int // environments asked for, each numbering its directory
	started []*Function
	stopped bool
}

// NewPool returns a pool of bootstrap under rie with env as each function's environment
// (see Start); each environment gets a directory of its own under dir.
func NewPool(rie, bootstrap, dir, name string, env map[string]string) *Pool {
	return &Pool{rie: rie, bootstrap: bootstrap, dir: dir, name: name, env: env}
}

// New starts one more environment.
func (p *Pool) New() (*Function, error) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil, errors.New("lambdarun: pool stopped")
	}
	p.made++
	n := p.made
	p.mu.Unlock()
	dir := filepath.Join(p.dir, fmt.Sprintf("%s-%d", p.name, n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := Start(p.rie, p.bootstrap, dir, p.name, p.env)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		f.Stop()
		return nil, errors.New("lambdarun: pool stopped")
	}
	p.started = append(p.started, f)
	return f, nil
}

// Functions returns the environments started so far, oldest first.
func (p *Pool) Functions() []*Function {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Function(nil), p.started...)
}

// Stop stops every environment; New fails afterwards.
func (p *Pool) Stop() {
	p.mu.Lock()
	fns := p.started
	p.started, p.stopped = nil, true
	p.mu.Unlock()
	for _, f := range fns {
		f.Stop()
	}
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

// AwaitJSONLines returns JSONLines once done accepts them, or what there is after 10 s
// or when ctx ends. The RIE relays the function's stdout on its own schedule, so a
// line written just before the handler returned may reach us after the response.
func (f *Function) AwaitJSONLines(ctx context.Context, done func([]map[string]any) bool) []map[string]any {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		lines := f.JSONLines()
		if done(lines) {
			return lines
		}
		select {
		case <-ctx.Done():
			return lines
		case <-tick.C:
		}
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// copyFile puts from at to: a symbolic link where it can (the CLI binary the demo runs as
// its functions' bootstraps is tens of megabytes), a copy otherwise.
func copyFile(from, to string) error {
	if abs, err := filepath.Abs(from); err == nil && os.Symlink(abs, to) == nil {
		return nil
	}
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

// MaxMemoryUsed is the bootstrap's peak resident set so far, in bytes: what Lambda's
// REPORT line calls Max Memory Used (the emulator prints a placeholder there). It is
// read from /proc — the bootstrap is the emulator's child — so it needs Linux, and an
// invocation to have started the bootstrap.
func (f *Function) MaxMemoryUsed() (int64, error) {
	rie := f.cmd.Process.Pid
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, err
	}
	for _, stat := range stats {
		b, err := os.ReadFile(stat)
		if err != nil {
			continue // exited since the listing
		}
		// pid (comm) state ppid …: comm may hold spaces, so split after its ')'.
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) < 2 || fields[1] != fmt.Sprint(rie) {
			continue
		}
		status, err := os.ReadFile(filepath.Join(filepath.Dir(stat), "status"))
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(status), "\n") {
			if kb, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				var n int64
				if _, err := fmt.Sscanf(strings.TrimSpace(kb), "%d kB", &n); err != nil {
					return 0, fmt.Errorf("VmHWM %q: %w", kb, err)
				}
				return n << 10, nil
			}
		}
	}
	return 0, errors.New("lambdarun: no bootstrap process under the emulator")
}
