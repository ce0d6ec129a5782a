package rules

import (
	"errors"
	"fmt"
	"regexp"
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
		if why := trustsAnyone(re.v, c); why != "" {
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
// much, or "". Besides the identities above, a URL pattern's literal beginning must name
// the host and an owner (https://github\.com/acme/…): a pattern whose owner part varies
// trusts every owner of that host.
func trustsAnyone(re string, c *regexp.Regexp) string {
	for _, id := range untrustedIdentities {
		if c.MatchString(id) {
			return "matches any identity: it also matches " + ecrname.Quote(id)
		}
	}
	prefix := literalBeginning(re)
	for _, scheme := range []string{"https://", "http://"} {
		if rest, ok := strings.CutPrefix(prefix, scheme); ok && strings.Count(rest, "/") < 2 {
			return "names no owner: its literal beginning " + ecrname.Quote(prefix) + " stops before host/owner/"
		}
	}
	return ""
}

// literalBeginning is what a pattern matches literally before its first operator, an
// unescaped dot read as the dot users mean in a host name (github.com): close enough to
// tell whether it names a host and an owner.
func literalBeginning(re string) string {
	re = strings.TrimPrefix(re, "^")
	var b strings.Builder
	for i := 0; i < len(re); i++ {
		ch := re[i]
		if i+1 < len(re) && strings.IndexByte("*+?{", re[i+1]) >= 0 {
			break // ch is repeated: not literal
		}
		switch {
		case ch == '\\' && i+1 < len(re) && strings.IndexByte(`.-/\+*?()[]{}|^$`, re[i+1]) >= 0:
			i++
			b.WriteByte(re[i])
		case strings.IndexByte(`\()[]{}|^$*+?`, ch) >= 0:
			return b.String()
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
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
