// Command memory measures the smallest Lambda (`make bench-memory`): whether
// the replicate function copies big images within Lambda's smallest memory setting,
// 128 MB, and what it costs in CPU.
//
// The sandbox (source and destination accounts, blobs on disk under -data) is seeded
// with (a) an image of one -layer byte layer and (b) an index of -platforms images of
// one -platform-size layer each, generated as they are sent. The replicate function's
// real bootstrap then runs under the Lambda Runtime Interface Emulator inside a cgroup
// v1 memory cgroup limited to -limit (and a cpuacct cgroup), a fresh execution
// environment per image, and is invoked once per image with an SQS batch holding the
// image's push event, as the stack's queue delivers it. Then `crane copy` copies the
// same images, one at a time, in the same kind of cgroup. For every copy it records
// whether the destination has the source's digest, the wall time, the peak memory (the
// process's VmHWM — Lambda's Max Memory Used — and the cgroup's), the CPU time, and
// whether the OOM killer fired; it prints a Markdown section and appends it to -out.
//
// It needs root and the cgroup v1 memory and cpuacct controllers.
package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"

	"github.com/ecr-replicator/ecr-replicator/bench/internal/harness"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/lambdarun"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventsource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/signin"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

const (
	extID = "bench-memory"
	// lambdaMBPerVCPU: "At 1,769 MB, a function has the equivalent of one vCPU"; CPU is
	// allocated in proportion to memory
	// (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html).
	lambdaMBPerVCPU = 1769
)

type options struct {
	layer, platformSize, limit int64
	platforms                  int
	timeout                    time.Duration
	crane, data, out, root     string
	cgroupParent               string
	tools                      []string
}

func main() {
	o := options{layer: 4 * harness.GiB, platformSize: harness.GiB, limit: 128 * harness.MiB}
	flag.Var((*harness.Size)(&o.layer), "layer", "size of image (a)'s single layer (e.g. 4GiB, 512MiB)")
	flag.Var((*harness.Size)(&o.platformSize), "platform-size", "size of each platform's single layer in index (b)")
	flag.IntVar(&o.platforms, "platforms", 4, "platforms in index (b)")
	flag.Var((*harness.Size)(&o.limit), "limit", "the cgroup's memory limit; the function's AWS_LAMBDA_FUNCTION_MEMORY_SIZE is this in MiB")
	// Lambda's maximum timeout is 900 s (https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html).
	flag.DurationVar(&o.timeout, "timeout", 900*time.Second, "the function's timeout (AWS_LAMBDA_FUNCTION_TIMEOUT), and crane's")
	flag.StringVar(&o.crane, "crane", "", "the crane binary (default: crane next to this program)")
	flag.StringVar(&o.data, "data", os.TempDir(), "directory under which the run's data directory (the sandbox's blobs: twice the images' size and more) is made and removed")
	flag.StringVar(&o.out, "out", "", "append the report to this Markdown file")
	flag.StringVar(&o.root, "root", "", "the ecr-replicator repository (default: found from the working directory)")
	flag.StringVar(&o.cgroupParent, "cgroup-parent", "", "make the cgroups under this cgroup path (default: the benchmark's own cgroups)")
	tools := flag.String("tools", "replicate,crane", "what to run, comma-separated: replicate, crane")
	flag.Parse()
	o.tools = strings.Split(*tools, ",")

	// A signal cancels the run; its clean-up (cgroups, processes, data) still happens.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The benchmark's own SDK clients read no profile of this machine.
	os.Setenv("AWS_CONFIG_FILE", os.DevNull)
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	err := run(ctx, o)
	stop()
	if err != nil {
		log.Printf("bench-memory: %v", err)
		os.Exit(1)
	}
}

// bench is what a run shares.
type bench struct {
	o        options
	dir      string
	mem, cpu hierarchy
	sb       *sandbox.Sandbox
	src, dst *signin.Registry // the two accounts, as their admins
	harness.Binaries
	crane string
	fnEnv map[string]string
	n     int // cgroups made, for their names
}

