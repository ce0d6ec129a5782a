// Command scale measures a reconcile run at organisation scale (`make bench-scale`): the
// sandbox holds -repos source repositories of -images images each, the destination all
// but a -drift fraction of them; every API, registry and storage request takes -latency;
// the destination accepts ECR's 10 PutImage per second. One trigger of the reconcile
// function starts the run: its scan items fan it out over the reconcile queue, which a
// local event source drives into the reconcile function's handler with up to
// -concurrency invocations at once, as Lambda's event source mapping would; the copies
// they find go to the copy queue and the replicate function. It reports the time from the trigger to zero
// drift, API calls by operation, invocations, memory, and how much of the PutImage quota
// the fleet used and how often it was throttled; then the cost of a run over a scope
// already in sync.
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/lambdarun"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventsource"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

const extID = "bench-scale"

func main() {
	var (
		repos       = flag.Int("repos", 10000, "source repositories")
		images      = flag.Int("images", 10, "images per repository")
		drift       = flag.Float64("drift", 0.01, "fraction of images missing at the destination")
		latency     = flag.Duration("latency", 25*time.Millisecond, "delay of every request to the sandbox")
		concurrency = flag.Int("concurrency", 50, "most reconcile invocations at once on the reconcile queue (ReconcileMaximumConcurrency)")
		copiers     = flag.Int("copy-concurrency", 2, "most replicate invocations at once on the copy queue (CopyConcurrency)")
		batch       = flag.Int("batch", 10, "items per invocation (ReconcileBatchSize, CopyBatchSize)")
		quota       = flag.Float64("quota", 10, "the destination's PutImage quota per second")
		timeout     = flag.Duration("timeout", 300*time.Second, "the replicate function's timeout")
		out         = flag.String("out", "", "append the report to this Markdown file")
		inline      = flag.Int("inline", 0, "instead: one inline backfill (the backfill function alone) of this many tags missing from one repository")
	)
	flag.Parse()
	if *inline > 0 {
		*repos, *images, *drift = 1, *inline+1, 1
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bench-scale-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := sandbox.TwoAccounts(extID)
	cfg.DataDir = dir
	sb, err := sandbox.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()
	sbEnv, err := sb.Env(sandbox.SourceAccount, sandbox.SourceUser, sandbox.DefaultRegion)
	if err != nil {
		log.Fatal(err)
	}
	for k, v := range sbEnv {
		os.Setenv(k, v)
	}
	os.Setenv("AWS_CONFIG_FILE", os.DevNull)
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)

	t0 := time.Now()
	s := seed(ctx, sb, *repos, *images, *drift)
	log.Printf("seeded %d repositories × %d images (%d missing at the destination) in %v", *repos, *images, s.missing, time.Since(t0).Round(time.Second))

	srcCfg := awsConfig(ctx, sb, sandbox.SourceAccount, sandbox.SourceUser)
	q := sqs.NewFromConfig(srcCfg)
	if _, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("dlq")}); err != nil {
		log.Fatal(err)
	}
	// The stack's reconcile and copy queues, as template.yaml makes them.
	queue := func(name string) string {
		out, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{
			"VisibilityTimeout": fmt.Sprint(int(6 * timeout.Seconds())),
			"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":"arn:aws:sqs:%s:%s:dlq","maxReceiveCount":"5"}`, sandbox.DefaultRegion, sandbox.SourceAccount),
		}})
		if err != nil {
			log.Fatal(err)
		}
		return aws.ToString(out.QueueUrl)
	}
	env := map[string]string{wiring.EnvReconcileQueueURL: queue("reconcile"), wiring.EnvCopyQueueURL: queue("copy")}
	getenv := func(k string) string { return env[k] }
	os.Setenv("REPLICATION_RULES", fmt.Sprintf(`{"rules":[{"name":"all","repositories":["org/**"],"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
		sandbox.DestinationAccount, sandbox.DefaultRegion, sandbox.RoleARN(sandbox.DestinationAccount, sandbox.DestinationRole), extID))
	os.Setenv(wiring.EnvPutImageRate, fmt.Sprint(*quota))
	logs := &countingWriter{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))

	sb.SetLatency(*latency)
	sb.SetPutImageRate(*quota)

	// The replicate function, one handler per execution environment, kept warm across
	// invocations as Lambda keeps environments. The first environment is the real
	// bootstrap under the Lambda Runtime Interface Emulator: its peak RSS is what Lambda
	// would report as an invocation's Max Memory Used.
	real := startBootstrap(ctx, dir, sbEnv, env, *quota, *copiers, *timeout)
	defer real.fn.Stop()
	var made atomic.Bool
	replicate := eventsource.NewEnvironments(func() (eventsource.Handler, error) {
		if made.CompareAndSwap(false, true) {
			return real, nil
		}
		// PUT_IMAGE_WRITERS, as template.yaml sets it for the replicate function.
		deps, err := wiring.Load(ctx, "replicate", logger, os.Getenv, copyengine.WithWriters(*copiers))
		if err != nil {
			return nil, err
		}
		return deps.Handler(getenv, io.Discard), nil
	})
	// The reconcile function, on the reconcile queue.
	reconciler := eventsource.NewEnvironments(func() (eventsource.Handler, error) {
		deps, err := wiring.Load(ctx, "reconcile", logger, os.Getenv)
		if err != nil {
			return nil, err
		}
		return deps.Reconciler(getenv, io.Discard), nil
	})
	var invocations, records, billedMs atomic.Int64
	var peakHeap atomic.Uint64
	esCtx, stop := context.WithCancel(ctx)
	defer stop()
	for queue, fn := range map[string]*eventsource.Environments{env[wiring.EnvReconcileQueueURL]: reconciler, env[wiring.EnvCopyQueueURL]: replicate} {
		concurrency := *concurrency
		if fn == replicate {
			concurrency = *copiers
		}
		cfg := eventsource.Config{
			QueueURL: queue, BatchSize: *batch, MaximumConcurrency: concurrency, FunctionTimeout: *timeout, ReportBatchItemFailures: true,
			Invoke: fn.Invoke,
			OnInvoke: func(inv eventsource.Invocation) {
				invocations.Add(1)
				records.Add(int64(len(inv.Records)))
				billedMs.Add(inv.Duration.Milliseconds() + 1) // Lambda bills by the millisecond, rounded up
			},
		}
		go func() {
			if err := eventsource.Run(esCtx, q, cfg); err != nil {
				fmt.Fprintln(os.Stderr, "scale:", err)
				stop()
			}
		}()
	}
	go func() {
		var m runtime.MemStats
		for esCtx.Err() == nil {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peakHeap.Load() {
				peakHeap.Store(m.HeapInuse)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	bdeps, err := wiring.Load(ctx, "backfill", logger, os.Getenv)
	if err != nil {
		log.Fatal(err)
	}
	rdeps, err := wiring.Load(ctx, "reconcile", logger, os.Getenv)
	if err != nil {
		log.Fatal(err)
	}
	trigger := func() map[string]any {
		resp, err := rdeps.Reconciler(getenv, io.Discard).Handle(ctx, json.RawMessage(`{}`))
		if err != nil {
			log.Fatal(err)
		}
		b, _ := json.Marshal(resp)
		var m map[string]any
		json.Unmarshal(b, &m)
		return m
	}

	if *inline > 0 {
		report(*out, inlineRun(ctx, sb, bdeps, *quota, *latency, s.missing))
		return
	}

	// The run.
	mark := sb.AccessLogMark()
	throttledBefore := sb.FaultsFired()["quota:PutImage"]
	start := time.Now()
	answer := trigger()
	fanOut := time.Since(start)
	if err := eventsource.WaitIdle(ctx, q, env[wiring.EnvReconcileQueueURL], env[wiring.EnvCopyQueueURL]); err != nil {
		log.Fatal(err)
	}
	elapsed := time.Since(start)
	inv1, rec1, billed1 := invocations.Load(), records.Load(), billedMs.Load()
	entries := sb.AccessLogSince(mark)
	throttled := sb.FaultsFired()["quota:PutImage"] - throttledBefore
	ops, registry, writes, first1, last1 := tally(entries)
	window := last1.Sub(first1).Seconds()
	utilization := 0.0
	if window > 0 {
		utilization = float64(writes) / (window * *quota)
	}
	if os.Getenv("SCALE_DEBUG") != "" {
		hist := map[int][2]int{}
		for _, e := range entries {
			if e.Account == sandbox.DestinationAccount && (e.Operation == "PUT manifest" || e.Operation == "PutImage") {
				k := int(e.Time.Sub(start).Seconds() / 5)
				h := hist[k]
				if e.Status < 300 {
					h[0]++
				} else {
					h[1]++
				}
				hist[k] = h
			}
		}
		for k := 0; k <= int(elapsed.Seconds()/5); k++ {
			log.Printf("t=%3ds writes %d throttled %d", 5*k, hist[k][0], hist[k][1])
		}
	}

	// A run over a scope in sync: it also says the first left no drift.
	mark2 := sb.AccessLogMark()
	inv2, billed2 := invocations.Load(), billedMs.Load()
	start2 := time.Now()
	second := trigger()
	if err := eventsource.WaitIdle(ctx, q, env[wiring.EnvReconcileQueueURL], env[wiring.EnvCopyQueueURL]); err != nil {
		log.Fatal(err)
	}
	elapsed2 := time.Since(start2)
	ops2, registry2, _, _, _ := tally(sb.AccessLogSince(mark2))

	// The bootstrap's log lines join the in-process environments'.
	logs.Write([]byte(real.fn.Stdout()))
	reconciled, _ := logs.run(answer["run"])
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Reconcile at scale — %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Machine: %d cores (%s). Sandbox: %d repositories × %d images, %d missing at the destination (%.1f%%), %v per request, PutImage quota %.0f/s; up to %d reconcile invocations at once on the reconcile queue and %d replicate invocations on the copy queue, %d items per invocation; %d execution environments made.\n\n",
		runtime.NumCPU(), runtime.GOARCH, *repos, *images, s.missing, 100**drift, *latency, *quota, *concurrency, *copiers, *batch, reconciler.Made()+replicate.Made())
	fmt.Fprintf(&b, "| run | from trigger to zero drift | trigger | invocations | function time | repositories reconciled | registry requests | manifest writes | PutImage throttled | quota used |\n|---|---|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| with drift | **%.1f s** | %.2f s | %d (%d items) | %.0f s | %d of %d | %d | %d | %d (%.1f%%) | %.0f%% over %.0f s |\n",
		elapsed.Seconds(), fanOut.Seconds(), inv1, rec1, float64(billed1)/1000, reconciled, *repos, registry, writes, throttled,
		100*float64(throttled)/float64(max(writes+throttled, 1)), 100*utilization, window)
	fmt.Fprintf(&b, "| in sync | %.1f s | | %d | %.0f s | | %d | 0 | | |\n\n", elapsed2.Seconds(), invocations.Load()-inv2, float64(billedMs.Load()-billed2)/1000, registry2)
	fmt.Fprintf(&b, "Function time is the reconcile and replicate invocations' summed durations (what Lambda bills, with the memory size). The trigger sends the scan of the first page; the fan-out is the reconcile function's.\n\n")
	reconciled2, drift2 := logs.run(second["run"])
	fmt.Fprintf(&b, "Drift the in-sync run found: %d, in %d repositories reconciled. One execution environment, the replicate bootstrap under the Lambda Runtime Interface Emulator, handled %d invocations with a peak RSS (Lambda's Max Memory Used) of **%.1f MiB**. The benchmark's process (sandbox and the other environments): peak Go heap in use %d MiB, peak RSS %s.\n\n",
		drift2, reconciled2, real.invocations.Load(), float64(real.maxMemoryUsed())/(1<<20), peakHeap.Load()>>20, vmHWM())
	fmt.Fprintf(&b, "API calls by operation (with drift / in sync):\n\n| operation | with drift | in sync |\n|---|---|---|\n")
	var names []string
	for k := range ops {
		names = append(names, k)
	}
	for k := range ops2 {
		if ops[k] == 0 {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(&b, "| %s | %d | %d |\n", k, ops[k], ops2[k])
	}
	report(*out, b.String())
}

// report prints the report and appends it to out, if set.
func report(out, text string) {
	fmt.Print(text)
	if out == "" {
		return
	}
	f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		log.Fatal(err)
	}
}

// inlineRun is one inline backfill by the backfill function (no queue: it copies
// itself, one engine at the whole quota), of the tags the seed left missing.
func inlineRun(ctx context.Context, sb *sandbox.Sandbox, deps *wiring.Deps, quota float64, latency time.Duration, missing int) string {
	mark := sb.AccessLogMark()
	throttledBefore := sb.FaultsFired()["quota:PutImage"]
	start := time.Now()
	resp, err := deps.Backfill(func(string) string { return "" }, io.Discard).Handle(ctx, json.RawMessage(`{"mode":"inline"}`))
	if err != nil {
		log.Fatal(err)
	}
	elapsed := time.Since(start)
	throttled := sb.FaultsFired()["quota:PutImage"] - throttledBefore
	_, _, writes, first, last := tally(sb.AccessLogSince(mark))
	b, _ := json.Marshal(resp)
	var answer struct{ Copied, Failed int }
	json.Unmarshal(b, &answer)
	window := last.Sub(first).Seconds()
	return fmt.Sprintf("\n## Inline backfill under the PutImage quota — %s\n\n"+
		"Machine: %d cores. One repository, %d tags missing at the destination, %v per request, PutImage quota %.0f/s; the backfill function alone (mode inline).\n\n"+
		"| tags | copied | failed | time | manifest writes | PutImage throttled | quota used |\n|---|---|---|---|---|---|---|\n"+
		"| %d | %d | %d | %.1f s | %d | %d (%.1f%%) | %.0f%% over %.1f s |\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), missing, latency, quota,
		missing, answer.Copied, answer.Failed, elapsed.Seconds(), writes, throttled, 100*float64(throttled)/float64(max(writes+throttled, 1)),
		100*float64(writes)/(max(window, 1/quota)*quota), window)
}

// tally counts API calls by operation and registry requests, and the manifest writes the
// destination accepted (PutImage through either door) with the first and last one's time.
func tally(entries []sandbox.Entry) (ops map[string]int, registry, writes int, first, last time.Time) {
	ops = map[string]int{}
	for _, e := range entries {
		switch e.Service {
		case "registry", "s3":
			registry++
		default:
			ops[e.Service+":"+e.Operation]++
		}
		accepted := e.Account == sandbox.DestinationAccount && e.Status < 300 &&
			(e.Operation == "PUT manifest" || e.Operation == "PutImage")
		if accepted {
			writes++
			if first.IsZero() || e.Time.Before(first) {
				first = e.Time
			}
			if e.Time.After(last) {
				last = e.Time
			}
		}
	}
	return ops, registry, writes, first, last
}

type seeded struct{ missing int }

// seed fills the source with repos × images (one registry push per repository for the
// blobs, PutImage for the rest) and the destination with all but the drift.
func seed(ctx context.Context, sb *sandbox.Sandbox, repos, images int, drift float64) seeded {
	src := awsConfig(ctx, sb, sandbox.SourceAccount, sandbox.AdminUser)
	dst := awsConfig(ctx, sb, sandbox.DestinationAccount, sandbox.AdminUser)
	srcHost, srcAuth := login(ctx, src)
	dstHost, dstAuth := login(ctx, dst)
	base, err := random.Image(256, 1)
	if err != nil {
		log.Fatal(err)
	}
	raw, _ := base.RawManifest()
	mt, _ := base.MediaType()
	rnd := rand.New(rand.NewPCG(1, 2))
	missing := map[[2]int]bool{}
	for len(missing) < int(float64(repos*images)*drift) {
		missing[[2]int{rnd.IntN(repos), rnd.IntN(images)}] = true
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range repos {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			name := fmt.Sprintf("org/team-%02d/app-%05d", i%50, i)
			for side, c := range []aws.Config{src, dst} {
				repo := name
				host, auth := srcHost, srcAuth
				if side == 1 {
					repo, host, auth = "mirror/"+name, dstHost, dstAuth
				}
				api := ecr.NewFromConfig(c)
				in := &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)}
				if side == 1 {
					// The replicator's (docs/SECURITY.md): it writes only to repositories it owns.
					in.Tags = []ecrtypes.Tag{{Key: aws.String(ecraccess.OwnerTag), Value: aws.String(sandbox.SourceAccount)}}
				}
				if _, err := api.CreateRepository(ctx, in); err != nil {
					log.Fatal(err)
				}
				push(host, auth, repo, "v0", base)
				for j := 1; j < images; j++ {
					if side == 1 && missing[[2]int{i, j}] {
						continue
					}
					variant := strings.Replace(string(raw), `"config"`, fmt.Sprintf(`"annotations":{"n":"%d-%d"},"config"`, i, j), 1)
					if _, err := api.PutImage(ctx, &ecr.PutImageInput{RepositoryName: aws.String(repo), ImageManifest: aws.String(variant),
						ImageManifestMediaType: aws.String(string(mt)), ImageTag: aws.String(fmt.Sprintf("v%d", j))}); err != nil {
						log.Fatal(err)
					}
				}
			}
		})
	}
	wg.Wait()
	n := 0
	for k := range missing {
		if k[1] != 0 {
			n++
		}
	}
	return seeded{missing: n}
}

