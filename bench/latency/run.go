package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/bench/internal/harness"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/lambdarun"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventsource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/stack"
)

// sample is one push's figures.
type sample struct {
	e2e                         time.Duration // the source's tag PUT answered → the destination's tag written
	queue                       time.Duration // → start of the invocation carrying the tagged event
	bus                         time.Duration // → the event sent to the queue (part of queue)
	function                    time.Duration // that invocation's duration
	transfer                    time.Duration // blob transfers in that invocation: the union of their intervals
	invocations, messages, cold int
}

// result is one kind's pushes under one configuration.
type result struct {
	side    lambdaSide
	kind    kind
	samples []sample
}

// sideRun is one configuration's deployment: a sandbox of its own, the stack, the
// function's environments and the event source.
type sideRun struct {
	b        *bench
	side     lambdaSide
	sb       *sandbox.Sandbox
	dataDir  string
	src, dst *side
	st       *stack.Stack
	es       *eventsource.EventSource
	envs     *eventsource.Environments
	pool     *lambdarun.Pool
	col      *collector
	gen      *generator
}

// runSide deploys the push path with the configuration's event source settings in a
// fresh sandbox (so that cold starts and disk are the configuration's own) and pushes
// every kind.
func (b *bench) runSide(ctx context.Context, ls lambdaSide) (results []result, err error) {
	r := &sideRun{b: b, side: ls, dataDir: filepath.Join(b.dir, "sandbox-"+ls.name), col: &collector{}, gen: newGenerator()}
	defer os.RemoveAll(r.dataDir) // after the sandbox closes (deferred later, runs first)
	cfg := sandbox.TwoAccounts(extID)
	cfg.DataDir = r.dataDir
	cfg.Latency = b.o.latency
	if r.sb, err = sandbox.New(cfg); err != nil {
		return nil, err
	}
	defer r.sb.Close()
	if r.src, err = newSide(ctx, r.sb, sandbox.SourceAccount); err != nil {
		return nil, err
	}
	if r.dst, err = newSide(ctx, r.sb, sandbox.DestinationAccount); err != nil {
		return nil, err
	}
	for _, k := range b.kinds {
		if _, err := r.src.API.CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(k.repo)}); err != nil {
			return nil, err
		}
	}
	// The push path at the template's defaults; the mapping's batching is the
	// configuration's.
	if r.st, err = stack.Deploy(ctx, r.sb, stack.Options{}); err != nil {
		return nil, err
	}
	env, err := r.functionEnv()
	if err != nil {
		return nil, err
	}
	fnDir := filepath.Join(b.dir, "functions-"+ls.name)
	if err := os.MkdirAll(fnDir, 0o755); err != nil {
		return nil, err
	}
	r.pool = lambdarun.NewPool(b.RIE, b.Bootstrap, fnDir, "ecr-replicator-replicate", env)
	defer r.pool.Stop()
	r.envs = eventsource.NewEnvironments(func() (eventsource.Handler, error) {
		f, err := r.pool.New()
		if err != nil {
			return nil, err
		}
		return f, nil
	})
	es, stop, err := r.st.Start(ctx, stack.Mapping{
		BatchSize: ls.batchSize, MaximumBatchingWindow: ls.window,
		Invoke: r.envs.Invoke, OnInvoke: r.col.add,
	})
	if err != nil {
		return nil, err
	}
	defer stop()
	r.es = es
	log.Printf("%s: %s; sandbox up, push path deployed", ls.name, ls.label)

	for _, k := range b.kinds {
		res := result{side: ls, kind: k}
		for i := range b.o.pushes {
			s, err := r.push(ctx, k, i)
			if err != nil {
				return nil, fmt.Errorf("%s push %d of %d: %w", k.name, i+1, b.o.pushes, err)
			}
			res.samples = append(res.samples, s)
		}
		results = append(results, res)
	}
	if err := stop(); err != nil {
		return nil, err
	}
	if dead, err := r.st.DeadLetters(ctx); err != nil {
		return nil, err
	} else if dead > 0 {
		return nil, fmt.Errorf("%d messages in the dead-letter queue", dead)
	}
	return results, nil
}

