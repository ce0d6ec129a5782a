package infra

import (
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// repoRoot is where sam.mk and the functions live, relative to this package.
const repoRoot = ".."

func makeCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Fatalf("make is required: %v", err)
	}
	cmd := exec.Command(mk, append([]string{"--no-print-directory", "-C", repoRoot, "-f", "sam.mk"}, args...)...)
	// The recipes' defaults are under test: ignore variables a calling make or CI may export.
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "ARCH", "GO", "SAM", "SAM_FLAGS", "ARTIFACTS_DIR", "SAM_BUILD_DIR", "SAM_DEPLOYED", "MAKEFLAGS", "MFLAGS", "MAKELEVEL":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	return cmd
}

// TestSamMakefileRecipes checks the commands sam.mk would run (make -n), without running them.
func TestSamMakefileRecipes(t *testing.T) {
	goBuild := `CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -trimpath -ldflags "-s -w" -tags lambda.norpc -o `
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"build-ReplicateFunction", "ARTIFACTS_DIR=/tmp/art"}, []string{goBuild + "/tmp/art/bootstrap ./functions/replicate"}},
		{[]string{"build-BackfillFunction", "ARTIFACTS_DIR=/tmp/art"}, []string{goBuild + "/tmp/art/bootstrap ./functions/backfill"}},
		{[]string{"build-ReconcileFunction", "ARTIFACTS_DIR=/tmp/art"}, []string{goBuild + "/tmp/art/bootstrap ./functions/reconcile"}},
		{[]string{"build-ReplicateFunction", "ARTIFACTS_DIR=/tmp/art", "ARCH=amd64", "GO=go1.26"},
			[]string{`GOARCH=amd64 go1.26 build`}},
		{[]string{"build-functions", "SAM_BUILD_DIR=/tmp/b"}, []string{
			goBuild + "/tmp/b/ReplicateFunction/bootstrap ./functions/replicate",
			goBuild + "/tmp/b/BackfillFunction/bootstrap ./functions/backfill",
			goBuild + "/tmp/b/ReconcileFunction/bootstrap ./functions/reconcile",
		}},
		{[]string{"deploy", "SAM_DEPLOYED=/nonexistent/marker"}, []string{"sam build", "sam deploy --guided", "/nonexistent/marker"}},
		{[]string{"invoke-backfill"}, []string{"sam remote invoke BackfillFunction --event-file events/backfill.json"}},
		{[]string{"invoke-reconcile"}, []string{"sam remote invoke ReconcileFunction --event-file events/reconcile.json"}},
	}
	for _, tc := range cases {
		cmd := makeCmd(t, append([]string{"-n"}, tc.args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("make -n %v: %v\n%s", tc.args, err, out)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("make -n %v:\n%s\nwant it to contain %q", tc.args, out, w)
			}
		}
	}
	// Every function in template.yaml has the build target SAM's makefile builder calls.
	r := render(t, sourceTemplate, destination(nil))
	for name, res := range r.resources() {
		if res["Type"] != "AWS::Serverless::Function" {
			continue
		}
		if out, err := makeCmd(t, "-n", "build-"+name, "ARTIFACTS_DIR=/tmp/x").CombinedOutput(); err != nil {
			t.Errorf("no build-%s target: %v\n%s", name, err, out)
		}
	}
}

// TestBuildBootstrap builds each function the way `sam build` does and checks the result is a
// static linux/arm64 executable built with the contract's flags.
func TestBuildBootstrap(t *testing.T) {
	for _, fn := range []struct{ target, pkg string }{
		{"build-ReplicateFunction", "replicate"},
		{"build-BackfillFunction", "backfill"},
		{"build-ReconcileFunction", "reconcile"},
	} {
		t.Run(fn.target, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(repoRoot, "functions", fn.pkg, "main.go")); os.IsNotExist(err) {
				t.Skipf("functions/%s/main.go does not exist yet; this test builds it once it lands", fn.pkg)
			}
			dir := t.TempDir()
			cmd := makeCmd(t, fn.target, "ARTIFACTS_DIR="+dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("make %s: %v\n%s", fn.target, err, out)
			}
			bin := filepath.Join(dir, "bootstrap")
			st, err := os.Stat(bin)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode()&0o111 == 0 {
				t.Errorf("bootstrap is not executable: %v", st.Mode())
			}
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatalf("bootstrap is not an ELF file: %v", err)
			}
			defer f.Close()
			if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_AARCH64 || f.Type != elf.ET_EXEC {
				t.Errorf("ELF class %v machine %v type %v, want a 64-bit aarch64 executable", f.Class, f.Machine, f.Type)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Errorf("bootstrap has a %v program header: not statically linked", p.Type)
				}
			}
			if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
				t.Errorf("bootstrap needs shared libraries %v", libs)
			}
			if f.Section(".symtab") != nil {
				t.Error("bootstrap has a symbol table: not built with -ldflags \"-s -w\"")
			}
			info, err := buildinfo.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			settings := map[string]string{}
			for _, s := range info.Settings {
				settings[s.Key] = s.Value
			}
			for k, v := range map[string]string{
				"GOOS": "linux", "GOARCH": "arm64", "CGO_ENABLED": "0",
				"-trimpath": "true", "-tags": "lambda.norpc",
			} { // -ldflags is not recorded with -trimpath; the .symtab check above covers -s

				if settings[k] != v {
					t.Errorf("build setting %s = %q, want %q", k, settings[k], v)
				}
			}
			if want := "github.com/ecr-replicator/ecr-replicator/functions/" + fn.pkg; info.Path != want {
				t.Errorf("main package %s, want %s", info.Path, want)
			}
		})
	}
}
