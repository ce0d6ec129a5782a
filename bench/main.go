// Command bench measures ecr-replicator against crane, regctl and skopeo on this machine,
// so that docs/PERFORMANCE.md compares figures, not claims: two CNCF distribution
// registries on 127.0.0.1, each behind a counting, delaying proxy, and the sandbox's ECR
// API for the in-sync scenario. `make bench` runs it.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// scenario is one thing to copy.
type scenario struct {
	id, title string
	repo, tag string
	tags      []string // for allTags
	allTags   bool
	cold      bool // destination emptied before every run
	ecr       bool // against the sandbox (ECR API + registries)
	digest    string
	repos     []string    // scenario 5: one image (v1) per repository
	mounting  *mountBench // scenario 5's sandbox
	// skip names the tools that do not run in this scenario, and why.
	skip map[string]string
}

// sample is one timed run of one tool.
type sample struct {
	wall, cpu time.Duration
	rssKiB    int64
	c         counts
	uploaded  int64 // request bodies the destination registry received
	err       string
}

type result struct {
	tool    *tool
	how     string
	samples []sample
	note    string
}

type bench struct {
	binDir, work string
	runs         int
	scale        float64
	timeout      time.Duration
	tools        []*tool
	srcProxy     *proxy
	dstProxy     *proxy
	src          *registryProc
	dst          *registryProc // current destination
	dstSync      *registryProc // in-sync destination (scenario 4)
	registryBin  string
	runN         int
	verbose      bool
}

func main() {
	var (
		b      bench
		delays = flag.String("delays", "0,25", "per-request proxy delays in ms, comma-separated")
		only   = flag.String("scenarios", "1,2,3,4,5", "scenarios to run")
		out    = flag.String("out", "bench/RESULTS.md", "markdown report")
		tags   = flag.Int("tags", 100, "tags in scenarios 2 and 4")
	)
	flag.StringVar(&b.binDir, "bin", "bench/_work/bin", "directory with registry, crane, regctl, ecr-replicator")
	flag.StringVar(&b.work, "work", "bench/_work", "scratch directory (registry storage, temp homes)")
	flag.IntVar(&b.runs, "runs", 5, "timed runs per tool (after one warm-up)")
	flag.Float64Var(&b.scale, "scale", 1, "size factor (0.1: a 100 MiB image in scenario 1)")
	flag.DurationVar(&b.timeout, "timeout", 20*time.Minute, "limit per tool run")
	flag.BoolVar(&b.verbose, "v", false, "log every run")
	flag.Parse()
	log.SetFlags(log.Ltime)
	if b.runs < 1 || b.scale <= 0 || *tags < 1 {
		log.Fatal("-runs, -scale and -tags must be positive")
	}
	var err error
	if b.binDir, err = filepath.Abs(b.binDir); err != nil {
		log.Fatal(err)
	}
	if b.work, err = filepath.Abs(b.work); err != nil {
		log.Fatal(err)
	}
	var ds []time.Duration
	for _, f := range strings.Split(*delays, ",") {
		ms, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || ms < 0 {
			log.Fatalf("-delays: %q", f)
		}
		ds = append(ds, time.Duration(ms)*time.Millisecond)
	}
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		want[strings.TrimSpace(s)] = true
	}
	ctx := context.Background()
	b.registryBin = filepath.Join(b.binDir, "registry")
	b.tools = newTools(b.binDir)
	for _, t := range []string{b.registryBin, filepath.Join(b.binDir, "crane"), filepath.Join(b.binDir, "ecr-replicator")} {
		if !hasBin(t) {
			log.Fatalf("%s missing: run `make bench` (it builds the tools)", t)
		}
	}
	scs, err := b.setup(ctx, *tags, want)
	if err != nil {
		log.Fatal(err)
	}
	defer b.teardown()

	var sections []string
	var evals []evaluation
	others := appendedSections(*out)
	// A run of some scenarios only is appended as a section of its own: rewriting the
	// side-by-side tables with it would drop the others' tables.
	compose := func() string {
		if subset := strings.Join(scenarioIDs(want), ","); subset != "1,2,3,4,5" {
			if main := mainSection(*out); main != "" {
				return main + others + "\n## Scenarios " + subset + " alone — " + time.Now().UTC().Format("2006-01-02 15:04") + " UTC\n\n" +
					b.runFacts(*tags, ds) + "\n" + strings.Join(sections, "\n") + "\n" + strings.Replace(targetsSection(evals), "## Targets", "### Targets", 1)
			}
		}
		return b.header(*tags, ds) + strings.Join(sections, "\n") + "\n" + targetsSection(evals) + others
	}
	for _, sc := range scs {
		if !want[sc.id] && !(sc.id == "4-ecr" && want["4"]) {
			continue
		}
		for _, d := range ds {
			res, err := b.runScenario(ctx, sc, d)
			if err != nil {
				log.Printf("scenario %s at %v: %v", sc.id, d, err)
				sections = append(sections, fmt.Sprintf("### %s — %d ms\n\nnot run: %v\n", sc.title, d.Milliseconds(), err))
				continue
			}
			sec := table(sc, d, res)
			fmt.Println(sec)
			sections = append(sections, sec)
			evals = append(evals, evaluate(sc, d, res)...)
			// Written after every table, so an interrupted run still leaves a report.
			if err := os.WriteFile(*out, []byte(compose()), 0o644); err != nil {
				log.Fatal(err)
			}
		}
	}
	fmt.Println(targetsSection(evals))
	if err := os.WriteFile(*out, []byte(compose()), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s", *out)
}