// functionEnv is the replicate function's environment: the template's (stack), the
// rules document and the sandbox's endpoints and the replicator's credentials.
func (r *sideRun) functionEnv() (map[string]string, error) {
	rules, err := json.Marshal(map[string]any{"rules": []any{map[string]any{
		"name": "bench", "repositories": []string{"bench/**"},
		"destinations": []any{map[string]string{
			"accountId": sandbox.DestinationAccount, "region": sandbox.DefaultRegion,
			"roleArn":    sandbox.RoleARN(sandbox.DestinationAccount, sandbox.DestinationRole),
			"externalId": extID, "repositoryPrefix": "mirror/",
		}},
	}}})
	if err != nil {
		return nil, err
	}
	env := map[string]string{"REPLICATION_RULES": string(rules), "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull}
	clientEnv, err := sandbox.ClientEnv(r.sb, sandbox.DefaultRegion, extID)
	if err != nil {
		return nil, err
	}
	for _, m := range []map[string]string{clientEnv, r.st.FunctionEnv()} {
		for k, v := range m {
			env[k] = v
		}
	}
	return env, nil
}

// push pushes one fresh image of kind k under its own tag, waits (at most -timeout) for
// its replica and for the queue to drain, and measures.
func (r *sideRun) push(ctx context.Context, k kind, i int) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, r.b.o.timeout)
	defer cancel()
	tag := fmt.Sprintf("v%d", i+1)
	var t remote.Taggable
	var blobs []v1.Hash
	var digest v1.Hash
	var err error
	if k.index {
		var idx v1.ImageIndex
		if idx, err = r.gen.index(k.platforms, k.layerBytes); err == nil {
			t = idx
			digest, err = idx.Digest()
		}
	} else {
		var img v1.Image
		if img, blobs, err = r.gen.image(k.layers, k.layerBytes, platforms[0]); err == nil {
			t = img
			digest, err = img.Digest()
		}
	}
	if err != nil {
		return sample{}, err
	}

	r.col.take() // nothing should be left; the previous push waited for an idle queue
	made := r.envs.Made()
	mark := r.sb.AccessLogMark()
	if err := r.src.write(ctx, k.repo, tag, t); err != nil {
		return sample{}, fmt.Errorf("push %s:%s: %w", k.repo, tag, err)
	}
	pushReturned := time.Now()
	mirror := "mirror/" + k.repo
	if err := r.awaitReplica(ctx, mark, k.repo, tag); err != nil {
		return sample{}, err
	}
	// The invocations this push caused all report before the next push starts.
	if err := r.st.WaitIdle(ctx, r.es); err != nil {
		return sample{}, fmt.Errorf("%s:%s replicated, then the queue did not drain: %w", k.repo, tag, timeoutHint(err, r.b.o.timeout))
	}
	invs := r.col.take()
	entries := r.sb.AccessLogSince(mark)
	s, err := r.measure(entries, invs, k.repo, tag, pushReturned)
	if err != nil {
		return sample{}, err
	}
	s.cold = r.envs.Made() - made
	if got, err := r.dst.digestOf(ctx, mirror, tag); err != nil {
		return sample{}, err
	} else if got != digest.String() {
		return sample{}, fmt.Errorf("%s:%s in the destination is %q, the source pushed %s", mirror, tag, got, digest)
	}
	log.Printf("%s %s %d/%d: end-to-end %.3f s (queueing %.3f, function %.3f, transfer %.3f), %d invocation(s), %d message(s), %d cold start(s)",
		r.side.name, k.name, i+1, r.b.o.pushes, s.e2e.Seconds(), s.queue.Seconds(), s.function.Seconds(), s.transfer.Seconds(), s.invocations, s.messages, s.cold)
	if k.big {
		// The big image's blobs go, so that disk holds one of them at a time.
		var freed int64
		for _, d := range []struct {
			s    *side
			repo string
		}{{r.src, k.repo}, {r.dst, mirror}} {
			n, err := d.s.remove(ctx, r.dataDir, d.repo, tag, blobs)
			if err != nil {
				return sample{}, fmt.Errorf("deleting %s:%s: %w", d.repo, tag, err)
			}
			freed += n
		}
		if freed == 0 {
			log.Printf("warning: deleting %s:%s freed no blob files under %s (has the sandbox's layout changed?): disk grows by the image twice per push", k.repo, tag, r.dataDir)
		}
	}
	return s, nil
}

