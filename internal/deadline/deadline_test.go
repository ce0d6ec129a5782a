package deadline

import (
	"context"
	"testing"
	"time"
)

func TestBudget(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name             string
		left             time.Duration
		o                Options
		wantSoft, wantHd time.Duration // before the deadline
	}{
		{"a 300 s function", 300 * time.Second, Options{}, 30 * time.Second, 15 * time.Second},
		{"a 60 s function", 60 * time.Second, Options{}, 12 * time.Second, 6 * time.Second},
		{"a 5 s function keeps 2 s", 5 * time.Second, Options{}, 2 * time.Second, 2 * time.Second},
		{"a 900 s function", 900 * time.Second, Options{}, 30 * time.Second, 15 * time.Second},
		{"a 1.2 s test keeps half", 1200 * time.Millisecond, Options{}, 600 * time.Millisecond, 600 * time.Millisecond},
		{"overridden", 60 * time.Second, Options{Reserve: time.Second, Margin: 40 * time.Second}, 40 * time.Second, time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			dl := now.Add(c.left)
			ctx, cancel := context.WithDeadline(context.Background(), dl)
			defer cancel()
			b := New(ctx, now, c.o)
			if got := dl.Sub(b.soft); got != c.wantSoft {
				t.Errorf("soft stop %v before the deadline, want %v", got, c.wantSoft)
			}
			if got := dl.Sub(b.hard); got != c.wantHd {
				t.Errorf("hard stop %v before the deadline, want %v", got, c.wantHd)
			}
			if b.SoftStopped(b.soft.Add(-time.Nanosecond)) || !b.SoftStopped(b.soft) {
				t.Error("SoftStopped disagrees with the soft stop")
			}
			wctx, wcancel := b.Work(ctx)
			defer wcancel()
			if got, _ := wctx.Deadline(); !got.Equal(b.hard) {
				t.Errorf("work deadline %v, want %v", got, b.hard)
			}
			lctx, lcancel := b.Late(ctx)
			defer lcancel()
			if got, _ := lctx.Deadline(); !got.Equal(dl.Add(-c.wantHd / 2)) {
				t.Errorf("late deadline %v before the deadline, want %v", dl.Sub(got), c.wantHd/2)
			}
		})
	}
	var none Budget = New(context.Background(), now, Options{})
	if none.SoftStopped(now.Add(time.Hour)) {
		t.Error("no deadline: nothing stops")
	}
	ctx, cancel := none.Work(context.Background())
	defer cancel()
	if _, ok := ctx.Deadline(); ok {
		t.Error("no deadline: the work context has one")
	}
}
