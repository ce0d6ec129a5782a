package copyengine

import "context"

// tagLock serialises the convergence of one destination tag; it is in Engine.tagLocks
// only while someone holds or waits for it, so a warm engine does not keep one per tag it
// ever wrote.
type tagLock struct {
	ch    chan struct{}
	users int // holders and waiters
}

// heldTags are the tag locks the convergences up a call's stack hold (a context value).
type heldTags struct {
	key    string
	parent *heldTags
}

type heldTagsKey struct{}

func (h *heldTags) has(key string) bool {
	for ; h != nil; h = h.parent {
		if h.key == key {
			return true
		}
	}
	return false
}

// lockTag serialises tag convergence for one destination tag, so two events for the same
// tag don't interleave their HEAD/PUT/re-check. Following a tag copies the image it
// points at, whose cosign tags are converged in turn, so a convergence can reach another
// while holding its own lock; it then never waits (skip):
//   - for its own tag (a cosign tag that points at its own subject): it would wait for
//     itself;
//   - for a tag another convergence holds: that one may be waiting for ours (two cosign
//     tags pointing at each other's subjects).
//
// Either way the holder puts the tag where the source has it once it is done, after its
// own re-check of the source, which is what this convergence would have done. Only a
// convergence that holds no lock waits. The returned context carries the locks held.
func (c *Engine) lockTag(ctx context.Context, key string) (_ context.Context, unlock func(), skip bool, _ error) {
	outer, _ := ctx.Value(heldTagsKey{}).(*heldTags)
	if outer.has(key) {
		return ctx, func() {}, true, nil
	}
	c.mu.Lock()
	l, ok := c.tagLocks[key]
	if !ok {
		l = &tagLock{ch: make(chan struct{}, 1)}
		c.tagLocks[key] = l
	}
	l.users++
	c.mu.Unlock()
	release := func() {
		c.mu.Lock()
		if l.users--; l.users == 0 {
			delete(c.tagLocks, key)
		}
		c.mu.Unlock()
	}
	acquired := func() (context.Context, func(), bool, error) {
		return context.WithValue(ctx, heldTagsKey{}, &heldTags{key: key, parent: outer}), func() { <-l.ch; release() }, false, nil
	}
	if outer != nil {
		select {
		case l.ch <- struct{}{}:
			return acquired()
		default:
			release()
			return ctx, func() {}, true, nil
		}
	}
	select {
	case l.ch <- struct{}{}:
		return acquired()
	case <-ctx.Done():
		release()
		return ctx, nil, false, ctx.Err()
	}
}