// awaitReplica waits until the destination has written repo's tag (the access log after
// mark), failing early when the invocation that carried the tagged event failed.
func (r *sideRun) awaitReplica(ctx context.Context, mark int, repo, tag string) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, ok := tagWrite(r.sb.AccessLogSince(mark), sandbox.DestinationAccount, "mirror/"+repo, tag); ok {
			return nil
		}
		for _, inv := range r.col.peek() {
			for _, rec := range inv.Records {
				if ev, ok := parseEvent(rec.Body); ok && ev.is(repo, tag) && (inv.Err != nil || slices.Contains(inv.Failed, rec.MessageID)) {
					return fmt.Errorf("the invocation carrying %s:%s failed (%v, answer %s); function output:\n%s",
						repo, tag, inv.Err, harness.OneLine(string(inv.Response), 400), r.functionTail())
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no replica of %s:%s: %w; %d invocation(s) so far; function output:\n%s",
				repo, tag, timeoutHint(ctx.Err(), r.b.o.timeout), len(r.col.peek()), r.functionTail())
		case <-tick.C:
		}
	}
}

func timeoutHint(err error, timeout time.Duration) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("still waiting after the per-push timeout of %v (-timeout)", timeout)
	}
	return err
}

// functionTail is the end of what the function's environments printed.
func (r *sideRun) functionTail() string {
	var b strings.Builder
	for i, f := range r.pool.Functions() {
		out := f.Stdout() + f.Stderr()
		if len(out) > 2000 {
			out = "…" + out[len(out)-2000:]
		}
		fmt.Fprintf(&b, "--- environment %d ---\n%s\n", i+1, out)
	}
	return b.String()
}

