package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// Require is a promotion gate: what an image must satisfy before it is copied to a
// destination (docs/PROMOTION.md). A rule's require applies to each of its destinations;
// a destination's own require replaces the rule's. The gate is decided from what the
// source registry holds — signatures fetched from it, scan findings from
// DescribeImageScanFindings — never from a message's fields.
type Require struct {
	Signatures *SignatureRequirement `yaml:"signatures,omitempty" json:"signatures,omitempty"`
	Scan       *ScanRequirement      `yaml:"scan,omitempty" json:"scan,omitempty"`
}

// SignatureRequirement asks for a signature by one of Signers.
type SignatureRequirement struct {
	// Signers: a signature verified against any one of them satisfies the requirement.
	Signers []Signer `yaml:"signers" json:"signers"`
	// Platforms says what an index needs: PlatformsIndex (the default) a signature of the
	// index's own digest, which names every platform by digest; PlatformsAll that and a
	// signature of each platform manifest as well (cosign sign --recursive).
	Platforms string `yaml:"platforms,omitempty" json:"platforms,omitempty"`
	// Wait is how long after its push an unsigned image is held for its signature
	// (signing usually follows the push) before it is blocked. Default DefaultSignatureWait.
	Wait Duration `yaml:"wait,omitempty" json:"wait,omitempty"`
}

// Platform modes of SignatureRequirement.Platforms.
const (
	PlatformsIndex = "index"
	PlatformsAll   = "all"
)

// Signer is one trusted identity: exactly one of its kinds is set.
type Signer struct {
	// Name labels the signer in decisions and logs (default signers[<i>]).
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// PublicKey (PEM) or PublicKeyFile: a cosign key pair's public key.
	PublicKey     string `yaml:"publicKey,omitempty" json:"publicKey,omitempty"`
	PublicKeyFile string `yaml:"publicKeyFile,omitempty" json:"publicKeyFile,omitempty"`
	// KMSKey: the ARN of an asymmetric AWS KMS key whose public key (kms:GetPublicKey)
	// verifies cosign signatures made with it (cosign sign --key awskms:///<arn>).
	KMSKey   string    `yaml:"kmsKey,omitempty" json:"kmsKey,omitempty"`
	Keyless  *Keyless  `yaml:"keyless,omitempty" json:"keyless,omitempty"`
	Notation *Notation `yaml:"notation,omitempty" json:"notation,omitempty"`
}

// Keyless trusts Sigstore keyless signatures: a short-lived certificate issued to an
// OIDC identity by a certificate authority of TrustedRoot, whose signature a
// transparency log of TrustedRoot recorded.
type Keyless struct {
	// Issuer or IssuerRegExp: the OIDC issuer in the certificate. A RegExp matches the
	// whole value (FullMatch).
	Issuer       string `yaml:"issuer,omitempty" json:"issuer,omitempty"`
	IssuerRegExp string `yaml:"issuerRegExp,omitempty" json:"issuerRegExp,omitempty"`
	// Subject or SubjectRegExp: the certificate's subject alternative name (an e-mail, a
	// workflow URI). A RegExp matches the whole value (FullMatch).
	Subject       string `yaml:"subject,omitempty" json:"subject,omitempty"`
	SubjectRegExp string `yaml:"subjectRegExp,omitempty" json:"subjectRegExp,omitempty"`
	// TrustedRoot (JSON) or TrustedRootFile: a Sigstore trusted_root.json (certificate
	// authorities, transparency logs, CT logs, timestamp authorities), supplied by the
	// user: nothing is fetched.
	TrustedRoot     string `yaml:"trustedRoot,omitempty" json:"trustedRoot,omitempty"`
	TrustedRootFile string `yaml:"trustedRootFile,omitempty" json:"trustedRootFile,omitempty"`
}

// Notation trusts Notary Project signatures (notation sign; ECR managed signing with AWS
// Signer) whose certificate chains to TrustStore and matches TrustedIdentities.
type Notation struct {
	// TrustStore (PEM certificates) or TrustStoreFile: the roots.
	TrustStore     string `yaml:"trustStore,omitempty" json:"trustStore,omitempty"`
	TrustStoreFile string `yaml:"trustStoreFile,omitempty" json:"trustStoreFile,omitempty"`
	// TrustStoreType: "ca" (default) or "signingAuthority", as a Notation trust policy's
	// trust store prefix.
	TrustStoreType string `yaml:"trustStoreType,omitempty" json:"trustStoreType,omitempty"`
	// TrustedIdentities as in a Notation trust policy: "x509.subject: <DN>" entries, or
	// ["*"] for any certificate chaining to the trust store.
	TrustedIdentities []string `yaml:"trustedIdentities" json:"trustedIdentities"`
}

// ScanRequirement asks for a completed vulnerability scan (basic or enhanced) with no
// finding at or above Severity, except those in Allow.
type ScanRequirement struct {
	// Severity is the lowest severity that blocks: CRITICAL, HIGH, MEDIUM, LOW or
	// INFORMATIONAL.
	Severity string `yaml:"severity" json:"severity"`
	// Allow lists finding IDs that never block (a CVE ID as ECR names the finding).
	Allow []string `yaml:"allow,omitempty" json:"allow,omitempty"`
	// Wait is how long after its push an image whose scan has not completed is held
	// before it is blocked. Default DefaultScanWait.
	Wait Duration `yaml:"wait,omitempty" json:"wait,omitempty"`
}

