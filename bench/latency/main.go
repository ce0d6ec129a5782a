// Command latency measures push-to-replica latency through the deployed push path
// (`make bench-latency`): how long after a user's push to the source account the image's
// tag exists in the destination account, and where that time goes.
//
// Everything runs on 127.0.0.1 against the repository's AWS sandbox (internal/tooling/sandbox),
// every API, registry and storage request delayed by -latency, blobs on disk under
// -data. The push path is deployed as template.yaml deploys it and as the demo runs it
// (internal/tooling/sandbox/stack): ECR's push events go through the ImageActionRule to the
// ReplicationQueue, whose local event source invokes the replicate function's real
// bootstrap under the Lambda Runtime Interface Emulator, one emulator per execution
// environment. Nobody hands the function an event.
//
// For each image kind — (a) a small single-platform image, (b) a big one, (c) a
// multi-platform index of small platforms (fan-out, not bytes) — it pushes -pushes fresh
// random images one after another with go-containerregistry's remote.Write or
// remote.WriteIndex (what crane push does), each under its own tag, and waits for each
// replica and for the queue to drain before the next push: a latency, not a throughput.
// From the sandbox's access log and the event source's invocations it takes, per push,
// the end-to-end time (the source's tag PUT answered → the destination's tag written),
// the queueing (→ start of the invocation carrying the tagged event), the function's
// duration, the blob transfer inside it, and invocations, messages and cold starts; it
// does so for each Lambda-side configuration in -configs (the template's defaults, and
// BatchSize 10 with a 1 s batching window), and prints a Markdown section, appended to
// -out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ecr-replicator/ecr-replicator/bench/internal/harness"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/stack"
)

const (
	extID = "bench-latency"
	// target is the latency goal (docs/PERFORMANCE.md): p99 of push → replica at most this plus the
	// time the bytes take.
	target = 2 * time.Second
)

// lambdaSide is one configuration of the ReplicationQueue event source mapping.
type lambdaSide struct {
	name, label string
	batchSize   int
	window      time.Duration
}

// The configurations -configs chooses from. Lambda's SQS event source invokes when the
// batch is full, when the batching window ends, or when the payload reaches 6 MB; with no
// window (the default for a standard queue) as soon as a poll returns messages
// (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html, "Batching
// behavior"). A window trades latency for fewer invocations: an index's tagless child
// events and its tagged event can then share one invocation.
var lambdaSides = []lambdaSide{
	{"default", fmt.Sprintf("template defaults: BatchSize %d, no batching window", stack.BatchSize), stack.BatchSize, 0},
	{"window", "BatchSize 10, MaximumBatchingWindow 1 s", 10, time.Second},
}

// kind is one image kind -kinds chooses from.
type kind struct {
	name, repo string
	label      string
	index      bool
	layers     int   // per image (per platform for an index)
	layerBytes int64 // total per image (per platform)
	platforms  int
	big        bool // deleted after each push, to bound disk
}

type options struct {
	pushes                   int
	latency, timeout         time.Duration
	small, big, platformSize int64
	bigLayers, platforms     int
	kinds, sides             []string
	root, out, data          string
}

