package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// clockAt is a settable clock for the progress display.
type clockAt struct{ t time.Time }

func (c *clockAt) now() time.Time           { return c.t }
func (c *clockAt) advance(d time.Duration)  { c.t = c.t.Add(d) }
func newClock() *clockAt                    { return &clockAt{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func drained(b *strings.Builder) (s string) { s = b.String(); b.Reset(); return s }

// TestProgressResultLines: a result line goes to the results writer, the bar (on the
// other writer, the same terminal) cleared before it and drawn again after; with no bar,
// the line alone.
func TestProgressResultLines(t *testing.T) {
	var bar, out strings.Builder
	c := newClock()
	p := newProgressTo(&bar, progressBar, "tags", 2, c.now)
	p.results = &out
	p.itemStarted()
	p.tick()
	if s := drained(&bar); !strings.HasPrefix(s, "\r0/2 tags [") {
		t.Fatalf("bar: %q", s)
	}
	p.itemDone(10, "copied          reg.example/app:v1")
	if s := drained(&bar); !strings.HasPrefix(s, "\r\x1b[K\r1/2 tags [") {
		t.Errorf("the bar is not cleared and redrawn around a result line: %q", s)
	}
	if s := drained(&out); s != "copied          reg.example/app:v1\n" {
		t.Errorf("result line: %q", s)
	}
	p.itemDone(0, "") // not printed (Ctrl-C cut it, or --quiet)
	if s := drained(&out); s != "" {
		t.Errorf("an empty line was printed: %q", s)
	}
	drained(&bar)

	p = newProgressTo(&bar, progressNone, "tags", 1, c.now)
	p.results = &out
	p.itemStarted()
	p.tick()
	p.itemDone(10, "copied          reg.example/app:v1")
	p.finish()
	if s := drained(&bar); s != "" {
		t.Errorf("no bar, yet: %q", s)
	}
	if s := drained(&out); s != "copied          reg.example/app:v1\n" {
		t.Errorf("result line without a bar: %q", s)
	}
}

// TestProgressBar: on a terminal the bar of a single image moves with its bytes, and the
// clock moves with no event at all.
func TestProgressBar(t *testing.T) {
	var out strings.Builder
	c := newClock()
	p := newProgressTo(&out, progressBar, "tags", 1, c.now)
	p.itemStarted()
	p.blobStarted("a", 1000)
	p.blobStarted("b", 3000)
	c.advance(time.Second)
	p.blobBytes("a", 1000)
	p.blobDone("a")
	p.blobBytes("b", 1000)
	c.advance(time.Second)
	p.tick()
	want := "\r0/1 tags [████████████░░░░░░░░░░░░]  50%  2.0 KiB sent  1000 B/s  0:02\x1b[K"
	if s := drained(&out); !strings.HasSuffix(s, want) {
		t.Errorf("bar at half the bytes:\n%q\nwant suffix\n%q", s, want)
	}
	c.advance(61 * time.Second)
	p.tick()
	if s := drained(&out); !strings.HasSuffix(s, " 1:03\x1b[K") {
		t.Errorf("the clock did not move: %q", s)
	}
	p.itemDone(4000, "")
	if s := drained(&out); !strings.Contains(s, "1/1 tags [████████████████████████] 100%") {
		t.Errorf("bar when done: %q", s)
	}
	p.finish()
	if s := drained(&out); s != "\r\x1b[K" {
		t.Errorf("finish does not clear the bar: %q", s)
	}
}

// TestProgressFractionNeverMovesBack: with several items, a big blob starting does not
// move the bar back.
func TestProgressFractionNeverMovesBack(t *testing.T) {
	var out strings.Builder
	p := newProgressTo(&out, progressBar, "copies", 4, newClock().now)
	p.itemStarted()
	p.blobStarted("a", 100)
	p.blobBytes("a", 100)
	before := p.fraction()
	p.blobStarted("b", 1<<30)
	if after := p.fraction(); after < before {
		t.Errorf("fraction moved back: %v → %v", before, after)
	}
	if before <= 0 || before > 0.25 {
		t.Errorf("one of four items under way, its blob sent: fraction %v, want in (0, 0.25]", before)
	}
}

// TestProgressFromEngine: the engine's blob events reach the display: every byte it
// reports sent is counted, and no blob is left in flight after the copy.
func TestProgressFromEngine(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/app")})
	img, _ := random.Image(3<<20, 3)
	d := w.Source.Push(t, "team-a/app", "v1", img)
	var out strings.Builder
	p := newProgressTo(&out, progressBar, "tags", 1, time.Now)
	p.itemStarted()
	src, dst := w.Source.Ref(t, "team-a/app", "v1").Context(), w.Dest.Ref(t, "mirror/app", "v1").Context()
	r := destinations.StartDirect(destinations.NewEngine(destinations.EngineOptions{Progress: progressFunc(p)})).Copy(w.Ctx,
		destinations.Endpoint{Repository: src, Auth: w.Source.Auth}, destinations.Endpoint{Repository: dst, Auth: w.Dest.Auth}, d.String(), "v1", false)
	if r.Err != nil || r.BytesCopied < 9<<20 {
		t.Fatalf("copy: %+v", r)
	}
	if !p.hooked || p.blobSent != r.BytesCopied || len(p.blobs) != 0 || p.fraction() != 1 {
		t.Errorf("progress: hooked %v, %d bytes sent of %d copied, %d blobs in flight, fraction %v", p.hooked, p.blobSent, r.BytesCopied, len(p.blobs), p.fraction())
	}
}
