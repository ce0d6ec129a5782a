package copyengine

import (
	"context"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

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
	byScope map[mountScope]*scopeFlights
}

// scopeFlights are the copies in flight into one mount scope, and per blob the one of
// them that announced it first: the copy whose upload the others would mount.
type scopeFlights struct {
	flights map[*imageFlight]bool
	first   map[v1.Hash]*imageFlight
}

// maxFlightWaits bounds how many other copies one image copy waits for in turn.
const maxFlightWaits = 4

// shareFlight is called before the blobs of an image manifest are copied into the
// destination. When the destination mounts blobs, it waits while another image copy, into
// another repository of the same registry, encryption and identity, is moving at least
// half of this one's bytes that cannot be mounted yet, and is itself mostly those bytes
// (waiting for a large image to share a small layer would cost more than the upload):
// once that copy's manifest is written, they are mounted from it. Then it announces this
// copy the same way — with mounting off too, so that what mounting would save is counted
// among copies made together (wouldMount). end withdraws the announcement; learn (what
// the index is told) happens before it.
//
// A copy that waits has not announced itself, and an announced copy never waits, so no
// two copies wait for each other.
func (s *session) shareFlight(ctx context.Context, blobs []v1.Descriptor) (end func(), err error) {
	scope, ok := s.dst.mountScope()
	if !ok {
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
	for i := 0; s.dst.mounting.Enabled && i < maxFlightWaits; i++ {
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
	ft.add(scope, f)
	return func() {
		ft.remove(scope, f)
		close(f.done)
	}, nil
}

func (ft *flightTable) add(scope mountScope, f *imageFlight) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if ft.byScope == nil {
		ft.byScope = map[mountScope]*scopeFlights{}
	}
	sf := ft.byScope[scope]
	if sf == nil {
		sf = &scopeFlights{flights: map[*imageFlight]bool{}, first: map[v1.Hash]*imageFlight{}}
		ft.byScope[scope] = sf
	}
	sf.flights[f] = true
	for d := range f.blobs {
		if sf.first[d] == nil {
			sf.first[d] = f
		}
	}
}

// remove withdraws f; the blobs it announced first pass to another flight moving them.
func (ft *flightTable) remove(scope mountScope, f *imageFlight) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	sf := ft.byScope[scope]
	delete(sf.flights, f)
	if len(sf.flights) == 0 {
		delete(ft.byScope, scope)
		return
	}
	for d := range f.blobs {
		if sf.first[d] != f {
			continue
		}
		delete(sf.first, d)
		for other := range sf.flights {
			if _, ok := other.blobs[d]; ok {
				sf.first[d] = other
				break
			}
		}
	}
}

// movedElsewhere: a copy in flight into another repository of the scope announced the
// blob before any copy into repo did.
func (ft *flightTable) movedElsewhere(scope mountScope, repo string, d v1.Hash) bool {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	sf := ft.byScope[scope]
	return sf != nil && sf.first[d] != nil && sf.first[d].repo != repo
}

// worthWaitingFor returns the flight in scope (into another repository) sharing the most
// of f's bytes that cannot be mounted now, when that is at least half of those and of the
// flight's own bytes.
func (ft *flightTable) worthWaitingFor(scope mountScope, f *imageFlight, mountable func(v1.Hash) bool) *imageFlight {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	sf := ft.byScope[scope]
	if sf == nil {
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
	for other := range sf.flights {
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
