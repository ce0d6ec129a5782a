package rules

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// A glob is one compiled pattern. Most real patterns are a literal, "*",
// "**" or "prefix*"; those skip doublestar, which matters when a backfill
// walks tens of thousands of repositories against every rule. A fast path must
// answer as doublestar.Match does: the pattern means what the docs say it means
// whichever way it is matched.
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
// not a valid name, or a glob with a literal character no name can hold
// ("Team-A/*", "team a/*"), can never match, which is almost certainly a typo.
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
		var err error
		switch {
		case g.kind == globLiteral && kind == repositoryPatterns:
			err = ecrname.Repository(p)
		case g.kind == globLiteral:
			err = ecrname.Tag(p)
		default:
			err = literalsCanMatch(p, kind)
		}
		if err != nil {
			return globSet{}, fmt.Errorf("%s[%d]: %s can never match: %v", field, i, ecrname.Quote(raw), err)
		}
		if exclude {
			s.exclude = append(s.exclude, g)
		} else {
			s.include = append(s.include, g)
		}
	}
	return s, nil
}

// nameCharacters are the characters a name can hold: ECR repository names are
// lowercase ("(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*",
// https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html),
// tags "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,299}" (API_PutImage, imageTag).
var nameCharacters = map[patternKind]string{
	repositoryPatterns: "abcdefghijklmnopqrstuvwxyz0123456789._-/",
	tagPatterns:        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-",
}

// literalsCanMatch checks the literal characters of a validated glob: outside character
// classes and the wildcards, each must be one a name can hold. Brace syntax ({a,b}) is
// not judged, so the check never refuses a pattern that can match.
func literalsCanMatch(p string, kind patternKind) error {
	what := map[patternKind]string{repositoryPatterns: "an ECR repository name (lowercase letters, digits, '.', '_', '-', '/')",
		tagPatterns: "an image tag (letters, digits, '.', '_', '-')"}[kind]
	rs := []rune(p)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch r {
		case '*', '?', '{', '}', ',', ']':
			continue
		case '[':
			for i+1 < len(rs) && rs[i+1] != ']' {
				i++
			}
			i++ // the ']'
			continue
		case '\\':
			if i+1 == len(rs) {
				continue
			}
			i++
			r = rs[i]
		}
		if !strings.ContainsRune(nameCharacters[kind], r) {
			return fmt.Errorf("%s cannot appear in %s", strconv.QuoteRuneToASCII(r), what)
		}
	}
	return nil
}