func (b *bench) setup(ctx context.Context, tags int, want map[string]bool) ([]*scenario, error) {
	var err error
	if err := os.MkdirAll(b.work, 0o755); err != nil {
		return nil, err
	}
	log.Printf("starting registries")
	if b.src, err = startRegistry(b.registryBin, filepath.Join(b.work, "reg-src")); err != nil {
		return nil, err
	}
	if b.srcProxy, err = newProxy(b.src.addr, nil); err != nil {
		return nil, err
	}
	if b.dstProxy, err = newProxy("127.0.0.1:1", nil); err != nil {
		return nil, err
	}
	scs, err := b.seed(ctx, tags, want)
	if err != nil {
		return nil, fmt.Errorf("seeding: %w", err)
	}
	return scs, nil
}

func (b *bench) teardown() {
	b.src.stop()
	b.dst.stop()
	b.dstSync.stop()
	if b.srcProxy != nil {
		b.srcProxy.close()
		b.dstProxy.close()
	}
	stopSandbox()
	if mnt != nil {
		mnt.close()
	}
}

// freshDestination replaces the destination registry by an empty one behind the proxy.
func (b *bench) freshDestination() error {
	b.dst.stop()
	var err error
	b.dst, err = startRegistry(b.registryBin, filepath.Join(b.work, "reg-dst"))
	if err != nil {
		return err
	}
	b.dstProxy.setTarget(b.dst.addr)
	return nil
}

func (b *bench) runScenario(ctx context.Context, sc *scenario, delay time.Duration) ([]*result, error) {
	var tg target
	var proxies []*proxy
	if sc.mounting != nil {
		tg, proxies = sc.mounting.st.target, sc.mounting.st.proxies
	} else if sc.ecr {
		sbx, err := sandboxTarget()
		if err != nil {
			return nil, err
		}
		tg, proxies = sbx.target, sbx.proxies
	} else {
		tg = target{src: b.srcProxy.addr(), dst: b.dstProxy.addr()}
		proxies = []*proxy{b.srcProxy, b.dstProxy}
		if !sc.cold {
			b.dstProxy.setTarget(b.dstSync.addr)
		}
	}
	for _, p := range proxies {
		p.setDelay(delay)
	}
	defer func() {
		for _, p := range proxies {
			p.setDelay(0)
		}
	}()
	var res []*result
	for _, t := range b.tools {
		if t.only != "" && t.only != sc.id {
			continue
		}
		r := &result{tool: t}
		_, r.how = t.cmds(sc, tg, "")
		switch {
		case !t.available:
			r.note = t.note
		case sc.skip[t.name] != "":
			r.note = sc.skip[t.name]
		}
		res = append(res, r)
	}
	log.Printf("%s, delay %v", sc.title, delay)
	// One warm-up per tool, then runs alternating tool by tool.
	for i := 0; i <= b.runs; i++ {
		for _, r := range res {
			if r.note != "" {
				continue
			}
			s := b.runOnce(ctx, r.tool, sc, tg, proxies)
			if b.verbose || s.err != "" {
				log.Printf("  %-15s run %d: wall %v cpu %v rss %d KiB reqs %d %s", r.tool.name, i, s.wall.Round(time.Millisecond), s.cpu.Round(time.Millisecond), s.rssKiB, s.c.total(), s.err)
			}
			if i > 0 {
				r.samples = append(r.samples, s)
			}
		}
	}
	return res, nil
}

