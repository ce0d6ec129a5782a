package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// target is where a run copies from and to, as the tool sees it (proxy addresses).
type target struct {
	src, dst string // host:port
	// auth maps host → "user:password" for registries that need it (the sandbox).
	auth map[string][2]string
}

// tool builds the commands of one tool for a scenario.
type tool struct {
	name      string
	bin       string
	available bool
	note      string
	// only, when set, is the one scenario the tool runs in; mountingOff: the scenario's
	// destination has blob mounting off for its runs (scenario 5).
	only        string
	mountingOff bool
	// cmds returns the processes of one run (run in sequence and summed) and how they
	// copy, for the report. tmp is the run's private home directory.
	cmds func(sc *scenario, t target, tmp string) (argv [][]string, how string)
}

func hasBin(p string) bool {
	if strings.Contains(p, "/") {
		st, err := os.Stat(p)
		return err == nil && !st.IsDir()
	}
	_, err := exec.LookPath(p)
	return err == nil
}

func newTools(binDir string) []*tool {
	crane := &tool{name: "crane", bin: binDir + "/crane"}
	crane.cmds = func(sc *scenario, t target, tmp string) ([][]string, string) {
		if len(sc.repos) > 0 {
			var argv [][]string
			for _, r := range sc.repos {
				argv = append(argv, []string{crane.bin, "copy", "--insecure", t.src + "/" + r + ":v1", t.dst + "/" + r + ":v1"})
			}
			return argv, "one `crane copy` per repository, sequential"
		}
		if sc.allTags {
			return [][]string{{crane.bin, "copy", "--insecure", "--all-tags", t.src + "/" + sc.repo, t.dst + "/" + sc.repo}}, "`crane copy --all-tags`"
		}
		return [][]string{{crane.bin, "copy", "--insecure", t.src + "/" + sc.repo + ":" + sc.tag, t.dst + "/" + sc.repo + ":" + sc.tag}}, "`crane copy`"
	}

	regctl := &tool{name: "regctl", bin: binDir + "/regctl"}
	regctl.cmds = func(sc *scenario, t target, tmp string) ([][]string, string) {
		hosts := []string{}
		for _, h := range []string{t.src, t.dst} {
			spec := "reg=" + h + ",tls=disabled"
			if a, ok := t.auth[h]; ok {
				spec += ",user=" + a[0] + ",pass=" + a[1]
			}
			hosts = append(hosts, "--host", spec)
		}
		base := append([]string{regctl.bin}, hosts...)
		cp := func(tag string) []string {
			return append(append([]string{}, base...), "image", "copy", t.src+"/"+sc.repo+":"+tag, t.dst+"/"+sc.repo+":"+tag)
		}
		if len(sc.repos) > 0 {
			var argv [][]string
			for _, r := range sc.repos {
				argv = append(argv, append(append([]string{}, base...), "image", "copy", t.src+"/"+r+":v1", t.dst+"/"+r+":v1"))
			}
			return argv, "one `regctl image copy` per repository, sequential"
		}
		if sc.allTags {
			// regctl has no all-tags copy: list the tags, then one `regctl image copy`
			// process per tag, in sequence (what a shell loop does).
			argv := [][]string{append(append([]string{}, base...), "tag", "ls", t.src+"/"+sc.repo)}
			for _, tag := range sc.tags {
				argv = append(argv, cp(tag))
			}
			return argv, "`regctl tag ls` + one `regctl image copy` per tag, sequential"
		}
		return [][]string{cp(sc.tag)}, "`regctl image copy`"
	}

	skopeo := &tool{name: "skopeo", bin: "skopeo"}
	skopeo.cmds = func(sc *scenario, t target, tmp string) ([][]string, string) {
		common := []string{"--registries.d", tmp + "/registries.d"}
		flags := []string{"--src-tls-verify=false", "--dest-tls-verify=false", "--all", "--preserve-digests",
			"--src-authfile", tmp + "/.docker/config.json", "--dest-authfile", tmp + "/.docker/config.json"}
		if sc.allTags {
			dstPrefix := t.dst + "/" + sc.repo[:strings.LastIndex(sc.repo, "/")]
			argv := append(append([]string{skopeo.bin}, common...), "sync", "--src", "docker", "--dest", "docker")
			argv = append(append(argv, flags...), t.src+"/"+sc.repo, dstPrefix)
			return [][]string{argv}, "`skopeo sync --all --preserve-digests` of the repository"
		}
		argv := append(append([]string{skopeo.bin}, common...), "copy")
		how := "`skopeo copy --all --preserve-digests`"
		if sc.id == "3" {
			// skopeo 1.9.3 refuses to write this OCI index with --preserve-digests
			// ("must be converted ... cannot modify it") and rewrites it without.
			flags = slices.DeleteFunc(flags, func(f string) bool { return f == "--preserve-digests" })
			how = "`skopeo copy --all` (index rewritten: destination digest differs; 1.9.3 refuses --preserve-digests here)"
		}
		argv = append(append(argv, flags...), "docker://"+t.src+"/"+sc.repo+":"+sc.tag, "docker://"+t.dst+"/"+sc.repo+":"+sc.tag)
		return [][]string{argv}, how
	}

	ours := &tool{name: "ecr-replicator", bin: binDir + "/ecr-replicator"}
	ours.cmds = func(sc *scenario, t target, tmp string) ([][]string, string) {
		if sc.mounting != nil {
			return mountingCmds(ours.bin, sc, tmp, "`ecr-replicator sync --rules FILE`, blob mounting on")
		}
		if sc.ecr {
			how := "`ecr-replicator sync --rules FILE` (plans from DescribeImages)"
			if tmp == "" {
				return nil, how
			}
			argv, err := syncArgv(ours.bin, tmp)
			if err != nil {
				return [][]string{{"false"}}, how
			}
			return [][]string{argv}, how
		}
		if sc.allTags {
			return [][]string{{ours.bin, "copy", "--all-tags", t.src + "/" + sc.repo, t.dst + "/" + sc.repo}}, "`ecr-replicator copy --all-tags`"
		}
		return [][]string{{ours.bin, "copy", t.src + "/" + sc.repo + ":" + sc.tag, t.dst + "/" + sc.repo}}, "`ecr-replicator copy`"
	}

	// Ours again in scenario 5, with the destination's blob mounting off.
	oursOff := &tool{name: "ecr-replicator, mounting off", bin: ours.bin, only: "5", mountingOff: true}
	oursOff.cmds = func(sc *scenario, t target, tmp string) ([][]string, string) {
		return mountingCmds(ours.bin, sc, tmp, "`ecr-replicator sync --rules FILE`, blob mounting off (BLOB_MOUNTING DISABLED)")
	}

	all := []*tool{crane, regctl, skopeo, ours, oursOff}
	for _, t := range all {
		t.available = hasBin(t.bin)
		if !t.available {
			t.note = "unavailable (" + t.bin + " not found)"
		}
	}
	return all
}

// version asks a tool for its version, best effort.
func version(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return "unknown"
	}
	s := strings.TrimSpace(string(out))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return fmt.Sprintf("%.80s", s)
}

// mountingCmds is ours in scenario 5: sync over the scenario's rules.
func mountingCmds(bin string, sc *scenario, tmp, how string) ([][]string, string) {
	if tmp == "" {
		return nil, how
	}
	argv, err := sc.mounting.syncArgv(bin, tmp)
	if err != nil {
		return [][]string{{"false"}}, how
	}
	return [][]string{argv}, how
}
