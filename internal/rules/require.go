package rules

import (
	"encoding/json"
	"fmt"
	"reflect"
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
