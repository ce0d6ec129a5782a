package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/testing/sandboxtest"
)

// clockAt is a settable clock for the progress display.
type clockAt struct{ t time.Time }

func (c *clockAt) now() time.Time           { return c.t }
func (c *clockAt) advance(d time.Duration)  { c.t = c.t.Add(d) }
func newClock() *clockAt                    { return &clockAt{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func drained(b *strings.Builder) (s string) { s = b.String(); b.Reset(); return s }
func result(outcome string, n int64) imageResult {
	return imageResult{Destination: "reg.example/mirror/app", Tag: "v1", Digest: "sha256:" + strings.Repeat("ab", 32), Outcome: outcome, BytesCopied: n}
}

// TestProgressLines: off a terminal, a line per finished item and, while a transfer runs
// without an item finishing, a bytes line every linesEvery — never silence for the whole
// of a long copy.
func TestProgressLines(t *testing.T) {
	var out strings.Builder
	c := newClock()
	p := newProgressTo(&out, progressLines, "tags", 2, c.now)

	p.itemStarted()
	p.blobStarted("blob-a", 1<<30)
	p.blobBytes("blob-a", 256<<20)
	c.advance(5 * time.Second)
	p.tick()
	if s := drained(&out); s != "" {
		t.Errorf("a bytes line before linesEvery: %q", s)
	}
	c.advance(5 * time.Second)
	p.tick()
	if s := drained(&out); s != "[0/2]  12%  256.0 MiB sent  25.6 MiB/s  0:10\n" {
		t.Errorf("bytes line: %q", s)
	}
	p.blobBytes("blob-a", 768<<20)
	p.blobDone("blob-a")
	p.itemDone(result("copied", 1<<30))
	if s := drained(&out); s != "[1/2] copied reg.example/mirror/app:v1@sha256:abababababab 1.0 GiB\n" {
		t.Errorf("item line: %q", s)
	}
	c.advance(30 * time.Second)
	p.tick()
	if s := drained(&out); s != "" {
		t.Errorf("a bytes line with nothing in flight: %q", s)
	}
	r := result("failed", 0)
	r.Code = "MANIFEST_UNKNOWN"
	p.itemDone(r)
	if s := drained(&out); s != "[2/2] failed reg.example/mirror/app:v1@sha256:abababababab (MANIFEST_UNKNOWN)\n" {
		t.Errorf("failed item line: %q", s)
	}

	// Items cancelled by Ctrl-C are not printed one by one.
	p = newProgressTo(&out, progressLines, "tags", 1, c.now)
	p.quiet = func(imageResult) bool { return true }
	p.itemDone(result("failed", 0))
	if s := drained(&out); s != "" {
		t.Errorf("a quiet result was printed: %q", s)
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
	p.itemDone(result("copied", 4000))
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
	p := newProgressTo(&out, progressLines, "tags", 1, time.Now)
	p.itemStarted()
	src, dst := w.Source.Ref(t, "team-a/app", "v1").Context(), w.Dest.Ref(t, "mirror/app", "v1").Context()
	r := copyengine.New(progressOption(p)...).Start().Copy(w.Ctx, copyengine.Request{
		Source:      copyengine.Endpoint{Repository: src, Auth: w.Source.Auth},
		Destination: copyengine.Endpoint{Repository: dst, Auth: w.Dest.Auth},
		Digest:      d.String(), Tag: "v1",
	})
	if r.Err != nil || r.BytesCopied < 9<<20 {
		t.Fatalf("copy: %+v", r)
	}
	if !p.hooked || p.blobSent != r.BytesCopied || len(p.blobs) != 0 || p.fraction() != 1 {
		t.Errorf("progress: hooked %v, %d bytes sent of %d copied, %d blobs in flight, fraction %v", p.hooked, p.blobSent, r.BytesCopied, len(p.blobs), p.fraction())
	}
}
