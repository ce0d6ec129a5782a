package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// MaxDocumentSize bounds the rules document. 256 KiB is far more than any
// real rules set needs and keeps a bad environment variable or file from
// costing memory in every cold start.
const MaxDocumentSize = 256 << 10

// Environment variables read by Load.
const (
	EnvRules     = "REPLICATION_RULES"      // the document itself
	EnvRulesFile = "REPLICATION_RULES_FILE" // path to the document
)

// The raw* types mirror the document with pointers where absent must mean
// "default" rather than false.
type rawDocument struct {
	Source *Source    `yaml:"source"`
	Rules  []*rawRule `yaml:"rules"`
}

type rawRule struct {
	Name          string   `yaml:"name"`
	Repositories  []string `yaml:"repositories"`
	Tags          []string `yaml:"tags"`
	Untagged      *bool    `yaml:"untagged"`
	Referrers     *bool    `yaml:"referrers"`
	MirrorDeletes *bool    `yaml:"mirrorDeletes"`
	// DeleteImmutableTags lets delete mirroring remove a tag the destination keeps
	// immutable (default false: kept, reported kept-immutable).
	DeleteImmutableTags *bool             `yaml:"deleteImmutableTags"`
	Require             *Require          `yaml:"require"`
	Destinations        []*rawDestination `yaml:"destinations"`
}

type rawDestination struct {
	AccountID             string   `yaml:"accountId"`
	Region                string   `yaml:"region"`
	RoleARN               string   `yaml:"roleArn"`
	ExternalID            string   `yaml:"externalId"`
	RepositoryPrefix      string   `yaml:"repositoryPrefix"`
	CreateRepository      *bool    `yaml:"createRepository"`
	KMSKey                string   `yaml:"kmsKey"`
	MirrorLifecyclePolicy *bool    `yaml:"mirrorLifecyclePolicy"`
	MirrorRepositoryTags  *bool    `yaml:"mirrorRepositoryTags"`
	Require               *Require `yaml:"require"`
}

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// Parse decodes and validates a rules document in YAML or JSON (JSON is a
// subset of YAML, so one strict parser serves both).
func Parse(data []byte) (*Document, error) {
	if len(data) > MaxDocumentSize {
		return nil, fmt.Errorf("rules document is %d bytes, over the %d-byte (256 KiB) limit", len(data), MaxDocumentSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var raw rawDocument
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("rules document is empty")
		}
		if line, msg, ok := syntaxLine(data, err); ok {
			return nil, fmt.Errorf("rules document: line %d: %s", line, msg)
		}
		return nil, yamlError(data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("rules document: more than one YAML document (remove the '---' separator)")
	}

	doc := &Document{}
	if raw.Source != nil {
		doc.Source = *raw.Source
	}
	for i, rr := range raw.Rules {
		r, err := rr.rule(i)
		if err != nil {
			return nil, err
		}
		doc.Rules = append(doc.Rules, r)
	}
	if err := doc.Validate(); err != nil {
		return nil, err
	}
	return doc, nil
}

// rule is rules[i] with the defaults of its absent booleans applied.
func (rr *rawRule) rule(i int) (Rule, error) {
	if rr == nil {
		return Rule{}, fmt.Errorf("rules[%d]: rule is empty", i)
	}
	r := Rule{
		Name:                rr.Name,
		Repositories:        rr.Repositories,
		Tags:                rr.Tags,
		Untagged:            boolOr(rr.Untagged, true),
		Referrers:           boolOr(rr.Referrers, true),
		MirrorDeletes:       boolOr(rr.MirrorDeletes, false),
		DeleteImmutableTags: boolOr(rr.DeleteImmutableTags, false),
		Require:             rr.Require,
	}
	for j, rd := range rr.Destinations {
		if rd == nil {
			return Rule{}, fmt.Errorf("rules[%d].destinations[%d]: destination is empty", i, j)
		}
		r.Destinations = append(r.Destinations, Destination{
			AccountID:             rd.AccountID,
			Region:                rd.Region,
			RoleARN:               rd.RoleARN,
			ExternalID:            rd.ExternalID,
			RepositoryPrefix:      rd.RepositoryPrefix,
			CreateRepository:      boolOr(rd.CreateRepository, true),
			KMSKey:                rd.KMSKey,
			MirrorLifecyclePolicy: boolOr(rd.MirrorLifecyclePolicy, false),
			MirrorRepositoryTags:  boolOr(rd.MirrorRepositoryTags, false),
			Require:               rd.Require,
		})
	}
	return r, nil
}

// Load reads the document named by the environment: EnvRules holds the
// document itself, EnvRulesFile a path to it. Exactly one must be set.
func Load(getenv func(string) string, readFile func(string) ([]byte, error)) (*Document, error) {
	inline, path := getenv(EnvRules), getenv(EnvRulesFile)
	switch {
	case inline != "" && path != "":
		return nil, fmt.Errorf("both %s and %s are set; set exactly one", EnvRules, EnvRulesFile)
	case inline != "":
		doc, err := Parse([]byte(inline))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvRules, err)
		}
		return doc, nil
	case path != "":
		data, err := readFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: reading rules document: %w", EnvRulesFile, err)
		}
		doc, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", EnvRulesFile, ecrname.Quote(path), err)
		}
		return doc, nil
	}
	return nil, fmt.Errorf("no replication rules: set %s (the document) or %s (a path to it)", EnvRules, EnvRulesFile)
}

