package infra

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// mainMake runs the project's Makefile (which includes sam.mk, bench.mk, …).
func mainMake(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := makeCmd(t, args...)
	cmd.Args = append([]string{cmd.Args[0], "--no-print-directory", "-C", repoRoot}, args...) // not -f sam.mk
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestMakeHelpDescribesEveryTarget: `make help` gives every target of the Makefile and
// the files it includes one line saying what it does — none is left as a bare name.
func TestMakeHelpDescribesEveryTarget(t *testing.T) {
	out, err := mainMake(t, "help")
	if err != nil {
		t.Fatalf("make help: %v\n%s", err, out)
	}
	described := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] == "(others)" {
			t.Errorf("make help line without a description: %q", l)
			continue
		}
		described[f[0]] = true
	}
	targetRE := regexp.MustCompile(`(?m)^([A-Za-z][A-Za-z0-9_-]*):([^=]|$)`)
	for _, mk := range []string{"Makefile", "sam.mk", "bench.mk", "reliability.mk", "bench-latency.mk", "bench-memory.mk"} {
		data, err := os.ReadFile(repoRoot + "/" + mk)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range targetRE.FindAllStringSubmatch(string(data), -1) {
			if !described[m[1]] {
				t.Errorf("%s: target %s is not described by make help", mk, m[1])
			}
		}
	}
}

// TestMakeDeployWithoutSAM: `make deploy` on a machine without the AWS SAM CLI says how
// to get it, and builds and deploys nothing.
func TestMakeDeployWithoutSAM(t *testing.T) {
	for _, target := range []string{"deploy", "invoke-backfill", "sam-build"} {
		out, err := mainMake(t, target, "SAM=no-such-sam-cli", "SAM_DEPLOYED=/nonexistent/marker")
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Errorf("make %s without SAM: %v, want a failure\n%s", target, err, out)
		}
		const install = "https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/install-sam-cli.html"
		if !strings.Contains(out, "the AWS SAM CLI (no-such-sam-cli) is not installed") || !strings.Contains(out, install) || strings.Contains(out, "go build") {
			t.Errorf("make %s without SAM:\n%s\nwant it to say how to install SAM (%s) and build nothing", target, out, install)
		}
	}
}
