package reliability_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// interleaveStats are the totals of TestInterleavings.
type interleaveStats struct {
	mu                                                 sync.Mutex
	schedules, events, deliveries, redeliveries, kills int
	uploads, duplicateUploads, divergent               int
}

func (s *interleaveStats) add(f func(*interleaveStats)) {
	s.mu.Lock()
	f(s)
	s.mu.Unlock()
}

// TestInterleavings is the proof that the destination never ends behind the source.
// Each schedule (seeded, bounded) gives one repository two tags that move among two
// images and a 2-platform index, with digest-only pushes and tag deletes, while three
// workers — each its own handler, engine and clients, as separate Lambda execution
// environments are — consume the push and delete events in random order, some twice. A
// scheduler kills invocations at random points: right after a manifest PUT is applied
// and before it is answered (between a tag's PUT and its re-check), right after the
// destination answered a tag read (between a delete's check and the delete), during a
// download, or after a random delay; a killed invocation's whole batch comes back, as SQS
// returns it after the visibility timeout. When the events stop and the queue drains —
// with no reconcile run — the destination's tags must equal the source's, and every
// tagged manifest must be complete.
//
// INTERLEAVE_SCHEDULES (default 200) and INTERLEAVE_SEED (default 1) set the run; make
// soak runs 10,000 schedules.
func TestInterleavings(t *testing.T) {
	schedules := envInt("INTERLEAVE_SCHEDULES", 200)
	seed := int64(envInt("INTERLEAVE_SEED", 1))
	st := &interleaveStats{}
	rnd := rand.New(rand.NewSource(seed))
	// A fresh sandbox, workers and log every interleaveChunk schedules: one sandbox
	// holding 10,000 repositories, and a debug log of every delivery, made the soak's
	// run superlinear (96 minutes for 10,000 schedules) and its final log scan huge.
	for start := 0; start < schedules && !t.Failed(); start += interleaveChunk {
		n := min(interleaveChunk, schedules-start)
		t.Run(fmt.Sprintf("schedules %d-%d", start, start+n-1), func(t *testing.T) {
			f := newFx(t, seed+int64(start), withEngine(matrixEngine()...), withRules(func(e string) string { return rulesDoc(e, true) }))
			workers := []*eventhandler.Handler{f.newHandler(t), f.newHandler(t), f.newHandler(t)}
			imgs := []v1.Image{f.image(t, 512, 1), f.image(t, 512, 1)}
			idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
			for _, img := range []v1.Image{f.image(t, 256, 1), f.image(t, 256, 1)} {
				idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img})
			}
			for s := start; s < start+n && !t.Failed(); s++ {
				runSchedule(t, f, workers, imgs, idx, rand.New(rand.NewSource(rnd.Int63())), s, st)
			}
		})
	}
	report(t, "interleavings (seed %d): %d schedules, %d events, %d deliveries (%d redeliveries), %d invocations killed, %d blob uploads of which %d duplicate (%.1f%%), divergence %d",
		seed, st.schedules, st.events, st.deliveries, st.redeliveries, st.kills, st.uploads, st.duplicateUploads,
		100*float64(st.duplicateUploads)/float64(max(st.uploads, 1)), st.divergent)
}

// interleaveChunk is how many schedules share one sandbox.
const interleaveChunk = 500

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

type queued struct {
	rec        record
	deliveries int
}

// maxMessageDeliveries bounds one message's deliveries in a schedule (SQS's
// maxReceiveCount would send it to the dead-letter queue: here, a failure).
const maxMessageDeliveries = 25