func run(ctx context.Context, o options) (err error) {
	b := &bench{o: o}
	if err := b.preflight(); err != nil {
		return err
	}
	dir, bins, cleanup, err := harness.Workspace(ctx, o.root, o.data, "bench-memory")
	if err != nil {
		return err
	}
	defer cleanup()
	b.dir, b.Binaries = dir, bins

	cfg := sandbox.TwoAccounts(extID)
	cfg.DataDir = filepath.Join(b.dir, "sandbox")
	if b.sb, err = sandbox.New(cfg); err != nil {
		return err
	}
	defer b.sb.Close()
	if b.src, err = signin.Login(ctx, b.sb, sandbox.SourceAccount); err != nil {
		return err
	}
	if b.dst, err = signin.Login(ctx, b.sb, sandbox.DestinationAccount); err != nil {
		return err
	}

	images, err := b.seed(ctx)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := b.functionEnv(); err != nil {
		return err
	}
	var runs []result
	for _, tool := range []string{"replicate", "crane"} {
		if !slices.Contains(o.tools, tool) {
			continue
		}
		for _, img := range images {
			log.Printf("%s: %s:%s (%.1f GiB)", tool, img.repo, img.tag, float64(img.bytes)/harness.GiB)
			var r result
			var err error
			if tool == "replicate" {
				r, err = b.replicate(ctx, img)
			} else {
				r, err = b.craneCopy(ctx, img)
			}
			if err != nil {
				return fmt.Errorf("%s %s: %w", tool, img.repo, err)
			}
			log.Printf("%s: %s in %.1f s, peak RSS %.1f MiB, cgroup peak %.1f MiB, CPU %.2f s, OOM kills %d",
				tool, r.outcome, r.wall.Seconds(), float64(r.rss)/harness.MiB, float64(r.use.peak)/harness.MiB, r.use.cpu.Seconds(), r.use.oomKills)
			runs = append(runs, r)
		}
	}
	return harness.Report(o.out, b.report(images, runs))
}

// preflight checks what the benchmark needs before it spends minutes seeding.
func (b *bench) preflight() error {
	o := b.o
	if runtime.GOOS != "linux" {
		return errors.New("needs Linux (cgroup v1)")
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root: it makes cgroup v1 memory and cpuacct cgroups to run the function and crane in (run it as root, e.g. `sudo make bench-memory`)")
	}
	var err error
	if b.mem, err = findHierarchy("memory", o.cgroupParent); err != nil {
		return fmt.Errorf("needs the cgroup v1 memory controller: %w", err)
	}
	if b.cpu, err = findHierarchy("cpuacct", o.cgroupParent); err != nil {
		return fmt.Errorf("needs the cgroup v1 cpuacct controller: %w", err)
	}
	if o.limit <= 0 || o.limit%4096 != 0 || o.layer <= 0 || o.platformSize <= 0 || o.platforms < 1 || o.platforms > len(platforms) {
		return fmt.Errorf("-limit must be a positive multiple of 4 KiB, sizes positive, -platforms 1 to %d", len(platforms))
	}
	for _, t := range o.tools {
		if t != "replicate" && t != "crane" {
			return fmt.Errorf("-tools: unknown %q", t)
		}
	}
	if slices.Contains(o.tools, "crane") {
		b.crane = o.crane
		if b.crane == "" {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			b.crane = filepath.Join(filepath.Dir(self), "crane")
		}
		if _, err := exec.LookPath(b.crane); err != nil {
			return fmt.Errorf("crane: %w (build it with `make bench-tools` or pass -crane)", err)
		}
		if b.crane, err = filepath.Abs(b.crane); err != nil {
			return err
		}
	}
	// One cgroup made and removed now, so that a machine that does not allow it fails
	// before the images are generated.
	c, err := newCgroup(b.mem, b.cpu, fmt.Sprintf("ecr-replicator-bench-memory-%d-probe", os.Getpid()), o.limit)
	if err != nil {
		return fmt.Errorf("cannot make cgroups under %s and %s: %w", b.mem.own, b.cpu.own, err)
	}
	return c.remove()
}

