// Package rules loads and validates the replication rules document and
// answers "where does this image go?".
//
// The document is shared by every function and the CLI, so it is parsed
// strictly: unknown fields, invalid names and patterns that can never match
// are errors, because a typo must not silently disable replication. Every
// validation error is a single message that names the offending field path,
// e.g. `rules[0].destinations[1].accountId: "2222" is not a 12-digit AWS
// account ID`.
//
// Globs (docs/CONTRACT.md, "Globs") use doublestar syntax against the
// whole repository name or tag: "*" stays within one path segment, "**"
// crosses segments, "?" is one character, "{a,b}" and "[a-z]" work too. A
// leading "!" excludes, excludes win, and a list without includes means
// "everything not excluded". Note that, as in doublestar, "team/**" also
// matches the repository "team" itself.
//
// Documents must come from Parse, Load or Validate; matching on a Document
// built by hand and never validated still works (patterns are compiled on
// each call) but is slow.
package rules

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// Usable is the configuration error of a function built from doc, whose reading failed
// with err: the document's own error, or no document at all; nil when doc can be used.
// Every invocation of such a function fails with it (ConfigurationErrors).
func Usable(doc *Document, err error) error {
	switch {
	case err != nil:
		return fmt.Errorf("configuration error: invalid rules document: %w", err)
	case doc == nil:
		return errors.New("configuration error: no rules document")
	}
	return nil
}

// Document is a validated rules document with every default applied.
// Marshalling it (YAML or JSON) yields an equivalent document, except for
// restrictions added by Narrow and WithRepositoryPrefix, which have no textual form.
type Document struct {
	Source Source `yaml:"source,omitempty" json:"source,omitempty"`
	Rules  []Rule `yaml:"rules" json:"rules"`
}

// Source describes how to read the source registry.
type Source struct {
	// RoleARN, if set, is assumed to read the source repositories. It lives
	// in the source account (docs/CONTRACT.md, "Credentials and names").
	RoleARN string `yaml:"roleArn,omitempty" json:"roleArn,omitempty"`
}

// Rule selects images by repository and tag and names where they go.
type Rule struct {
	Name          string   `yaml:"name" json:"name"`
	Repositories  []string `yaml:"repositories,omitempty" json:"repositories,omitempty"`
	Tags          []string `yaml:"tags,omitempty" json:"tags,omitempty"`
	Untagged      bool     `yaml:"untagged" json:"untagged"`
	Referrers     bool     `yaml:"referrers" json:"referrers"`
	MirrorDeletes bool     `yaml:"mirrorDeletes" json:"mirrorDeletes"`
	// DeleteImmutableTags: delete mirroring may delete a destination tag that is
	// immutable (by the repository's tag mutability), and so let a later push move it.
	DeleteImmutableTags bool `yaml:"deleteImmutableTags,omitempty" json:"deleteImmutableTags,omitempty"`
	// Require is the rule's promotion gate (nil: none); a destination's own replaces it.
	Require      *Require      `yaml:"require,omitempty" json:"require,omitempty"`
	Destinations []Destination `yaml:"destinations" json:"destinations"`

	compiled    bool
	repos, tags globSet
	// Extra restrictions from Narrow; every set must match.
	narrowRepos, narrowTags []globSet
	// repoPrefix, from WithRepositoryPrefix, is what every selected repository starts with.
	repoPrefix string
}

// Destination is one registry (account, region) and how to write to it.
type Destination struct {
	AccountID             string `yaml:"accountId" json:"accountId"`
	Region                string `yaml:"region" json:"region"`
	RoleARN               string `yaml:"roleArn,omitempty" json:"roleArn,omitempty"`
	ExternalID            string `yaml:"externalId,omitempty" json:"externalId,omitempty"`
	RepositoryPrefix      string `yaml:"repositoryPrefix,omitempty" json:"repositoryPrefix,omitempty"`
	CreateRepository      bool   `yaml:"createRepository" json:"createRepository"`
	KMSKey                string `yaml:"kmsKey,omitempty" json:"kmsKey,omitempty"`
	MirrorLifecyclePolicy bool   `yaml:"mirrorLifecyclePolicy" json:"mirrorLifecyclePolicy"`
	MirrorRepositoryTags  bool   `yaml:"mirrorRepositoryTags" json:"mirrorRepositoryTags"`
	// Require is this destination's promotion gate, replacing the rule's (nil: the rule's).
	Require *Require `yaml:"require,omitempty" json:"require,omitempty"`
}

// RepositoryFor returns the destination repository name for a source
// repository: the prefix prepended verbatim. The result may be invalid (too
// long); Targets reports that.
func (d Destination) RepositoryFor(sourceRepository string) string {
	return d.RepositoryPrefix + sourceRepository
}