func main() {
	o := options{small: harness.MiB, big: 100 * harness.MiB, platformSize: 256 * harness.KiB}
	flag.IntVar(&o.pushes, "pushes", 50, "pushes per image kind and configuration")
	flag.DurationVar(&o.latency, "latency", 25*time.Millisecond, "delay of every API, registry and storage request to the sandbox")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "most time one push may take, from the push to its replica and an idle queue; past it the run fails")
	flag.Var((*harness.Size)(&o.small), "small", "size of image (a), one layer")
	flag.Var((*harness.Size)(&o.big), "big", "size of image (b), split over -big-layers layers")
	flag.IntVar(&o.bigLayers, "big-layers", 2, "layers of image (b)")
	flag.Var((*harness.Size)(&o.platformSize), "platform-size", "size of each platform's single layer in index (c)")
	flag.IntVar(&o.platforms, "platforms", 4, "platforms in index (c)")
	kinds := flag.String("kinds", "small,big,index", "image kinds to push, comma-separated: small, big, index")
	sides := flag.String("configs", "default,window", "Lambda-side configurations, comma-separated: default (BatchSize 5, no batching window), window (BatchSize 10, MaximumBatchingWindow 1 s)")
	flag.StringVar(&o.root, "root", "", "the ecr-replicator repository (default: found from the working directory)")
	flag.StringVar(&o.out, "out", "", "append the report to this Markdown file")
	flag.StringVar(&o.data, "data", os.TempDir(), "directory under which the run's directory (binaries, the sandbox's blobs: about twice the biggest image per kind) is made and removed")
	flag.Parse()
	o.kinds, o.sides = split(*kinds), split(*sides)

	// A signal cancels the run; the clean-up (emulators, sandbox, data) still happens.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The benchmark's own SDK clients read no profile of this machine.
	os.Setenv("AWS_CONFIG_FILE", os.DevNull)
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	err := run(ctx, o)
	stop()
	if err != nil {
		log.Printf("bench-latency: %v", err)
		os.Exit(1)
	}
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// bench is what the configurations share.
type bench struct {
	o   options
	dir string // removed at the end
	harness.Binaries
	kinds []kind
	sides []lambdaSide
}

func run(ctx context.Context, o options) (err error) {
	b := &bench{o: o}
	if err := b.check(); err != nil {
		return err
	}
	dir, bins, cleanup, err := harness.Workspace(ctx, o.root, o.data, "bench-latency")
	if err != nil {
		return err
	}
	defer cleanup()
	b.dir, b.Binaries = dir, bins
	var results []result
	for _, side := range b.sides {
		rs, err := b.runSide(ctx, side)
		if err != nil {
			return fmt.Errorf("%s: %w", side.name, err)
		}
		results = append(results, rs...)
	}
	return harness.Report(o.out, b.report(results))
}

// check validates the flags before anything is built.
func (b *bench) check() error {
	o := b.o
	if o.pushes < 1 || o.latency < 0 || o.timeout <= 0 || o.bigLayers < 1 || o.platforms < 1 || o.platforms > len(platforms) {
		return fmt.Errorf("-pushes, -big-layers and -timeout must be positive, -latency not negative, -platforms 1 to %d", len(platforms))
	}
	if o.big < int64(o.bigLayers) {
		return errors.New("-big must be at least a byte per layer")
	}
	all := []kind{
		{name: "small", repo: "bench/small", label: fmt.Sprintf("(a) %s, 1 layer", harness.Human(o.small)), layers: 1, layerBytes: o.small},
		{name: "big", repo: "bench/big", label: fmt.Sprintf("(b) %s, %d layers", harness.Human(o.big), o.bigLayers), layers: o.bigLayers, layerBytes: o.big, big: true},
		{name: "index", repo: "bench/index", label: fmt.Sprintf("(c) index, %d platforms × %s", o.platforms, harness.Human(o.platformSize)), index: true, layers: 1, layerBytes: o.platformSize, platforms: o.platforms},
	}
	for _, k := range all {
		if slices.Contains(o.kinds, k.name) {
			b.kinds = append(b.kinds, k)
		}
	}
	for _, s := range lambdaSides {
		if slices.Contains(o.sides, s.name) {
			b.sides = append(b.sides, s)
		}
	}
	for _, k := range o.kinds {
		if !slices.ContainsFunc(all, func(x kind) bool { return x.name == k }) {
			return fmt.Errorf("-kinds: unknown %q (small, big, index)", k)
		}
	}
	for _, s := range o.sides {
		if !slices.ContainsFunc(lambdaSides, func(x lambdaSide) bool { return x.name == s }) {
			return fmt.Errorf("-configs: unknown %q (default, window)", s)
		}
	}
	if len(b.kinds) == 0 || len(b.sides) == 0 {
		return errors.New("nothing to run: -kinds and -configs name none")
	}
	return nil
}