// seed creates the source repositories and pushes the two images.
func (b *bench) seed(ctx context.Context) ([]image, error) {
	api := b.src.API
	var images []image
	for _, img := range []struct {
		repo, label string
		push        func(*pusher) (v1.Descriptor, int64, error)
	}{
		{"bench/large", fmt.Sprintf("(a) %s, 1 layer", harness.Human(b.o.layer)), func(p *pusher) (v1.Descriptor, int64, error) {
			return p.singleImage(ctx, "large", b.o.layer, platforms[0], "v1")
		}},
		{"bench/multi", fmt.Sprintf("(b) index, %d × %s", b.o.platforms, harness.Human(b.o.platformSize)), func(p *pusher) (v1.Descriptor, int64, error) {
			return p.index(ctx, "multi", b.o.platforms, b.o.platformSize, "v1")
		}},
	} {
		if _, err := api.CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(img.repo)}); err != nil {
			return nil, err
		}
		p, err := newPusher(ctx, b.src.Host, b.src.Auth, img.repo)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		desc, n, err := img.push(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", img.repo, err)
		}
		log.Printf("seeded %s:v1 %s (%.1f GiB) in %.1f s", img.repo, desc.Digest, float64(n)/harness.GiB, time.Since(t0).Seconds())
		images = append(images, image{label: img.label, repo: img.repo, tag: "v1", digest: desc.Digest.String(), mediaType: desc.MediaType, bytes: n})
	}
	return images, nil
}

// functionEnv is the replicate function's environment as template.yaml sets it (with its
// parameters' defaults), plus what Lambda sets and the sandbox's endpoints and the
// replicator's credentials. Lambda sets neither GOMEMLIMIT nor GOGC (its reserved and
// runtime variables: https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime),
// so neither is set here: the Go runtime does not know about the limit.
func (b *bench) functionEnv() error {
	sbEnv, err := b.sb.Env(sandbox.SourceAccount, sandbox.SourceUser, sandbox.DefaultRegion)
	if err != nil {
		return err
	}
	rules, _ := json.Marshal(map[string]any{"rules": []any{map[string]any{
		"name": "bench", "repositories": []string{"bench/**"},
		"destinations": []any{map[string]string{
			"accountId": sandbox.DestinationAccount, "region": sandbox.DefaultRegion,
			"roleArn":    sandbox.RoleARN(sandbox.DestinationAccount, sandbox.DestinationRole),
			"externalId": extID, "repositoryPrefix": "mirror/",
		}},
	}}})
	b.fnEnv = map[string]string{
		"REPLICATION_RULES": string(rules), "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		wiring.EnvPutImageRate: "10", wiring.EnvWriters: "2", "LOG_LEVEL": "info",
		"AWS_LAMBDA_FUNCTION_TIMEOUT":     strconv.Itoa(int(b.o.timeout.Seconds())),
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.FormatInt(b.o.limit/harness.MiB, 10),
	}
	for k, v := range sbEnv {
		b.fnEnv[k] = v
	}
	return nil
}

// result is one copy's figures.
type result struct {
	tool, image string
	bytes       int64
	ok          bool
	outcome     string
	wall        time.Duration
	rss         int64 // the copying process's peak resident set
	use         usage
	atPeak      map[string]int64
	hwm, anon   map[string]int64
	seen        []string
}

// newCgroup makes the next run's cgroups.
func (b *bench) newCgroup() (*cgroup, error) {
	b.n++
	return newCgroup(b.mem, b.cpu, fmt.Sprintf("ecr-replicator-bench-memory-%d-%d", os.Getpid(), b.n), b.o.limit)
}

// confine writes dir/name, a wrapper that runs program inside cg, and drops program's
// pages from the page cache so that the code it runs is charged to the cgroup.
func confine(cg *cgroup, dir, name, program string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	wrapper := filepath.Join(dir, name)
	if err := cg.wrapper(wrapper, program); err != nil {
		return "", err
	}
	return wrapper, dropCache(program)
}

