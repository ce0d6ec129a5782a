package copyengine

import (
	"container/list"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// mountIndexBlobs is how many blobs an Engine remembers the repositories of, for
// mounting, the least recently used forgotten first: about 3.5 MiB when full, with four
// repositories each (measured with 64-character digests and 25-character repository names).
const mountIndexBlobs = 10000

// maxMountSources is how many repositories the index keeps per blob (the most recent).
const maxMountSources = 4

// blobIndex remembers, per mount scope and blob digest, the repositories known to hold a
// manifest that references the blob, most recent first. At most max blobs, least
// recently used forgotten first.
type blobIndex struct {
	max int

	mu    sync.Mutex
	order *list.List // of *indexed, most recently used first
	byKey map[indexKey]*list.Element
}

type indexKey struct {
	scope  mountScope
	digest v1.Hash
}

type indexed struct {
	key   indexKey
	repos []string
}

// learn records that repo holds a manifest referencing blobs.
func (x *blobIndex) learn(scope mountScope, repo string, blobs []v1.Descriptor) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.byKey == nil {
		x.order, x.byKey = list.New(), map[indexKey]*list.Element{}
	}
	for _, b := range blobs {
		k := indexKey{scope, b.Digest}
		el, ok := x.byKey[k]
		if !ok {
			el = x.order.PushFront(&indexed{key: k})
			x.byKey[k] = el
		}
		x.order.MoveToFront(el)
		e := el.Value.(*indexed)
		repos := append([]string{repo}, removed(e.repos, repo)...)
		e.repos = repos[:min(len(repos), maxMountSources)]
	}
	for x.order.Len() > x.max {
		last := x.order.Back()
		delete(x.byKey, last.Value.(*indexed).key)
		x.order.Remove(last)
	}
}

// source returns a repository of the scope other than repo that holds the blob.
func (x *blobIndex) source(scope mountScope, repo string, digest v1.Hash) (string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	el, ok := x.byKey[indexKey{scope, digest}]
	if !ok {
		return "", false
	}
	for _, r := range el.Value.(*indexed).repos {
		if r != repo {
			x.order.MoveToFront(el)
			return r, true
		}
	}
	return "", false
}

// forget drops repo as a source of the blob (the registry would not mount it from there:
// the image was deleted, the repository too, or it never referenced it).
func (x *blobIndex) forget(scope mountScope, repo string, digest v1.Hash) {
	x.mu.Lock()
	defer x.mu.Unlock()
	k := indexKey{scope, digest}
	el, ok := x.byKey[k]
	if !ok {
		return
	}
	e := el.Value.(*indexed)
	if e.repos = removed(e.repos, repo); len(e.repos) == 0 {
		delete(x.byKey, k)
		x.order.Remove(el)
	}
}

func removed(repos []string, repo string) []string {
	out := make([]string, 0, len(repos))
	for _, r := range repos {
		if r != repo {
			out = append(out, r)
		}
	}
	return out
}
