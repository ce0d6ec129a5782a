package copyengine

import (
	"context"
	"sync"
)

// probesBeforeListing is how many single-tag questions (HEADs) a run asks about one
// repository before it lists the repository's tags once and answers from the list.
const probesBeforeListing = 12

// tagIndex answers "may this repository have this tag?" for one run, per repository.
// The first probesBeforeListing questions are answered "maybe" (the caller HEADs the
// tag, which is what a single event needs); after that the repository's tags are listed
// once and later questions are answered from the list, so copying many images of one
// repository costs one listing instead of a HEAD per tag. A "no" is only ever a hint
// to skip a HEAD: whoever acts on it still copes with the tag existing (an IMMUTABLE
// refusal, a re-check of the source). A listing that fails leaves the repository on
// HEADs for the rest of the run.
type tagIndex struct {
	mu    sync.Mutex
	repos map[string]*repoTags
}

type repoTags struct {
	probes int
	done   chan struct{} // closed when the listing ended
	tags   map[string]bool
	failed bool
}

// mayHave reports whether repo may have tag; list lists the repository's tags. A
// repository that does not exist (list's error is a 404) has no tags.
func (x *tagIndex) mayHave(ctx context.Context, repo, tag string, list func(context.Context) ([]string, error)) bool {
	x.mu.Lock()
	if x.repos == nil {
		x.repos = map[string]*repoTags{}
	}
	r := x.repos[repo]
	if r == nil {
		r = &repoTags{}
		x.repos[repo] = r
	}
	r.probes++
	if r.done == nil && r.probes <= probesBeforeListing {
		x.mu.Unlock()
		return true
	}
	lister := r.done == nil
	if lister {
		r.done = make(chan struct{})
	}
	x.mu.Unlock()

	if lister {
		names, err := list(ctx)
		x.mu.Lock()
		switch {
		case err != nil && !isNotFound(err):
			r.failed = true
		default:
			r.tags = make(map[string]bool, len(names))
			for _, n := range names {
				r.tags[n] = true
			}
		}
		close(r.done)
		x.mu.Unlock()
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		return true
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return r.failed || r.tags[tag]
}

// add records a tag this run wrote, so a listing taken earlier stays true.
func (x *tagIndex) add(repo, tag string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if r := x.repos[repo]; r != nil && r.tags != nil {
		r.tags[tag] = true
	}
}