// replicate runs one invocation of a fresh replicate environment in a fresh cgroup.
func (b *bench) replicate(ctx context.Context, img image) (r result, err error) {
	r = result{tool: "ecr-replicator (replicate function)", image: img.label, bytes: img.bytes}
	cg, err := b.newCgroup()
	if err != nil {
		return r, err
	}
	defer func() { err = errors.Join(err, cg.remove()) }()
	dir := filepath.Join(b.dir, fmt.Sprintf("replicate-%d", b.n))
	wrapper, err := confine(cg, dir, "rie-in-cgroup", b.RIE)
	if err != nil {
		return r, err
	}
	smp := cg.sample()
	defer smp.finish(ctx)
	fn, err := lambdarun.Start(wrapper, b.Bootstrap, dir, "ecr-replicator-replicate", b.fnEnv)
	if err != nil {
		return r, err
	}
	defer fn.Stop()
	// Start copied the bootstrap into dir; the first invocation executes it.
	if err := dropCache(filepath.Join(dir, "bootstrap")); err != nil {
		return r, err
	}
	// The emulator is in the cgroups before the first invocation starts the bootstrap.
	pids := cg.pids()
	if len(pids) == 0 {
		return r, errors.New("the emulator is not in the memory cgroup")
	}
	for _, pid := range pids {
		if err := cg.member(pid); err != nil {
			return r, err
		}
	}

	ictx, cancel := context.WithTimeout(ctx, b.o.timeout+time.Minute)
	start := time.Now()
	answer, ierr := fn.Invoke(ictx, sqsBatch(img))
	r.wall = time.Since(start)
	cancel()
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	hwm, herr := fn.MaxMemoryUsed()
	smp.finish(ctx)
	r.use = cg.usage()
	var problems []string
	r.atPeak, r.hwm, r.anon, r.seen, problems = smp.snapshot()
	if len(problems) > 0 {
		return r, errors.New(strings.Join(problems, "; "))
	}
	if !slices.Contains(r.seen, "bootstrap") {
		return r, fmt.Errorf("no bootstrap seen in the cgroup (processes: %v)", r.seen)
	}
	r.rss = hwm
	if herr != nil { // the bootstrap is gone (killed): its last sampled VmHWM
		r.rss = r.hwm["bootstrap"]
	}

	lines := fn.AwaitJSONLines(ctx, func(ls []map[string]any) bool { return replicationLine(ls) != nil })
	line := replicationLine(lines)
	var partial struct {
		Failures []struct{ ItemIdentifier string } `json:"batchItemFailures"`
	}
	switch {
	case ierr != nil:
		r.outcome = "failed: " + harness.OneLine(ierr.Error(), 300)
	case json.Unmarshal(answer, &partial) != nil:
		r.outcome = "failed: answer " + harness.OneLine(string(answer), 300)
	case len(partial.Failures) > 0:
		r.outcome = "failed: the message is in batchItemFailures"
		if line != nil {
			r.outcome += fmt.Sprintf(" (%v: %v)", line["error_code"], line["error"])
		}
	default:
		r.ok, r.outcome = b.verify(ctx, "mirror/"+img.repo, img)
	}
	if !r.ok {
		log.Printf("function stderr (tail):\n%s", tail(fn.Stderr(), 4096))
		log.Printf("function stdout (tail):\n%s", tail(fn.Stdout(), 4096))
	}
	return r, nil
}

// dropCache writes a binary's pages out and drops them from the page cache, so that
// the process about to run it reads them back and they are charged to its cgroup, as
// its own code is to a Lambda function, rather than to whoever wrote the file.
func dropCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("drop %s from the page cache: %w", path, err)
	}
	return nil
}

// replicationLine is the function's log line about the copy, if it wrote one.
func replicationLine(lines []map[string]any) map[string]any {
	for _, l := range lines {
		if msg, _ := l["msg"].(string); strings.HasPrefix(msg, "image replicat") {
			return l
		}
	}
	return nil
}

// craneCopy runs `crane copy` of img to a fresh destination repository in a fresh cgroup.
func (b *bench) craneCopy(ctx context.Context, img image) (r result, err error) {
	r = result{tool: "crane copy", image: img.label, bytes: img.bytes}
	dstRepo := "crane/" + img.repo
	if _, err := b.dst.API.CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(dstRepo)}); err != nil {
		return r, err
	}
	cg, err := b.newCgroup()
	if err != nil {
		return r, err
	}
	defer func() { err = errors.Join(err, cg.remove()) }()
	dir := filepath.Join(b.dir, fmt.Sprintf("crane-%d", b.n))
	if err := b.dockerConfig(ctx, filepath.Join(dir, ".docker")); err != nil {
		return r, err
	}
	wrapper, err := confine(cg, dir, "crane-in-cgroup", b.crane)
	if err != nil {
		return r, err
	}
	smp := cg.sample()
	defer smp.finish(ctx)
	cctx, cancel := context.WithTimeout(ctx, b.o.timeout)
	defer cancel()
	// Plain http on loopback: --insecure.
	cmd := exec.CommandContext(cctx, wrapper, "copy", "--insecure", b.src.Host+"/"+img.repo+":"+img.tag, b.dst.Host+"/"+dstRepo+":"+img.tag)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + dir, "DOCKER_CONFIG=" + filepath.Join(dir, ".docker")}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	cerr := cmd.Run()
	r.wall = time.Since(start)
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	smp.finish(ctx)
	r.use = cg.usage()
	var problems []string
	r.atPeak, r.hwm, r.anon, r.seen, problems = smp.snapshot()
	if len(problems) > 0 {
		return r, errors.New(strings.Join(problems, "; "))
	}
	// Its VmHWM as last sampled, not the rusage's maxrss: Go starts a child with
	// vfork, so the child's maxrss starts at the benchmark's own resident set.
	r.rss = r.hwm["crane"]
	if cerr != nil {
		r.outcome = "failed: " + harness.OneLine(cerr.Error(), 300) + ": " + harness.OneLine(tail(out.String(), 300), 300)
		log.Printf("crane output (tail):\n%s", tail(out.String(), 4096))
		return r, nil
	}
	r.ok, r.outcome = b.verify(ctx, dstRepo, img)
	return r, nil
}

