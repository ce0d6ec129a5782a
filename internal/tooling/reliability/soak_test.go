package reliability_test

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestSoak runs only when SOAK_DURATION is set (make soak): random pushes, tag moves and
// deletes (mirrorDeletes on) with random faults, for SOAK_DURATION; then a final
// reconciliation (redelivery of whatever failed) and a divergence check. SOAK_SEED
// picks the seed (default 1).
func TestSoak(t *testing.T) {
	ds := os.Getenv("SOAK_DURATION")
	if ds == "" {
		t.Skip("set SOAK_DURATION (make soak) to run the soak")
	}
	dur, err := time.ParseDuration(ds)
	if err != nil {
		t.Fatal(err)
	}
	seed := int64(1)
	if s, err := strconv.ParseInt(os.Getenv("SOAK_SEED"), 10, 64); err == nil {
		seed = s
	}
	f := newFx(t, seed, withRules(func(e string) string { return rulesDoc(e, true) }))
	repos := []string{"team-a/app", "team-a/web", "team-a/sub/api"}
	imgs := map[string][]v1.Image{}
	for _, r := range repos {
		for range 4 {
			imgs[r] = append(imgs[r], f.image(t, int64(8<<10+f.rnd.Intn(256<<10)), int64(1+f.rnd.Intn(3))))
		}
	}
	var events, pushes, deletes, failedFinal int
	var pending []record // records still in batchItemFailures after the bounded redelivery
	deadline := time.Now().Add(dur)
	for i := 0; time.Now().Before(deadline) && i < 1_000_000; i++ {
		repo := repos[f.rnd.Intn(len(repos))]
		var bodies []string
		if f.rnd.Intn(6) == 0 {
			// Delete a tag (untag) or a whole image.
			tags := f.w.Source.Tags(t, f.ctx, repo)
			if len(tags) == 0 {
				continue
			}
			keys := make([]string, 0, len(tags))
			for k := range tags {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			tag := keys[f.rnd.Intn(len(keys))]
			id := ecrtypes.ImageIdentifier{ImageTag: aws.String(tag)}
			if f.rnd.Intn(2) == 0 {
				id = ecrtypes.ImageIdentifier{ImageDigest: aws.String(tags[tag])}
			}
			f.deleteSourceSoak(t, repo, id)
			deletes++
			dtag := tag
			if id.ImageTag == nil {
				dtag = ""
			}
			bodies = append(bodies, sandboxtest.ImageEvent(fmt.Sprintf("del-%d", i), "DELETE", repo, tags[tag], dtag))
		} else {
			tag := fmt.Sprintf("t%d", f.rnd.Intn(4))
			if f.rnd.Intn(8) == 0 {
				tag = ""
			}
			d := f.push(t, repo, tag, imgs[repo][f.rnd.Intn(len(imgs[repo]))])
			pushes++
			bodies = append(bodies, sandboxtest.ImageEvent(fmt.Sprintf("push-%d", i), "PUSH", repo, d, tag))
		}
		if f.rnd.Intn(5) == 0 { // a duplicate delivery
			bodies = append(bodies, bodies[0])
		}
		events += len(bodies)
		recs := f.records(bodies...)
		// A random fault now and then.
		switch f.rnd.Intn(12) {
		case 0:
			f.sb.ResetBlobUploads(dstAcct, int64(1+f.rnd.Intn(32<<10)), 1)
		case 1:
			f.sb.ResetBlobDownloads(srcAcct, int64(1+f.rnd.Intn(32<<10)), 1)
		case 2:
			f.sb.FailRegistryRequests([]string{srcAcct, dstAcct}[f.rnd.Intn(2)], 1+f.rnd.Intn(2), []int{500, 503, 429}[f.rnd.Intn(3)], time.Duration(f.rnd.Intn(2))*time.Second)
		case 3:
			f.sb.ThrottleAPI([]string{"ecr", "sts"}[f.rnd.Intn(2)], "", 1+f.rnd.Intn(4))
		case 4:
			f.sb.ExpireRegistryTokens([]string{srcAcct, dstAcct}[f.rnd.Intn(2)])
		}

		st := f.deliverSoak(t, recs, 4)
		pending = append(pending, st...)
		f.settle(t)
	}
	// Reconciliation: drain unfired faults, then redeliver what is still failing.
	for i := 0; i < 500 && f.sb.PendingFaults() > 0; i++ {
		f.w.Source.Tags(t, f.ctx, repos[0])
		f.dest(t)
		f.w.Source.Digest(t, repos[0], "t0")
		f.w.Dest.Digest(t, prefix+repos[0], "t0")
	}
	leftover := f.deliverSoak(t, pending, maxDeliveries)
	failedFinal = len(leftover)
	divergence := 0
	for _, r := range repos {
		src := f.w.Source.Tags(t, f.ctx, r)
		dst := f.w.Dest.Tags(t, f.ctx, prefix+r)
		for tag, d := range src {
			if dst[tag] != d {
				divergence++
				t.Errorf("divergence: %s:%s source %s destination %q", r, tag, d, dst[tag])
			}
		}
		for tag, d := range dst {
			if _, ok := src[tag]; !ok {
				divergence++
				t.Errorf("divergence: %s:%s only at the destination (%s)", r, tag, d)
			}
		}
		if len(dst) > 0 {
			f.verify(t, r)
		}
	}
	fired := f.sb.FaultsFired()
	total := 0
	for _, v := range fired {
		total += v
	}
	msg := fmt.Sprintf("SOAK seed=%d duration=%s: events=%d (pushes=%d deletes=%d, duplicates=%d) faults=%d %v redeliveries=%d unrecovered=%d divergence=%d",
		seed, dur, events, pushes, deletes, events-pushes-deletes, total, fired, f.redeliveries.Load(), failedFinal, divergence)
	fmt.Println(msg)
	report(t, "%s", msg)
}

// settle consumes what is left of the registry status and API faults with harmless
// requests (resets only ever hit the handler's uploads and downloads), and logs the
// test's own clients in again (tokens may have been expired).
func (f *fx) settle(t *testing.T) {
	t.Helper()
	for i := 0; i < 50 && f.sb.PendingFaults() > 0; i++ {
		for _, s := range []sandboxtest.Side{f.w.Source, f.w.Dest} {
			remote.Head(s.Ref(t, "team-a/app", "t0"), remote.WithAuth(s.Auth))
			ecr.NewFromConfig(s.Config).DescribeRegistry(f.ctx, &ecr.DescribeRegistryInput{}, func(o *ecr.Options) { o.RetryMaxAttempts = 1 })
		}
		if i > 10 {
			break // only resets left
		}
	}
	f.w.Source.Host, f.w.Source.Auth = sandboxtest.Login(t, f.ctx, f.w.Source.Config)
	f.w.Dest.Host, f.w.Dest.Auth = sandboxtest.Login(t, f.ctx, f.w.Dest.Config)
}

func (f *fx) deleteSourceSoak(t *testing.T, repo string, id ecrtypes.ImageIdentifier) {
	t.Helper()
	f.deleteSource(t, repo, id)
}

// deliverSoak is deliver with a custom bound; it returns the records still failing.
func (f *fx) deliverSoak(t *testing.T, recs []record, bound int) []record {
	t.Helper()
	pending := recs
	for attempt := 1; attempt <= bound && len(pending) > 0; attempt++ {
		if attempt > 1 {
			f.redeliveries.Add(int64(len(pending)))
		}
		out, err := f.h.Handle(f.ctx, sandboxtest.SQSBatch(attempt, pending...))
		if err != nil {
			t.Errorf("Handle: %v", err)
			return pending
		}
		failed := map[string]bool{}
		for _, fi := range out.(events.SQSEventResponse).BatchItemFailures {
			failed[fi.ItemIdentifier] = true
		}
		var next []record
		for _, r := range pending {
			if failed[r.ID] {
				next = append(next, r)
			}
		}
		pending = next
	}
	return pending
}
