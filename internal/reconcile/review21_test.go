package reconcile_test

// Review of issue 21 (independent reviewer): failing tests for what the reconcile still
// drops, repeats or miscounts. Each test states the consequence it demonstrates.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/deadline"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/reconcile"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// deliverWithin is deliver with the invocation's timeout (the function's Timeout).
func (f *fixture) deliverWithin(t *testing.T, timeout time.Duration, bodies ...string) []string {
	t.Helper()
	var batch events.SQSEvent
	for i, b := range bodies {
		batch.Records = append(batch.Records, events.SQSMessage{MessageId: fmt.Sprint(i), Body: b})
	}
	payload, _ := json.Marshal(batch)
	ctx, cancel := context.WithTimeout(f.w.Ctx, timeout)
	defer cancel()
	out, err := f.r.Handle(ctx, payload)
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, fl := range out.(events.SQSEventResponse).BatchItemFailures {
		failed = append(failed, fl.ItemIdentifier)
	}
	return failed
}

// TestReview21ScanPageThatDoesNotFitHandsOnItsPlace: a scan item fans out its page with
// no soft stop (fanOut never looks at the time), so a page whose sends do not fit before
// the hard stop is cut there; the continuation of the cut page is then sent under the same,
// already expired, context, fails, and the message is answered failed. SQS redelivers the
// original item, which starts the page from its beginning again: every repository item sent
// before the cut is sent again, and a page that does not fit one invocation (SQS throttled
// or slow, a short ReconcileTimeout) never gets past the same point — after
// maxReceiveCount the scan item is dead-lettered and the rest of the page and every later
// page are never reconciled. A repository item stops at the soft stop and hands on its
// cursor; a scan item must too. Here the budget leaves a second between the soft stop
// (1.5 s) and the hard stop (2.5 s): room to hand the page on.
func TestReview21ScanPageThatDoesNotFitHandsOnItsPlace(t *testing.T) {
	f := newFixture(t, "")
	names := createRepos(t, f.w, 400) // ten chunks of 40
	deps, err := wiring.Load(f.w.Ctx, "reconcile", wiring.Logger(f.logs, func(string) string { return "" }), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	f.r = deps.Reconciler(func(k string) string { return f.env[k] }, f.emf, func(c *reconcile.Config) {
		c.RetryDelay = time.Millisecond
		c.Time = deadline.Options{Reserve: 500 * time.Millisecond, Margin: 1500 * time.Millisecond}
	})
	pending := []string{marshal(t, scanItem(""))}
	got := map[string]int{}
	handedOn, redelivered := false, 0
	for steps := 0; len(pending) > 0 && steps < 4; steps++ {
		body := pending[0]
		pending = pending[1:]
		// Every call takes 250 ms: a chunk (four batches at once) about that long; ten of
		// them do not fit in a 3 s invocation.
		f.w.SB.SetLatency(250 * time.Millisecond)
		failed := f.deliverWithin(t, 3*time.Second, body)
		f.w.SB.SetLatency(0)
		if len(failed) > 0 {
			redelivered++
			pending = append(pending, body) // SQS delivers it again
		}
		for _, b := range f.take(t, "reconcile") {
			if it := item(t, b); it.Scan != nil {
				handedOn = true
				pending = append(pending, b)
			} else {
				got[it.Repository]++
			}
		}
	}
	never, extra := 0, 0
	for _, n := range names {
		if got[n] == 0 {
			never++
		}
		extra += max(0, got[n]-1)
	}
	if redelivered > 0 || never > 0 {
		t.Errorf("%d redeliveries of the scan item: continuation sent %v, %d of %d repositories never sent, %d repository items sent again; "+
			"the page should have been handed on at the soft stop", redelivered, handedOn, never, len(names), extra)
	}
}

// TestReview21ScanRetryOfItsFirstRepository: when SQS fails the first batch of a page's
// repository items on its side past the sender's resends, and the page's first name is
// in scope, the scan's retry is "the rest of this page from index 0": Scan{Skip: 0,
// Next: <name>}, which ecrevent.Validate refuses ("scan.next: required with skip, and
// only then"). MarshalReconcile fails on the function's own continuation, which is logged
// as a "continuation not sent" with error_code Malformed, and the message is answered
// failed: the delayed, counted retry (attempt 1) never happens; the item waits for SQS's
// visibility timeout (6 × ReconcileTimeout = 30 minutes at the template's defaults) and
// spends a receive towards the dead-letter queue, on every such failure.
func TestReview21ScanRetryOfItsFirstRepository(t *testing.T) {
	f := newFixture(t, "")
	createRepos(t, f.w, 5) // one batch
	// Every entry of the first three SendMessageBatch calls (the sender's three attempts)
	// fails on SQS's side; the fourth call — the scan's retry — goes through.
	if err := f.w.SB.InjectAPIFault(sandbox.APIFault{Service: "sqs", Operation: "SendMessageBatch", Resource: "*:reconcile", Entries: 10, Count: 3}); err != nil {
		t.Fatal(err)
	}
	failed := f.deliver(t, marshal(t, scanItem("")))
	var retries []*ecrevent.Reconcile
	for _, b := range f.take(t, "reconcile") {
		if it := item(t, b); it.Scan != nil {
			retries = append(retries, it)
		}
	}
	if len(failed) > 0 || len(retries) != 1 || retries[0].Attempt != 1 {
		var logged []string
		for _, l := range strings.Split(f.logs.String(), "\n") {
			if strings.Contains(l, "continuation") {
				logged = append(logged, l)
			}
		}
		t.Errorf("scan item answered failed=%v, retries queued %d; want the item done and its retry (attempt 1) queued.\n%s",
			failed, len(retries), strings.Join(logged, "\n"))
	}
}

// TestReview21DeniedDestinationIsNotReconciled: a repository whose only destination
// cannot be listed (AccessDenied: reported, correctly) is still counted in
// RepositoriesReconciled, the metric the README offers as the run's coverage. A run in
// which no destination could be listed reports 100% of its repositories reconciled.
func TestReview21DeniedDestinationIsNotReconciled(t *testing.T) {
	f := newFixture(t, "")
	img, _ := random.Image(128, 1)
	f.w.Source.CreateRepository(t, f.w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team/app")})
	f.w.Source.Push(t, "team/app", "v1", img)
	if err := f.w.SB.InjectAPIFault(sandbox.APIFault{Service: "ecr", Operation: "DescribeImages", Account: sandbox.DestinationAccount,
		Code: "AccessDeniedException", Count: -1}); err != nil {
		t.Fatal(err)
	}
	repo := scanItem("")
	repo.Scan, repo.Repository = nil, "team/app"
	if failed := f.deliver(t, marshal(t, repo)); len(failed) > 0 {
		t.Fatal(failed)
	}
	f.w.SB.ClearFaults()
	emf := f.emf.String()
	if !strings.Contains(emf, `"ReconcileFailures":1`) {
		t.Fatalf("the denial was not reported:\n%s", emf)
	}
	if strings.Contains(emf, `"RepositoriesReconciled":1`) {
		t.Errorf("RepositoriesReconciled counts a repository none of whose destinations could be listed; copies sent: %d\n%s",
			len(f.take(t, "copy")), emf)
	}
}
