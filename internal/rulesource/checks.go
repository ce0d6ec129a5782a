package rulesource

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// Environment that says what the deployment can do with a document: which roles it may
// assume, and which events its EventBridge rule forwards. Unset: not checked (the CLI, a
// function run by hand).
const (
	// EnvAssumableRoles lists, comma-separated, the role ARN patterns (IAM's * and ?) the
	// function may assume: the Resource of its sts:AssumeRole grant.
	EnvAssumableRoles = "DESTINATION_ROLE_ARNS"
	// EnvMirrorDeletes is "false" when the stack's event rule forwards no DELETE event
	// (template.yaml's MirrorDeletes): a rule with mirrorDeletes would never see one.
	EnvMirrorDeletes = "MIRROR_DELETES"
	// EnvRepositoryPrefixFilter is the prefix the stack's event rule forwards events of
	// (template.yaml's RepositoryPrefixFilter): a rule whose repositories all lie outside
	// it would never see a push.
	EnvRepositoryPrefixFilter = "REPOSITORY_PREFIX_FILTER"
	// EnvPromotionGates is "false" when the stack sends no scan-complete event to the
	// replicate function and grants no scan read (template.yaml's PromotionGates): a rule
	// with `require` (a promotion gate, docs/PROMOTION.md) could never pass a scan gate,
	// and its holds would wait for triggers that never come.
	EnvPromotionGates = "PROMOTION_GATES"
	// EnvSourceAccounts lists, comma-separated, the accounts whose events the stack's event
	// rule forwards (template.yaml's SourceAccountIds): a source.roleArn in another account
	// would never see an event.
	EnvSourceAccounts = "SOURCE_ACCOUNT_IDS"
)

// scope is what the deployment lets a document do.
type scope struct {
	grant         []*regexp.Regexp
	grantRaw      string
	deletesCut    bool   // MIRROR_DELETES=false: no DELETE events
	eventPrefix   string // REPOSITORY_PREFIX_FILTER
	mirrorDeletes string // the raw MIRROR_DELETES, for the error
	gatesCut      bool   // PROMOTION_GATES=false: no scan events, no scan reads
	sources       string // SOURCE_ACCOUNT_IDS
}

func newScope(getenv func(string) string) scope {
	s := scope{grantRaw: strings.TrimSpace(getenv(EnvAssumableRoles)), eventPrefix: getenv(EnvRepositoryPrefixFilter),
		sources: strings.TrimSpace(getenv(EnvSourceAccounts))}
	for _, p := range splitARNs(s.grantRaw) {
		s.grant = append(s.grant, iamPattern(p))
	}
	s.mirrorDeletes = strings.TrimSpace(getenv(EnvMirrorDeletes))
	s.deletesCut = s.mirrorDeletes == "false"
	s.gatesCut = strings.TrimSpace(getenv(EnvPromotionGates)) == "false"
	return s
}

// splitARNs splits a comma-separated list of ARNs. IAM role names and paths may hold
// commas ("+=,.@-_", https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html)
// but never a colon, so only a comma followed by "arn:" starts another ARN: the
// one-destination deployment passes its DestinationRoleArn, commas and all.
func splitARNs(list string) []string {
	var out []string
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
		case len(out) > 0 && !strings.HasPrefix(p, "arn:"):
			out[len(out)-1] += "," + p
		default:
			out = append(out, p)
		}
	}
	return out
}

