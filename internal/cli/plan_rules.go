package cli

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// ruleSelection finds the rules that select no image of the source: most often a typo
// in a glob, which would otherwise pass as "in sync". A rule selects an image when it
// matches its repository and one of its tags (or, for an untagged image, replicates
// untagged images) — rules.Rule's own matching, over the listings the plan reads. A
// cosign signature tag (sha256-….sig) does not count: every rule that copies referrers
// accepts it, whatever its globs, and it goes with a subject the rule selects. A rule
// that matched only repositories with no image yet, or one that could not be listed, is
// not a typo.
type ruleSelection struct {
	doc   *rules.Document
	mu    sync.Mutex
	rules []ruleSeen
	// inScope counts the source repositories in scope (listed, or not listed with the
	// reason reported), for the narrowing flags' warning.
	inScope int
	listed  map[string]bool
}

// ruleSeen is what the listings showed of one rule.
type ruleSeen struct {
	selected bool
	images   bool     // matched a repository with images
	empty    []string // matched repositories with no image (the first few)
	unlisted bool     // matched a repository that could not be listed
}

func newRuleSelection(doc *rules.Document) *ruleSelection {
	return &ruleSelection{doc: doc, rules: make([]ruleSeen, len(doc.Rules)), listed: map[string]bool{}}
}

// listedImages looks at one source repository's images (backfill.Backfill.Listed).
func (s *ruleSelection) listedImages(repo string, images []backfill.Image) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inScope++
	s.listed[repo] = true
	for i := range s.doc.Rules {
		r, seen := &s.doc.Rules[i], &s.rules[i]
		if seen.selected || !r.MatchesRepository(repo) {
			continue
		}
		if len(images) == 0 {
			if len(seen.empty) < 3 {
				seen.empty = append(seen.empty, repo)
			}
			continue
		}
		seen.images = true
		seen.selected = slices.ContainsFunc(images, func(img backfill.Image) bool { return selects(r, img) })
	}
}

// notListed records the source repositories the plan could not list (its failures
// without a destination): the rules that match one are not warned about.
func (s *ruleSelection) notListed(failures []backfill.Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range failures {
		if f.Destination != "" || f.Repository == "" || s.listed[f.Repository] {
			continue
		}
		s.listed[f.Repository] = true
		s.inScope++
		for i := range s.doc.Rules {
			if s.doc.Rules[i].MatchesRepository(f.Repository) {
				s.rules[i].unlisted = true
			}
		}
	}
}

func selects(r *rules.Rule, img backfill.Image) bool {
	if len(img.Tags) == 0 {
		return r.MatchesTag("")
	}
	for _, t := range img.Tags {
		if !rules.IsCosignTag(t) && r.MatchesTag(t) {
			return true
		}
	}
	return false
}

// warn names each rule that selected nothing, and returns how many are likely typos:
// not those that matched only repositories with no image yet (said, not counted), nor
// those matching a repository that could not be listed (reported beside).
func (s *ruleSelection) warn(a *app) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i, seen := range s.rules {
		r := &s.doc.Rules[i]
		switch {
		case seen.selected, seen.unlisted:
		case !seen.images && len(seen.empty) > 0:
			which := "which has no images"
			if len(seen.empty) > 1 {
				which = "which have none"
			}
			a.warn("rules[%d] (%q) selects no image yet: its repositories %s matched only %s, %s", i, r.Name, globs(r.Repositories), strings.Join(seen.empty, ", "), which)
		default:
			n++
			what := "repositories " + globs(r.Repositories)
			if len(r.Tags) > 0 {
				what += " and tags " + globs(r.Tags)
			}
			a.warn("rules[%d] (%q) selected nothing: no source image matched %s", i, r.Name, what)
		}
	}
	return n
}

// report warns about what selects nothing: the rules, or, when the command line narrows
// them (--repositories, --tags, --since), the narrowing flags. It returns how many
// warnings are likely typos.
func (s *ruleSelection) report(a *app, o syncOptions) int {
	if len(o.repositories) == 0 && len(o.tags) == 0 && o.since == "" {
		return s.warn(a)
	}
	return s.warnNarrowing(a, o)
}

// warnNarrowing names a narrowing flag that selects nothing — a typo on the command line
// would otherwise pass as "0 repositories, in sync" — and returns 1 if it did, else 0.
// --since selecting nothing is an answer (nothing new), not a typo.
func (s *ruleSelection) warnNarrowing(a *app, o syncOptions) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	images := slices.ContainsFunc(s.rules, func(r ruleSeen) bool { return r.images })
	switch {
	case len(o.repositories) > 0 && s.inScope == 0:
		a.warn("--repositories %s matched no source repository the rules select", globs(o.repositories))
	case len(o.tags) > 0 && images && !s.anySelected():
		a.warn("--tags %s matched no tag of the %s in scope", globs(o.tags), plural(s.inScope, "repositories"))
	default:
		return 0
	}
	return 1
}

// anySelected reports whether some rule selected an image (s.mu held).
func (s *ruleSelection) anySelected() bool {
	return slices.ContainsFunc(s.rules, func(r ruleSeen) bool { return r.selected })
}

// globs is a list of globs as the rules document writes it: ["team-a/*", "!x"].
func globs(g []string) string {
	if len(g) == 0 {
		return `(all)`
	}
	q := make([]string, len(g))
	for i, x := range g {
		q[i] = fmt.Sprintf("%q", x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