// Registry is the destination's registry.
func (d Destination) Registry() ecrname.Registry {
	return ecrname.Registry{AccountID: d.AccountID, Region: d.Region}
}

// Target is one copy to make: an image in a source repository goes to
// Destination under Repository.
type Target struct {
	Rule          string      // name of the rule that selected it (the first, if several did)
	Destination   Destination //
	Repository    string      // destination repository name: prefix + source name
	Referrers     bool        // copy OCI referrers and cosign sha256-*.sig/.att/.sbom tags
	MirrorDeletes bool        //
	// DeleteImmutableTags: delete mirroring may delete an immutable destination tag.
	DeleteImmutableTags bool
	Untagged            bool // the rule replicates digest-only images
	// Require is the promotion gate of the copy (nil: none): the destination's, or else
	// the rule's. A gated target promotes tagged images only (docs/PROMOTION.md).
	Require *Require
	// Err is non-nil when the destination repository name is not a valid
	// ECR name (prefix + source name too long, typically). Such a target
	// must not be copied; it is returned so the caller can report it.
	Err error
}

// Repo is the destination repository. Two targets with the same Repo are the same copy.
func (t Target) Repo() ecrname.Repo {
	return ecrname.Repo{Registry: t.Destination.Registry(), Name: t.Repository}
}

// SourceRoleARN returns source.roleArn, or "" to use the caller's own
// credentials.
func (d *Document) SourceRoleARN() string { return d.Source.RoleARN }

// cosignTagRE matches the tags cosign attaches to an image: the subject's
// digest with ':' replaced by '-', plus .sig, .att or .sbom
// (https://github.com/sigstore/cosign/blob/main/specs/SIGNATURE_SPEC.md).
var cosignTagRE = regexp.MustCompile(`^sha256-[a-f0-9]{64}\.(?:sig|att|sbom)$`)

// IsCosignTag reports whether tag is a cosign signature, attestation or
// SBOM tag.
func IsCosignTag(tag string) bool { return cosignTagRE.MatchString(tag) }

// MatchesRepository reports whether the rule selects the source repository.
func (r *Rule) MatchesRepository(repo string) bool {
	if !r.compiled {
		c := *r
		if c.compile("rule") != nil {
			return false
		}
		r = &c
	}
	if !strings.HasPrefix(repo, r.repoPrefix) || !r.repos.match(repo) {
		return false
	}
	for i := range r.narrowRepos {
		if !r.narrowRepos[i].match(repo) {
			return false
		}
	}
	return true
}

// MatchesTag reports whether the rule selects an image pushed with tag.
//
//   - tag "" is a digest-only image: selected iff untagged is true (and no
//     Narrow tag list has include patterns — a request for specific tags
//     does not ask for untagged images; that is our reading, not a spec).
//   - A cosign tag (IsCosignTag) is selected iff referrers is true,
//     whatever the rule's tag globs say: the signature of a "v1" image is
//     tagged sha256-….sig, which a "v*" glob would never match. This can
//     copy signatures of images outside the tag scope; we accept that
//     (guess: nobody wants signatures dropped). Narrow tag lists do apply.
//   - Otherwise the rule's tag globs decide.
func (r *Rule) MatchesTag(tag string) bool {
	if !r.compiled {
		c := *r
		if c.compile("rule") != nil {
			return false
		}
		r = &c
	}
	switch {
	case tag == "":
		if !r.Untagged {
			return false
		}
		for i := range r.narrowTags {
			if !r.narrowTags[i].onlyExcludes() {
				return false
			}
		}
		return true
	case IsCosignTag(tag):
		if !r.Referrers {
			return false
		}
	default:
		if !r.tags.match(tag) {
			return false
		}
	}
	for i := range r.narrowTags {
		if !r.narrowTags[i].match(tag) {
			return false
		}
	}
	return true
}

// RepositoryInScope reports whether any rule selects the repository.
func (d *Document) RepositoryInScope(repo string) bool {
	for i := range d.Rules {
		if d.Rules[i].MatchesRepository(repo) {
			return true
		}
	}
	return false
}

// Targets returns where an image pushed to sourceRepo with tag goes; tag ""
// means a digest-only push. Rules are evaluated in document order and a
// destination repository (Key) reached by several rules appears once, with
// the settings of the first rule that reached it: put more specific rules
// first — except for promotion gates, which no rule order drops: a later rule's
// gate replaces an earlier ungated rule's target, and two different gates make the
// target invalid, naming both rules (shadowedGate). Targets whose destination name is
// invalid carry Err and must be reported, not copied; use Split to separate them.
func (d *Document) Targets(sourceRepo, tag string) []Target {
	return d.targets(sourceRepo, true, func(r *Rule) bool { return r.MatchesTag(tag) })
}