// check refuses a document the deployment cannot carry out: a role outside the grant
// (every copy would be denied), a rule the event rule cannot feed (it would silently do
// nothing).
func (s scope) check(doc *rules.Document) error {
	if err := s.covered(doc); err != nil {
		return err
	}
	if s.gatesCut && doc.HasGates() {
		return fmt.Errorf("a rule has `require` (a promotion gate), but the stack was deployed without promotion gates (%s=false, the stack's PromotionGates parameter): "+
			"deploy it with PromotionGates=true, which sends scan events to the replicate function and lets held copies be re-checked", EnvPromotionGates)
	}
	if err := s.sourceForwarded(doc); err != nil {
		return err
	}
	for i, r := range doc.Rules {
		if s.deletesCut && r.MirrorDeletes {
			return fmt.Errorf("rules[%d] (%s).mirrorDeletes: the stack's event rule forwards no DELETE events (%s=%s, the stack's MirrorDeletes parameter), so no deletion would be mirrored; deploy with MirrorDeletes=true",
				i, r.Name, EnvMirrorDeletes, s.mirrorDeletes)
		}
		if s.eventPrefix != "" && !mayMatchUnder(r.Repositories, s.eventPrefix) {
			return fmt.Errorf("rules[%d] (%s).repositories: %s lie outside %s=%s (the stack's RepositoryPrefixFilter): the stack's event rule forwards no push of them",
				i, r.Name, strings.Join(r.Repositories, ", "), EnvRepositoryPrefixFilter, s.eventPrefix)
		}
	}
	return nil
}

// mayMatchUnder reports whether some repository pattern may match a name starting with
// prefix. It looks at a pattern's literal start only, so it never refuses a pattern that
// can match: "team-*/**" may match under "team-a/", "team-b/**" may not.
func mayMatchUnder(patterns []string, prefix string) bool {
	includes := 0
	for _, p := range patterns {
		if strings.HasPrefix(p, "!") {
			continue
		}
		includes++
		lit, glob := p, false
		if i := strings.IndexAny(p, `*?[{\`); i >= 0 {
			lit, glob = p[:i], true
		}
		if strings.HasPrefix(lit, prefix) || (glob && strings.HasPrefix(prefix, lit)) {
			return true
		}
	}
	return includes == 0 // only excludes: everything else
}

// sourceForwarded checks that the document's source (source.roleArn's account) is one
// whose events the stack's rule forwards. (Without source.roleArn the source is the
// function's own account, which the template's SourceIsThisAccount rule keeps in the list
// of a one-destination stack.)
func (s scope) sourceForwarded(doc *rules.Document) error {
	arn := doc.Source.RoleARN
	if s.sources == "" || arn == "" {
		return nil
	}
	acct, err := ecrname.RoleAccount(arn)
	if err != nil {
		return fmt.Errorf("source.roleArn: %w", err)
	}
	for _, a := range strings.Split(s.sources, ",") {
		if strings.TrimSpace(a) == acct {
			return nil
		}
	}
	return fmt.Errorf("source.roleArn: %s is in account %s, whose ECR events the stack's event rule does not forward (%s=%s, the stack's SourceAccountIds parameter): add the account to it",
		ecrname.Quote(arn), acct, EnvSourceAccounts, s.sources)
}

// covered checks that every role the document names is within the grant.
func (s scope) covered(doc *rules.Document) error {
	if len(s.grant) == 0 {
		return nil
	}
	check := func(path, arn string) error {
		if arn == "" {
			return nil
		}
		for _, g := range s.grant {
			if g.MatchString(arn) {
				return nil
			}
		}
		return fmt.Errorf("%s: %s is not a role this function may assume (%s: %s; the stack's DestinationRoleArns parameter)",
			path, ecrname.Quote(arn), EnvAssumableRoles, s.grantRaw)
	}
	if err := check("source.roleArn", doc.Source.RoleARN); err != nil {
		return err
	}
	for i, r := range doc.Rules {
		for j, d := range r.Destinations {
			if err := check(fmt.Sprintf("rules[%d].destinations[%d].roleArn", i, j), d.RoleARN); err != nil {
				return err
			}
		}
	}
	return nil
}

// iamPattern compiles an ARN pattern with IAM's wildcards: * any run of characters, ?
// exactly one ("IAM JSON policy elements: Resource",
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html).
func iamPattern(p string) *regexp.Regexp {
	q := regexp.QuoteMeta(p)
	q = strings.ReplaceAll(q, `\*`, `.*`)
	q = strings.ReplaceAll(q, `\?`, `.`)
	return regexp.MustCompile("^" + q + "$")
}