func push(host string, auth authn.Authenticator, repo, tag string, img v1.Image) {
	ref, err := name.ParseReference(host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		log.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(auth)); err != nil {
		log.Fatal(err)
	}
}

func awsConfig(ctx context.Context, sb *sandbox.Sandbox, account, user string) aws.Config {
	key, secret, err := sb.Credentials(account, user)
	if err != nil {
		log.Fatal(err)
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(sandbox.DefaultRegion),
		config.WithCredentialsProvider(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: key, SecretAccessKey: secret}, nil
		})))
	if err != nil {
		log.Fatal(err)
	}
	return cfg
}

func login(ctx context.Context, cfg aws.Config) (string, authn.Authenticator) {
	out, err := ecr.NewFromConfig(cfg).GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		log.Fatal(err)
	}
	d := out.AuthorizationData[0]
	tok, _ := decode(aws.ToString(d.AuthorizationToken))
	user, pass, _ := strings.Cut(tok, ":")
	return strings.TrimPrefix(aws.ToString(d.ProxyEndpoint), "http://"), &authn.Basic{Username: user, Password: pass}
}

// rieEnvironment is an execution environment that is the real bootstrap.
type rieEnvironment struct {
	fn          *lambdarun.Function
	invocations atomic.Int64
}

func (e *rieEnvironment) Handle(ctx context.Context, payload json.RawMessage) (any, error) {
	e.invocations.Add(1)
	out, err := e.fn.Invoke(ctx, payload)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(out), nil
}

