package sandbox

import (
	"fmt"
	"strings"
	"sync"
)

// Hold pauses matching requests after they are applied and before they are answered:
// Reached runs in the request's goroutine with the access-log entry, and the answer is
// written when it returns. Race tests use it to act in the window a real client cannot
// see (a manifest stored but the PUT not yet answered; a BatchDeleteImage applied, not yet
// answered).
//
// Only requests answered with success are held (a registry status below 400, an API call
// without an error): a refused request has no effect to race with. The access log records
// a held request once its answer is written.
type Hold struct {
	Account string // required: the registry's account, or the caller's for API calls
	// Step is a registry step (StepStorageGET included); empty when Operation is set.
	Step Step
	// Operation is an ECR API operation ("BatchDeleteImage", "PutImage", "BatchGetImage"…);
	// empty when Step is set.
	Operation  string
	Repository string // optional filter
	// Reference optionally filters on a tag or digest: the registry request's, or one of
	// the API call's image IDs (PutImage: its imageTag or imageDigest).
	Reference string
	Count     int // how many requests (0: 1; -1: until removed)
	Reached   func(Entry)
}

type holds struct {
	mu   sync.Mutex
	list []*Hold
}

// HoldRequests arms a hold. remove disarms it (requests already held are not released
// by it: they wait for their Reached to return).
func (s *Sandbox) HoldRequests(h Hold) (remove func(), err error) {
	switch {
	case h.Account == "":
		return nil, fmt.Errorf("sandbox: a hold needs an account")
	case (h.Step == "") == (h.Operation == ""):
		return nil, fmt.Errorf("sandbox: a hold needs a Step or an Operation, not both")
	case h.Reached == nil:
		return nil, fmt.Errorf("sandbox: a hold needs Reached")
	}
	if h.Step != "" {
		if _, ok := stepBodies[h.Step]; !ok {
			return nil, fmt.Errorf("sandbox: unknown step %q", h.Step)
		}
	}
	switch {
	case h.Count == 0:
		h.Count = 1
	case h.Count < 0:
		h.Count = -1
	}
	held := &h
	s.holds.mu.Lock()
	s.holds.list = append(s.holds.list, held)
	s.holds.mu.Unlock()
	return func() { s.holds.drop(held) }, nil
}

func (hs *holds) drop(h *Hold) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for i, x := range hs.list {
		if x == h {
			hs.list = append(hs.list[:i], hs.list[i+1:]...)
			return
		}
	}
}

// holdTarget is a request as holds see it.
type holdTarget struct {
	account, operation, repo string
	step                     Step
	refs                     []string
}

// take consumes one use of the first hold matching t and returns its Reached, or nil.
func (hs *holds) take(t holdTarget) func(Entry) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for i, h := range hs.list {
		if h.Account != t.account || h.Step != t.step || h.Operation != t.operation ||
			(h.Repository != "" && h.Repository != t.repo) ||
			(h.Reference != "" && !contains(t.refs, h.Reference)) {
			continue
		}
		if h.Count > 0 {
			h.Count--
			if h.Count == 0 {
				hs.list = append(hs.list[:i], hs.list[i+1:]...)
			}
		}
		return h.Reached
	}
	return nil
}

// hold runs the Reached of the first matching hold, if any, in the caller's goroutine.
func (s *Sandbox) hold(t holdTarget, e Entry) {
	if reached := s.holds.take(t); reached != nil {
		reached(e)
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// splitRefs reads an API entry's Reference (comma-separated tags and digests).
func splitRefs(ref string) []string {
	if ref == "" {
		return nil
	}
	return strings.Split(ref, ",")
}
