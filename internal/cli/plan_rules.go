package cli

import (
	"fmt"
	"strings"
	"sync"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// ruleSelection finds the rules that select no image of the source: most often a typo
// in a glob, which would otherwise pass as "in sync". A rule selects an image when it
// matches its repository and one of its tags (or, for an untagged image, replicates
// untagged images) — rules.Rule's own matching, over the listings the plan reads.
type ruleSelection struct {
	doc      *rules.Document
	mu       sync.Mutex
	selected []bool
	left     int // rules not seen selecting anything yet
}

func newRuleSelection(doc *rules.Document) *ruleSelection {
	return &ruleSelection{doc: doc, selected: make([]bool, len(doc.Rules)), left: len(doc.Rules)}
}

// listed looks at one source repository's images (backfill.Backfill.Listed).
func (s *ruleSelection) listed(repo string, images []backfill.Image) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.doc.Rules {
		r := &s.doc.Rules[i]
		if s.selected[i] || !r.MatchesRepository(repo) {
			continue
		}
		for _, img := range images {
			if selects(r, img) {
				s.selected[i] = true
				s.left--
				break
			}
		}
		if s.left == 0 {
			return
		}
	}
}

func selects(r *rules.Rule, img backfill.Image) bool {
	if len(img.Tags) == 0 {
		return r.MatchesTag("")
	}
	for _, t := range img.Tags {
		if r.MatchesTag(t) {
			return true
		}
	}
	return false
}

// warn names each rule that selected nothing, and returns how many did.
func (s *ruleSelection) warn(a *app) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i, sel := range s.selected {
		if sel {
			continue
		}
		n++
		r := &s.doc.Rules[i]
		what := "repositories " + globs(r.Repositories)
		if len(r.Tags) > 0 {
			what += " and tags " + globs(r.Tags)
		}
		a.warn("rules[%d] (%q) selected nothing: no source image matched %s", i, r.Name, what)
	}
	return n
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