func (e *rieEnvironment) maxMemoryUsed() int64 {
	n, err := e.fn.MaxMemoryUsed()
	if err != nil {
		log.Printf("max memory used: %v", err)
	}
	return n
}

// startBootstrap builds the replicate function and the emulator and starts them with
// the environment template.yaml gives the function.
func startBootstrap(ctx context.Context, dir string, sbEnv, queues map[string]string, quota float64, copiers int, timeout time.Duration) *rieEnvironment {
	root, err := lambdarun.ModuleRoot()
	if err != nil {
		log.Fatal(err)
	}
	rie, bootstrap := filepath.Join(dir, "aws-lambda-rie"), filepath.Join(dir, "bootstrap")
	if err := lambdarun.Build(ctx, root, lambdarun.RIEPackage, rie, false); err != nil {
		log.Fatal(err)
	}
	if err := lambdarun.Build(ctx, root, "./functions/replicate", bootstrap, true); err != nil {
		log.Fatal(err)
	}
	env := map[string]string{
		"REPLICATION_RULES": os.Getenv("REPLICATION_RULES"), "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		wiring.EnvPutImageRate: fmt.Sprint(quota), wiring.EnvWriters: fmt.Sprint(copiers), "LOG_LEVEL": "info",
		"AWS_LAMBDA_FUNCTION_TIMEOUT": fmt.Sprint(int(timeout.Seconds())),
	}
	for _, m := range []map[string]string{sbEnv, queues} {
		for k, v := range m {
			env[k] = v
		}
	}
	fnDir := filepath.Join(dir, "replicate")
	if err := os.MkdirAll(fnDir, 0o755); err != nil {
		log.Fatal(err)
	}
	fn, err := lambdarun.Start(rie, bootstrap, fnDir, "ecr-replicator-replicate", env)
	if err != nil {
		log.Fatal(err)
	}
	return &rieEnvironment{fn: fn}
}

// countingWriter keeps the function's log lines, for counting.
type countingWriter struct {
	mu    sync.Mutex
	lines []string
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"msg":"reconcile repository"`) {
			w.lines = append(w.lines, sc.Text())
		}
	}
	return len(p), nil
}

// run is how many repositories a reconcile run reconciled and the drift they had.
func (w *countingWriter) run(id any) (repositories, drift int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		var line struct {
			Run   string
			Drift int
		}
		if json.Unmarshal([]byte(l), &line) == nil && line.Run == id {
			repositories++
			drift += line.Drift
		}
	}
	return repositories, drift
}

func vmHWM() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "unknown"
}

func decode(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	return string(b), err
}
