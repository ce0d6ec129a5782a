package copyengine

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// Review of issue 22 (independent reviewer): tests that fail on the merged tree.

// TestReview22TinyUploadsAreNotTheLink: the link meter sums every upload's bytes over
// windows of at least minBytes and minTime, and keeps the fastest window as the link's
// rate. Many small uploads (an image of many small layers, a reconcile of many small
// images) keep the meter busy while each PUT mostly waits for the registry's answer (a
// round trip and the registry's commit of the layer): the windows then measure round
// trips, not the link — exactly what minMeasuredBytes was meant to keep out ("transfers
// shorter than these say more about round trips than about throughput"), defeated by
// adding small transfers together. That round-trip rate becomes the environment's best,
// and a layer the link carries in a fraction of a second is refused for good
// (TOO_LARGE_FOR_FUNCTION, acknowledged: the push is lost).
//
// Here: 48 layers of 64 KiB, four uploads at a time, each PUT answered 150 ms after it
// arrives (the registry committing the layer); then an 8 MiB layer in a 3-second run on
// loopback, which uploads it in well under a second.
func TestReview22TinyUploadsAreNotTheLink(t *testing.T) {
	e := newEnv(t)
	e.dst.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") {
			time.Sleep(150 * time.Millisecond) // the registry's answer to a PUT: a round trip and its commit
		}
		return false
	})
	engine := New(WithJobs(4), WithRetry(retry.Policy{Attempts: 4, Initial: time.Millisecond, Max: 10 * time.Millisecond}), WithManifestRate(1000, 1000))
	// As in TestContendedUploadsDoNotShrinkTheBudget: windows of 256 KiB and 200 ms
	// measure here (32 MiB and 1 s in production) so that the images stay small; in
	// production the same happens with 32 MiB of small layers (e.g. 8 uploads of 200 KiB
	// answered in 300 ms: ~5 MB/s, and every layer over 4.5 GB is refused in a 900 s
	// function whose link does 100 MB/s).
	engine.link.minBytes, engine.link.minTime = 256<<10, 200*time.Millisecond

	// Control: the same link carries an 8 MiB layer well within a 3-second run.
	control := must[v1.Image](t)(random.Image(8<<20, 1))
	dc := pushImage(t, e.srcRepo.Tag("control"), control)
	fresh := New(WithRetry(retry.Policy{Attempts: 4, Initial: time.Millisecond, Max: 10 * time.Millisecond}), WithManifestRate(1000, 1000)).Start()
	cctx, ccancel := context.WithDeadline(context.Background(), fresh.started.Add(3*time.Second))
	defer ccancel()
	began := time.Now()
	wantOutcome(t, fresh.Copy(cctx, e.req(dc, "control")), Copied)
	t.Logf("control: an 8 MiB layer copied in %v", time.Since(began).Round(time.Millisecond))

	small := must[v1.Image](t)(random.Image(64<<10, 48))
	ds := pushImage(t, e.srcRepo.Tag("small"), small)
	began = time.Now()
	wantOutcome(t, engine.Start().Copy(context.Background(), e.req(ds, "small")), Copied)
	t.Logf("48 small layers copied in %v; the link's best is now %.2f MiB/s", time.Since(began).Round(time.Millisecond), engine.link.rate(e.dstRepo.RegistryStr())/(1<<20))

	big := must[v1.Image](t)(random.Image(8<<20, 1))
	db := pushImage(t, e.srcRepo.Tag("big"), big)
	run := engine.Start()
	ctx, cancel := context.WithDeadline(context.Background(), run.started.Add(3*time.Second))
	defer cancel()
	began = time.Now()
	res := run.Copy(ctx, e.req(db, "big"))
	if res.Outcome != Copied {
		code, retryable := retry.Classify(res.Err)
		t.Fatalf("an 8 MiB layer in a 3 s run on loopback: outcome %s, code %s, retryable %v (%v) after %v — "+
			"refused for good on a rate the small uploads' round trips set", res.Outcome, code, retryable, res.Err, time.Since(began).Round(time.Millisecond))
	}
	wantTag(t, e.dstRepo.Tag("big"), db)
}

// TestReview22OneDestinationsPathIsNotAnother: the meter is one for the whole engine, but
// an environment uploads to several destinations (a rule's destinations in other regions
// and accounts), and what one path carries is no bound on another: a single TCP stream to
// a far region is bound by its round-trip time. The first uploads of a warm environment
// went to a slow destination (2 MiB/s); that is the link's best, and an 8 MiB layer for a
// destination on loopback — copied in a fraction of a second — is refused for good in a
// 3-second run.
func TestReview22OneDestinationsPathIsNotAnother(t *testing.T) {
	src := newRegistry(t)
	far, near := newSmallBufferRegistry(t), newRegistry(t)
	slowUploads(far, 2<<20)
	srcRepo := src.repo(t, "team/app")
	farRepo, nearRepo := far.repo(t, "mirror/team/app"), near.repo(t, "mirror/team/app")
	engine := New(WithRetry(retry.Policy{Attempts: 4, Initial: time.Millisecond, Max: 10 * time.Millisecond}), WithManifestRate(1000, 1000))
	engine.link.minBytes, engine.link.minTime = 1<<20, 200*time.Millisecond

	first := must[v1.Image](t)(random.Image(6<<20, 1))
	d1 := pushImage(t, srcRepo.Tag("first"), first)
	res := engine.Start().Copy(context.Background(), Request{Source: Endpoint{Repository: srcRepo}, Digest: d1.String(), Tag: "first",
		Destination: Endpoint{Repository: farRepo, Transport: smallBufferTransport()}})
	wantOutcome(t, res, Copied)
	t.Logf("after a 6 MiB layer to the far destination, its link's best: %.2f MiB/s", engine.link.rate(farRepo.RegistryStr())/(1<<20))

	big := must[v1.Image](t)(random.Image(8<<20, 1))
	d2 := pushImage(t, srcRepo.Tag("big"), big)
	run := engine.Start()
	ctx, cancel := context.WithDeadline(context.Background(), run.started.Add(3*time.Second))
	defer cancel()
	res = run.Copy(ctx, Request{Source: Endpoint{Repository: srcRepo}, Digest: d2.String(), Tag: "big", Destination: Endpoint{Repository: nearRepo}})
	if res.Outcome != Copied {
		code, retryable := retry.Classify(res.Err)
		t.Fatalf("an 8 MiB layer to a destination on loopback, 3 s run: outcome %s, code %s, retryable %v (%v) — refused for good on the far destination's rate",
			res.Outcome, code, retryable, res.Err)
	}
	wantTag(t, nearRepo.Tag("big"), d2)
}
