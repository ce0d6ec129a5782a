package reconcile_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/reconcile"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// fixture is a sandbox, the stack's reconcile and copy queues, and a reconcile function
// built as functions/reconcile builds it; tests deliver its items by hand.
type fixture struct {
	w    *sandboxtest.World
	q    *sqs.Client
	env  map[string]string
	r    *reconcile.Reconciler
	logs *sandboxtest.LogBuffer
	emf  *sandboxtest.LogBuffer
}

func newFixture(t *testing.T, rules string) *fixture {
	t.Helper()
	w := sandboxtest.Start(t)
	f := &fixture{w: w, q: sqs.NewFromConfig(w.Source.Config), logs: &sandboxtest.LogBuffer{}, emf: &sandboxtest.LogBuffer{}}
	f.env = map[string]string{}
	for _, name := range []string{"reconcile", "copy"} {
		out, err := f.q.CreateQueue(w.Ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		f.env[map[string]string{"reconcile": wiring.EnvReconcileQueueURL, "copy": wiring.EnvCopyQueueURL}[name]] = aws.ToString(out.QueueUrl)
	}
	if rules == "" {
		rules = fmt.Sprintf(`{"rules":[{"name":"all","repositories":["team/**"],"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
			sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), sandboxtest.ExternalID)
	}
	t.Setenv("REPLICATION_RULES", rules)
	deps, err := wiring.Load(w.Ctx, "reconcile", wiring.Logger(f.logs, func(string) string { return "" }), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	f.r = deps.Reconciler(func(k string) string { return f.env[k] }, f.emf, func(c *reconcile.Config) { c.RetryDelay = time.Millisecond })
	return f
}

// deliver hands the function one SQS batch of bodies and answers the ids of the failed ones.
func (f *fixture) deliver(t *testing.T, bodies ...string) []string {
	t.Helper()
	var batch events.SQSEvent
	for i, b := range bodies {
		batch.Records = append(batch.Records, events.SQSMessage{MessageId: fmt.Sprint(i), Body: b})
	}
	payload, _ := json.Marshal(batch)
	ctx, cancel := context.WithTimeout(f.w.Ctx, time.Minute)
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

// take receives and deletes everything visible in a queue ("reconcile" or "copy").
func (f *fixture) take(t *testing.T, queue string) []string {
	t.Helper()
	url := f.env[map[string]string{"reconcile": wiring.EnvReconcileQueueURL, "copy": wiring.EnvCopyQueueURL}[queue]]
	var bodies []string
	for {
		out, err := f.q.ReceiveMessage(f.w.Ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, VisibilityTimeout: 600})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			return bodies
		}
		for _, m := range out.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
			if _, err := f.q.DeleteMessage(f.w.Ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func item(t *testing.T, body string) *ecrevent.Reconcile {
	t.Helper()
	m, err := ecrevent.Parse([]byte(body))
	if err != nil || m.Reconcile == nil {
		t.Fatalf("%s: %v", body, err)
	}
	return m.Reconcile
}

func marshal(t *testing.T, r ecrevent.Reconcile) string {
	t.Helper()
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now()
	}
	b, err := ecrevent.MarshalReconcile(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func scanItem(token string) ecrevent.Reconcile {
	return ecrevent.Reconcile{Run: "2026-12-07T10:00:00Z", Source: ecrevent.SourceRegistry{AccountID: sandbox.SourceAccount, Region: sandbox.DefaultRegion},
		Scan: &ecrevent.Scan{Token: token}}
}

func createRepos(t *testing.T, w *sandboxtest.World, n int) []string {
	t.Helper()
	api := ecr.NewFromConfig(w.Source.Config)
	var names []string
	for i := range n {
		name := fmt.Sprintf("team/s%04d", i)
		if _, err := api.CreateRepository(w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(name)}); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	return names
}

// TestTriggerRequests: the trigger takes a scope, the schedule's event (the run is named
// after the event's time, so Lambda's retries of it are the same run), and refuses
// unknown fields by name; the repository's sample parses.
func TestTriggerRequests(t *testing.T) {
	sample, err := os.ReadFile(filepath.Join("..", "..", "events", "reconcile.json"))
	if err != nil {
		t.Fatal(err)
	}
	if req, err := reconcile.ParseRequest(sample); err != nil || len(req.Repositories) == 0 {
		t.Errorf("events/reconcile.json: %+v %v", req, err)
	}
	scheduled := `{"version":"0","id":"53dc4d37","detail-type":"Scheduled Event","source":"aws.events","account":"111111111111",
"time":"2026-12-07T03:00:00Z","region":"us-east-1","resources":["arn:aws:events:us-east-1:111111111111:rule/r"],"detail":{}}`
	req, err := reconcile.ParseRequest([]byte(scheduled))
	if err != nil || !req.Time.Equal(time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)) {
		t.Errorf("scheduled event: %+v %v", req, err)
	}
	if _, err := reconcile.ParseRequest([]byte(`{"repository":["x"]}`)); err == nil || !strings.Contains(err.Error(), `unknown field "repository"`) {
		t.Errorf("unknown field: %v", err)
	}
	f := newFixture(t, "")
	out, err := f.r.Handle(f.w.Ctx, json.RawMessage(scheduled))
	if err != nil {
		t.Fatal(err)
	}
	if started := out.(*reconcile.Started); started.Run != "2026-12-07T03:00:00Z" {
		t.Errorf("run %q, want the scheduled event's time", started.Run)
	}
	// A second run while the first one's item waits: the previous run has not ended
	// (ReconcileOverrun, alarmed).
	out, err = f.r.Handle(f.w.Ctx, json.RawMessage(`{}`))
	if err != nil || !out.(*reconcile.Started).PreviousRunIncomplete || !strings.Contains(f.emf.String(), `"ReconcileOverrun":1`) {
		t.Errorf("second trigger: %+v %v, want the previous run incomplete\n%s", out, err, f.emf.String())
	}
	items := f.take(t, "reconcile")
	if len(items) != 2 || item(t, items[0]).Scan == nil || item(t, items[0]).Scan.Token != "" {
		t.Fatalf("the triggers sent %v, want the scan of the first page each", items)
	}
	if out, err := f.r.Handle(f.w.Ctx, json.RawMessage(`{}`)); err != nil || out.(*reconcile.Started).PreviousRunIncomplete {
		t.Errorf("a run after the queues emptied: %+v %v", out, err)
	}
}

// TestScanContinuesByToken: the listing, in ECR's order (the sandbox's is not by name),
// goes page by page by nextToken, each page's scan item sending the next: every
// repository gets exactly one item, none is skipped, the chain counts its hops.
func TestScanContinuesByToken(t *testing.T) {
	f := newFixture(t, "")
	names := createRepos(t, f.w, 2100) // three pages of 1,000
	pending := []string{marshal(t, scanItem(""))}
	got := map[string]int{}
	scans, maxHops := 0, 0
	for len(pending) > 0 && scans < 10 {
		body := pending[0]
		pending = pending[1:]
		scans++
		maxHops = max(maxHops, item(t, body).Hops)
		if failed := f.deliver(t, body); len(failed) > 0 {
			t.Fatalf("scan item failed: %v", failed)
		}
		for _, b := range f.take(t, "reconcile") {
			it := item(t, b)
			if it.Scan != nil {
				pending = append(pending, b)
				continue
			}
			got[it.Repository]++
		}
	}
	if scans != 3 || maxHops != 2 {
		t.Errorf("%d scan items (max hops %d), want 3 pages (hops 0, 1, 2)", scans, maxHops)
	}
	for _, n := range names {
		if got[n] != 1 {
			t.Errorf("%s: %d repository items, want 1", n, got[n])
		}
	}
}

// TestScanResumesInsidePage: a scan item continued inside a page (after a send failure)
// sends the rest of that page only — where its next name is now, if the page moved — and
// then the next page's scan; a page that no longer holds the name starts over (never a
// repository lost).
func TestScanResumesInsidePage(t *testing.T) {
	f := newFixture(t, "")
	createRepos(t, f.w, 30)
	page := listing(t, f.w)
	for _, c := range []struct {
		name string
		skip int
		next string
		want int
	}{
		{"at its place", 10, page[10], 20},
		{"moved", 3, page[12], 18},
		{"gone", 5, "team/gone", 30},
	} {
		t.Run(c.name, func(t *testing.T) {
			it := scanItem("")
			it.Scan.Skip, it.Scan.Next = c.skip, c.next
			if failed := f.deliver(t, marshal(t, it)); len(failed) > 0 {
				t.Fatal(failed)
			}
			n := 0
			for _, b := range f.take(t, "reconcile") {
				if item(t, b).Repository != "" {
					n++
				}
			}
			if n != c.want {
				t.Errorf("%d repository items, want %d", n, c.want)
			}
		})
	}
}

func listing(t *testing.T, w *sandboxtest.World) []string {
	t.Helper()
	out, err := ecr.NewFromConfig(w.Source.Config).DescribeRepositories(w.Ctx, &ecr.DescribeRepositoriesInput{MaxResults: aws.Int32(1000)})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range out.Repositories {
		names = append(names, aws.ToString(r.RepositoryName))
	}
	return names
}

// TestScanSendFailureKeepsItsPlace: when SQS fails some of a page's items on its side,
// the scan item is done once its retry — the rest of the page, from the first item not
// sent — is queued: nothing is lost, and what is sent again is at most the few batches
// sent at once after that item.
func TestScanSendFailureKeepsItsPlace(t *testing.T) {
	f := newFixture(t, "")
	names := createRepos(t, f.w, 95)
	// The first batches fail two entries each, past the sender's own resends.
	if err := f.w.SB.InjectAPIFault(sandbox.APIFault{Service: "sqs", Resource: "*:reconcile", Entries: 2, Count: 14}); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	pending := []string{marshal(t, scanItem(""))}
	for steps := 0; len(pending) > 0 && steps < 10; steps++ {
		body := pending[0]
		pending = pending[1:]
		if failed := f.deliver(t, body); len(failed) > 0 {
			pending = append(pending, body) // SQS redelivers it
		}
		for _, b := range f.take(t, "reconcile") {
			if it := item(t, b); it.Scan != nil {
				if it.Attempt == 0 && it.Scan.Skip > 0 {
					t.Errorf("a rest of a page sent as a first attempt: %s", b)
				}
				pending = append(pending, b)
			} else {
				got[it.Repository]++
			}
		}
	}
	dups := 0
	for _, n := range names {
		if got[n] == 0 {
			t.Errorf("%s never sent", n)
		}
		dups += max(0, got[n]-1)
	}
	if dups > 30 {
		t.Errorf("%d repository items sent twice, want at most 30 (three batches)", dups)
	}
	t.Logf("duplicates after entry failures: %d", dups)
}

// TestRepositoryRetriesOnlyTheFailedDestination: a repository whose destination in one
// region cannot be listed for a while sends the other region's copies at once, and
// retries the failed region alone: no copy goes twice, none is lost.
func TestRepositoryRetriesOnlyTheFailedDestination(t *testing.T) {
	rules := func(w *sandboxtest.World) string {
		d := func(region string) string {
			return fmt.Sprintf(`{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}`,
				sandbox.DestinationAccount, region, w.DestinationRoleARN(), sandboxtest.ExternalID)
		}
		return `{"rules":[{"name":"all","repositories":["team/**"],"destinations":[` + d("us-east-1") + "," + d("us-west-2") + `]}]}`
	}
	w := sandboxtest.Start(t)
	f := newFixtureIn(t, w, rules(w))
	img, _ := random.Image(128, 1)
	f.w.Source.CreateRepository(t, f.w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team/app")})
	f.w.Source.Push(t, "team/app", "v1", img)
	if err := f.w.SB.InjectAPIFault(sandbox.APIFault{Service: "ecr", Operation: "DescribeImages", Region: "us-west-2", Count: 3}); err != nil {
		t.Fatal(err)
	}
	repo := scanItem("")
	repo.Scan, repo.Repository = nil, "team/app"
	if failed := f.deliver(t, marshal(t, repo)); len(failed) > 0 {
		t.Fatal(failed)
	}
	copies := f.take(t, "copy")
	retries := f.take(t, "reconcile")
	if len(copies) != 1 || !strings.Contains(copies[0], `"region":"us-east-1","repository":"mirror/team/app"`) {
		t.Fatalf("copies sent at once: %v", copies)
	}
	if len(retries) != 1 {
		t.Fatalf("retries: %v", retries)
	}
	again := item(t, retries[0])
	if again.Attempt != 1 || len(again.Destinations) != 1 || again.Destinations[0].Region != "us-west-2" {
		t.Fatalf("retry %+v, want attempt 1 for us-west-2 only", again)
	}
	if failed := f.deliver(t, retries[0]); len(failed) > 0 {
		t.Fatal(failed)
	}
	copies = f.take(t, "copy")
	if len(copies) != 1 || !strings.Contains(copies[0], `"region":"us-west-2"`) {
		t.Fatalf("copies of the retry: %v", copies)
	}
}

func newFixtureIn(t *testing.T, w *sandboxtest.World, rules string) *fixture {
	t.Helper()
	f := &fixture{w: w, q: sqs.NewFromConfig(w.Source.Config), logs: &sandboxtest.LogBuffer{}, emf: &sandboxtest.LogBuffer{}, env: map[string]string{}}
	for name, env := range map[string]string{"reconcile": wiring.EnvReconcileQueueURL, "copy": wiring.EnvCopyQueueURL} {
		out, err := f.q.CreateQueue(w.Ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		f.env[env] = aws.ToString(out.QueueUrl)
	}
	t.Setenv("REPLICATION_RULES", rules)
	deps, err := wiring.Load(w.Ctx, "reconcile", wiring.Logger(f.logs, func(string) string { return "" }), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	f.r = deps.Reconciler(func(k string) string { return f.env[k] }, f.emf, func(c *reconcile.Config) { c.RetryDelay = time.Millisecond })
	return f
}

// TestItemsThatCannotBeDone: what the function must not do, it reports — a message that
// is not a reconcile item, an item naming another source registry, a chain of
// continuations past MaxHops — and what it could not do after its own retries it leaves
// to SQS (the message is redelivered, then dead-lettered), never acknowledging it.
func TestItemsThatCannotBeDone(t *testing.T) {
	f := newFixture(t, "")
	createRepos(t, f.w, 2)
	foreign := scanItem("")
	foreign.Source.AccountID = "999999999999"
	exhausted := scanItem("")
	exhausted.Attempt = ecrevent.MaxAttempts
	if err := f.w.SB.InjectAPIFault(sandbox.APIFault{Service: "ecr", Operation: "DescribeRepositories", Count: -1, Code: "ServiceUnavailableException"}); err != nil {
		t.Fatal(err)
	}
	failed := f.deliver(t, `{"not":"an item"}`, marshal(t, foreign), marshal(t, exhausted))
	sort.Strings(failed)
	if fmt.Sprint(failed) != "[2]" {
		t.Errorf("redelivered %v, want only the item out of attempts ([2])", failed)
	}
	f.w.SB.ClearFaults()
	logs := f.logs.String()
	for _, code := range []string{`"error_code":"Malformed"`, `"error_code":"ForeignSource"`} {
		if !strings.Contains(logs, code) {
			t.Errorf("no report with %s:\n%s", code, logs)
		}
	}
	if !strings.Contains(f.emf.String(), `"Code":"ForeignSource"`) {
		t.Errorf("ForeignSource not counted in ReconcileFailures:\n%s", f.emf.String())
	}
	if items := f.take(t, "reconcile"); len(items) != 0 {
		t.Errorf("sent %v, want nothing", items)
	}
}