func (b *bench) runOnce(ctx context.Context, t *tool, sc *scenario, tg target, proxies []*proxy) sample {
	b.runN++
	tmp := filepath.Join(b.work, "tmp", fmt.Sprintf("run-%d", b.runN))
	os.RemoveAll(tmp)
	defer os.RemoveAll(tmp)
	var s sample
	for _, d := range []string{".docker", "registries.d", "xdg/config", "xdg/data", "xdg/cache", "xdg/run"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o700); err != nil {
			s.err = err.Error()
			return s
		}
	}
	auths := map[string]map[string]string{}
	for h, a := range tg.auth {
		auths[h] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(a[0] + ":" + a[1]))}
	}
	cfg, _ := json.Marshal(map[string]any{"auths": auths})
	if err := os.WriteFile(filepath.Join(tmp, ".docker", "config.json"), cfg, 0o600); err != nil {
		s.err = err.Error()
		return s
	}
	switch {
	case sc.mounting != nil:
		if err := sc.mounting.prepare(ctx, t); err != nil {
			s.err = "preparing the destination: " + err.Error()
			return s
		}
	case sc.cold:
		if err := b.freshDestination(); err != nil {
			s.err = err.Error()
			return s
		}
	}
	if t.name == "skopeo" && os.Geteuid() == 0 {
		// As root, containers/image keeps its blob-info cache here whatever HOME says.
		os.Remove("/var/lib/containers/cache/blob-info-cache-v1.boltdb")
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + tmp,
		"DOCKER_CONFIG=" + filepath.Join(tmp, ".docker"),
		"REGCTL_CONFIG=" + filepath.Join(tmp, "regctl.json"),
		"XDG_CONFIG_HOME=" + filepath.Join(tmp, "xdg/config"),
		"XDG_DATA_HOME=" + filepath.Join(tmp, "xdg/data"),
		"XDG_CACHE_HOME=" + filepath.Join(tmp, "xdg/cache"),
		"XDG_RUNTIME_DIR=" + filepath.Join(tmp, "xdg/run"),
		"TMPDIR=" + tmp,
		"AWS_EC2_METADATA_DISABLED=true",
	}
	argvs, _ := t.cmds(sc, tg, tmp)
	for _, p := range proxies {
		p.take()
	}
	rctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	start := time.Now()
	for _, argv := range argvs {
		cmd := exec.CommandContext(rctx, argv[0], argv[1:]...)
		cmd.Env = env
		cmd.Dir = tmp
		var stderr strings.Builder
		cmd.Stdout = io.Discard
		cmd.Stderr = &stderr
		floor := hwmKiB("self")
		var err error
		var polled int64
		if err = cmd.Start(); err == nil {
			polled = pollHWM(cmd)
			err = cmd.Wait()
		}
		if cmd.ProcessState != nil {
			s.cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			// Linux carries the parent's RSS high-water mark over fork+exec into the
			// child's ru_maxrss: a figure at or below our own is the floor, not the
			// child's; then the polled VmHWM of the child is the better figure.
			rss := polled
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > floor+1024 {
				rss = max(rss, ru.Maxrss)
			}
			s.rssKiB = max(s.rssKiB, rss)
		}
		if err != nil {
			msg := strings.TrimSpace(stderr.String())
			if len(msg) > 300 {
				msg = msg[len(msg)-300:]
			}
			s.err = fmt.Sprintf("%s: %v: %s", filepath.Base(argv[0]), err, msg)
			break
		}
	}
	s.wall = time.Since(start)
	for _, p := range proxies {
		c := p.take()
		if p.addr() == tg.dst {
			s.uploaded = c.Written
		}
		s.c.add(c)
	}
	if s.err == "" && sc.cold && !sc.ecr {
		if err := b.verify(sc, t.name == "skopeo" && sc.id == "3"); err != nil {
			s.err = "verify: " + err.Error()
		}
	}
	if s.err == "" && sc.mounting != nil {
		if err := sc.mounting.check(); err != nil {
			s.err = "verify: " + err.Error()
		}
	}
	return s
}

// hwmKiB is VmHWM (peak RSS) of /proc/PID, 0 when unknown.
func hwmKiB(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return 0
}

