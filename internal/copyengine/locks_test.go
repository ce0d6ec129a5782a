package copyengine

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// TestCosignTagPointingAtItsOwnSubject: a cosign-style tag (sha256-<hex>.sig) that points
// at the very image it names — a mistagged push, or a tool that tags the subject itself —
// reached while that same tag is being converged (a late event for it) is converged once,
// not waited for. It deadlocked on its own tag lock until the deadline, on every
// delivery, and the CLI, which has no deadline, hung.
func TestCosignTagPointingAtItsOwnSubject(t *testing.T) {
	e := newEnv(t)
	subject := must[v1.Image](t)(random.Image(256, 1))
	x := digestOf(t, subject)
	tag := fallbackTag(x) + ".sig"
	old := pushImage(t, e.srcRepo.Tag(tag), must[v1.Image](t)(random.Image(256, 1))) // what the tag pointed at when pushed
	if err := remote.Write(e.srcRepo.Tag(tag), subject); err != nil {                // now: the subject itself
		t.Fatal(err)
	}
	req := e.req(old, tag) // the push event of the tag's earlier digest, arriving late
	req.Referrers = true
	done := make(chan Result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- fastCopier().Copy(ctx, req)
	}()
	var res Result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the copy hangs: the tag's convergence waits for its own lock")
	}
	if res.Err != nil || res.Outcome.Failure() {
		t.Fatalf("outcome %s: %v", res.Outcome, res.Err)
	}
	wantTag(t, e.dstRepo.Tag(tag), x)
}

// TestTagLocksAreForgotten: a warm engine converges tags for the life of its execution
// environment; the lock of a tag is dropped once nobody holds or waits for it. The map
// kept one entry per tag ever converged.
func TestTagLocksAreForgotten(t *testing.T) {
	e := newEnv(t)
	engine := New(WithRetry(retry.Policy{Attempts: 4, Initial: time.Millisecond, Max: 10 * time.Millisecond}), WithManifestRate(1000, 1000))
	img := must[v1.Image](t)(random.Image(64, 1))
	d := pushImage(t, e.srcRepo.Tag("t0"), img)
	for i := range 20 {
		tag := fmt.Sprintf("t%d", i)
		if i > 0 {
			if err := remote.Tag(e.srcRepo.Tag(tag), img); err != nil {
				t.Fatal(err)
			}
		}
		// Stale events (the tag moved on) go through the tag lock every time.
		res := engine.Start().Copy(context.Background(), e.req(d, tag))
		if res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	engine.mu.Lock()
	n := len(engine.tagLocks)
	engine.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d tag locks kept after every copy ended, want 0", n)
	}
}

// TestRetryObserverKept: WithRetry's OnRetry is the caller's (the CLI counts retries
// with it); the engine adds its debug log line without replacing it. New overwrote it.
func TestRetryObserverKept(t *testing.T) {
	e := newEnv(t)
	d := pushImage(t, e.srcRepo.Tag("v1"), must[v1.Image](t)(random.Image(64, 1)))
	var failed atomic.Bool
	e.dst.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") && failed.CompareAndSwap(false, true) {
			writeRegError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "try again")
			return true
		}
		return false
	})
	var observed atomic.Int32
	engine := New(WithRetry(retry.Policy{Attempts: 4, Initial: time.Millisecond, Max: 10 * time.Millisecond,
		OnRetry: func(error, int, time.Duration) { observed.Add(1) }}), WithManifestRate(1000, 1000))
	wantOutcome(t, engine.Start().Copy(context.Background(), e.req(d, "v1")), Copied)
	if observed.Load() == 0 {
		t.Fatal("the caller's OnRetry was never called: New replaced it")
	}
}

// TestCosignTagsPointingAtEachOthersSubjects: two cosign-style tags that point at each
// other's subject (sha256-X.sig → Y, sha256-Y.sig → X), each converged by a late event
// at the same time: each convergence, holding its tag's lock, follows its tag to the
// other image, whose cosign tag is the other convergence's. Waiting there for the lock
// the other holds, while it waits for ours, deadlocked both until the deadline.
func TestCosignTagsPointingAtEachOthersSubjects(t *testing.T) {
	e := newEnv(t)
	x := must[v1.Image](t)(random.Image(256, 1))
	y := must[v1.Image](t)(random.Image(256, 1))
	dx, dy := digestOf(t, x), digestOf(t, y)
	tx, ty := fallbackTag(dx)+".sig", fallbackTag(dy)+".sig"
	oldX := pushImage(t, e.srcRepo.Tag(tx), must[v1.Image](t)(random.Image(256, 1)))
	oldY := pushImage(t, e.srcRepo.Tag(ty), must[v1.Image](t)(random.Image(256, 1)))
	for tag, img := range map[string]v1.Image{tx: y, ty: x} {
		if err := remote.Write(e.srcRepo.Tag(tag), img); err != nil {
			t.Fatal(err)
		}
	}
	// Both convergences hold their tag's lock before either follows its tag: the second
	// HEAD of each tag (the first is the copy's own look before converging) waits for
	// the other's.
	var mu sync.Mutex
	heads := map[string]int{}
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	var once sync.Once
	e.src.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodHead {
			return false
		}
		for _, tag := range []string{tx, ty} {
			if strings.HasSuffix(r.URL.Path, "/manifests/"+tag) {
				mu.Lock()
				heads[tag]++
				second := heads[tag] == 2
				mu.Unlock()
				if second {
					arrived <- struct{}{}
					select {
					case <-release:
					case <-time.After(5 * time.Second):
					}
				}
			}
		}
		return false
	})
	go func() {
		<-arrived
		<-arrived
		once.Do(func() { close(release) })
	}()
	run := fastCopier().Engine.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	results := make(chan Result, 2)
	for tag, old := range map[string]v1.Hash{tx: oldX, ty: oldY} {
		go func() {
			req := e.req(old, tag)
			req.Referrers = true
			results <- run.Copy(ctx, req)
		}()
	}
	for range 2 {
		select {
		case res := <-results:
			if res.Err != nil {
				t.Fatalf("%s: %v", res.Tag, res.Err)
			}
		case <-time.After(12 * time.Second):
			t.Fatal("the two convergences wait for each other's tag lock")
		}
	}
	wantTag(t, e.dstRepo.Tag(tx), dy)
	wantTag(t, e.dstRepo.Tag(ty), dx)
}
