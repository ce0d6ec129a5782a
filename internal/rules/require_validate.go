package rules

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

var notationIdentityRE = regexp.MustCompile(`^x509\.subject:\s*\S`)

// validate checks the requirement and applies its defaults.
func (r *Require) validate(path string) error {
	if r.Signatures == nil && r.Scan == nil {
		return fmt.Errorf("%s: asks for nothing (set signatures, scan or both)", path)
	}
	if s := r.Signatures; s != nil {
		if err := s.validate(path + ".signatures"); err != nil {
			return err
		}
	}
	if s := r.Scan; s != nil {
		if err := s.validate(path + ".scan"); err != nil {
			return err
		}
	}
	return nil
}

func (s *SignatureRequirement) validate(path string) error {
	if len(s.Signers) == 0 {
		return fmt.Errorf("%s.signers: at least one signer is required", path)
	}
	switch s.Platforms {
	case "":
		s.Platforms = PlatformsIndex
	case PlatformsIndex, PlatformsAll:
	default:
		return fmt.Errorf("%s.platforms: %s is neither %q nor %q", path, ecrname.Quote(s.Platforms), PlatformsIndex, PlatformsAll)
	}
	if err := validateWait(path+".wait", &s.Wait, DefaultSignatureWait); err != nil {
		return err
	}
	names := map[string]int{}
	for i := range s.Signers {
		sg := &s.Signers[i]
		p := fmt.Sprintf("%s.signers[%d]", path, i)
		if sg.Name == "" {
			sg.Name = fmt.Sprintf("signers[%d]", i)
		}
		if prev, dup := names[sg.Name]; dup {
			return fmt.Errorf("%s.name: %s is already the name of signers[%d]", p, ecrname.Quote(sg.Name), prev)
		}
		names[sg.Name] = i
		if err := sg.validate(p); err != nil {
			return err
		}
	}
	return nil
}

func (sg *Signer) validate(path string) error {
	var kinds []string
	for _, k := range []struct {
		name string
		set  bool
	}{
		{"publicKey", sg.PublicKey != ""}, {"publicKeyFile", sg.PublicKeyFile != ""}, {"kmsKey", sg.KMSKey != ""},
		{"keyless", sg.Keyless != nil}, {"notation", sg.Notation != nil},
	} {
		if k.set {
			kinds = append(kinds, k.name)
		}
	}
	if len(kinds) != 1 {
		return fmt.Errorf("%s: set exactly one of publicKey, publicKeyFile, kmsKey, keyless or notation (got %d: %s)", path, len(kinds), strings.Join(kinds, ", "))
	}
	switch {
	case sg.KMSKey != "":
		if !kmsKeyARNRE.MatchString(sg.KMSKey) || !strings.Contains(sg.KMSKey, ":key/") {
			return fmt.Errorf("%s.kmsKey: %s is not a KMS key ARN (want arn:<partition>:kms:<region>:<account>:key/<id>)", path, ecrname.Quote(sg.KMSKey))
		}
	case sg.Keyless != nil:
		return sg.Keyless.validate(path + ".keyless")
	case sg.Notation != nil:
		return sg.Notation.validate(path + ".notation")
	}
	return nil
}

func (k *Keyless) validate(path string) error {
	for _, pair := range []struct{ a, b, av, bv string }{
		{"issuer", "issuerRegExp", k.Issuer, k.IssuerRegExp},
		{"subject", "subjectRegExp", k.Subject, k.SubjectRegExp},
		{"trustedRoot", "trustedRootFile", k.TrustedRoot, k.TrustedRootFile},
	} {
		if (pair.av == "") == (pair.bv == "") {
			return fmt.Errorf("%s: set exactly one of %s and %s", path, pair.a, pair.b)
		}
	}
	for _, re := range []struct{ field, v string }{{"issuerRegExp", k.IssuerRegExp}, {"subjectRegExp", k.SubjectRegExp}} {
		if re.v == "" {
			continue
		}
		c, err := regexp.Compile(FullMatch(re.v))
		if err != nil {
			return fmt.Errorf("%s.%s: %w", path, re.field, err)
		}
		if why := trustsAnyone(re.v, c, re.field == "subjectRegExp"); why != "" {
			return fmt.Errorf("%s.%s: %s %s (it must match the whole %s, and name whom you trust)",
				path, re.field, ecrname.Quote(re.v), why, strings.TrimSuffix(re.field, "RegExp"))
		}
	}
	return nil
}

// untrustedIdentities are identities nobody means to trust — of other owners on the
// common CI providers, of another mail domain, of nowhere: a pattern matching one of them
// (.*, .+, https://github\.com/.*, a catch-all alternative) trusts far more than whom it
// names.
var untrustedIdentities = []string{
	"",
	"https://attacker.invalid/any/.github/workflows/x.yml@refs/heads/any",
	"https://github.com/attacker/evil/.github/workflows/release.yml@refs/heads/main",
	"https://github.com/attacker/evil/.github/workflows/release.yml@refs/tags/v1",
	"https://gitlab.com/attacker/evil//.gitlab-ci.yml@refs/heads/main",
	"https://token.actions.githubusercontent.com.attacker.invalid",
	"https://accounts.google.com.attacker.invalid",
	"attacker@evil.invalid",
}

