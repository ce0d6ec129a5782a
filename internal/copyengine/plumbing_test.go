package copyengine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// TestOnceMap: callers that overlap share one execution; a failed execution is not
// inherited (a waiter tries itself, so one caller's cut context does not fail the
// others); a success is remembered by a run's map and forgotten by the engine's
// in-flight-only map.
func TestOnceMap(t *testing.T) {
	for _, inFlightOnly := range []bool{false, true} {
		o := &onceMap{inFlightOnly: inFlightOnly}
		var runs atomic.Int32
		started, release := make(chan struct{}), make(chan struct{})
		leader := func() error {
			runs.Add(1)
			close(started)
			<-release
			return errors.New("leader's context was cut")
		}
		var wg sync.WaitGroup
		var leaderErr, waiterErr error
		var waiterRan bool
		wg.Go(func() { _, leaderErr = o.do(context.Background(), "k", leader) })
		<-started
		wg.Go(func() {
			waiterRan, waiterErr = o.do(context.Background(), "k", func() error { runs.Add(1); return nil })
		})
		close(release)
		wg.Wait()
		if leaderErr == nil || waiterErr != nil || !waiterRan || runs.Load() != 2 {
			t.Fatalf("inFlightOnly=%v: leader %v, waiter ran %v err %v, runs %d; want the waiter to try itself after the leader failed",
				inFlightOnly, leaderErr, waiterRan, waiterErr, runs.Load())
		}
		ran, err := o.do(context.Background(), "k", func() error { runs.Add(1); return nil })
		if err != nil || ran != inFlightOnly {
			t.Fatalf("inFlightOnly=%v: after a success, a later caller ran=%v (%v); want ran=%v", inFlightOnly, ran, err, inFlightOnly)
		}
	}
}
