package copyengine

import (
	"io"
	"sync"
	"time"
)

// An upload shorter than these says more about round trips, TCP's slow start and socket
// buffers than about throughput: a window of the link's meter counts only if every
// upload that fed it read at least this much over at least this long, and a window
// itself spans at least as much.
const (
	minMeasuredBytes = 32 << 20
	minMeasuredTime  = time.Second
)

// maxHeldWindows bounds the measured windows a meter keeps waiting for their uploads to
// prove long enough (windows span minTime each: about a minute of uploads in production);
// a window dropped never counts, which only leaves a verdict unmade.
const maxHeldWindows = 64

// links are the engine's link meters, one per destination registry host (as the
// manifest pacers): what the path to one destination carries is no bound on another's —
// a single TCP stream to a far region is bound by its round-trip time.
type links struct {
	// minBytes and minTime: minMeasuredBytes and minMeasuredTime (tests lower them to
	// keep their images small), for the meters created after they are set.
	minBytes int64
	minTime  time.Duration
	seed     float64 // WithTransferRate: every meter's best until it measures more

	mu    sync.Mutex
	hosts map[string]*link
}

// host returns the meter of a destination registry host.
func (m *links) host(h string) *link {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.hosts[h]
	if !ok {
		if m.hosts == nil {
			m.hosts = map[string]*link{}
		}
		l = &link{minBytes: m.minBytes, minTime: m.minTime, best: m.seed}
		m.hosts[h] = l
	}
	return l
}

// rate is the best rate measured on the link to host (bytes per second; 0: none).
func (m *links) rate(host string) float64 { return m.host(host).rate() }

// link measures the rate at which the uploads to one destination host, all together,
// move bytes over windows of at least minTime and minBytes, and keeps the fastest window
// as the link's best (0: none measured yet). Uploads sharing the link each see a share
// of it; only their sum says what the link can do, which is what one upload alone gets
// at best. A window counts what the link carried, not round trips nor waits:
//   - time runs only while upload bodies are being read (from an upload's first read to
//     its last): the wait for the registry's answer to a PUT, and the time between
//     uploads, are not the link's;
//   - a window counts only once every upload that fed it has read minBytes over minTime
//     (until then it is held), and never if one of them ended short of that: a small
//     upload is all round trips, slow start and socket buffers, and small uploads added
//     together would measure those, however many there are;
//   - the first window of a busy spell (bodies being read without a break) is not
//     counted: its bytes fill the connections' socket buffers (megabytes each) at memory
//     speed, faster than the link carries them, while new connections climb slow start.
type link struct {
	minBytes int64
	minTime  time.Duration

	mu      sync.Mutex
	reading int       // upload bodies being read
	start   time.Time // the current window's
	last    time.Time // the last bytes read in it
	bytes   int64     // read in the current window
	warm    bool      // the busy spell's first window is over
	cur     *window   // the current window's short feeders (nil: none yet)
	held    []*window // measured windows waiting on their feeders
	best    float64   // bytes per second
}

// window is a window's rate and the uploads that fed it while short of minBytes over
// minTime: it counts once none is left, never if one ended short (dead).
type window struct {
	rate  float64
	short map[*upload]bool
	dead  bool
}

// upload is one upload body as the link sees it; its fields are the link's (under mu).
type upload struct {
	first   time.Time
	bytes   int64
	long    bool    // read minBytes over minTime
	fed     *window // the last window it was recorded in as short
	reading bool
	ended   bool
}

// sent counts n bytes an upload read; a window long and large enough is measured and a
// new one starts.
func (l *link) sent(u *upload, n int64) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if u.ended {
		return
	}
	if !u.reading {
		u.first, u.reading = now, true
		if l.reading == 0 { // a busy spell begins
			l.start, l.last, l.bytes, l.warm, l.cur = now, time.Time{}, 0, false, nil
		}
		l.reading++
	}
	u.bytes += n
	if !u.long && u.bytes >= l.minBytes && now.Sub(u.first) >= l.minTime {
		u.long = true
		l.proven(u)
	}
	if !u.long && (l.cur == nil || u.fed != l.cur) {
		if l.cur == nil {
			l.cur = &window{short: map[*upload]bool{}}
		}
		l.cur.short[u], u.fed = true, l.cur
	}
	l.bytes += n
	l.last = now
	if d := now.Sub(l.start); l.bytes >= l.minBytes && d >= l.minTime {
		l.measure(float64(l.bytes) / d.Seconds())
		l.start, l.bytes, l.warm = now, 0, true
	}
}

// end is an upload done reading (finished, failed or cut; called again, nothing). When
// no body is left being read, the busy spell's last window counts up to its last byte,
// if long and large enough.
func (l *link) end(u *upload) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if u.ended {
		return
	}
	u.ended = true
	if !u.reading {
		return // never read
	}
	if !u.long {
		l.shortEnded(u)
	}
	if l.reading--; l.reading > 0 {
		return
	}
	if d := l.last.Sub(l.start); l.bytes >= l.minBytes && d >= l.minTime {
		l.measure(float64(l.bytes) / d.Seconds())
	}
	l.bytes, l.cur = 0, nil
}

// measure closes the current window at rate: counted now if all its feeders are long,
// held for them otherwise; the spell's first window is not counted.
func (l *link) measure(rate float64) {
	w := l.cur
	l.cur = nil
	switch {
	case !l.warm || w != nil && w.dead:
	case w == nil || len(w.short) == 0:
		l.best = max(l.best, rate)
	case len(l.held) < maxHeldWindows:
		w.rate = rate
		l.held = append(l.held, w)
	}
}

// proven: u has read minBytes over minTime; the windows waiting only on it count.
func (l *link) proven(u *upload) {
	if l.cur != nil {
		delete(l.cur.short, u)
	}
	held := l.held[:0]
	for _, w := range l.held {
		if delete(w.short, u); len(w.short) == 0 {
			l.best = max(l.best, w.rate)
			continue
		}
		held = append(held, w)
	}
	clear(l.held[len(held):])
	l.held = held
}

// shortEnded: u ended short of minBytes over minTime; no window it fed counts.
func (l *link) shortEnded(u *upload) {
	if l.cur != nil && l.cur.short[u] {
		l.cur.dead = true
	}
	held := l.held[:0]
	for _, w := range l.held {
		if !w.short[u] {
			held = append(held, w)
		}
	}
	clear(l.held[len(held):])
	l.held = held
}

func (l *link) rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.best
}

// linkReader counts what an upload reads from the source into its PUT on the link; the
// upload ends at its last read (an error or EOF) or when the body is closed.
type linkReader struct {
	io.ReadCloser
	link *link
	u    upload
}

func (r *linkReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.link.sent(&r.u, int64(n))
	}
	if err != nil {
		r.link.end(&r.u)
	}
	return n, err
}

func (r *linkReader) Close() error {
	r.link.end(&r.u)
	return r.ReadCloser.Close()
}
