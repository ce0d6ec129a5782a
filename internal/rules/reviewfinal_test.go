package rules

import (
	"regexp"
	"testing"
)

// TestReviewFinalExactIssuerRegExpAccepted: the owner check of trustsAnyone
// (require_validate.go) is run on issuerRegExp as on subjectRegExp, but an OIDC issuer is a
// host (and at most one path segment: GitHub Enterprise's per-enterprise issuer), never
// host/owner/…: a pattern naming exactly the GitHub Actions issuer, anchored or not, is
// refused "names no owner" — a document written as docs/PROMOTION.md asks is unusable, and
// every function built from it refuses every invocation (rules.Usable).
func TestReviewFinalExactIssuerRegExpAccepted(t *testing.T) {
	for _, issuer := range []string{
		`https://token\.actions\.githubusercontent\.com`,
		`^https://token\.actions\.githubusercontent\.com$`,
		`https://token\.actions\.githubusercontent\.com/acme-enterprise`,
		`https://gitlab\.com`,
	} {
		k := &Keyless{IssuerRegExp: issuer,
			SubjectRegExp: `https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v.*`, TrustedRoot: "{}"}
		if err := k.validate("k"); err != nil {
			t.Errorf("issuerRegExp %s (exactly one issuer) refused: %v", issuer, err)
		}
	}
}

// TestReviewFinalOwnerCheckBypassedBySyntax: literalBeginning (require_validate.go) stops at
// the first character it does not read as a literal, and when that leaves no "https://" /
// "http://" beginning the owner check is skipped altogether. Ordinary syntax that changes
// nothing about what is matched — an optional "s" (https?://), a case-insensitive flag
// ((?i)), \Q…\E quoting, \x2f for a slash, a one-character class — makes a pattern that
// trusts every GitHub owner's "app" repository pass, where the same pattern written plainly
// (https://github\.com/[a-z]+/app/.*) is refused. Each pattern is checked to match an
// attacker's own repository named app.
func TestReviewFinalOwnerCheckBypassedBySyntax(t *testing.T) {
	attacker := "https://github.com/attacker/app/.github/workflows/release.yml@refs/heads/main"
	plain := &Keyless{Issuer: "https://token.actions.githubusercontent.com", SubjectRegExp: `https://github\.com/[a-z]+/app/.*`, TrustedRoot: "{}"}
	if plain.validate("k") == nil {
		t.Fatal("the plain any-owner pattern is accepted: the test is wrong")
	}
	for _, re := range []string{
		`https?://github\.com/[a-z]+/app/.*`,
		`(?i)https://github\.com/[a-z]+/app/.*`,
		`\Qhttps://github.com/\E[a-z]+/app/.*`,
		`https:\x2f\x2fgithub\.com\x2f[a-z]+\x2fapp\x2f.*`,
		`[h]ttps://github\.com/[a-z]+/app/.*`,
		`(https://github\.com/[a-z]+/app/.*)`,
	} {
		if !regexp.MustCompile(FullMatch(re)).MatchString(attacker) {
			t.Fatalf("%s does not match %s: the test is wrong", re, attacker)
		}
		k := &Keyless{Issuer: "https://token.actions.githubusercontent.com", SubjectRegExp: re, TrustedRoot: "{}"}
		if err := k.validate("k"); err == nil {
			t.Errorf("subjectRegExp %s, which trusts %s (every owner's app), was accepted", re, attacker)
		}
	}
}
