// Package ecrname names what ecr-replicator works with — a registry (account and
// region) and a repository in it, as one value type (Registry, Repo) — and validates
// the identifiers it accepts from configuration, events and requests: repository
// names, tags, digests, account IDs, regions, IAM role ARNs, STS external IDs and
// repository prefixes.
//
// Every check runs before an identifier is used to build a URL, an ARN or a
// destination repository name, so a hostile or mistyped value is rejected at
// the edge instead of surfacing as a confusing registry error later.
//
// Errors start with the quoted offending value (truncated) — an external ID's with
// "(value not shown)" — and say what was expected, so callers can prefix them with a
// field path:
//
//	rules[0].destinations[1].accountId: "2222" is not a 12-digit AWS account ID
package ecrname

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalid is matched (errors.Is) by every error this package returns.
var ErrInvalid = errors.New("invalid identifier")

// Error describes one invalid value.
type Error struct {
	Value  string // the offending value, untruncated; empty when Hidden
	Reason string // e.g. "is not a valid digest (want sha256:<64 hex>)"
	Hidden bool   // the value is not kept or shown (an external ID), only what is wrong with it
}

func (e *Error) Error() string {
	if e.Hidden {
		return "(value not shown) " + e.Reason
	}
	return Quote(e.Value) + " " + e.Reason
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

func invalid(v, reason string) error { return &Error{Value: v, Reason: reason} }

// maxQuoted keeps error messages (and log lines) bounded when an attacker or
// a broken producer sends a huge value.
const maxQuoted = 80

// Quote returns v as a Go-quoted string, truncated to about 80 bytes on a
// rune boundary, with "..." appended when truncated.
func Quote(v string) string {
	if len(v) <= maxQuoted {
		return strconv.Quote(v)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return strconv.Quote(v[:cut]) + "..."
}

// RepositoryPattern is ECR's current repository-name pattern (length 2-256), e.g.
// https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_InitiateLayerUpload.html
// (repositoryName): components of [a-z0-9] joined by '.', '_', '__' or runs of '-', so
// "my__app" and "team--app" are valid — it is also the OCI distribution-spec name
// grammar. The older [._-]-only pattern refused them.
const RepositoryPattern = `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`

var repositoryRE = regexp.MustCompile(`^` + RepositoryPattern + `$`)

// MinRepositoryLen and MaxRepositoryLen are ECR's bounds on repository names.
const (
	MinRepositoryLen = 2
	MaxRepositoryLen = 256
)

// Repository validates an ECR repository name.
func Repository(name string) error {
	if len(name) < MinRepositoryLen || len(name) > MaxRepositoryLen {
		return invalid(name, "is not a valid ECR repository name (want 2-256 characters, got "+strconv.Itoa(len(name))+")")
	}
	if !repositoryRE.MatchString(name) {
		return invalid(name, "is not a valid ECR repository name (want [a-z0-9] words joined by '.', '_', '__' or dashes, split by '/')")
	}
	return nil
}

// Tag lengths: ECR's PutImage takes tags of 1-300 characters (API_PutImage, imageTag,
// https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_PutImage.html); the
// registry API, whose tag grammar is the OCI distribution spec's ("Pulling manifests",
// [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127},
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md), at most 128: a
// longer tag is read and written through the ECR API.
const (
	MaxTagLen         = 300
	MaxRegistryTagLen = 128
)

var tagRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,299}$`)

// Tag validates an image tag.
func Tag(tag string) error {
	if !tagRE.MatchString(tag) {
		return invalid(tag, "is not a valid image tag (want [a-zA-Z0-9_][a-zA-Z0-9._-]{0,299})")
	}
	return nil
}

var digestRE = regexp.MustCompile(`^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$`)

// Digest validates a content digest. ECR computes sha256 digests; sha512 is
// accepted because OCI registers it and an image could carry one.
func Digest(d string) error {
	if !digestRE.MatchString(d) {
		return invalid(d, "is not a valid digest (want sha256:<64 lowercase hex> or sha512:<128 lowercase hex>)")
	}
	return nil
}

var accountRE = regexp.MustCompile(`^[0-9]{12}$`)

// AccountID validates a 12-digit AWS account ID.
func AccountID(id string) error {
	if !accountRE.MatchString(id) {
		return invalid(id, "is not a 12-digit AWS account ID")
	}
	return nil
}

// Guessed from the published region names (us-east-1, us-gov-west-1,
// cn-north-1, eu-central-2, ap-southeast-5, eusc-de-east-1); AWS documents
// no grammar. Existence is not checked, so new regions work without a
// release.
var regionRE = regexp.MustCompile(`^[a-z]{2,4}(?:-[a-z]+)+-[0-9]+$`)

// Region validates the shape of an AWS region name.
func Region(r string) error {
	if len(r) > 64 || !regionRE.MatchString(r) {
		return invalid(r, "is not a valid AWS region (want e.g. us-east-1)")
	}
	return nil
}

// Partitions are the AWS partitions a role ARN may name.
var Partitions = []string{"aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f", "aws-eusc"}

// Role paths are "/" or /segment/.../ of printable ASCII (0x21-0x7E), role
// names [\w+=,.@-]{1,64}:
// https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html
// The 2048 limit is AssumeRole's RoleArn bound:
// https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
var roleARNRE = regexp.MustCompile(`^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b|aws-iso-e|aws-iso-f|aws-eusc):iam::([0-9]{12}):role/(?:[\x21-\x2E\x30-\x7E]+/)*[\w+=,.@-]{1,64}$`)

// RoleARN validates an IAM role ARN such as
// arn:aws:iam::222222222222:role/path/name.
func RoleARN(arn string) error {
	_, err := RoleAccount(arn)
	return err
}

// RoleAccount validates arn like RoleARN and returns the account that owns
// the role.
func RoleAccount(arn string) (string, error) {
	if len(arn) > 2048 {
		return "", invalid(arn, "is not a valid IAM role ARN (longer than 2048 characters)")
	}
	m := roleARNRE.FindStringSubmatch(arn)
	if m == nil {
		return "", invalid(arn, "is not a valid IAM role ARN (want arn:<partition>:iam::<12-digit account>:role/[path/]name, partition one of "+strings.Join(Partitions, ", ")+")")
	}
	return m[2], nil
}

// https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
// (ExternalId: length 2-1224, pattern [\w+=,.@:\/-]*).
// Go's regexp caps repeat counts at 1000, so the length is checked apart.
var externalIDRE = regexp.MustCompile(`^[\w+=,.@:/-]+$`)

// ExternalID validates an STS AssumeRole external ID. Its error says what is wrong (the
// length, or which character and where) without the value: the error is logged and
// returned by every invocation while the document stands, and the external ID has no
// business in the functions' logs, whoever may read the role's trust policy.
func ExternalID(s string) error {
	const want = "; STS accepts 2-1224 characters of [A-Za-z0-9_+=,.@:/-]"
	if n := utf8.RuneCountInString(s); n < 2 || n > 1224 {
		return &Error{Hidden: true, Reason: fmt.Sprintf("is not a valid STS external ID: %d character(s)%s", n, want)}
	}
	if externalIDRE.MatchString(s) {
		return nil
	}
	i := 0
	for _, r := range s {
		i++
		if !externalIDRE.MatchString(string(r)) {
			return &Error{Hidden: true, Reason: "is not a valid STS external ID: character " + strconv.Itoa(i) + " is " + characterClass(r) + want}
		}
	}
	return &Error{Hidden: true, Reason: "is not a valid STS external ID" + want} // not reached: some rune did not match
}

// characterClass names a character an external ID cannot hold, without quoting the
// characters around it.
func characterClass(r rune) string {
	switch {
	case r == ' ':
		return "a space"
	case unicode.IsSpace(r):
		return fmt.Sprintf("whitespace (%U)", r)
	case unicode.IsControl(r):
		return fmt.Sprintf("a control character (%U)", r)
	case r >= utf8.RuneSelf:
		return fmt.Sprintf("a non-ASCII character (%U)", r)
	}
	return strconv.QuoteRune(r)
}

// RepositoryPrefix validates a prefix that is prepended verbatim to a source
// repository name to form a destination name. Empty means no prefix.
//
// Besides forming valid names, a prefix must not let a name escape into a
// namespace the operator did not mean: no leading "/", no "..", "//" or
// uppercase (ECR would reject uppercase anyway, but saying so here gives a
// clearer error at config time).
func RepositoryPrefix(p string) error {
	if p == "" {
		return nil
	}
	switch {
	case strings.HasPrefix(p, "/"):
		return invalid(p, "is not a valid repository prefix (must not start with '/')")
	case strings.Contains(p, ".."):
		return invalid(p, "is not a valid repository prefix (must not contain '..')")
	case strings.Contains(p, "//"):
		return invalid(p, "is not a valid repository prefix (must not contain '//')")
	case strings.ToLower(p) != p:
		return invalid(p, "is not a valid repository prefix (must be lowercase)")
	}
	// ECR names are at most 256 bytes, so the prefix must leave room for at
	// least one character of the source name.
	if len(p) >= MaxRepositoryLen {
		return invalid(p, "is not a valid repository prefix (must be shorter than 256 characters)")
	}
	if Repository(p+"x") != nil {
		return invalid(p, "is not a valid repository prefix (prefix+name must be a valid ECR repository name, e.g. \"mirror/\" or \"mirror-\")")
	}
	return nil
}
