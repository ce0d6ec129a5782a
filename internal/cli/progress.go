package cli

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

type progressMode int

const (
	progressNone progressMode = iota // not a terminal, or --quiet/--no-progress/TERM=dumb
	progressBar                      // a terminal: one line redrawn in place
)

// progress shows a run advancing and prints its results. On a terminal (stderr) it is one
// line redrawn in place — items done of total, a bar, bytes sent, the rate and the elapsed
// time — that moves with every blob's bytes and is redrawn every second, so the clock
// never stops. Elsewhere it draws nothing: progress is for a person watching. Result
// lines go to results (stdout; nil for JSON) one per finished item, the bar cleared
// around them, wherever stdout goes.
type progress struct {
	mu       sync.Mutex
	w        io.Writer // the bar's: stderr
	results  io.Writer // result lines: stdout, or nil
	mode     progressMode
	unit     string // what an item is: "tags", "images", "copies"
	total    int
	started  int
	done     int
	itemSent int64 // bytes of finished items (what counts before the engine reports blobs)
	blobSent int64 // bytes the engine reported sending
	hooked   bool  // the engine reports blobs
	blobs    map[string]*blobState
	doneSize int64 // sizes of the blobs finished
	start    time.Time
	now      func() time.Time
	last     float64   // fraction last drawn: the bar never moves back
	lastDraw time.Time // when the bar was last drawn after a blob event
	drawn    bool
	width    int

	stop    chan struct{}
	stopped chan struct{}
}

type blobState struct {
	size, sent int64
}

// newProgress starts a display of total items on a's stderr — a bar where a person
// watches (app.showProgress), nothing elsewhere — printing result lines on stdout unless
// the output is JSON.
func newProgress(a *app, unit string, total int) *progress {
	mode := progressNone
	if a.showProgress() {
		mode = progressBar
	}
	p := newProgressTo(a.stderr, mode, unit, total, time.Now)
	if !a.json() {
		p.results = a.stdout
	}
	if mode == progressBar {
		if f, ok := a.stderr.(*os.File); ok {
			if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 20 {
				p.width = w
			}
		}
		p.stop, p.stopped = make(chan struct{}), make(chan struct{})
		go p.ticker()
	}
	return p
}

// newProgressTo is a display with no ticker: tick is called by the caller (tests).
func newProgressTo(w io.Writer, mode progressMode, unit string, total int, now func() time.Time) *progress {
	start := now()
	return &progress{w: w, mode: mode, unit: unit, total: total, blobs: map[string]*blobState{},
		start: start, now: now, lastDraw: start, width: 100}
}

func (p *progress) ticker() {
	defer close(p.stopped)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.tick()
		}
	}
}

// tick redraws the bar: the clock moves.
func (p *progress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == progressBar {
		p.draw()
	}
}

// itemStarted counts an item as under way.
func (p *progress) itemStarted() {
	p.mu.Lock()
	p.started++
	p.mu.Unlock()
}

// blobStarted, blobBytes, blobDone and blobSkipped are the engine's per-blob events;
// key names a blob at a destination.
func (p *progress) blobStarted(key string, size int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hooked = true
	if b, ok := p.blobs[key]; ok {
		b.sent = 0 // the upload restarted from byte 0 (a retry)
	} else {
		p.blobs[key] = &blobState{size: size}
	}
	p.redraw()
}

func (p *progress) blobBytes(key string, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hooked = true
	p.blobSent += n
	if b, ok := p.blobs[key]; ok {
		b.sent += n
	}
	p.redraw()
}

func (p *progress) blobDone(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b, ok := p.blobs[key]; ok {
		p.doneSize += b.size
	}
	delete(p.blobs, key)
	p.redraw()
}

// itemDone counts a finished item and prints its line (none when line is "").
func (p *progress) itemDone(bytes int64, line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	p.itemSent += bytes
	if line != "" && p.results != nil {
		p.clear()
		fmt.Fprintln(p.results, line)
	}
	if p.mode == progressBar {
		p.draw()
	}
}

// clear erases the bar, so that a line printed next starts on a clean line.
func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

// finish stops the display and clears the bar.
func (p *progress) finish() {
	if p.stop != nil {
		close(p.stop)
		<-p.stopped
		p.stop = nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

// redraw draws the bar after a blob event, at most every 100 ms.
func (p *progress) redraw() {
	if p.mode != progressBar {
		return
	}
	if now := p.now(); now.Sub(p.lastDraw) >= 100*time.Millisecond {
		p.lastDraw = now
		p.draw()
	}
}

func (p *progress) sent() int64 {
	if p.hooked {
		return p.blobSent
	}
	return p.itemSent
}

// fraction is how far the run is: items done, plus the items under way in proportion to
// the bytes their blobs have sent. With one item it is that item's bytes.
func (p *progress) fraction() float64 {
	if p.total <= 0 || p.done >= p.total {
		return 1
	}
	var size, sent int64
	for _, b := range p.blobs {
		size += b.size
		sent += b.sent
	}
	f := float64(p.done) / float64(p.total)
	switch {
	case p.total == 1 && size+p.doneSize > 0:
		f = float64(p.doneSize+sent) / float64(p.doneSize+size)
	case size > 0:
		inflight := max(p.started-p.done, 1)
		f += float64(inflight) * float64(sent) / float64(size) / float64(p.total)
	}
	f = min(max(f, p.last), float64(p.done+max(p.started-p.done, 1))/float64(p.total), 1)
	p.last = f
	return f
}

// status is the part of a line after the counts: percentage, bytes, rate, clock.
func (p *progress) status() string {
	elapsed := p.now().Sub(p.start)
	sent := p.sent()
	rate := float64(sent) / max(elapsed.Seconds(), 0.001)
	return fmt.Sprintf("%3.0f%%  %s sent  %s/s  %s", 100*p.fraction(), humanBytes(sent), humanBytes(int64(rate)), clock(elapsed))
}

// draw redraws the terminal line.
func (p *progress) draw() {
	const barWidth = 24
	f := p.fraction()
	filled := int(f * barWidth)
	bar := strings.Repeat("█", filled) + strings.Repeat("░", barWidth-filled)
	line := fmt.Sprintf("%d/%d %s [%s] %s", p.done, p.total, p.unit, bar, p.status())
	if r := []rune(line); len(r) > p.width-1 {
		line = string(r[:p.width-1])
	}
	fmt.Fprint(p.w, "\r"+line+"\x1b[K")
	p.drawn = true
}

// clock formats an elapsed time as m:ss (h:mm:ss past an hour).
func clock(d time.Duration) string {
	s := int(d.Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
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

// plural is "1 tag" or "3 tags" for unit "tags".
func plural(n int, unit string) string {
	if n == 1 {
		unit = strings.TrimSuffix(unit, "s")
		if strings.HasSuffix(unit, "ie") { // copies → copy
			unit = strings.TrimSuffix(unit, "ie") + "y"
		}
	}
	return fmt.Sprintf("%d %s", n, unit)
}
