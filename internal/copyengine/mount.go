package copyengine

import (
	"container/list"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Blob mounting: a blob that another repository of the destination registry already
// holds is mounted from it (POST …/blobs/uploads/?mount=<digest>&from=<repository>,
// answered 201), not uploaded again. ECR does this since January 2026 when the registry's
// BLOB_MOUNTING account setting is ENABLED, within one registry (account and region),
// between repositories with the same encryption type and key ("Blob mounting in Amazon
// ECR", https://docs.aws.amazon.com/AmazonECR/latest/userguide/blob-mounting.html), and
// only for a blob that a manifest of the `from` repository references; for any other it
// answers 202 and starts a normal upload (aws/containers-roadmap#2860).
//
// So the engine remembers, per destination registry and encryption, which repositories
// hold a manifest referencing each blob: those it wrote there, or found there while
// copying (blobIndex, kept by the Engine across runs and bounded). Image copies into
// several repositories of one registry at once wait for the one already moving most of
// the same bytes, so the shared blobs go over the network once and are mounted
// everywhere else (flightTable). A mount the registry answers with 202 goes on as the
// upload that answer started; any other failure falls back to a normal upload in the same
// attempt, and a 201 is checked with a HEAD before the blob counts as there.

// Mounting is what the engine may do to avoid uploading blobs into a destination endpoint.
type Mounting struct {
	// Enabled: the destination registry mounts blobs across its repositories (ECR's
	// BLOB_MOUNTING account setting is ENABLED).
	Enabled bool
	// Encryption names the destination repository's encryption, type and key (for ECR,
	// "AES256" or "KMS <key ARN>"). Blobs are only mounted between repositories whose
	// Encryption is the same; empty (unknown) never mounts.
	Encryption string
}

// DefaultMountIndexBlobs is how many blobs an Engine remembers the repositories of, by
// default (WithMountIndex): about 3.5 MiB when full, with four repositories each (measured
// with 64-character digests and 25-character repository names).
const DefaultMountIndexBlobs = 10000

// maxMountSources is how many repositories the index keeps per blob (the most recent).
const maxMountSources = 4

// WithMountIndex bounds how many blobs the engine remembers the destination repositories
// of, for mounting (default DefaultMountIndexBlobs; each costs a few hundred bytes); the
// least recently used are forgotten first. 0 or less: the default.
func WithMountIndex(blobs int) Option {
	return func(c *Engine) {
		if blobs > 0 {
			c.index.max = blobs
		}
	}
}

// mountScope is where the endpoint's blobs may be mounted from: its registry host and
// encryption. Empty: nowhere (the encryption is unknown).
func (e *endpoint) mountScope() string {
	if e.mounting.Encryption == "" {
		return ""
	}
	return e.repo.RegistryStr() + " " + e.mounting.Encryption
}

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
	scope  string
	digest v1.Hash
}

type indexed struct {
	key   indexKey
	repos []string
}