// measure takes one push's figures from the access log entries since the push began and
// the invocations it caused.
func (r *sideRun) measure(entries []sandbox.Entry, invs []eventsource.Invocation, repo, tag string, pushReturned time.Time) (sample, error) {
	s := sample{invocations: len(invs)}
	for _, inv := range invs {
		s.messages += len(inv.Records)
	}
	// Push done: the source answered the tag's manifest PUT (what remote.Write waits
	// for last); the client's own clock if the log has no such entry.
	pushDone := pushReturned
	if at, ok := tagWrite(entries, sandbox.SourceAccount, repo, tag); ok {
		pushDone = at
	}
	replica, ok := tagWrite(entries, sandbox.DestinationAccount, "mirror/"+repo, tag)
	if !ok {
		return s, fmt.Errorf("no write of mirror/%s:%s in the access log", repo, tag)
	}
	// The invocation that carried the tagged event and succeeded (the last, should a
	// retry have been needed).
	var inv *eventsource.Invocation
	var msgID string
	for i := range invs {
		for _, rec := range invs[i].Records {
			if ev, ok := parseEvent(rec.Body); ok && ev.is(repo, tag) && invs[i].Err == nil && !slices.Contains(invs[i].Failed, rec.MessageID) {
				if inv == nil || invs[i].Start.After(inv.Start) {
					inv, msgID = &invs[i], rec.MessageID
				}
			}
		}
	}
	if inv == nil {
		return s, fmt.Errorf("no successful invocation carried the push event of %s:%s (%d invocations)", repo, tag, len(invs))
	}
	end := inv.Start.Add(inv.Duration)
	s.e2e = replica.Sub(pushDone)
	s.queue = inv.Start.Sub(pushDone)
	s.function = inv.Duration
	s.bus = s.queue // if the delivery is not found: all of it
	for _, d := range slices.Backward(r.sb.Deliveries()) {
		if d.MessageID == msgID {
			s.bus = d.Time.Sub(pushDone)
			break
		}
	}
	// Transfer: the blob bytes of this copy — the source's storage GETs (ECR's blob GETs
	// redirect there) and the destination's upload requests with a body — inside the
	// invocation, as the wall time during which at least one of them was under way (the
	// union of their intervals). Not a sum: the engine moves layers concurrently and
	// streams each GET into its upload, so a sum would count the same time two to four
	// times. Not the span from the first to the last either: between an index's blobs
	// the engine writes the platforms' manifests, and a cold environment fetches
	// credentials, which are the pipeline's time, not the bytes'.
	var spans []span
	for _, e := range entries {
		if e.Time.Before(inv.Start) || e.Time.After(end) || e.Status >= 300 || e.Bytes == 0 {
			continue
		}
		src := e.Service == "s3" && e.Operation == "GET object" && e.Account == sandbox.SourceAccount
		dst := e.Service == "registry" && e.Account == sandbox.DestinationAccount && strings.HasSuffix(e.Operation, " upload")
		if !src && !dst {
			continue
		}
		spans = append(spans, span{e.Time, e.Time.Add(e.Duration)})
	}
	s.transfer = union(spans)
	return s, nil
}

// span is one request's interval.
type span struct{ from, to time.Time }

// union is how long at least one of spans was under way.
func union(spans []span) time.Duration {
	slices.SortFunc(spans, func(a, b span) int { return a.from.Compare(b.from) })
	var total time.Duration
	var cur span
	for i, s := range spans {
		switch {
		case i == 0:
			cur = s
		case s.from.After(cur.to):
			total += cur.to.Sub(cur.from)
			cur = s
		case s.to.After(cur.to):
			cur.to = s.to
		}
	}
	if len(spans) > 0 {
		total += cur.to.Sub(cur.from)
	}
	return total
}

// tagWrite is when the first accepted write of tag to repository in account finished: a
// registry manifest PUT by tag, or PutImage with the tag.
func tagWrite(entries []sandbox.Entry, account, repository, tag string) (time.Time, bool) {
	for _, e := range entries {
		if e.Account != account || e.Repository != repository || e.Status >= 300 {
			continue
		}
		if (e.Operation == "PUT manifest" || e.Operation == "PutImage") && slices.Contains(strings.Split(e.Reference, ","), tag) {
			return e.Time.Add(e.Duration), true
		}
	}
	return time.Time{}, false
}

// imageEvent is what of an ECR Image Action event names the image.
type imageEvent struct {
	ID     string `json:"id"`
	Detail struct {
		Repository string `json:"repository-name"`
		Tag        string `json:"image-tag"`
		Action     string `json:"action-type"`
	} `json:"detail"`
}

func parseEvent(body string) (imageEvent, bool) {
	var ev imageEvent
	return ev, json.Unmarshal([]byte(body), &ev) == nil
}

func (ev imageEvent) is(repo, tag string) bool {
	return ev.Detail.Action == "PUSH" && ev.Detail.Repository == repo && ev.Detail.Tag == tag
}

// collector keeps the invocations the event source reports, from its goroutines.
type collector struct {
	mu   sync.Mutex
	invs []eventsource.Invocation
}

func (c *collector) add(inv eventsource.Invocation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.invs = append(c.invs, inv)
}

// take returns the invocations reported since the last take.
func (c *collector) take() []eventsource.Invocation {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.invs
	c.invs = nil
	return out
}

// peek returns them without taking them.
func (c *collector) peek() []eventsource.Invocation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.invs)
}
