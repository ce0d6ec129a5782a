package cli

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// The grammar of a reference, from the distribution spec
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests):
// a repository is lowercase path components, a tag at most 128 of [A-Za-z0-9_.-] not
// starting with . or -, a digest algorithm:hex.
var (
	tagRE       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	componentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	sha256RE    = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
)

// splitReference cuts REGISTRY/REPOSITORY[:TAG][@DIGEST] into its parts without
// validating them.
func splitReference(arg string) (registry, repo, tag, digest string, hasTag bool) {
	rest := arg
	if i := strings.Index(rest, "@"); i >= 0 {
		rest, digest = rest[:i], rest[i+1:]
	}
	// A tag follows the last ':' after the last '/', so a registry port is not a tag.
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		rest, tag, hasTag = rest[:i], rest[i+1:], true
	}
	registry, repo, _ = strings.Cut(rest, "/")
	return registry, repo, tag, digest, hasTag
}

// referenceProblem says why arg is not a valid reference, or returns nil. It checks the
// distribution spec's grammar, which go-containerregistry does not entirely (it accepts
// "a//b" and a tag starting with '-'), and says why (its own message is only "could not
// parse reference").
func referenceProblem(what, arg string) error {
	bad := func(why string, args ...any) error {
		return usagef("%s %q is not an image reference: %s", what, arg, fmt.Sprintf(why, args...))
	}
	if arg == "" {
		return usagef("%s is empty: give REGISTRY/REPOSITORY[:TAG|@DIGEST]", what)
	}
	if strings.Contains(arg, "://") {
		return bad("drop the scheme (%s); a reference starts with the registry host", arg[:strings.Index(arg, "://")+3])
	}
	if strings.ContainsAny(arg, " \t\n") {
		return bad("it contains white space")
	}
	if strings.Count(arg, "@") > 1 {
		return bad("more than one '@'; a reference has at most one digest")
	}
	registry, repo, tag, digest, hasTag := splitReference(arg)
	if !strings.ContainsAny(registry, ".:") && registry != "localhost" {
		// No registry host: the first component belongs to the repository (Docker Hub).
		if repo == "" {
			repo = registry
		} else {
			repo = registry + "/" + repo
		}
		registry = "index.docker.io"
	}
	if repo == "" {
		return bad("no repository after the registry host %s", registry)
	}
	for _, c := range strings.Split(repo, "/") {
		switch {
		case c == "":
			return bad("repository %q has an empty path component (a doubled or trailing '/')", repo)
		case strings.ToLower(c) != c:
			return bad("repository %q has uppercase letters; repository names are lowercase", repo)
		case !componentRE.MatchString(c):
			return bad("repository component %q may only hold lowercase letters, digits and single separators (. _ __ -), and must start and end with a letter or digit", c)
		}
	}
	if hasTag && !tagRE.MatchString(tag) {
		_, _, ecrHost := ecraccess.ParseRegistryHost(registry)
		switch {
		case tag == "":
			return bad("empty tag after ':'")
		case ecrHost && ecrname.Tag(tag) == nil:
			// ECR's PutImage takes tags of up to 300 characters (API_PutImage): copied
			// through the ECR API, as the function copies them.
		case ecrHost:
			return bad("tag %q is invalid: at most %d letters, digits, '_', '.' and '-' on an ECR registry, not starting with '.' or '-'", tag, ecrname.MaxTagLen)
		default:
			return bad("tag %q is invalid: at most 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", tag)
		}
	}
	if strings.Contains(arg, "@") && !sha256RE.MatchString(digest) {
		return bad("digest %q is invalid: want sha256: followed by 64 lowercase hex digits", digest)
	}
	return nil
}

// imageRef is an image reference parsed: its repository and the tag or digest it names
// (no tag and no digest: latest, as for docker pull). A tag is a string: one of 129-300
// characters, which an ECR registry holds, is more than go-containerregistry's name.Tag
// accepts.
type imageRef struct {
	repo        name.Repository
	tag, digest string
}

// name is the reference in full (host/repository:tag or @digest).
func (r imageRef) name() string {
	if r.tag != "" {
		return r.repo.Name() + ":" + r.tag
	}
	return r.repo.Name() + "@" + r.digest
}

// parseImageRef parses an image reference, saying why when it is not one.
func parseImageRef(what, arg string) (imageRef, error) {
	if err := referenceProblem(what, arg); err != nil {
		return imageRef{}, err
	}
	registry, repo, tag, digest, hasTag := splitReference(arg)
	if hasTag && len(tag) > ecrname.MaxRegistryTagLen {
		if digest != "" { // the digest wins, as go-containerregistry reads tag@digest
			arg = registry + "/" + repo + "@" + digest
		} else {
			r, err := name.NewRepository(registry + "/" + repo)
			if err != nil {
				return imageRef{}, usagef("%s %q is not an image reference: %v", what, arg, err)
			}
			return imageRef{repo: r, tag: tag}, nil
		}
	}
	ref, err := name.ParseReference(arg)
	if err != nil {
		return imageRef{}, usagef("%s %q is not an image reference: %v", what, arg, err)
	}
	if t, ok := ref.(name.Tag); ok {
		return imageRef{repo: t.Context(), tag: t.TagStr()}, nil
	}
	return imageRef{repo: ref.Context(), digest: ref.Identifier()}, nil
}

// parseRepository parses a repository (no tag or digest), saying why when it is not one.
func parseRepository(what, arg string) (name.Repository, error) {
	if err := referenceProblem(what, arg); err != nil {
		return name.Repository{}, err
	}
	repo, err := name.NewRepository(arg)
	if err != nil {
		return name.Repository{}, usagef("%s %q is not a repository: %v", what, arg, err)
	}
	return repo, nil
}