// RepositoryTargets returns every target some image of sourceRepo may go to, whatever
// its tag: the destinations of every rule selecting the repository (where to look, not
// what an image needs: each image's gate comes from Targets).
func (d *Document) RepositoryTargets(sourceRepo string) []Target {
	return d.targets(sourceRepo, false, func(*Rule) bool { return true })
}

// targets lists the targets of the rules selects picks; perImage: for one image, whose
// gates no earlier rule drops.
func (d *Document) targets(sourceRepo string, perImage bool, selects func(*Rule) bool) []Target {
	var out []Target
	var from []int // the rule index of each of out
	for i := range d.Rules {
		r := &d.Rules[i]
		if !r.MatchesRepository(sourceRepo) || !selects(r) {
			continue
		}
	dests:
		for j, dst := range r.Destinations {
			t := Target{
				Rule:                r.Name,
				Destination:         dst,
				Repository:          dst.RepositoryFor(sourceRepo),
				Referrers:           r.Referrers,
				MirrorDeletes:       r.MirrorDeletes,
				Untagged:            r.Untagged,
				DeleteImmutableTags: r.DeleteImmutableTags,
				Require:             r.Require,
			}
			if dst.Require != nil {
				t.Require = dst.Require
			}
			// Linear scan: a handful of targets, and no map allocation
			// on the hot path.
			for k := range out {
				if out[k].Destination.AccountID == dst.AccountID && out[k].Destination.Region == dst.Region && out[k].Repository == t.Repository {
					if perImage && out[k].Err == nil {
						out[k], from[k] = d.shadowedGate(out[k], from[k], t, i)
					}
					continue dests
				}
			}
			if err := ecrname.Repository(t.Repository); err != nil {
				t.Err = fmt.Errorf("rules[%d].destinations[%d]: destination repository for source %s: %w", i, j, ecrname.Quote(sourceRepo), err)
			}
			out = append(out, t)
			from = append(from, i)
		}
	}
	return out
}

// Split separates targets that can be copied from those carrying Err.
func Split(targets []Target) (ok, invalid []Target) {
	for _, t := range targets {
		if t.Err != nil {
			invalid = append(invalid, t)
		} else {
			ok = append(ok, t)
		}
	}
	return ok, invalid
}

// Narrow returns a copy of d whose rules additionally require the given
// repository and tag globs (same syntax as the rules: "!" excludes, only
// excludes = everything else). A backfill request uses it: it can narrow
// the rules, never widen them. Empty lists narrow nothing. Errors name
// "repositories[i]" or "tags[i]".
func (d *Document) Narrow(repositories, tags []string) (*Document, error) {
	repoSet, err := compileGlobs("repositories", repositories, repositoryPatterns)
	if err != nil {
		return nil, err
	}
	tagSet, err := compileGlobs("tags", tags, tagPatterns)
	if err != nil {
		return nil, err
	}
	out := &Document{Source: d.Source, Rules: make([]Rule, len(d.Rules))}
	for i := range d.Rules {
		r := d.Rules[i]
		if !r.compiled {
			if err := r.compile(fmt.Sprintf("rules[%d]", i)); err != nil {
				return nil, err
			}
		}
		// Full slice expressions: never append into the original's array.
		if len(repositories) > 0 {
			r.narrowRepos = append(r.narrowRepos[:len(r.narrowRepos):len(r.narrowRepos)], repoSet)
		}
		if len(tags) > 0 {
			r.narrowTags = append(r.narrowTags[:len(r.narrowTags):len(r.narrowTags)], tagSet)
		}
		out.Rules[i] = r
	}
	return out, nil
}

// WithRepositoryPrefix returns a copy of d whose rules select only repositories whose
// name starts with prefix — literally, not a glob: the stack's RepositoryPrefixFilter,
// which bounds the EventBridge rule and the source read grants the same way. Restrictions
// from Narrow are kept; "" restricts nothing.
func (d *Document) WithRepositoryPrefix(prefix string) *Document {
	out := &Document{Source: d.Source, Rules: make([]Rule, len(d.Rules))}
	for i, r := range d.Rules {
		r.repoPrefix = prefix
		out.Rules[i] = r
	}
	return out
}

// compile validates the rule's patterns and caches the compiled globs.
func (r *Rule) compile(path string) error {
	repos, err := compileGlobs(path+".repositories", r.Repositories, repositoryPatterns)
	if err != nil {
		return err
	}
	tags, err := compileGlobs(path+".tags", r.Tags, tagPatterns)
	if err != nil {
		return err
	}
	r.repos, r.tags, r.compiled = repos, tags, true
	return nil
}

// String summarizes the document for logs.
func (d *Document) String() string {
	names := make([]string, len(d.Rules))
	for i := range d.Rules {
		names[i] = d.Rules[i].Name
	}
	return fmt.Sprintf("rules document (%d rules: %s)", len(d.Rules), strings.Join(names, ", "))
}
