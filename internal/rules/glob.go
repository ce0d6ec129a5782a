package rules

import (
	"fmt"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// A glob is one compiled pattern. Most real patterns are a literal, "*",
// "**" or "prefix*"; those skip doublestar, which matters when a backfill
// walks tens of thousands of repositories against every rule.
// FuzzGlobFastPath checks that each fast path agrees with doublestar.Match.
type glob struct {
	pattern string
	kind    globKind
	lit     string // literal or prefix, depending on kind
}

type globKind uint8

const (
	globDoublestar globKind = iota // general case: doublestar.MatchUnvalidated
	globLiteral                    // exact match
	globAny                        // "**": everything
	globSegment                    // "prefix*": prefix, then no '/'
)

func compileGlob(p string) glob {
	meta := strings.IndexAny(p, `*?[{\`)
	switch {
	case meta < 0:
		return glob{pattern: p, kind: globLiteral, lit: p}
	case p == "**":
		return glob{pattern: p, kind: globAny}
	case meta == len(p)-1 && p[meta] == '*' && (meta == 0 || p[meta-1] != '*'):
		// "*" and "team/*" and "v*". A trailing "**" after a non-slash
		// behaves like "*" in doublestar, but is left to the general path.
		return glob{pattern: p, kind: globSegment, lit: p[:meta]}
	}
	return glob{pattern: p, kind: globDoublestar}
}

func (g *glob) match(name string) bool {
	switch g.kind {
	case globLiteral:
		return name == g.lit
	case globAny:
		return true
	case globSegment:
		return strings.HasPrefix(name, g.lit) && !strings.Contains(name[len(g.lit):], "/")
	}
	return doublestar.MatchUnvalidated(g.pattern, name)
}

// globSet is an include/exclude list: excludes win, and no includes means
// "everything not excluded" (docs/CONTRACT.md, "Globs").
type globSet struct {
	include []glob
	exclude []glob
}

func (s *globSet) match(name string) bool {
	for i := range s.exclude {
		if s.exclude[i].match(name) {
			return false
		}
	}
	if len(s.include) == 0 {
		return true
	}
	for i := range s.include {
		if s.include[i].match(name) {
			return true
		}
	}
	return false
}

// onlyExcludes reports whether the set restricts nothing but exclusions;
// used to decide whether digest-only images survive a tag narrowing.
func (s *globSet) onlyExcludes() bool { return len(s.include) == 0 }

// patternKind selects the extra literal check: a literal pattern that is
// not a valid name can never match, which is almost certainly a typo.
type patternKind int

const (
	repositoryPatterns patternKind = iota
	tagPatterns
)

// compileGlobs validates and compiles patterns; field is the path used in
// errors, e.g. "rules[0].repositories".
func compileGlobs(field string, patterns []string, kind patternKind) (globSet, error) {
	var s globSet
	for i, p := range patterns {
		raw := p
		exclude := strings.HasPrefix(p, "!")
		if exclude {
			p = p[1:]
		}
		if p == "" {
			return globSet{}, fmt.Errorf("%s[%d]: %s is an empty pattern", field, i, ecrname.Quote(raw))
		}
		if !doublestar.ValidatePattern(p) {
			return globSet{}, fmt.Errorf("%s[%d]: %s is not a valid glob pattern (see https://github.com/bmatcuk/doublestar#patterns)", field, i, ecrname.Quote(raw))
		}
		g := compileGlob(p)
		if g.kind == globLiteral {
			var err error
			if kind == repositoryPatterns {
				err = ecrname.Repository(p)
			} else {
				err = ecrname.Tag(p)
			}
			if err != nil {
				return globSet{}, fmt.Errorf("%s[%d]: %s can never match: %v", field, i, ecrname.Quote(raw), err)
			}
		}
		if exclude {
			s.exclude = append(s.exclude, g)
		} else {
			s.include = append(s.include, g)
		}
	}
	return s, nil
}