// Defaults and bounds of the waits.
const (
	DefaultSignatureWait = 10 * time.Minute
	DefaultScanWait      = 30 * time.Minute
	MaxWait              = 24 * time.Hour
)

// Severities in increasing order, as ECR reports them
// (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_ImageScanFinding.html).
var Severities = []string{"INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"}

// SeverityRank orders a severity (-1: not one ECR reports, such as UNDEFINED or
// UNTRIAGED).
func SeverityRank(s string) int {
	for i, v := range Severities {
		if strings.EqualFold(v, s) {
			return i
		}
	}
	return -1
}

// Duration is a time.Duration written as text ("30m", "1h").
type Duration time.Duration

// UnmarshalYAML reads a duration such as "30m".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as \"30m\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %s is not a duration (e.g. \"90s\", \"30m\", \"2h\")", n.Line, ecrname.Quote(s))
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as text.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalJSON writes the duration as text.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Gated says whether the target has a promotion gate.
func (t Target) Gated() bool { return t.Require != nil }

// shadowedGate settles one image's destination repository reached by two rules: first
// (rules[i]) before later (rules[k]). Rule order decides everything else, but never
// drops a gate (docs/PROMOTION.md, "Two rules, one destination"): the gated target wins
// over an ungated one; two different gates cannot be ordered (signers of one, a severity
// of the other), so the target is refused — not copied, reported naming both rules — rather
// than promoted on one of them.
func (d *Document) shadowedGate(first Target, i int, later Target, k int) (Target, int) {
	switch {
	case later.Require == nil || reflect.DeepEqual(first.Require, later.Require):
		return first, i
	case first.Require == nil:
		return later, k
	}
	first.Err = fmt.Errorf("rules[%d] (%s) and rules[%d] (%s) both send this image to %s with different promotion gates: "+
		"not copied; give one destination one gate (docs/PROMOTION.md)", i, ecrname.Quote(d.Rules[i].Name), k, ecrname.Quote(d.Rules[k].Name), first.Repo())
	return first, i
}

// SignatureWait is the requirement's wait, or 0 when it asks for no signature.
func (r *Require) SignatureWait() time.Duration {
	if r == nil || r.Signatures == nil {
		return 0
	}
	return time.Duration(r.Signatures.Wait)
}

// ScanWait is the requirement's wait, or 0 when it asks for no scan.
func (r *Require) ScanWait() time.Duration {
	if r == nil || r.Scan == nil {
		return 0
	}
	return time.Duration(r.Scan.Wait)
}

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
		if c.MatchString(anyIdentity) || c.MatchString("") {
			return fmt.Errorf("%s.%s: %s matches any identity (it must match the whole %s, and name whom you trust)",
				path, re.field, ecrname.Quote(re.v), strings.TrimSuffix(re.field, "RegExp"))
		}
	}
	return nil
}

// anyIdentity is an identity nobody means to trust: a pattern matching it (.*, .+, a
// catch-all alternative) trusts everyone a trusted root ever certified.
const anyIdentity = "https://attacker.invalid/any/.github/workflows/x.yml@refs/heads/any"

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

// Gated reports whether a rule selecting repo gates any of its destinations: then a
// signature pushed to repo, or a scan of one of its images ending, may decide a copy a
// gate holds (docs/PROMOTION.md).
func (d *Document) Gated(repo string) bool {
	for i := range d.Rules {
		r := &d.Rules[i]
		if !r.MatchesRepository(repo) {
			continue
		}
		if r.Require != nil {
			return true
		}
		for j := range r.Destinations {
			if r.Destinations[j].Require != nil {
				return true
			}
		}
	}
	return false
}

// HasGates reports whether any rule or destination has a promotion gate.
func (d *Document) HasGates() bool {
	for i := range d.Rules {
		if d.Rules[i].Require != nil {
			return true
		}
		for _, dst := range d.Rules[i].Destinations {
			if dst.Require != nil {
				return true
			}
		}
	}
	return false
}

// HasSigners reports whether any promotion gate requires signatures: verifying them
// needs the signers compiled (internal/gate/verify).
func (d *Document) HasSigners() bool {
	for i := range d.Rules {
		if r := d.Rules[i].Require; r != nil && r.Signatures != nil {
			return true
		}
		for _, dst := range d.Rules[i].Destinations {
			if dst.Require != nil && dst.Require.Signatures != nil {
				return true
			}
		}
	}
	return false
}

// CosignSubject is the digest a cosign tag (sha256-<hex>.sig, .att, .sbom) is about.
func CosignSubject(tag string) (string, bool) {
	if !IsCosignTag(tag) {
		return "", false
	}
	hex, _, _ := strings.Cut(strings.TrimPrefix(tag, "sha256-"), ".")
	return "sha256:" + hex, true
}

// referrersFollowGates refuses a rule that verifies signatures but does not copy them:
// the signatures travel with the image so that the next stage of a chain verifies the
// same ones (docs/PROMOTION.md).
func (r *Rule) referrersFollowGates(path string) error {
	if r.Referrers {
		return nil
	}
	signed := r.Require != nil && r.Require.Signatures != nil
	for _, d := range r.Destinations {
		signed = signed || (d.Require != nil && d.Require.Signatures != nil)
	}
	if signed {
		return fmt.Errorf("%s.referrers: false, but a promotion gate of the rule checks signatures, which are copied with the image so that the next stage verifies them too: remove referrers: false", path)
	}
	return nil
}
