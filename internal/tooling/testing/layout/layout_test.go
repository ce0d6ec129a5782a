// Package layout holds the test that keeps the product apart from its tooling.
package layout

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/ecr-replicator/ecr-replicator/"

// deps lists the project's packages a program links (go list -deps), built as the given
// goos/goarch with tags (none: this machine's, as the tests build).
func deps(t *testing.T, pkg string, goos, goarch, tags string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-tags", tags, "-f", "{{.ImportPath}}", pkg)
	if goos != "" {
		cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	var own []string
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, module) {
			own = append(own, strings.TrimPrefix(p, module))
		}
	}
	return own
}

// TestFunctionsLinkOnlyProduct: the Lambda functions link the product — never anything
// under internal/tooling (the sandbox, the demo, the emulator runner, what only tests use)
// nor the CLI.
func TestFunctionsLinkOnlyProduct(t *testing.T) {
	// As sam.mk builds them (linux, both architectures the template offers, lambda.norpc)
	// and as the tests build them.
	builds := []struct{ goos, goarch, tags string }{{"linux", "arm64", "lambda.norpc"}, {"linux", "amd64", "lambda.norpc"}, {"", "", ""}}
	for _, fn := range []string{"functions/replicate", "functions/backfill", "functions/reconcile"} {
		for _, b := range builds {
			for _, p := range deps(t, "../../../../"+fn, b.goos, b.goarch, b.tags) {
				if strings.HasPrefix(p, "internal/tooling/") || p == "internal/cli" {
					t.Errorf("%s (%s/%s %s) links %s", fn, b.goos, b.goarch, b.tags, p)
				}
			}
		}
	}
}

// TestCLILinksNoTestPackages: the CLI carries the sandbox and the demo (commands of
// their own: try the product with no AWS account), never what only tests use.
func TestCLILinksNoTestPackages(t *testing.T) {
	for _, p := range deps(t, "../../../../cmd/ecr-replicator", "", "", "") {
		if strings.HasPrefix(p, "internal/tooling/testing") {
			t.Errorf("the CLI links %s", p)
		}
	}
}

// TestSandboxLinksNoFunction: the sandbox plays AWS and its stack plays template.yaml:
// they run the functions as deployed (bootstraps, an environment named as the template
// names it), never link the functions' code — what they show is what a deployment does.
func TestSandboxLinksNoFunction(t *testing.T) {
	for _, p := range deps(t, "../../sandbox/...", "", "", "") {
		switch p {
		case "internal/wiring", "internal/eventhandler", "internal/backfill", "internal/reconcile", "internal/destinations", "internal/copyengine":
			t.Errorf("the sandbox links %s", p)
		}
	}
}

// TestNoImportSkipsALayer: a push's path is message → rules → destinations → engine.
// Only destinations (the one door) and wiring (which builds the engine the functions
// share) import the copy engine; the rules depend on nothing but the names.
func TestNoImportSkipsALayer(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "../../../../...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	mayUseEngine := map[string]bool{"internal/destinations": true, "internal/wiring": true}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		if strings.HasPrefix(pkg, "internal/tooling/") || pkg == "internal/copyengine" {
			continue
		}
		seen++
		for _, imp := range fields[1:] {
			own, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			if own == "internal/copyengine" && !mayUseEngine[pkg] {
				t.Errorf("%s imports the copy engine: go through internal/destinations", pkg)
			}
			if pkg == "internal/rules" && own != "internal/ecrname" {
				t.Errorf("internal/rules imports %s: the rules depend on nothing below them", own)
			}
		}
	}
	if seen < 20 {
		t.Fatalf("go list named %d product packages; the walk is broken", seen)
	}
}