// learn records that repo holds a manifest referencing blobs.
func (x *blobIndex) learn(scope, repo string, blobs []v1.Descriptor) {
	if scope == "" {
		return
	}
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
func (x *blobIndex) source(scope, repo string, digest v1.Hash) (string, bool) {
	if scope == "" {
		return "", false
	}
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
func (x *blobIndex) forget(scope, repo string, digest v1.Hash) {
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

func (x *blobIndex) len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.byKey)
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

// imageFlight is an image manifest whose blobs are being copied into a destination
// repository, until its manifest is written there (and its blobs can be mounted from it)
// or the copy gives up.
type imageFlight struct {
	repo  string
	blobs map[v1.Hash]int64
	total int64
	done  chan struct{}
}

// flightTable holds the image copies in flight per mount scope.
type flightTable struct {
	mu      sync.Mutex
	byScope map[string]map[*imageFlight]bool
}

// maxFlightWaits bounds how many other copies one image copy waits for in turn.
const maxFlightWaits = 4

// shareFlight is called before the blobs of an image manifest are copied into the
// destination, when the destination mounts blobs. It waits while another image copy, into
// another repository of the same registry and encryption, is moving at least half of this
// one's bytes that cannot be mounted yet, and is itself mostly those bytes (waiting for a
// large image to share a small layer would cost more than the upload): once that copy's
// manifest is written, they are mounted from it. Then it announces this copy the same way.
// end withdraws the announcement; learn (what the index is told) happens before it.
//
// A copy that waits has not announced itself, and an announced copy never waits, so no
// two copies wait for each other.
func (s *session) shareFlight(ctx context.Context, blobs []v1.Descriptor) (end func(), err error) {
	scope := s.dst.mountScope()
	if !s.dst.mounting.Enabled || scope == "" {
		return func() {}, nil
	}
	f := &imageFlight{repo: s.dst.repo.RepositoryStr(), blobs: make(map[v1.Hash]int64, len(blobs)), done: make(chan struct{})}
	for _, b := range blobs {
		if _, dup := f.blobs[b.Digest]; !dup && b.Size > 0 {
			f.blobs[b.Digest] = b.Size
			f.total += b.Size
		}
	}
	if f.total == 0 {
		return func() {}, nil // an index, or blobs of unknown size: nothing to weigh
	}
	ft := &s.c.flights
	for range maxFlightWaits {
		other := ft.worthWaitingFor(scope, f, func(d v1.Hash) bool { _, ok := s.c.index.source(scope, f.repo, d); return ok })
		if other == nil {
			break
		}
		s.log.Debug("waiting for a copy of shared layers into another repository, to mount them from it", "from", other.repo)
		select {
		case <-other.done:
		case <-ctx.Done():
			return nil, classify("wait for a copy of shared blobs", onDest, ctx.Err())
		}
	}
	ft.mu.Lock()
	if ft.byScope == nil {
		ft.byScope = map[string]map[*imageFlight]bool{}
	}
	if ft.byScope[scope] == nil {
		ft.byScope[scope] = map[*imageFlight]bool{}
	}
	ft.byScope[scope][f] = true
	ft.mu.Unlock()
	return func() {
		ft.mu.Lock()
		delete(ft.byScope[scope], f)
		if len(ft.byScope[scope]) == 0 {
			delete(ft.byScope, scope)
		}
		ft.mu.Unlock()
		close(f.done)
	}, nil
}

// worthWaitingFor returns the flight in scope (into another repository) sharing the most
// of f's bytes that cannot be mounted now, when that is at least half of those and of the
// flight's own bytes.
func (ft *flightTable) worthWaitingFor(scope string, f *imageFlight, mountable func(v1.Hash) bool) *imageFlight {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if len(ft.byScope[scope]) == 0 {
		return nil
	}
	var rest int64 // f's bytes that cannot be mounted now
	for d, n := range f.blobs {
		if !mountable(d) {
			rest += n
		}
	}
	var best *imageFlight
	var bestShared int64
	for other := range ft.byScope[scope] {
		if other.repo == f.repo {
			continue
		}
		var shared int64
		for d, n := range f.blobs {
			if _, ok := other.blobs[d]; ok && !mountable(d) {
				shared += n
			}
		}
		if shared > bestShared {
			best, bestShared = other, shared
		}
	}
	if best == nil || 2*bestShared < rest || 2*bestShared < best.total {
		return nil
	}
	return best
}

// tryMount asks the destination to mount the blob from a repository the index names, when
// the destination mounts blobs. mounted: the blob is there now — a HEAD says so, not only
// the 201 — and n is its size. Otherwise loc is the upload the registry started instead
// (202), where the blob's PUT goes; or "" when there was no mount to ask for or it failed
// in any other way, and a POST starts the upload as usual (no attempt is spent on it).
func (s *session) tryMount(ctx context.Context, client *http.Client, base *url.URL, desc v1.Descriptor, st *pushState) (loc string, mounted bool, n int64) {
	if !s.dst.mounting.Enabled {
		return "", false, 0
	}
	scope, repo := s.dst.mountScope(), s.dst.repo.RepositoryStr()
	from, ok := s.c.index.source(scope, repo, desc.Digest)
	if !ok {
		return "", false, 0
	}
	log := s.log.With("blob", desc.Digest.String(), "from", from)
	u := base.ResolveReference(&url.URL{Path: fmt.Sprintf("/v2/%s/blobs/uploads/", repo),
		RawQuery: url.Values{"mount": {desc.Digest.String()}, "from": {from}}.Encode()})
	resp, err := do(ctx, client, http.MethodPost, u.String())
	if err != nil {
		log.Debug("blob mount failed; uploading", "err", redact(err))
		return "", false, 0
	}
	defer discard(resp)
	switch resp.StatusCode {
	case http.StatusCreated:
		st.mounted = true
		present, size, err := s.destHasBlob(ctx, client, base, desc.Digest)
		if err != nil || !present {
			if err == nil {
				s.c.index.forget(scope, from, desc.Digest)
				log.Warn("the destination answered a blob mount with 201 and does not have the blob; uploading it")
			}
			return "", false, 0
		}
		if desc.Size > 0 {
			size = desc.Size
		}
		s.c.report(Progress{Source: s.src.repo.String(), Destination: s.dst.repo.String(), Blob: desc.Digest.String(), Size: size, Event: BlobMounted})
		return "", true, size
	case http.StatusAccepted:
		// Not mounted (the image there was deleted, or the repository; ECR no longer has
		// the blob referenced there): the upload the answer started is used.
		s.c.index.forget(scope, from, desc.Digest)
		if loc, err = uploadLocation(resp, desc.Digest); err != nil {
			log.Debug("blob mount answered 202 without a usable Location; uploading", "err", err)
			return "", false, 0
		}
		return loc, false, 0
	}
	log.Debug("blob mount refused; uploading", "status", resp.StatusCode)
	return "", false, 0
}
