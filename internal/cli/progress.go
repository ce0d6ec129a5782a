package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress reports images as they finish: a bar (images done/total, bytes, rate) on a
// terminal, one plain line per image otherwise. JSON output keeps stderr quiet.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	bar   *progressbar.ProgressBar
	total int
	n     int
	bytes int64
	start time.Time
	quiet bool
}

func newProgress(w io.Writer, total int, quiet bool) *progress {
	p := &progress{w: w, total: total, start: time.Now(), quiet: quiet}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && !quiet {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("images"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionClearOnFinish(),
		)
	}
	return p
}

func (p *progress) done(r imageResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	p.bytes += r.BytesCopied
	switch {
	case p.quiet:
	case p.bar != nil:
		rate := float64(p.bytes) / max(time.Since(p.start).Seconds(), 0.001)
		p.bar.Describe(fmt.Sprintf("images (%s, %s/s)", humanBytes(p.bytes), humanBytes(int64(rate))))
		p.bar.Add(1)
	default:
		ref := r.Tag
		if ref == "" {
			ref = shortDigest(r.Digest)
		}
		fmt.Fprintf(p.w, "[%d/%d] %s %s:%s %s\n", p.n, p.total, r.Outcome, r.Destination, ref, humanBytes(r.BytesCopied))
	}
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func summarize(counts map[string]int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
	}
	return strings.Join(parts, ", ")
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