func runSchedule(t *testing.T, f *fx, workers []*eventhandler.Handler, imgs []v1.Image, idx v1.ImageIndex, rnd *rand.Rand, n int, st *interleaveStats) {
	repo := fmt.Sprintf("team-a/il-%d", n)
	if _, err := ecr.NewFromConfig(f.w.Source.Config).CreateRepository(f.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)}); err != nil {
		t.Fatal(err)
	}
	mark := f.sb.AccessLogMark()
	var (
		mu       sync.Mutex
		rndMu    sync.Mutex
		pool     []*queued
		srcDone  bool
		inflight = map[int]context.CancelFunc{}
		nextInv  int
	)
	random := func(k int) int { rndMu.Lock(); defer rndMu.Unlock(); return rnd.Intn(k) }
	enqueue := func(bodies ...string) {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bodies {
			for copies := 1 + boolInt(random(4) == 0); copies > 0; copies-- { // 1 in 4 events twice
				pool = append(pool, &queued{rec: f.records(b)[0]})
				st.add(func(s *interleaveStats) { s.events++ })
			}
		}
	}
	// killOne kills one of the invocations in flight (the held request's, or another
	// caught at whatever point it is: either way a kill at a random point).
	killOne := func() {
		mu.Lock()
		defer mu.Unlock()
		for id, cancel := range inflight {
			cancel()
			delete(inflight, id)
			st.add(func(s *interleaveStats) { s.kills++ })
			return
		}
	}
	// Kill points: each armed for one request at a time, re-armed at random below.
	var removes []func()
	arm := func() {
		holds := []sandbox.Hold{
			{Account: dstAcct, Step: sandbox.StepManifestPUT, Repository: prefix + repo},
			{Account: dstAcct, Step: sandbox.StepManifestHEAD, Repository: prefix + repo},
			{Account: srcAcct, Step: sandbox.StepStorageGET, Repository: repo},
			{Account: dstAcct, Operation: "BatchDeleteImage", Repository: prefix + repo},
		}
		h := holds[random(len(holds))]
		h.Reached = func(sandbox.Entry) { killOne() }
		remove, err := f.sb.HoldRequests(h)
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		removes = append(removes, remove)
		mu.Unlock()
	}

	// The source changes while the workers run.
	var wg sync.WaitGroup
	wg.Go(func() {
		defer func() { mu.Lock(); srcDone = true; mu.Unlock() }()
		for range 3 + random(5) {
			time.Sleep(time.Duration(random(4)) * time.Millisecond)
			tag := []string{"a", "b"}[random(2)]
			switch op := random(10); {
			case op < 6: // push a tag: one of the images, or the index (its children first, untagged)
				var d string
				if k := random(3); k < 2 {
					d = f.w.Source.Push(t, repo, tag, imgs[k]).String()
				} else {
					m, _ := idx.IndexManifest()
					d = f.w.Source.Push(t, repo, tag, idx).String()
					for _, c := range m.Manifests {
						enqueue(sandboxtest.ImageEvent(fmt.Sprintf("%s-c", repo), "PUSH", repo, c.Digest.String(), ""))
					}
				}
				enqueue(sandboxtest.ImageEvent(repo+"-p", "PUSH", repo, d, tag))
			case op < 8: // a digest-only push
				img := imgs[random(2)]
				dg, _ := img.Digest()
				d := f.w.Source.Push(t, repo, dg.String(), img).String()
				enqueue(sandboxtest.ImageEvent(repo+"-u", "PUSH", repo, d, ""))
			default: // delete a tag, if it exists and may go
				d := f.w.Source.Digest(t, repo, tag)
				if d == "" {
					continue
				}
				out, err := ecr.NewFromConfig(f.w.Source.Config).BatchDeleteImage(f.ctx, &ecr.BatchDeleteImageInput{
					RepositoryName: aws.String(repo), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String(tag)}}})
				if err != nil {
					t.Error(err)
					return
				}
				if len(out.Failures) == 0 {
					enqueue(sandboxtest.ImageEvent(repo+"-d", "DELETE", repo, d, tag))
				}
			}
		}
	})

	// Three workers: random batches of 1–3 messages from the pool.
	for w := range workers {
		wg.Go(func() {
			for {
				mu.Lock()
				if len(pool) == 0 {
					done := srcDone && len(inflight) == 0
					mu.Unlock()
					if done {
						return
					}
					time.Sleep(time.Millisecond)
					continue
				}
				var batch []*queued
				for range 1 + random(3) {
					if len(pool) == 0 {
						break
					}
					i := random(len(pool))
					batch = append(batch, pool[i])
					pool = append(pool[:i], pool[i+1:]...)
				}
				ctx, cancel := context.WithCancel(f.ctx)
				id := nextInv
				nextInv++
				inflight[id] = cancel
				mu.Unlock()
				if random(5) == 0 {
					arm()
				}
				var timer *time.Timer
				if random(10) == 0 {
					timer = time.AfterFunc(time.Duration(random(20))*time.Millisecond, func() {
						mu.Lock()
						if c, ok := inflight[id]; ok {
							c()
							delete(inflight, id)
							st.add(func(s *interleaveStats) { s.kills++ })
						}
						mu.Unlock()
					})
				}
				recs := make([]record, len(batch))
				for i, q := range batch {
					q.deliveries++
					recs[i] = q.rec
					st.add(func(s *interleaveStats) {
						s.deliveries++
						if q.deliveries > 1 {
							s.redeliveries++
						}
					})
					if q.deliveries > maxMessageDeliveries {
						var last []string
						for _, l := range strings.Split(f.logs.String(), "\n") {
							if strings.Contains(l, repo+`"`) && strings.Contains(l, "failed") {
								last = append(last, l)
							}
						}
						t.Errorf("schedule %d: message %s delivered %d times; last failures:\n%s", n, q.rec.Body, q.deliveries, strings.Join(last[max(0, len(last)-3):], "\n"))
						mu.Lock()
						srcDone, pool = true, nil
						mu.Unlock()
						cancel()
						return
					}
				}
				out, err := workers[w].Handle(ctx, sandboxtest.SQSBatch(1, recs...))
				if timer != nil {
					timer.Stop()
				}
				mu.Lock()
				_, alive := inflight[id]
				delete(inflight, id)
				mu.Unlock()
				cancel()
				if err != nil {
					t.Errorf("schedule %d: Handle: %v", n, err)
					return
				}
				var back []*queued
				if !alive {
					back = batch // killed: its answer is lost, the whole batch comes back
				} else {
					failed := map[string]bool{}
					for _, fi := range out.(events.SQSEventResponse).BatchItemFailures {
						failed[fi.ItemIdentifier] = true
					}
					for _, q := range batch {
						if failed[q.rec.ID] {
							back = append(back, q)
						}
					}
				}
				mu.Lock()
				pool = append(pool, back...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	mu.Lock()
	for _, remove := range removes {
		remove()
	}
	mu.Unlock()

	src := f.w.Source.Tags(t, f.ctx, repo)
	dst := f.w.Dest.Tags(t, f.ctx, prefix+repo)
	uploads := map[string]int{}
	for _, e := range f.sb.AccessLogSince(mark) {
		if e.Service == "registry" && e.Account == dstAcct && e.Repository == prefix+repo && e.Operation == "PUT upload" && e.Status == 201 {
			uploads[e.Reference]++
		}
	}
	st.add(func(s *interleaveStats) {
		s.schedules++
		for _, c := range uploads {
			s.uploads += c
			s.duplicateUploads += c - 1
		}
	})
	if fmt.Sprint(src) != fmt.Sprint(dst) {
		st.add(func(s *interleaveStats) { s.divergent++ })
		t.Errorf("schedule %d (%s): destination tags %v, source tags %v", n, repo, dst, src)
	}
	f.assertNoIncompleteTags(t, repo)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
