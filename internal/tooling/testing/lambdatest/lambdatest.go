// Package lambdatest runs a Lambda function's real `bootstrap` under the AWS Lambda
// Runtime Interface Emulator for end-to-end tests (see internal/tooling/lambdarun): binaries are
// built once per test process, the function is stopped when the test ends, and its
// output is logged if the test failed.
//
// Call Main from TestMain to remove the build cache when the tests end.
package lambdatest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/lambdarun"
)

// Function is a bootstrap running under the RIE.
type Function = lambdarun.Function

// FunctionError is a function's error answer.
type FunctionError = lambdarun.FunctionError

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

// build compiles pkg once per test process and returns the binary's path.
func build(t testing.TB, pkg string, function bool) string {
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
	root, err := lambdarun.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(cacheDir, fmt.Sprintf("bin%d", len(built)), filepath.Base(pkg))
	if err := lambdarun.Build(context.Background(), root, pkg, out, function); err != nil {
		t.Fatal(err)
	}
	built[pkg] = out
	return out
}

// Start builds pkgPath as a `bootstrap` and runs it under the RIE with env as the
// function's environment. The process is stopped when the test ends.
func Start(t testing.TB, pkgPath string, env map[string]string) *Function {
	t.Helper()
	bin := build(t, pkgPath, true)
	rie := build(t, lambdarun.RIEPackage, false)
	f, err := lambdarun.Start(rie, bin, t.TempDir(), filepath.Base(pkgPath), env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Stop()
		if t.Failed() {
			t.Logf("function stdout:\n%s\nfunction stderr:\n%s", f.Stdout(), f.Stderr())
		}
	})
	return f
}

// Pool builds pkgPath as a `bootstrap` and returns a pool of execution environments of
// it under the RIE (lambdarun.Pool), for an event source invoking several at once. They
// are stopped when the test ends.
func Pool(t testing.TB, pkgPath string, env map[string]string) *lambdarun.Pool {
	t.Helper()
	bin := build(t, pkgPath, true)
	rie := build(t, lambdarun.RIEPackage, false)
	p := lambdarun.NewPool(rie, bin, t.TempDir(), filepath.Base(pkgPath), env)
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			for i, f := range p.Functions() {
				t.Logf("environment %d stdout:\n%s\nstderr:\n%s", i, f.Stdout(), f.Stderr())
			}
		}
	})
	return p
}