// pollHWM samples the child's VmHWM every 10 ms until it exits (VmHWM is monotonic,
// so the last sample is the peak up to the last 10 ms of its life).
func pollHWM(cmd *exec.Cmd) int64 {
	pid := strconv.Itoa(cmd.Process.Pid)
	var peak int64
	for i := 0; i < 10_000_000; i++ { // bounded; ends when /proc/PID is gone or a zombie
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil || strings.Contains(string(b), ") Z ") {
			break
		}
		peak = max(peak, hwmKiB(pid))
		time.Sleep(10 * time.Millisecond)
	}
	return peak
}

// verify checks the destination got what was copied.
func (b *bench) verify(sc *scenario, anyDigest bool) error {
	repo, err := name.NewRepository(b.dst.addr+"/"+sc.repo, name.Insecure)
	if err != nil {
		return err
	}
	if sc.allTags {
		tags, err := remote.List(repo)
		if err != nil {
			return err
		}
		if len(tags) < len(sc.tags) {
			return fmt.Errorf("%d of %d tags in the destination", len(tags), len(sc.tags))
		}
		return nil
	}
	d, err := remote.Head(repo.Tag(sc.tag))
	if err != nil {
		return err
	}
	if !anyDigest && d.Digest.String() != sc.digest {
		return fmt.Errorf("destination has %s, source %s", d.Digest, sc.digest)
	}
	return nil
}

// --- statistics and report ---

func median[T int64 | time.Duration](xs []T) (med, lo, hi T) {
	if len(xs) == 0 {
		return
	}
	s := append([]T{}, xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := len(s)
	if n%2 == 1 {
		med = s[n/2]
	} else {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}

type stats struct {
	ok                  bool
	wall, wallLo, wall1 time.Duration
	cpu                 time.Duration
	rssKiB              int64
	reqs, read, written int64
	uploaded            int64
	byMethod            map[string]int64
	failed              int
	lastErr             string
}

func summarize(r *result) stats {
	var st stats
	var walls, cpus []time.Duration
	var rss, reqs, rd, wr, up []int64
	var last sample
	for _, s := range r.samples {
		if s.err != "" {
			st.failed++
			st.lastErr = s.err
			continue
		}
		walls = append(walls, s.wall)
		cpus = append(cpus, s.cpu)
		rss = append(rss, s.rssKiB)
		reqs = append(reqs, s.c.total())
		rd = append(rd, s.c.Read)
		wr = append(wr, s.c.Written)
		up = append(up, s.uploaded)
		last = s
	}
	if len(walls) == 0 {
		return st
	}
	st.ok = true
	st.wall, st.wallLo, st.wall1 = median(walls)
	st.cpu, _, _ = median(cpus)
	st.rssKiB, _, _ = median(rss)
	st.reqs, _, _ = median(reqs)
	st.read, _, _ = median(rd)
	st.written, _, _ = median(wr)
	st.uploaded, _, _ = median(up)
	st.byMethod = last.c.Requests
	return st
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }
func mib(n int64) string          { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }

func methods(m map[string]int64) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func table(sc *scenario, d time.Duration, res []*result) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "### %s — %d ms per request\n\n", sc.title, d.Milliseconds())
	sb.WriteString("| tool | how | wall s, median (min–max) | CPU s | peak RSS MiB | requests | by method | read MiB | written MiB | uploaded to the destination MiB |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range res {
		if r.note != "" {
			fmt.Fprintf(&sb, "| %s | %s | %s | | | | | | | |\n", r.tool.name, r.how, r.note)
			continue
		}
		st := summarize(r)
		if !st.ok {
			fmt.Fprintf(&sb, "| %s | %s | failed (%d/%d): %s | | | | | | | |\n", r.tool.name, r.how, st.failed, len(r.samples), mdEscape(st.lastErr))
			continue
		}
		fail := ""
		if st.failed > 0 {
			fail = fmt.Sprintf(" (%d failed runs: %s)", st.failed, mdEscape(st.lastErr))
		}
		fmt.Fprintf(&sb, "| %s | %s | %s (%s–%s)%s | %s | %.0f | %d | %s | %s | %s | %s |\n",
			r.tool.name, r.how, secs(st.wall), secs(st.wallLo), secs(st.wall1), fail, secs(st.cpu),
			float64(st.rssKiB)/1024, st.reqs, methods(st.byMethod), mib(st.read), mib(st.written), mib(st.uploaded))
	}
	if sc.mounting != nil {
		fmt.Fprintf(&sb, "\nThe images' distinct blobs: %s MiB.\n", mib(sc.mounting.unique))
	}
	return sb.String()
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}

// --- targets ---

type evaluation struct {
	target string
	status string // met, missed, pending
	detail string
}

