package rules

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

const gated = `
rules:
  - name: prod
    repositories: ["team-a/*"]
    require:
      signatures:
        signers:
          - name: release
            publicKey: "PEM"
          - keyless: {issuer: https://token.actions.githubusercontent.com, subjectRegExp: "https://github.com/acme/.*", trustedRootFile: root.json}
          - notation: {trustStore: "PEM", trustedIdentities: ["x509.subject: C=US, ST=WA, O=Acme"]}
          - kmsKey: arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab
      scan: {severity: high, allow: [CVE-2024-1]}
    destinations:
      - {accountId: "222222222222", region: eu-west-1, repositoryPrefix: test/}
      - accountId: "333333333333"
        region: eu-west-1
        require:
          scan: {severity: CRITICAL, wait: 2h}
`

// TestRequire: a rule's require applies to its destinations, a destination's replaces
// it; defaults fill in.
func TestRequire(t *testing.T) {
	d := mustParse(t, gated)
	ts := d.Targets("team-a/app", "v1")
	if len(ts) != 2 {
		t.Fatalf("%d targets", len(ts))
	}
	rule, own := ts[0].Require, ts[1].Require
	if rule == nil || rule != d.Rules[0].Require || own == nil || own != d.Rules[0].Destinations[1].Require {
		t.Fatalf("requires: %+v, %+v", rule, own)
	}
	if own.Signatures != nil || own.Scan.Severity != "CRITICAL" || own.ScanWait() != 2*time.Hour {
		t.Errorf("destination's require: %+v", own.Scan)
	}
	s := rule.Signatures
	if s.Platforms != PlatformsIndex || rule.SignatureWait() != DefaultSignatureWait || rule.ScanWait() != DefaultScanWait ||
		rule.Scan.Severity != "HIGH" || s.Signers[1].Name != "signers[1]" || s.Signers[2].Notation.TrustStoreType != "ca" {
		t.Errorf("defaults: %+v %+v", s, rule.Scan)
	}
	if !ts[0].Gated() || (Target{}).Gated() {
		t.Error("Gated")
	}
	roundTrip(t, d)
}