var (
	unknownFieldRE = regexp.MustCompile(`^line (\d+): field (.+) not found in type (\S+)$`)
	typeNames      = strings.NewReplacer(
		"rules.rawDocument", "the rules document",
		"*rules.rawRule", "a rule",
		"rules.rawRule", "a rule",
		"*rules.rawDestination", "a destination",
		"rules.rawDestination", "a destination",
		"rules.Source", "source",
		"*rules.Require", "require",
		"rules.Require", "require",
		"*rules.SignatureRequirement", "require.signatures",
		"rules.SignatureRequirement", "require.signatures",
		"rules.Signer", "a signer",
		"*rules.Keyless", "keyless",
		"*rules.Notation", "notation",
		"*rules.ScanRequirement", "require.scan",
		"rules.ScanRequirement", "require.scan",
		"into bool", "into a boolean (true or false)",
	)
)

// yamlError rewrites yaml.v3's errors, which name Go types, into the
// document's vocabulary: `line 7: unknown field "acountId"`, `line 3: tags must be a
// list, e.g. tags: ["v*"]`.
func yamlError(data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("rules document: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	msgs := make([]string, len(te.Errors))
	var nodes *typedNodes
	for i, m := range te.Errors {
		if sm := unknownFieldRE.FindStringSubmatch(m); sm != nil {
			m = fmt.Sprintf("line %s: unknown field %s in %s", sm[1], ecrname.Quote(sm[2]), sm[3])
		} else if sm := typeErrorRE.FindStringSubmatch(m); sm != nil {
			if nodes == nil {
				nodes = newTypedNodes(data)
			}
			if said, ok := nodes.mismatch(sm[1], sm[2], sm[3], sm[4]); ok {
				m = said
			}
		}
		msgs[i] = typeNames.Replace(m)
	}
	return fmt.Errorf("rules document: %s", strings.Join(msgs, "; "))
}

// typeErrorRE is yaml.v3's "line 3: cannot unmarshal !!str `v*` into []string".
var typeErrorRE = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")

// ruleNameRE keeps rule names safe to put in logs, metrics dimensions and
// work items. AWS imposes nothing here; the limit is our choice.
var ruleNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// kmsKeyARNRE is a KMS key ARN (AWS KMS developer guide, "Key identifiers (KeyId)").
var kmsKeyARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:kms:([a-z0-9-]+):([0-9]{12}):key/[A-Za-z0-9-]+$`)

// Validate checks the document, applies rule-name defaults ("rule-<index>")
// and compiles the patterns. Parse calls it; call it yourself on a
// Document built in code. Boolean defaults cannot be applied here (a false
// field is indistinguishable from an absent one), only by Parse.
func (d *Document) Validate() error {
	if d.Source.RoleARN != "" {
		if err := ecrname.RoleARN(d.Source.RoleARN); err != nil {
			return fmt.Errorf("source.roleArn: %w", err)
		}
	}
	if len(d.Rules) == 0 {
		return errors.New("rules: at least one rule is required")
	}
	names := make(map[string]int, len(d.Rules))
	for i := range d.Rules {
		r := &d.Rules[i]
		path := fmt.Sprintf("rules[%d]", i)
		if r.Name == "" {
			r.Name = fmt.Sprintf("rule-%d", i)
		}
		if !ruleNameRE.MatchString(r.Name) {
			return fmt.Errorf("%s.name: %s is not a valid rule name (want 1-64 characters of [A-Za-z0-9._-], starting with a letter or digit)", path, ecrname.Quote(r.Name))
		}
		if prev, dup := names[r.Name]; dup {
			return fmt.Errorf("%s.name: %s is already the name of rules[%d]; rule names must be unique", path, ecrname.Quote(r.Name), prev)
		}
		names[r.Name] = i
		if r.DeleteImmutableTags && !r.MirrorDeletes {
			return fmt.Errorf("%s.deleteImmutableTags: true has no effect without mirrorDeletes: true", path)
		}
		if err := r.compile(path); err != nil {
			return err
		}
		if len(r.Destinations) == 0 {
			return fmt.Errorf("%s.destinations: at least one destination is required", path)
		}
		if r.Require != nil {
			if err := r.Require.validate(path + ".require"); err != nil {
				return err
			}
		}
		if err := r.referrersFollowGates(path); err != nil {
			return err
		}
		for j := range r.Destinations {
			dpath := fmt.Sprintf("%s.destinations[%d]", path, j)
			if err := r.Destinations[j].validate(dpath); err != nil {
				return err
			}
			if req := r.Destinations[j].Require; req != nil {
				if err := req.validate(dpath + ".require"); err != nil {
					return err
				}
			}
			for k := 0; k < j; k++ {
				a, b := r.Destinations[k], r.Destinations[j]
				if a.AccountID == b.AccountID && a.Region == b.Region && a.RepositoryPrefix == b.RepositoryPrefix {
					return fmt.Errorf("%s: same accountId, region and repositoryPrefix as %s.destinations[%d]", dpath, path, k)
				}
			}
		}
	}
	return nil
}

func (dst *Destination) validate(path string) error {
	if dst.AccountID == "" {
		return fmt.Errorf("%s.accountId: required", path)
	}
	if err := ecrname.AccountID(dst.AccountID); err != nil {
		return fmt.Errorf("%s.accountId: %w", path, err)
	}
	if dst.Region == "" {
		return fmt.Errorf("%s.region: required", path)
	}
	if err := ecrname.Region(dst.Region); err != nil {
		return fmt.Errorf("%s.region: %w", path, err)
	}
	if err := dst.validateRole(path); err != nil {
		return err
	}
	if err := ecrname.RepositoryPrefix(dst.RepositoryPrefix); err != nil {
		return fmt.Errorf("%s.repositoryPrefix: %w", path, err)
	}
	if err := dst.validateKMSKey(path); err != nil {
		return err
	}
	// Settings that only apply to repositories we create do nothing when
	// creation is off; reject them rather than let the operator believe
	// they are in effect.
	if !dst.CreateRepository {
		switch {
		case dst.KMSKey != "":
			return fmt.Errorf("%s.kmsKey: has no effect when createRepository is false", path)
		case dst.MirrorLifecyclePolicy:
			return fmt.Errorf("%s.mirrorLifecyclePolicy: has no effect when createRepository is false", path)
		case dst.MirrorRepositoryTags:
			return fmt.Errorf("%s.mirrorRepositoryTags: has no effect when createRepository is false", path)
		}
	}
	return nil
}

// validateRole checks the role the destination is written with, and its external ID.
func (dst *Destination) validateRole(path string) error {
	if dst.RoleARN != "" {
		acct, err := ecrname.RoleAccount(dst.RoleARN)
		if err != nil {
			return fmt.Errorf("%s.roleArn: %w", path, err)
		}
		// The destination role is assumed to write to the destination
		// registry; a role in another account would write elsewhere (or
		// fail late with an access error).
		if acct != dst.AccountID {
			return fmt.Errorf("%s.roleArn: %s is in account %s, but accountId is %s", path, ecrname.Quote(dst.RoleARN), acct, dst.AccountID)
		}
	}
	if dst.ExternalID != "" {
		if dst.RoleARN == "" {
			return fmt.Errorf("%s.externalId: set without roleArn (an external ID only applies when assuming a role)", path)
		}
		if err := ecrname.ExternalID(dst.ExternalID); err != nil {
			return fmt.Errorf("%s.externalId: %w", path, err)
		}
	}
	return nil
}

// validateKMSKey checks the key repositories created in the destination are encrypted with.
func (dst *Destination) validateKMSKey(path string) error {
	if dst.KMSKey != "" {
		// A key ARN only: creating a repository encrypted with a customer managed key
		// needs kms:CreateGrant, kms:RetireGrant and kms:DescribeKey on that key
		// (encryption-at-rest.html), and the destination role grants them on the ARNs it
		// is given (infra/destination-role.yaml, KmsKeyArns); an alias or a key ID cannot
		// be matched against them. 2048 is CreateRepository's kmsKey length limit.
		m := kmsKeyARNRE.FindStringSubmatch(dst.KMSKey)
		if len(dst.KMSKey) > 2048 || m == nil {
			return fmt.Errorf("%s.kmsKey: %s is not a KMS key ARN (want arn:<partition>:kms:<region>:<account>:key/<id>, the ARN the destination role's KmsKeyArns grants)", path, ecrname.Quote(dst.KMSKey))
		}
		// "The KMS key must exist in the same Region as the repository"
		// (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_EncryptionConfiguration.html);
		// checking now beats a KmsException on first push.
		if m[1] != dst.Region {
			return fmt.Errorf("%s.kmsKey: key is in region %s, but the destination region is %s (ECR needs a key in the repository's region)", path, m[1], dst.Region)
		}
	}
	return nil
}