// dockerConfig writes a Docker config that logs crane in to both registries with the
// accounts' ECR tokens (basic auth, as `docker login` with GetAuthorizationToken does).
func (b *bench) dockerConfig(ctx context.Context, dir string) error {
	auths := map[string]any{}
	for _, side := range []struct {
		host string
		auth authn.Authenticator
	}{{b.src.Host, b.src.Auth}, {b.dst.Host, b.dst.Auth}} {
		c, err := side.auth.Authorization()
		if err != nil {
			return err
		}
		auths[side.host] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password))}
	}
	raw, _ := json.Marshal(map[string]any{"auths": auths})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o600)
}

// verify compares the destination's digest for the tag with the source's.
func (b *bench) verify(ctx context.Context, repo string, img image) (bool, string) {
	ref, err := name.ParseReference(b.dst.Host+"/"+repo+":"+img.tag, name.Insecure)
	if err != nil {
		return false, "failed: " + err.Error()
	}
	desc, err := remote.Head(ref, remote.WithAuth(b.dst.Auth), remote.WithContext(ctx))
	if err != nil {
		return false, "failed: destination: " + harness.OneLine(err.Error(), 300)
	}
	if desc.Digest.String() != img.digest {
		return false, fmt.Sprintf("failed: destination digest %s, source %s", desc.Digest, img.digest)
	}
	return true, "ok (digest equal)"
}

// sqsBatch is the event Lambda's SQS event source mapping delivers with the image's
// push event, from the stack's replication queue, at its first receive.
func sqsBatch(img image) []byte {
	body := string(ecrevent.ImageAction{
		EventID: "bench-memory-" + strings.ReplaceAll(img.repo, "/", "-"), Account: sandbox.SourceAccount, Region: sandbox.DefaultRegion,
		Time: time.Now().Add(-time.Second), Repository: img.repo, Digest: img.digest, Tag: img.tag,
		ActionType: ecrevent.ActionPush, Result: ecrevent.ResultSuccess, ManifestMediaType: string(img.mediaType),
	}.Event())
	sum := md5.Sum([]byte(body))
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	rec := eventsource.Record{
		MessageID: "m-" + img.repo, ReceiptHandle: "rh-" + img.repo, Body: body,
		Attributes:        map[string]string{"ApproximateReceiveCount": "1", "SentTimestamp": now, "ApproximateFirstReceiveTimestamp": now, "SenderId": "AROAEXAMPLE"},
		MessageAttributes: map[string]eventsource.MessageAttribute{}, MD5OfBody: hex.EncodeToString(sum[:]),
		EventSource: "aws:sqs", EventSourceARN: fmt.Sprintf("arn:aws:sqs:%s:%s:ecr-replicator-queue", sandbox.DefaultRegion, sandbox.SourceAccount),
		AWSRegion: sandbox.DefaultRegion,
	}
	out, _ := json.Marshal(map[string]any{"Records": []eventsource.Record{rec}})
	return out
}

