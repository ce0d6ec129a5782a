package copyengine

import (
	"testing"
	"time"
)

// BenchmarkLinkSent: the meter's cost per read of an upload body (32 KiB reads, as
// net/http's body copy makes them), eight uploads reading at once, past their warm-up.
func BenchmarkLinkSent(b *testing.B) {
	l := &link{minBytes: 32 << 20, minTime: time.Second}
	b.SetBytes(32 << 10)
	b.RunParallel(func(pb *testing.PB) {
		u := &upload{}
		for pb.Next() {
			l.sent(u, 32<<10)
		}
		l.end(u)
	})
}
