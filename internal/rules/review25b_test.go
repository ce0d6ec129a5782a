package rules

import (
	"fmt"
	"regexp"
	"testing"
)

// TestReview25bCatchAllIdentityPatterns: a keyless subjectRegExp "matching any identity"
// is refused (require_validate.go), but the test is one sample identity (anyIdentity, on
// host attacker.invalid, ending in "any"): a pattern is refused only when it matches that
// string. Patterns that trust everyone a trusted root (Fulcio, for GitHub Actions) ever
// certified pass the check: one that trusts every GitHub workflow of every repository of
// every owner on any ref, and one that matches every identity but the sample (anything not
// ending in "y"). Each is checked here to match an identity of an attacker's own
// repository — and the document is still accepted.
func TestReview25bCatchAllIdentityPatterns(t *testing.T) {
	attacker := "https://github.com/attacker/evil/.github/workflows/release.yml@refs/heads/main"
	for _, pattern := range []string{`https://github\.com/.*`, `https://github\.com/.+/.+`, `.*[^y]`, `[^\x00]+[^y]`} {
		t.Run(pattern, func(t *testing.T) {
			if !regexp.MustCompile(FullMatch(pattern)).MatchString(attacker) {
				t.Fatalf("%s does not match %s: the test is wrong", pattern, attacker)
			}
			doc := fmt.Sprintf(`{"rules":[{"name":"prod","repositories":["team-a/*"],
			  "require":{"signatures":{"signers":[{"name":"ci","keyless":{"issuer":"https://token.actions.githubusercontent.com","subjectRegExp":%q,"trustedRoot":"{}"}}]}},
			  "destinations":[{"accountId":"222222222222","region":"eu-west-1"}]}]}`, pattern)
			if _, err := Parse([]byte(doc)); err == nil {
				t.Fatalf("subjectRegExp %s, which trusts %s (any workflow of any repository of any GitHub owner), was accepted", pattern, attacker)
			}
		})
	}
}