func TestRequireErrors(t *testing.T) {
	head := "rules:\n  - destinations: [{accountId: \"222222222222\", region: eu-west-1}]\n    require:\n"
	cases := []struct{ doc, want string }{
		{"      {}", "rules[0].require: asks for nothing"},
		{"      signatures: {signers: []}", "rules[0].require.signatures.signers: at least one signer"},
		{"      signatures: {signers: [{publicKey: a, kmsKey: b}]}", "rules[0].require.signatures.signers[0]: set exactly one of publicKey, publicKeyFile, kmsKey, keyless or notation (got 2: publicKey, kmsKey)"},
		{"      signatures: {signers: [{}]}", "(got 0: )"},
		{"      signatures: {signers: [{kmsKey: alias/x}]}", "signers[0].kmsKey: \"alias/x\" is not a KMS key ARN"},
		{"      signatures: {signers: [{keyless: {issuer: a, subject: b}}]}", "keyless: set exactly one of trustedRoot and trustedRootFile"},
		{"      signatures: {signers: [{keyless: {issuer: a, issuerRegExp: b, subject: c, trustedRoot: d}}]}", "set exactly one of issuer and issuerRegExp"},
		{"      signatures: {signers: [{keyless: {issuer: a, subjectRegExp: '(', trustedRoot: d}}]}", "keyless.subjectRegExp: error parsing regexp"},
		{"      signatures: {signers: [{keyless: {issuer: a, subjectRegExp: '.*', trustedRoot: d}}]}", "keyless.subjectRegExp: \".*\" matches any identity"},
		{"      signatures: {signers: [{keyless: {issuerRegExp: 'https://token\\.actions\\.githubusercontent\\.com|.+', subject: s, trustedRoot: d}}]}", "keyless.issuerRegExp:"},
		{"      signatures: {signers: [{notation: {trustStore: a}}]}", "notation.trustedIdentities: required"},
		{"      signatures: {signers: [{notation: {trustStore: a, trustedIdentities: [\"CN=x\"]}}]}", "is neither \"*\" nor \"x509.subject: <distinguished name>\""},
		{"      signatures: {signers: [{notation: {trustStore: a, trustStoreType: tsa, trustedIdentities: [\"*\"]}}]}", "trustStoreType: \"tsa\""},
		{"      signatures: {platforms: some, signers: [{publicKey: a}]}", "platforms: \"some\" is neither \"index\" nor \"all\""},
		{"      signatures: {wait: 48h, signers: [{publicKey: a}]}", "signatures.wait: 48h0m0s is longer than 24h0m0s"},
		{"      signatures: {wait: -1m, signers: [{publicKey: a}]}", "signatures.wait: must be positive"},
		{"      signatures: {wait: soon, signers: [{publicKey: a}]}", "line 4: \"soon\" is not a duration"},
		{"      signatures: {signers: [{name: a, publicKey: a}, {name: a, publicKey: b}]}", "signers[1].name: \"a\" is already the name of signers[0]"},
		{"      scan: {allow: [x]}", "rules[0].require.scan.severity: required"},
		{"      scan: {severity: SEVERE}", "\"SEVERE\" is not one of INFORMATIONAL, LOW, MEDIUM, HIGH, CRITICAL"},
		{"      scan: {severity: HIGH, wiat: 1m}", "unknown field \"wiat\""},
		// YAML type errors are said in the document's words (typehint.go), not Go's.
		{"      signatures: {signers: {name: x}}", "line 4: signers must be a list, not a mapping"},
		{"      scan: {severity: HIGH, allow: CVE-2024-0001}", "line 4: allow must be a list, e.g. allow: [\"CVE-2024-0001\"]"},
		{"      scan: {severity: [HIGH]}", "line 4: severity must be a single value, not a list"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(head + c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n got %v\nwant %q", c.doc, err, c.want)
		}
	}
	if _, err := Parse([]byte(head[:len("rules:\n  - ")] + "referrers: false\n    " + head[len("rules:\n  - "):] + "      signatures: {signers: [{publicKey: a}]}")); err == nil ||
		!strings.Contains(err.Error(), "rules[0].referrers: false, but a promotion gate of the rule checks signatures") {
		t.Errorf("referrers false with a signature gate: %v", err)
	}
	_, err := Parse([]byte(strings.Replace(gated, "      scan: {severity: CRITICAL, wait: 2h}", "      scan: {severity: WHATEVER}", 1)))
	if err == nil || !strings.Contains(err.Error(), "rules[0].destinations[1].require.scan.severity") {
		t.Errorf("destination require: %v", err)
	}
}

// TestTwoRulesOneGatedDestination: rule order never drops a gate — a gated rule wins
// over an earlier ungated one, and two different gates for one image's destination make
// the target invalid, naming both rules; RepositoryTargets (where to look) is unchanged.
func TestTwoRulesOneGatedDestination(t *testing.T) {
	const doc = `
rules:
  - name: scanned
    repositories: ["team-a/*"]
    require: {scan: {severity: HIGH}}
    destinations:
      - {accountId: "222222222222", region: eu-west-1, repositoryPrefix: prod/}
  - name: signed
    repositories: ["team-a/*"]
    tags: ["v*"]
    require:
      signatures:
        signers: [{name: release, publicKey: "PEM"}]
    destinations:
      - {accountId: "222222222222", region: eu-west-1, repositoryPrefix: prod/}
  - name: same
    repositories: ["team-a/*"]
    tags: ["rc-*"]
    require: {scan: {severity: HIGH}}
    destinations:
      - {accountId: "222222222222", region: eu-west-1, repositoryPrefix: prod/}
`
	d, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	ts := d.Targets("team-a/app", "v1")
	if len(ts) != 1 || ts[0].Err == nil || !strings.Contains(ts[0].Err.Error(), `"scanned"`) || !strings.Contains(ts[0].Err.Error(), `"signed"`) {
		t.Fatalf("two different gates for one destination: %+v, want one invalid target naming both rules", ts)
	}
	if ts := d.Targets("team-a/app", "rc-1"); len(ts) != 1 || ts[0].Err != nil || ts[0].Rule != "scanned" {
		t.Fatalf("two equal gates: %+v, want the first rule's target", ts)
	}
	if ts := d.RepositoryTargets("team-a/app"); len(ts) != 1 || ts[0].Err != nil {
		t.Fatalf("RepositoryTargets: %+v", ts)
	}
}

// TestKeylessPatternsMatchTheWholeValue: sigstore-go matches a pattern anywhere in the
// certificate's value; FullMatch makes it the whole value, written with ^ and $ or not.
func TestKeylessPatternsMatchTheWholeValue(t *testing.T) {
	for _, c := range []struct {
		re, value string
		match     bool
	}{
		{`^https://github\.com/acme/app/`, "https://github.com/acme/app/.github/workflows/evil.yml@refs/heads/x", false},
		{`https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v.*`, "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.3", true},
		{`https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v.*`, "https://evil.example/?https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1", false},
		{`^release@example\.com$`, "release@example.com", true},
		{`release@example\.com|ops@example\.com`, "xrelease@example.com", false},
	} {
		if got := regexp.MustCompile(FullMatch(c.re)).MatchString(c.value); got != c.match {
			t.Errorf("%s against %s: %v, want %v", c.re, c.value, got, c.match)
		}
	}
}

// TestKeylessPatternsMustNameAnOwner: a URL subject pattern names the host and an owner in
// its literal beginning; one whose owner varies, or that matches an identity nobody means
// to trust, is refused when the document is read.
func TestKeylessPatternsMustNameAnOwner(t *testing.T) {
	for re, ok := range map[string]bool{
		`https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v.*`: true,
		`https://github.com/acme/.*`:                            true,
		`^https://gitlab\.com/acme/infra//\.gitlab-ci\.yml@.+$`: true,
		`alice@acme\.example`:                                   true,
		`[a-z]+@acme\.example`:                                  false, // no literal beginning: refused, fail closed
		`https://github\.com/[a-z]+/app/.*`:                     false, // any owner's app
		`https://github\.com/.*`:                                false,
		`(https://github\.com/acme/.*|.*)`:                      false,
		`https://(github|gitlab)\.com/.+`:                       false,
	} {
		k := &Keyless{Issuer: "https://token.actions.githubusercontent.com", SubjectRegExp: re, TrustedRoot: "{}"}
		if err := k.validate("k"); (err == nil) != ok {
			t.Errorf("subjectRegExp %s: %v, want accepted %v", re, err, ok)
		}
	}
}
