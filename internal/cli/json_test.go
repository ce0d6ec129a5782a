package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

var update = flag.Bool("update", false, "rewrite the golden files from the command's output")

const jsonGolden = "testdata/json-v1.golden"

// TestCLIJSONSchema: copy, copy --dry-run, plan and sync answer in one JSON shape
// (docs/CLI-JSON.md, schemaVersion 1): the same names for the same things, repositories
// named by registry host everywhere, fields only where they apply, and failures as a code
// and a one-line message — never an SDK error chain. The documents are compared with a
// golden file (go test ./internal/cli -run TestCLIJSONSchema -update rewrites it), and
// every field they use is documented.
func TestCLIJSONSchema(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Source.Push(t, "team-a/app", "v1", fixedImage(t, "app-v1"))
	w.Source.Push(t, "team-a/app", "v2", fixedImage(t, "app-v2"))
	w.Source.Push(t, "team-a/app", "multi", fixedIndex(t, "app-multi", "amd64", "arm64"))
	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID))
	src, dst := srcECR+"/team-a/app", dstECR+"/mirror/team-a/app"

	runs := []struct {
		name string
		args []string
		exit int
	}{
		{"copy one tag", append([]string{"copy", src + ":v1", dst, "-o", "json"}, role...), ExitOK},
		{"copy --dry-run --all-tags", append([]string{"copy", "--all-tags", "--dry-run", src, dst, "-o", "json"}, role...), ExitOK},
		{"copy a missing tag", append([]string{"copy", src + ":nosuch", dst, "-o", "json"}, role...), ExitFailed},
		{"plan", []string{"plan", "--rules", rules, "-o", "json"}, ExitOK},
		{"sync", []string{"sync", "--rules", rules, "-o", "json"}, ExitOK},
		{"sync in sync", []string{"sync", "--rules", rules, "-o", "json"}, ExitOK},
		{"an error", []string{"copy", src + ":v1", dstECR + "/other", "-o", "json"}, ExitUsage},
	}
	var golden strings.Builder
	fields := map[string]bool{}
	for _, run := range runs {
		r := runCLI(t, w.Ctx, nil, run.args...)
		if r.code != run.exit || r.stderr != "" {
			t.Errorf("%s: want exit %d and an empty stderr\n%s", run.name, run.exit, r)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Fatalf("%s: not one JSON document: %v\n%s", run.name, err, r.stdout)
		}
		if doc["schemaVersion"] != float64(1) {
			t.Errorf("%s: schemaVersion %v, want 1", run.name, doc["schemaVersion"])
		}
		collectFields(doc, "", fields)
		for _, m := range messages(doc) {
			if strings.Contains(m, "operation error") || strings.Contains(m, "RequestID") || strings.Contains(m, "https://") || strings.Contains(m, "127.0.0.1") {
				t.Errorf("%s: a field carries an SDK error chain or an endpoint: %q", run.name, m)
			}
		}
		fmt.Fprintf(&golden, "## %s (exit %d)\n%s\n", run.name, r.code, volatile.ReplaceAllString(r.stdout, `"$1": 0`))
	}
	if *update {
		if err := os.WriteFile(jsonGolden, []byte(golden.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(jsonGolden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got := golden.String(); got != string(want) {
		t.Errorf("JSON output differs from %s (-update rewrites it after a deliberate change, which also needs docs/CLI-JSON.md and a schemaVersion decision):\n%s", jsonGolden, lineDiff(string(want), got))
	}

	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "CLI-JSON.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Za-z.\\[\\]]+)`").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	for f := range fields {
		if !documented[f] {
			t.Errorf("field %s is not in docs/CLI-JSON.md's tables", f)
		}
	}
}

// volatile matches the fields that vary between runs: durations.
var volatile = regexp.MustCompile(`"(durationMs)": [0-9]+`)

// collectFields records the path of every field of v: items[].state, totals.copied.
func collectFields(v any, prefix string, into map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			into[prefix+k] = true
			collectFields(e, prefix+k+".", into)
		}
	case []any:
		for _, e := range x {
			collectFields(e, strings.TrimSuffix(prefix, ".")+"[].", into)
		}
	}
}

// messages are the string fields anywhere in v but a --debug "detail".
func messages(v any) []string {
	var out []string
	switch x := v.(type) {
	case string:
		out = append(out, x)
	case map[string]any:
		for k, e := range x {
			if k != "detail" {
				out = append(out, messages(e)...)
			}
		}
	case []any:
		for _, e := range x {
			out = append(out, messages(e)...)
		}
	}
	return out
}

// lineDiff lists the lines of got that want lacks and the other way round.
func lineDiff(want, got string) string {
	w, g := lines(want), lines(got)
	var b strings.Builder
	for _, l := range g {
		if !slices.Contains(w, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	for _, l := range w {
		if !slices.Contains(g, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	return b.String()
}
