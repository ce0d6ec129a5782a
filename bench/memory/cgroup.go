package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A Lambda function's memory setting is a hard limit on its execution environment:
// https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html. Here a cgroup
// v1 memory cgroup plays it (memory.limit_in_bytes; the kernel's OOM killer ends a
// process of the group that needs more, as Lambda ends an invocation over its memory),
// and a cpuacct cgroup counts the CPU time the processes in it used
// (https://docs.kernel.org/admin-guide/cgroup-v1/memory.html,
// https://docs.kernel.org/admin-guide/cgroup-v1/cpuacct.html).

// hierarchy is where a cgroup v1 controller is mounted and where this process sits in it.
type hierarchy struct {
	controller string
	mount      string // e.g. /sys/fs/cgroup/memory
	own        string // this process's cgroup, as a directory
}

// findHierarchy finds controller's v1 hierarchy from /proc/self/mountinfo and
// /proc/self/cgroup. The benchmark's cgroups are made under its own (under parent, if
// set): whatever contains the benchmark — a CI job's limits, a session's clean-up —
// contains them too.
func findHierarchy(controller, parent string) (hierarchy, error) {
	h := hierarchy{controller: controller}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return h, err
	}
	var mountRoot string
	for _, line := range strings.Split(string(mi), "\n") {
		// id parent major:minor root mountpoint options [optional…] - fstype source superoptions
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 || g[0] != "cgroup" || !slices.Contains(strings.Split(g[2], ","), controller) {
			continue
		}
		h.mount, mountRoot = f[4], f[3]
		break
	}
	if h.mount == "" {
		return h, fmt.Errorf("no cgroup v1 hierarchy with the %s controller is mounted (cgroup v2 only?)", controller)
	}
	if parent != "" {
		h.own = filepath.Join(h.mount, parent)
		return h, nil
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return h, err
	}
	for _, line := range strings.Split(string(cg), "\n") {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), controller) {
			rel := parts[2]
			if mountRoot != "/" {
				rel = strings.TrimPrefix(rel, mountRoot)
			}
			h.own = filepath.Join(h.mount, rel)
			return h, nil
		}
	}
	return h, fmt.Errorf("/proc/self/cgroup names no %s cgroup", controller)
}

// cgroup is a memory cgroup and a cpuacct cgroup of the same name, made for one run.
type cgroup struct {
	name     string
	mem, cpu string // directories
	memRel   string // paths as /proc/<pid>/cgroup shows them
	cpuRel   string
	limit    int64
}

// newCgroup makes the pair and limits memory (and memory+swap, when the kernel
// accounts swap) to limit bytes.
func newCgroup(mem, cpu hierarchy, name string, limit int64) (*cgroup, error) {
	c := &cgroup{name: name, mem: filepath.Join(mem.own, name), cpu: filepath.Join(cpu.own, name), limit: limit}
	c.memRel = strings.TrimPrefix(c.mem, mem.mount)
	c.cpuRel = strings.TrimPrefix(c.cpu, cpu.mount)
	if err := os.Mkdir(c.mem, 0o755); err != nil {
		return nil, fmt.Errorf("make memory cgroup: %w", err)
	}
	if err := os.Mkdir(c.cpu, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		os.Remove(c.mem)
		return nil, fmt.Errorf("make cpuacct cgroup: %w", err)
	}
	// memory.memsw.limit_in_bytes may not be below memory.limit_in_bytes: memory first.
	err := writeFile(filepath.Join(c.mem, "memory.limit_in_bytes"), strconv.FormatInt(limit, 10))
	if err == nil {
		if sw := filepath.Join(c.mem, "memory.memsw.limit_in_bytes"); exists(sw) {
			err = writeFile(sw, strconv.FormatInt(limit, 10))
		}
	}
	if err != nil {
		c.remove()
		return nil, err
	}
	if got := c.readInt("memory.limit_in_bytes"); got != limit {
		c.remove()
		return nil, fmt.Errorf("memory.limit_in_bytes reads %d after writing %d (not a multiple of the page size?)", got, limit)
	}
	return c, nil
}

// wrapper writes an executable script at path that moves itself into the cgroups and
// then execs program: the process (same pid) runs from its first instruction inside
// them, and so does every child it starts — for the emulator, the bootstrap. Moving a
// process in after it started would leave what it allocated before charged elsewhere
// (memory.move_charge_at_immigrate is off by default).
func (c *cgroup) wrapper(path, program string) error {
	for _, s := range []string{c.mem, c.cpu, program} {
		if strings.ContainsAny(s, "'\n") {
			return fmt.Errorf("cannot quote %q for sh", s)
		}
	}
	script := fmt.Sprintf("#!/bin/sh\n# Written by bench/memory: join the cgroups, then become the program.\n"+
		"echo $$ > '%s/cgroup.procs' || exit 125\necho $$ > '%s/cgroup.procs' || exit 125\nexec '%s' \"$@\"\n",
		c.mem, c.cpu, program)
	return os.WriteFile(path, []byte(script), 0o755)
}

