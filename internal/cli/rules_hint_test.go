package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIRuleSelectingNothing: a rule whose globs select no image (a typo, most often) is
// named in a warning by plan and sync, is in the JSON's warnings, and fails a CI plan
// (--detailed-exitcode: 1, an error of any kind) instead of passing silently.
func TestCLIRuleSelectingNothing(t *testing.T) {
	w, _ := syncWorld(t)
	dest := destination(w, "mirror/", w.ExternalID)
	f := filepath.Join(t.TempDir(), "rules.yaml")
	doc := "rules:\n  - name: team-a\n    repositories: [\"team-a/*\"]\n    destinations:\n" + dest +
		"  - name: team-b-typo\n    repositories: [\"tem-b/*\"]\n    destinations:\n" + dest +
		"  - repositories: [\"team-a/web\"]\n    tags: [\"release-*\"]\n    destinations:\n" + dest
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	warnings := []string{
		`rules[1] ("team-b-typo") selected nothing: no source image matched repositories ["tem-b/*"]`,
		`rules[2] ("rule-2") selected nothing: no source image matched repositories ["team-a/web"] and tags ["release-*"]`,
	}
	want := "ecr-replicator: warning: " + strings.Join(warnings, "\necr-replicator: warning: ") + "\n"

	r := runCLI(t, w.Ctx, nil, "plan", "--rules", f)
	if r.code != ExitOK || r.stderr != want || !strings.Contains(r.stdout, ": 0 in sync, 10 to copy\n") {
		t.Errorf("plan:\n%s\nwant stderr\n%s", r, want)
	}
	r = runCLI(t, w.Ctx, nil, "plan", "--rules", f, "--detailed-exitcode")
	if r.code != ExitFailed || r.stderr != want {
		t.Errorf("plan --detailed-exitcode: want exit %d\n%s", ExitFailed, r)
	}
	r = runCLI(t, w.Ctx, nil, "plan", "--rules", f, "-o", "json")
	var out struct{ Warnings []string }
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != ExitOK || r.stderr != "" || strings.Join(out.Warnings, "\n") != strings.Join(warnings, "\n") {
		t.Errorf("plan -o json: %v\n%s", err, r)
	}
	r = runCLI(t, w.Ctx, nil, "sync", "--rules", f)
	if r.code != ExitOK || r.stderr != want {
		t.Errorf("sync:\n%s\nwant stderr\n%s", r, want)
	}
	// Narrowed on purpose (--repositories, --tags, --since): no warning.
	r = runCLI(t, w.Ctx, nil, "plan", "--rules", f, "--repositories", "team-a/api")
	if r.code != ExitOK || r.stderr != "" {
		t.Errorf("narrowed plan:\n%s", r)
	}
}

// TestCLIRulesTypeErrors: a YAML type error says what the field must be, with an
// example, instead of yaml's "cannot unmarshal !!str … into []string".
func TestCLIRulesTypeErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ doc, want string }{
		{"rules:\n  - repositories: [\"team-a/*\"]\n    tags: v*\n    destinations:\n      - {accountId: \"222222222222\", region: us-east-1}\n",
			`line 3: tags must be a list, e.g. tags: ["v*"]`},
		{"rules:\n  - repositories: team-a/*\n    destinations:\n      - accountId: [\"222222222222\"]\n        region: us-east-1\n",
			`line 2: repositories must be a list, e.g. repositories: ["team-a/*"]; line 4: accountId must be a single value, not a list`},
		{"rules:\n  - repositories: [\"team-a/*\"]\n    destinations: 222222222222\n",
			`line 3: destinations must be a list of destinations, e.g. destinations: [{accountId: "222222222222", region: us-east-1}]`},
	} {
		f := filepath.Join(dir, "rules.yaml")
		if err := os.WriteFile(f, []byte(tc.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, t.Context(), nil, "plan", "--rules", f)
		if want := "ecr-replicator: " + f + ": rules document: " + tc.want + "\n"; r.code != ExitUsage || r.stderr != want {
			t.Errorf("%s\n%s\nwant stderr\n%s", tc.doc, r, want)
		}
	}
}