// trustsAnyone says why a keyless pattern (re, compiled as c by FullMatch) trusts too
// much, or "". Besides the identities above, a subject pattern must begin with the
// identity it trusts, literally: a URL's host and owner (https://github\.com/acme/…), or
// some other literal beginning (alice@…). One whose owner part varies trusts every owner
// of that host, and one with no literal beginning — (?i), a class, an optional letter of
// the scheme — cannot be read for whom it names: refused either way. (An issuer is a host,
// and at most a path segment: it is only probed.)
func trustsAnyone(re string, c *regexp.Regexp, subject bool) string {
	for _, id := range untrustedIdentities {
		if c.MatchString(id) {
			return "matches any identity: it also matches " + ecrname.Quote(id)
		}
	}
	if !subject {
		return ""
	}
	prefix := literalBeginning(re)
	if prefix == "" {
		return "begins with no literal text: write the identity it trusts literally at its start"
	}
	for _, scheme := range []string{"https://", "http://"} {
		rest, url := strings.CutPrefix(prefix, scheme)
		if (url && strings.Count(rest, "/") < 2) || (!url && strings.HasPrefix(scheme, prefix)) {
			return "names no owner: its literal beginning " + ecrname.Quote(prefix) + " stops before scheme://host/owner/"
		}
	}
	return ""
}

// literalBeginning is what a pattern matches literally before its first operator, read
// from its syntax tree (so \Q…\E, \x2f and one-character classes count as the text they
// stand for); an unescaped dot counts as the dot users mean in a host name (github.com).
// A case-insensitive or otherwise variable beginning ends it.
func literalBeginning(re string) string {
	t, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return ""
	}
	var b strings.Builder
	literalPrefix(t.Simplify(), &b)
	return b.String()
}

// literalPrefix writes t's literal beginning to b and says whether all of t is literal
// (a concatenation then goes on with its next part).
func literalPrefix(t *syntax.Regexp, b *strings.Builder) bool {
	switch t.Op {
	case syntax.OpLiteral:
		if t.Flags&syntax.FoldCase != 0 {
			return false
		}
		b.WriteString(string(t.Rune))
		return true
	case syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		b.WriteByte('.')
		return true
	case syntax.OpCharClass:
		if len(t.Rune) == 2 && t.Rune[0] == t.Rune[1] {
			b.WriteRune(t.Rune[0])
			return true
		}
		return false
	case syntax.OpCapture:
		return literalPrefix(t.Sub[0], b)
	case syntax.OpConcat:
		for _, sub := range t.Sub {
			if !literalPrefix(sub, b) {
				return false
			}
		}
		return true
	case syntax.OpBeginLine, syntax.OpBeginText, syntax.OpEmptyMatch:
		return true
	}
	return false
}

// FullMatch makes a keyless issuerRegExp or subjectRegExp match the whole value:
// sigstore-go matches a regular expression anywhere in the certificate's value, so
// "^https://github.com/acme/app/" would trust any workflow on any ref of the repository and
// "acme" anything containing it. A pattern applies to the whole value, whether or not it
// is written with ^ and $ (docs/PROMOTION.md).
func FullMatch(re string) string {
	if re == "" {
		return ""
	}
	return `^(?:` + re + `)$`
}

func (n *Notation) validate(path string) error {
	if (n.TrustStore == "") == (n.TrustStoreFile == "") {
		return fmt.Errorf("%s: set exactly one of trustStore and trustStoreFile", path)
	}
	switch n.TrustStoreType {
	case "":
		n.TrustStoreType = "ca"
	case "ca", "signingAuthority":
	default:
		return fmt.Errorf("%s.trustStoreType: %s is neither \"ca\" nor \"signingAuthority\"", path, ecrname.Quote(n.TrustStoreType))
	}
	if len(n.TrustedIdentities) == 0 {
		return fmt.Errorf("%s.trustedIdentities: required: \"x509.subject: <distinguished name>\" entries, or [\"*\"] for any certificate of the trust store", path)
	}
	for i, id := range n.TrustedIdentities {
		if id != "*" && !notationIdentityRE.MatchString(id) {
			return fmt.Errorf("%s.trustedIdentities[%d]: %s is neither \"*\" nor \"x509.subject: <distinguished name>\"", path, i, ecrname.Quote(id))
		}
		if id == "*" && len(n.TrustedIdentities) > 1 {
			return fmt.Errorf("%s.trustedIdentities: \"*\" must be the only entry", path)
		}
	}
	return nil
}

func (s *ScanRequirement) validate(path string) error {
	if s.Severity == "" {
		return fmt.Errorf("%s.severity: required: the lowest severity that blocks (%s)", path, strings.Join(Severities, ", "))
	}
	if SeverityRank(s.Severity) < 0 {
		return fmt.Errorf("%s.severity: %s is not one of %s", path, ecrname.Quote(s.Severity), strings.Join(Severities, ", "))
	}
	s.Severity = strings.ToUpper(s.Severity)
	for i, id := range s.Allow {
		if strings.TrimSpace(id) == "" || len(id) > 256 {
			return fmt.Errorf("%s.allow[%d]: %s is not a finding ID", path, i, ecrname.Quote(id))
		}
	}
	return validateWait(path+".wait", &s.Wait, DefaultScanWait)
}

func validateWait(path string, w *Duration, def time.Duration) error {
	switch {
	case *w == 0:
		*w = Duration(def)
	case *w < 0:
		return errors.New(path + ": must be positive")
	case time.Duration(*w) > MaxWait:
		return fmt.Errorf("%s: %s is longer than %s", path, time.Duration(*w), MaxWait)
	}
	return nil
}