// pids lists the processes in the memory cgroup.
func (c *cgroup) pids() []int {
	b, err := os.ReadFile(filepath.Join(c.mem, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// member checks that /proc/<pid>/cgroup names both cgroups.
func (c *cgroup) member(pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return err
	}
	var mem, cpu bool
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		ctl := strings.Split(parts[1], ",")
		mem = mem || slices.Contains(ctl, "memory") && parts[2] == c.memRel
		cpu = cpu || slices.Contains(ctl, "cpuacct") && parts[2] == c.cpuRel
	}
	if !mem || !cpu {
		return fmt.Errorf("pid %d is not in %s (memory) and %s (cpuacct):\n%s", pid, c.memRel, c.cpuRel, b)
	}
	return nil
}

// usage is what the cgroups counted.
type usage struct {
	peak     int64         // memory.max_usage_in_bytes
	failcnt  int64         // times usage reached the limit (reclaim may still have coped)
	oomKills int64         // processes the OOM killer ended (memory.oom_control's oom_kill)
	cpu      time.Duration // cpuacct.usage
	user     time.Duration // cpuacct.usage_user
	sys      time.Duration // cpuacct.usage_sys
}

func (c *cgroup) usage() usage {
	u := usage{peak: c.readInt("memory.max_usage_in_bytes"), failcnt: c.readInt("memory.failcnt"),
		cpu:  time.Duration(readInt(filepath.Join(c.cpu, "cpuacct.usage"))),
		user: time.Duration(max(readInt(filepath.Join(c.cpu, "cpuacct.usage_user")), 0)),
		sys:  time.Duration(max(readInt(filepath.Join(c.cpu, "cpuacct.usage_sys")), 0))}
	if b, err := os.ReadFile(filepath.Join(c.mem, "memory.oom_control")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
				u.oomKills, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	return u
}

func (c *cgroup) readInt(file string) int64 { return readInt(filepath.Join(c.mem, file)) }

// stat reads memory.stat.
func (c *cgroup) stat() map[string]int64 {
	out := map[string]int64{}
	f, err := os.Open(filepath.Join(c.mem, "memory.stat"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if n, err := strconv.ParseInt(v, 10, 64); ok && err == nil {
			out[k] = n
		}
	}
	return out
}

// remove kills what is left in the cgroups (the processes this benchmark started there:
// an emulator's bootstrap outlives the emulator it was started by), waits for them to
// leave — at most 10 s — and removes both directories.
func (c *cgroup) remove() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := c.pids()
		if b, err := os.ReadFile(filepath.Join(c.cpu, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(f); err == nil && !slices.Contains(left, n) {
					left = append(left, n)
				}
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes %v still there after 10 s", c.name, left)
		}
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var errs []error
	for _, d := range []string{c.mem, c.cpu} {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// sampler watches a run's cgroup every 50 ms: the memory.stat breakdown at the highest
// usage it saw (max_usage_in_bytes has the exact peak, not what it was made of), every
// process that joined (checked to be in both cgroups) and each one's VmHWM.
type sampler struct {
	c       *cgroup
	stop    chan struct{}
	done    chan struct{}
	stopped sync.Once

	mu         sync.Mutex
	highest    int64
	atPeak     map[string]int64 // memory.stat, plus "kmem" (memory.kmem.usage_in_bytes)
	procs      map[int]string   // pid → comm
	hwm        map[string]int64 // comm → largest VmHWM seen, bytes
	anon       map[string]int64 // comm → largest RssAnon seen, bytes
	verified   map[int]bool     // pids seen in both cgroups
	unverified map[int]error    // pids not (yet) seen in both, and why
}

func (c *cgroup) sample() *sampler {
	s := &sampler{c: c, stop: make(chan struct{}), done: make(chan struct{}), procs: map[int]string{}, hwm: map[string]int64{}, anon: map[string]int64{},
		verified: map[int]bool{}, unverified: map[int]error{}}
	go func() {
		defer close(s.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			s.once()
			select {
			case <-s.stop:
				s.once()
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) once() {
	u := s.c.readInt("memory.usage_in_bytes")
	var st map[string]int64
	if u > s.highest {
		st = s.c.stat()
		st["kmem"] = s.c.readInt("memory.kmem.usage_in_bytes")
	}
	pids := s.c.pids()
	s.mu.Lock()
	defer s.mu.Unlock()
	if st != nil {
		s.highest, s.atPeak = u, st
	}
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			continue // gone since the listing
		}
		// Read every time: a wrapper becomes its program (exec) after joining.
		comm := strings.TrimSpace(string(b))
		s.procs[pid] = comm
		if !s.verified[pid] {
			// A wrapper joins one cgroup, then the other: checked until it is in both.
			if err := s.c.member(pid); err != nil {
				s.unverified[pid] = err
			} else {
				s.verified[pid] = true
				delete(s.unverified, pid)
			}
		}
		hwm, anon := procMemory(pid)
		s.hwm[comm] = max(s.hwm[comm], hwm)
		s.anon[comm] = max(s.anon[comm], anon)
	}
}

// finish stops the sampler (after one last sample) and waits for it; again, nothing.
func (s *sampler) finish(ctx context.Context) {
	s.stopped.Do(func() { close(s.stop) })
	select {
	case <-s.done:
	case <-ctx.Done():
	}
}

// snapshot returns memory.stat at the highest usage, the largest VmHWM and RssAnon of
// each command,
// the commands of the processes seen in the cgroup (sorted, without repeats) and what
// was wrong with them.
func (s *sampler) snapshot() (atPeak, hwm, anon map[string]int64, seen, problems []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, comm := range s.procs {
		if !slices.Contains(seen, comm) {
			seen = append(seen, comm)
		}
	}
	slices.Sort(seen)
	for _, err := range s.unverified {
		problems = append(problems, err.Error())
	}
	return maps.Clone(s.atPeak), maps.Clone(s.hwm), maps.Clone(s.anon), seen, problems
}

// procMemory is a process's peak resident set (VmHWM) and its anonymous resident
// memory now (RssAnon: heap and stacks, not the code mapped from its binary), bytes;
// zeros if unknown.
func procMemory(pid int) (hwm, anon int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	kb := func(v string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		return n << 10
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			hwm = kb(v)
		} else if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			anon = kb(v)
		}
	}
	return hwm, anon
}

func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// writeFile writes a cgroup control file (no O_CREATE, no truncation: it exists).
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s to %s: %w", value, path, err)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