func find(res []*result, n string) (stats, bool) {
	for _, r := range res {
		if r.tool.name == n && r.note == "" {
			st := summarize(r)
			return st, st.ok
		}
	}
	return stats{}, false
}

func bestPeer(res []*result) (string, stats, bool) {
	var best stats
	bn := ""
	for _, r := range res {
		if r.tool.name == "ecr-replicator" || r.note != "" {
			continue
		}
		st := summarize(r)
		if st.ok && (bn == "" || st.wall < best.wall) {
			best, bn = st, r.tool.name
		}
	}
	return bn, best, bn != ""
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

func evaluate(sc *scenario, d time.Duration, res []*result) []evaluation {
	at := fmt.Sprintf("%d ms", d.Milliseconds())
	ours, okOurs := find(res, "ecr-replicator")
	var ev []evaluation
	pending := func(t string) { ev = append(ev, evaluation{t, "pending", "no successful run of ours"}) }
	switch {
	case sc.id == "1":
		t := "(1) wall ≤ 1.0× best peer, " + at
		bn, best, ok := bestPeer(res)
		if !okOurs || !ok {
			pending(t)
		} else {
			ratio := ours.wall.Seconds() / best.wall.Seconds()
			ev = append(ev, evaluation{t, verdict(ratio <= 1.0), fmt.Sprintf("ours %ss vs %s %ss = %.2f×", secs(ours.wall), bn, secs(best.wall), ratio)})
		}
		t = "(1) peak RSS ≤ 64 MiB, " + at
		if !okOurs {
			pending(t)
		} else {
			ev = append(ev, evaluation{t, verdict(ours.rssKiB <= 64*1024), fmt.Sprintf("%.0f MiB", float64(ours.rssKiB)/1024)})
		}
	case sc.id == "2":
		t := "(2) requests ≤ 0.5× crane's, " + at
		cr, okc := find(res, "crane")
		if !okOurs || !okc {
			pending(t)
		} else {
			ratio := float64(ours.reqs) / float64(cr.reqs)
			ev = append(ev, evaluation{t, verdict(ratio <= 0.5), fmt.Sprintf("ours %d vs crane %d = %.2f×", ours.reqs, cr.reqs, ratio)})
		}
		t = "(2) wall ≤ 1.0× best peer, " + at
		bn, best, ok := bestPeer(res)
		if !okOurs || !ok {
			pending(t)
		} else {
			ratio := ours.wall.Seconds() / best.wall.Seconds()
			ev = append(ev, evaluation{t, verdict(ratio <= 1.0), fmt.Sprintf("ours %ss vs %s %ss = %.2f×", secs(ours.wall), bn, secs(best.wall), ratio)})
		}
	case sc.id == "5":
		ev = append(ev, evaluateMounting(sc, at, res)...)
	case strings.HasPrefix(sc.id, "4") && d == 25*time.Millisecond:
		t := "(4) ≥ 10× faster than `crane copy --all-tags`, 25 ms"
		if sc.ecr {
			t += ", against the ECR API (sandbox)"
		} else {
			t += ", plain registries (informative: no list API to plan from)"
		}
		cr, okc := find(res, "crane")
		if !okOurs || !okc {
			ev = append(ev, evaluation{t, "pending", ecrPendingDetail(sc, res)})
		} else {
			ratio := cr.wall.Seconds() / ours.wall.Seconds()
			ev = append(ev, evaluation{t, verdict(ratio >= 10), fmt.Sprintf("crane %ss / ours %ss = %.1f×", secs(cr.wall), secs(ours.wall), ratio)})
		}
	}
	return ev
}

// evaluateMounting: scenario 5's targets — with blob mounting, shared bytes
// are uploaded once (the upload at most 1.1× the images' distinct bytes), and the run takes
// at most 0.3× the time of ours without mounting.
func evaluateMounting(sc *scenario, at string, res []*result) []evaluation {
	var ev []evaluation
	on, okOn := find(res, "ecr-replicator")
	off, okOff := find(res, "ecr-replicator, mounting off")
	t := "(5) uploaded ≤ 1.1× the distinct bytes, mounting on, " + at
	if !okOn {
		ev = append(ev, evaluation{t, "pending", "no successful run of ours"})
	} else {
		ratio := float64(on.uploaded) / float64(sc.mounting.unique)
		ev = append(ev, evaluation{t, verdict(ratio <= 1.1), fmt.Sprintf("%s MiB uploaded for %s MiB distinct = %.2f×", mib(on.uploaded), mib(sc.mounting.unique), ratio)})
	}
	t = "(5) wall ≤ 0.3× ours without mounting, " + at
	if !okOn || !okOff {
		ev = append(ev, evaluation{t, "pending", "no successful run of ours with and without mounting"})
	} else {
		ratio := on.wall.Seconds() / off.wall.Seconds()
		ev = append(ev, evaluation{t, verdict(ratio <= 0.3), fmt.Sprintf("on %ss / off %ss = %.2f×", secs(on.wall), secs(off.wall), ratio)})
	}
	return ev
}

func ecrPendingDetail(sc *scenario, res []*result) string {
	for _, r := range res {
		if r.tool.name == "ecr-replicator" && r.note != "" {
			return r.note
		}
	}
	return "no successful run"
}

func targetsSection(ev []evaluation) string {
	var sb strings.Builder
	sb.WriteString("## Targets (issues 8 and 26)\n\n| target | status | figures |\n|---|---|---|\n")
	for _, e := range ev {
		fmt.Fprintf(&sb, "| %s | %s | %s |\n", e.target, e.status, e.detail)
	}
	return sb.String()
}

func (b *bench) header(tags int, ds []time.Duration) string {
	return "# Benchmarks: ecr-replicator against crane, regctl and skopeo\n\n" +
		"Written by `make bench` (bench/main.go). Do not edit by hand.\n\n" + b.runFacts(tags, ds)
}

// runFacts says when, where and how a run was made.
func (b *bench) runFacts(tags int, ds []time.Duration) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "- date: %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&sb, "- machine: `%s`\n", version("uname", "-a"))
	fmt.Fprintf(&sb, "- CPU: %s, %d cores; memory %s\n", cpuModel(), cores(), memTotal())
	fmt.Fprintf(&sb, "- Go: `%s`\n", version("go", "version"))
	fmt.Fprintf(&sb, "- tools: crane `%s`, regctl `%s`, skopeo `%s`, registry `%s`, ecr-replicator `%s`\n",
		version(filepath.Join(b.binDir, "crane"), "version"), version(filepath.Join(b.binDir, "regctl"), "version", "--format", "{{.VCSTag}}{{.VCSRef}}"),
		version("skopeo", "--version"), version(b.registryBin, "--version"), version(filepath.Join(b.binDir, "ecr-replicator"), "--version"))
	fmt.Fprintf(&sb, "- size factor %.3g (scenario 1: %s MiB image), %d tags in scenarios 2 and 4, %d timed runs per tool after one warm-up, delays %v\n",
		b.scale, mib(scaled(1<<30, b.scale)), tags, b.runs, ds)
	sb.WriteString("- setup: two CNCF distribution registries (filesystem storage) on 127.0.0.1, each behind a proxy of this program that counts requests and bytes and delays every request; the destination registry is replaced by an empty one before every cold run; every run gets a fresh HOME/XDG/DOCKER_CONFIG and skopeo's blob-info cache is deleted. Layers are uncompressed random bytes (incompressible). Requests and bytes are summed over both registries (read = response bodies, written = request bodies). Medians over the timed runs; RSS is the largest process of a run. Scenario 5 runs against the sandbox's ECR on both sides (API and both registries behind delaying proxies), its destination repositories deleted and created again before every run; \"uploaded\" is what the destination registry received.\n\n")
	return sb.String()
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if _, v, ok := strings.Cut(l, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown"
}

func cores() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "\nprocessor") + strings.Count(string(b[:min(len(b), 9)]), "processor")
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return "unknown"
}

func scaled(n int64, f float64) int64 {
	v := int64(float64(n) * f)
	return max(v, 4096)
}

// scenarioIDs lists the scenarios asked for, in order.
func scenarioIDs(want map[string]bool) []string {
	var ids []string
	for id, ok := range want {
		if ok && id != "" {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// mainSection returns the side-by-side tables of the report at path, up to what other
// benchmarks appended ("" when there is none).
func mainSection(path string) string {
	old, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := string(old)
	return strings.TrimSuffix(s, appendedSections(path))
}

// appendedSections returns what other benchmarks (make bench-scale, bench-memory,
// bench-latency) appended to the report at path after this program's Targets section,
// so that rewriting the side-by-side tables keeps them.
func appendedSections(path string) string {
	old, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := string(old)
	t := strings.Index(s, "\n## Targets")
	if t < 0 {
		return ""
	}
	next := strings.Index(s[t+1:], "\n## ")
	if next < 0 {
		return ""
	}
	return s[t+1+next:]
}