// report is the Markdown section.
func (b *bench) report(images []image, runs []result) string {
	var s strings.Builder
	limitMB := b.o.limit / harness.MiB
	fmt.Fprintf(&s, "\n## The smallest Lambda: %d MB — %s\n\n", limitMB, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&s, "Machine: %d cores (%s), Linux %s; %s. Written by `make bench-memory` (bench/memory).\n\n",
		runtime.NumCPU(), runtime.GOARCH, strings.TrimSpace(string(kernel)), runtime.Version())
	fmt.Fprintf(&s, "Source and destination accounts in the sandbox on 127.0.0.1 (ECR API, STS, registries; blobs on disk, served from presigned storage URLs as ECR serves them), no added latency. Images: ")
	for i, img := range images {
		if i > 0 {
			s.WriteString("; ")
		}
		fmt.Fprintf(&s, "%s (`%s`, %.2f GiB in all)", img.label, img.mediaType, float64(img.bytes)/harness.GiB)
	}
	fmt.Fprintf(&s, "; uncompressed random bytes. Every copy runs in a cgroup v1 memory cgroup limited to %d MiB (memory+swap too where accounted) and a cpuacct cgroup of its own: "+
		"the replicate function's bootstrap (built as sam.mk builds it) under the Lambda Runtime Interface Emulator, both in the cgroup, a fresh execution environment per image invoked once "+
		"with an SQS batch holding the image's push event (AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%d; GOMEMLIMIT and GOGC unset, as Lambda leaves them); then `crane copy --insecure` (%s) of the same image to a fresh destination repository. "+
		"CPU is not limited here: on Lambda %d MB gets %d/%d of a vCPU.\n\n",
		limitMB, limitMB, craneVersion(b.crane), limitMB, limitMB, lambdaMBPerVCPU)
	s.WriteString("| tool | image | result | wall s | peak RSS / cgroup peak, MiB | CPU s | CPU s per GiB | OOM |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range runs {
		res := r.outcome
		if !r.ok {
			res = "**" + res + "**"
		}
		oom := "no"
		if r.use.oomKills > 0 {
			oom = fmt.Sprintf("**yes** (%d killed)", r.use.oomKills)
		}
		if r.use.failcnt > 0 {
			oom += fmt.Sprintf("; limit reached %d×", r.use.failcnt)
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %.1f | %.1f / %.1f | %.2f | %.2f | %s |\n", r.tool, r.image, strings.ReplaceAll(res, "|", "\\|"),
			r.wall.Seconds(), float64(r.rss)/harness.MiB, float64(r.use.peak)/harness.MiB, r.use.cpu.Seconds(), r.use.cpu.Seconds()/(float64(r.bytes)/harness.GiB), oom)
	}
	s.WriteString("\nWall time: the invocation (the environment's cold start included) or crane's run. Peak RSS: the bootstrap's VmHWM, what Lambda reports as Max Memory Used, or crane's (sampled every 50 ms). " +
		"The cgroup's peak (memory.max_usage_in_bytes) also counts the emulator, page cache and kernel memory charged to the group. Where it went, at the highest usage sampled every 50 ms:\n\n")
	floor := float64(lambdaMBPerVCPU) / float64(limitMB)
	fmt.Fprintf(&s, "| tool | image | processes in the cgroup: peak RSS (anonymous) MiB | cgroup: anonymous / page cache / kernel, MiB | CPU s: user / system | CPU-bound floor at %d MB, s |\n|---|---|---|---|---|---|\n", limitMB)
	for _, r := range runs {
		var procs []string
		for _, comm := range r.seen {
			procs = append(procs, fmt.Sprintf("%s %.1f (%.1f)", comm, float64(r.hwm[comm])/harness.MiB, float64(r.anon[comm])/harness.MiB))
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %.1f / %.1f / %.1f | %.2f / %.2f | %.0f |\n", r.tool, r.image, strings.Join(procs, ", "),
			float64(r.atPeak["rss"])/harness.MiB, float64(r.atPeak["cache"])/harness.MiB, float64(max(r.atPeak["kmem"], 0))/harness.MiB,
			r.use.user.Seconds(), r.use.sys.Seconds(), r.use.cpu.Seconds()*floor)
	}
	fmt.Fprintf(&s, "\nThe binaries' pages are dropped from the page cache before each run, so the code a process runs is charged to its cgroup. "+
		"The floor: Lambda allots CPU in proportion to memory, the equivalent of one vCPU at 1,769 MB (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html), "+
		"so at %d MB (%.1f%% of a vCPU) a copy takes at least its CPU seconds here × %.1f, if the machines' cores are alike and the copy is CPU-bound.\n", limitMB, 100/floor, floor)
	return s.String()
}

func craneVersion(path string) string {
	if path == "" {
		return "not run"
	}
	out, err := exec.Command(path, "version").Output()
	if err != nil {
		return "crane, version unknown"
	}
	return "crane " + strings.TrimSpace(string(out))
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
