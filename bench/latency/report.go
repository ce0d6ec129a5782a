package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ecr-replicator/ecr-replicator/bench/internal/harness"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/stack"
)

// dist is p50, p99 and max of a figure over a kind's pushes.
type dist struct{ p50, p99, max time.Duration }

func distOf(samples []sample, f func(sample) time.Duration) dist {
	ds := make([]time.Duration, len(samples))
	for i, s := range samples {
		ds[i] = f(s)
	}
	slices.Sort(ds)
	return dist{p50: rank(ds, 0.50), p99: rank(ds, 0.99), max: ds[len(ds)-1]}
}

// rank is the nearest-rank percentile of sorted ds: the smallest value with at least
// p of the values at or below it.
func rank(ds []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(ds)))) - 1
	return ds[max(i, 0)]
}

func (d dist) String() string {
	return fmt.Sprintf("%.3f / %.3f / %.3f", d.p50.Seconds(), d.p99.Seconds(), d.max.Seconds())
}

// figures are a result's distributions and counts.
type figures struct {
	e2e, queue, bus, function, transfer, overhead dist
	invocations, messages                         float64 // per push
	cold, slowest                                 int     // slowest: 1-based push number
	slowestCold                                   bool
}

func figuresOf(r result) figures {
	s := r.samples
	f := figures{
		e2e:      distOf(s, func(x sample) time.Duration { return x.e2e }),
		queue:    distOf(s, func(x sample) time.Duration { return x.queue }),
		bus:      distOf(s, func(x sample) time.Duration { return x.bus }),
		function: distOf(s, func(x sample) time.Duration { return x.function }),
		transfer: distOf(s, func(x sample) time.Duration { return x.transfer }),
		overhead: distOf(s, func(x sample) time.Duration { return x.e2e - x.transfer }),
	}
	for i, x := range s {
		f.invocations += float64(x.invocations)
		f.messages += float64(x.messages)
		f.cold += x.cold
		if x.e2e > s[f.slowest].e2e {
			f.slowest = i
		}
	}
	f.slowestCold = s[f.slowest].cold > 0
	f.slowest++
	f.invocations /= float64(len(s))
	f.messages /= float64(len(s))
	return f
}

// report is the Markdown section.
func (b *bench) report(results []result) string {
	o := b.o
	var s strings.Builder
	fmt.Fprintf(&s, "\n## Push-to-replica latency — %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&s, "Machine: %s; sandbox latency %v per API, registry and storage request. Written by `make bench-latency` (bench/latency).\n\n", harness.Machine(), o.latency)
	fmt.Fprintf(&s, "Everything on 127.0.0.1 in the sandbox (ECR API, registries, presigned blob storage, STS, SQS, EventBridge; blobs on disk). "+
		"The push path as template.yaml deploys it (internal/tooling/sandbox/stack): ECR's push events → %s → %s (dead-letter queue after %d receives) → the event source, at most %d invocations at once → the replicate function's bootstrap under the Lambda Runtime Interface Emulator, one emulator per execution environment; "+
		"a fresh sandbox and fresh environments per configuration. "+
		"Each push is a fresh random image (uncompressed random layers) under a tag of its own, pushed into the source with go-containerregistry's remote.Write or remote.WriteIndex, as crane push does (an index: its platforms by digest first, each with a push event of its own, then the index by tag); "+
		"the next push waits until the replica is written and the queue is idle, so these are latencies of single pushes, not throughput. The big image is deleted from both accounts after each push.\n\n",
		stack.RuleName, stack.QueueName, stack.MaxReceiveCount, stack.MaximumConcurrency)
	fmt.Fprintf(&s, "| configuration | image | pushes | end-to-end | queueing | of which EventBridge | function | transfer | end-to-end − transfer | p99 ≤ %.0f s + transfer | invocations / push | messages / push | cold starts |\n", target.Seconds())
	fmt.Fprintf(&s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var summary []string
	for _, r := range results {
		f := figuresOf(r)
		met, verdict := "yes", "met"
		if f.overhead.p99 > target {
			met, verdict = "**no**", "**missed**"
		}
		fmt.Fprintf(&s, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %.1f | %.1f | %d |\n",
			r.side.label, r.kind.label, len(r.samples), f.e2e, f.queue, f.bus, f.function, f.transfer, f.overhead, met, f.invocations, f.messages, f.cold)
		slow := fmt.Sprintf("slowest push #%d", f.slowest)
		if f.slowestCold {
			slow += " (a cold start)"
		}
		summary = append(summary, fmt.Sprintf("- %s, %s: end-to-end p50 %.2f s, p99 %.2f s (%s); minus transfer p99 %.2f s, target ≤ %.0f s %s; %.1f invocations and %.1f messages per push, %s.",
			r.side.name, r.kind.label, f.e2e.p50.Seconds(), f.e2e.p99.Seconds(), slow, f.overhead.p99.Seconds(), target.Seconds(), verdict, f.invocations, f.messages, plural(f.cold, "cold start")))
	}
	fmt.Fprintf(&s, "\nSeconds, p50 / p99 / max over the pushes (nearest rank: with under 100 pushes, p99 is the max). Per push, from the sandbox's access log and the event source's invocations:\n\n")
	fmt.Fprintf(&s, "- end-to-end: from the source's answer to the tag's manifest PUT (the last request of the push) to the end of the destination's write of the tag (`mirror/` repository; a manifest PUT or PutImage).\n")
	fmt.Fprintf(&s, "- queueing: from the same start to the start of the invocation that carried the tagged push event (EventBridge delivery, SQS, the event source's poll and batching window); of which EventBridge: to the rule's send of the event to the queue — the sandbox delivers at once, AWS's EventBridge adds a delay of its own that is not modelled. Slightly negative when the invocation began before the source's answer had been written: the sandbox emits the push event when the manifest is stored, before it answers.\n")
	fmt.Fprintf(&s, "- function: that invocation's duration, as the event source sees it (the emulator's round trip; with a cold start, also the environment's start and the bootstrap's init).\n")
	fmt.Fprintf(&s, "- transfer: inside that invocation, the wall time during which at least one of the copy's blob byte transfers was under way (the union of the intervals of the source's presigned storage GETs and the destination's upload requests with a body): not a sum, as layers move concurrently and each GET streams into its upload; not the span from the first to the last, which would count the manifest writes and credential fetches between them.\n")
	fmt.Fprintf(&s, "- end-to-end − transfer, per push: what the pipeline adds to moving the bytes; the target is its p99 ≤ %.0f s.\n", target.Seconds())
	fmt.Fprintf(&s, "- invocations and messages per push: all the push's invocations (an index's tagless platform events too, which the rules ignore: untagged is false); cold starts: execution environments made during the kind's pushes.\n\n")
	s.WriteString(strings.Join(summary, "\n"))
	s.WriteString("\n")
	return s.String()
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
