package rules

import (
	"strings"
	"testing"
)

// TestReview25UngatedRuleShadowsAGate: the same destination repository reached by two
// rules is copied once, "the first rule reaching a repository decides" — with promotion
// gates that silently drops the gate. A platform team's catch-all mirror listed before
// the gated release rule to the same destination (the usual order: general first,
// specific after) sends every v* image there ungated: unsigned, unscanned, and nothing
// says so (the document parses, no target is gated, no ConfigurationErrors). The gate
// should hold whichever rule comes first — the strictest requirement wins, or the
// document is refused, naming both rules.
func TestReview25UngatedRuleShadowsAGate(t *testing.T) {
	const doc = `
rules:
  - name: mirror-all
    repositories: ["team-a/*"]
    destinations:
      - {accountId: "222222222222", region: eu-west-1, repositoryPrefix: prod/}
  - name: release
    repositories: ["team-a/*"]
    tags: ["v*"]
    require:
      signatures:
        signers: [{name: release, publicKey: "PEM"}]
      scan: {severity: HIGH}
    destinations:
      - {accountId: "222222222222", region: eu-west-1, repositoryPrefix: prod/}
`
	d, err := Parse([]byte(doc))
	if err != nil {
		if !strings.Contains(err.Error(), "mirror-all") && !strings.Contains(err.Error(), "release") && !strings.Contains(err.Error(), "rules[1]") {
			t.Fatalf("refused, but not for the shadowed gate: %v", err)
		}
		return // refused, naming the rules: the shadowed gate is reported
	}
	ts := d.Targets("team-a/app", "v1.2.3")
	if len(ts) != 1 {
		t.Fatalf("%d targets for team-a/app:v1.2.3", len(ts))
	}
	if !ts[0].Gated() {
		t.Fatalf("team-a/app:v1.2.3 goes to %s by rule %q without the gate rule %q puts on that destination: the gate is silently bypassed",
			ts[0].Repo(), ts[0].Rule, d.Rules[1].Name)
	}
}
