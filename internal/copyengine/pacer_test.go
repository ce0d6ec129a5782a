package copyengine

import (
	"container/heap"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// fleetRun is what a simulated fleet of writers did against one destination.
type fleetRun struct {
	accepted, throttled int
	window              time.Duration
	quota               float64
}

func (f fleetRun) utilization() float64 { return float64(f.accepted) / (f.window.Seconds() * f.quota) }
func (f fleetRun) throttleRate() float64 {
	return float64(f.throttled) / float64(max(f.accepted+f.throttled, 1))
}

// simWriter is one simulated engine: told how many write at once, with a manifest to
// write every `every` (0: always), starting at `start` times its share (0: 1).
type simWriter struct {
	told  int
	every time.Duration
	start float64
}

// simulateFleet runs the writers' pacers against a destination that accepts quota
// writes per second (a token bucket with one second of burst, as the sandbox's), for
// the length of window, in virtual time: a write reaches the destination half a round
// trip after its turn, and its answer (accepted or throttled) reaches the pacer half a
// round trip later.
func simulateFleet(writers []simWriter, quota float64, rtt, window time.Duration) fleetRun {
	t0 := time.Unix(0, 0)
	server := rate.NewLimiter(rate.Limit(quota), int(quota))
	n := len(writers)
	pacers := make([]*pacer, n)
	q := &simEvents{}
	phases := rand.New(rand.NewPCG(uint64(n), uint64(writers[0].told)))
	for i, w := range writers {
		// Writers start within the first round trip of one another, their phases spread
		// as random ones would be.
		start := t0.Add(time.Duration(i) * rtt / time.Duration(n))
		if w.every > 0 { // an occasional writer starts anywhere in its period
			start = start.Add(time.Duration(phases.Float64() * float64(w.every)))
		}
		p := newPacer(rate.Limit(quota), int(quota), w.told, start, phases.Float64())
		if w.start != 0 {
			p.lim.SetLimitAt(start, p.share*rate.Limit(w.start))
		}
		pacers[i] = p
		at, _ := p.turn(start)
		heap.Push(q, simEvent{at: at, writer: i, kind: simTurn})
	}
	run := fleetRun{window: window, quota: quota}
	end := t0.Add(window)
	for q.Len() > 0 {
		e := heap.Pop(q).(simEvent)
		if e.at.After(end) {
			break
		}
		p := pacers[e.writer]
		switch e.kind {
		case simTurn:
			heap.Push(q, simEvent{at: e.at.Add(rtt / 2), writer: e.writer, kind: simArrive, sent: e.at})
			at, _ := p.turn(e.at.Add(writers[e.writer].every))
			heap.Push(q, simEvent{at: at, writer: e.writer, kind: simTurn})
		case simArrive:
			heap.Push(q, simEvent{at: e.at.Add(rtt / 2), writer: e.writer, kind: simAnswer, ok: server.AllowN(e.at, 1), sent: e.sent})
		case simAnswer:
			if e.ok {
				run.accepted++
				p.accepted(e.at)
			} else {
				run.throttled++
				p.throttled(e.sent, e.at)
			}
		}
	}
	return run
}

// fleet is n writers told n, always with a write to make.
func fleet(n int) []simWriter {
	w := make([]simWriter, n)
	for i := range w {
		w[i] = simWriter{told: n}
	}
	return w
}

type simKind int

const (
	simTurn simKind = iota
	simArrive
	simAnswer
)

type simEvent struct {
	at     time.Time
	writer int
	kind   simKind
	ok     bool
	sent   time.Time // the write's turn
}

type simEvents []simEvent

func (h simEvents) Len() int { return len(h) }
func (h simEvents) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].writer < h[j].writer
}
func (h simEvents) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *simEvents) Push(x any)   { *h = append(*h, x.(simEvent)) }
func (h *simEvents) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// TestFleetSharesThePutImageQuota: engines writing to one destination at once, each
// always with a manifest to write, share its PutImage quota instead of multiplying it —
// together they use at least 80% of it with at most 5% of their writes throttled — when
// told how many they are (the copy queue's concurrency), from 1 to 100 of them, across
// round trips from 25 to 200 ms; when the other is idle, one uses the whole quota; ten
// push invocations writing beside the two copying ones take their part without
// crowding the destination; an engine cut to its floor by a crowd that has left is
// back to the whole quota in about 20 s (the last copies of a run). Virtual time: the figures are the
// pacer's, not this machine's.
func TestFleetSharesThePutImageQuota(t *testing.T) {
	const quota = 10
	pushing := fleet(2)
	for range 10 {
		pushing = append(pushing, simWriter{told: 2, every: 10 * time.Second})
	}
	for _, tc := range []struct {
		name        string
		writers     []simWriter
		rtt, window time.Duration
	}{
		{"1 engine", fleet(1), 25 * time.Millisecond, 5 * time.Minute},
		{"2 engines", fleet(2), 25 * time.Millisecond, 5 * time.Minute},
		{"10 engines", fleet(10), 25 * time.Millisecond, 5 * time.Minute},
		{"50 engines", fleet(50), 25 * time.Millisecond, 5 * time.Minute},
		{"100 engines", fleet(100), 25 * time.Millisecond, 5 * time.Minute},
		{"2 engines, 200 ms away", fleet(2), 200 * time.Millisecond, 5 * time.Minute},
		{"50 engines, 200 ms away", fleet(50), 200 * time.Millisecond, 5 * time.Minute},
		{"1 of 2 engines writing", []simWriter{{told: 2}}, 25 * time.Millisecond, 5 * time.Minute},
		{"2 copying, 10 pushing a manifest every 10 s", pushing, 25 * time.Millisecond, 5 * time.Minute},
		{"1 of 2, starting at its floor", []simWriter{{told: 2, start: 1.0 / floorShare}}, 25 * time.Millisecond, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := simulateFleet(tc.writers, quota, tc.rtt, tc.window)
			t.Logf("%d accepted, %d throttled: %.0f%% of the quota used, %.1f%% of writes throttled",
				run.accepted, run.throttled, 100*run.utilization(), 100*run.throttleRate())
			if run.utilization() < 0.8 || run.throttleRate() > 0.05 {
				t.Errorf("quota used %.0f%% (want ≥ 80%%), writes throttled %.1f%% (want ≤ 5%%)", 100*run.utilization(), 100*run.throttleRate())
			}
		})
	}
}
