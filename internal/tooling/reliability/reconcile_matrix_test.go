package reliability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventsource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// reconcileCall is one call the reconcile makes, and how a cell aims a fault at it.
type reconcileCall struct {
	name  string
	fault func(c *matrixCell) sandbox.APIFault
	// entries: the call is a batch send whose entries fail, not the call.
	entries bool
}

var reconcileCalls = []reconcileCall{
	{name: "ecr:DescribeRepositories", fault: func(c *matrixCell) sandbox.APIFault {
		return sandbox.APIFault{Service: "ecr", Operation: "DescribeRepositories", Principal: "*:user/" + c.user}
	}},
	{name: "ecr:DescribeImages (source)", fault: func(c *matrixCell) sandbox.APIFault {
		return sandbox.APIFault{Service: "ecr", Operation: "DescribeImages", Account: srcAcct, Resource: "*:repository/" + c.prefix + "/*"}
	}},
	{name: "ecr:DescribeImages (destination)", fault: func(c *matrixCell) sandbox.APIFault {
		return sandbox.APIFault{Service: "ecr", Operation: "DescribeImages", Account: dstAcct, Resource: "*:repository/mirror/" + c.prefix + "/*"}
	}},
	{name: "sts:AssumeRole", fault: func(c *matrixCell) sandbox.APIFault {
		return sandbox.APIFault{Service: "sts", Operation: "AssumeRole", Principal: "*:user/" + c.user}
	}},
	{name: "sqs:SendMessageBatch (reconcile queue)", fault: func(c *matrixCell) sandbox.APIFault {
		return sandbox.APIFault{Service: "sqs", Operation: "SendMessageBatch", Resource: "*:" + c.prefix + "-reconcile"}
	}},
	{name: "sqs:SendMessageBatch entries (reconcile queue)", entries: true, fault: func(c *matrixCell) sandbox.APIFault {
		return sandbox.APIFault{Service: "sqs", Operation: "SendMessageBatch", Resource: "*:" + c.prefix + "-reconcile", Entries: 2}
	}},
	{name: "sqs:SendMessageBatch (copy queue)", fault: func(c *matrixCell) sandbox.APIFault {
		return sandbox.APIFault{Service: "sqs", Operation: "SendMessageBatch", Resource: "*:" + c.prefix + "-copy"}
	}},
	{name: "sqs:SendMessageBatch entries (copy queue)", entries: true, fault: func(c *matrixCell) sandbox.APIFault {
		return sandbox.APIFault{Service: "sqs", Operation: "SendMessageBatch", Resource: "*:" + c.prefix + "-copy", Entries: 2}
	}},
}

// reconcileFault is a kind of failure, as each service answers it.
type reconcileFault struct {
	name string
	// code by service ("" with reset); for entries, SQS's entry code.
	code      map[string]string
	reset     bool
	permanent bool // no retry can help: the expected outcome is a reported failure
	// senderFault: for entries, SQS blames the sender.
	senderFault bool
}

var callFaults = []reconcileFault{
	{name: "throttled", code: map[string]string{"ecr": "ThrottlingException", "sts": "Throttling", "sqs": "ThrottlingException"}},
	{name: "5xx", code: map[string]string{"ecr": "ServiceUnavailableException", "sts": "ServiceUnavailable", "sqs": "ServiceUnavailable"}},
	{name: "reset", reset: true},
	{name: "denied", permanent: true, code: map[string]string{"ecr": "AccessDeniedException", "sts": "AccessDenied", "sqs": "AccessDenied"}},
}

var entryFaults = []reconcileFault{
	{name: "SQS-side", code: map[string]string{"sqs": "InternalError"}},
	{name: "sender fault", permanent: true, senderFault: true, code: map[string]string{"sqs": "InvalidParameterValue"}},
}

// matrixCell is one cell's world: a source user of its own (so faults aimed at its calls
// hit no other cell), three drifted repositories, the stack's queues.
type matrixCell struct {
	prefix, user string
	cfg          aws.Config
	env          map[string]string
	logs, emf    *sandboxtest.LogBuffer
	names        []string
	// triggerRetries counts the trigger's failed attempts that Lambda retried;
	// triggerFailed says every attempt failed (the run did not start: the function's
	// Errors, alarmed, report it).
	triggerRetries int
	triggerFailed  bool
}

type reconcileRow struct {
	call, fault, form, outcome string
	repaired, of               int
	reported, deadLetters      int
	triggerRetries             int
	fired                      int
}

// cellUsers is how many cells the matrix can run (one source user each).
const cellUsers = 64

// TestReconcileFaultMatrix faults every call the reconcile makes (DescribeRepositories;
// DescribeImages in the source and in the destination; AssumeRole; SendMessageBatch to
// the reconcile and copy queues, whole and per entry) with every kind of failure
// (throttled, 5xx, connection reset, denied; for entries SQS's own failure and a sender
// fault), transient (the fault answers twice) and persistent (for three seconds, longer
// than the SDK's retries and an invocation's own), driven through the local event source
// at the template's batch settings. Each cell must end with the drift repaired in the
// same run, or — only for failures no retry can help — with the failure reported with its
// code (ReconcileFailures, the trigger's error, or the dead-letter queue); nothing
// unrepaired may go unreported.
//
// RECONCILE_MATRIX_OUT=path writes the matrix as a Markdown table.
func TestReconcileFaultMatrix(t *testing.T) {
	w := sandboxtest.Start(t, func(c *sandbox.Config) {
		for i := range c.Accounts {
			if c.Accounts[i].ID == srcAcct {
				for n := range cellUsers {
					c.Accounts[i].Users = append(c.Accounts[i].Users, sandbox.UserConfig{Name: fmt.Sprintf("cell%02d", n)})
				}
			}
		}
	})
	base, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		rows []reconcileRow
		n    int
		wg   sync.WaitGroup
	)
	// Every cell at once: they mostly wait (on retries, redeliveries, the persistent
	// form's three seconds). t.Run from several goroutines runs the subtests concurrently
	// without t.Parallel's limit of GOMAXPROCS.
	for _, call := range reconcileCalls {
		kinds := callFaults
		if call.entries {
			kinds = entryFaults
		}
		for _, kind := range kinds {
			for _, form := range []string{"transient", "persistent"} {
				idx := n
				n++
				if idx >= cellUsers {
					t.Fatalf("more cells than cellUsers (%d)", cellUsers)
				}
				wg.Go(func() {
					t.Run(fmt.Sprintf("%s/%s/%s", call.name, kind.name, form), func(t *testing.T) {
						row := runReconcileCell(t, w, base, idx, call, kind, form)
						mu.Lock()
						rows = append(rows, row)
						mu.Unlock()
					})
				})
			}
		}
	}
	wg.Wait()
	writeReconcileMatrix(t, rows)
}

func runReconcileCell(t *testing.T, w *sandboxtest.World, base v1.Image, idx int, call reconcileCall, kind reconcileFault, form string) reconcileRow {
	c := newMatrixCell(t, w, base, idx)
	f := call.fault(c)
	svc := f.Service
	f.Code, f.Reset, f.SenderFault = kind.code[svc], kind.reset, kind.senderFault
	if f.Entries > 0 && !kind.senderFault {
		f.Code = kind.code["sqs"]
	}
	f.Count = 2
	if form == "persistent" {
		f.Count = -1
	}
	armed, err := w.SB.ArmAPIFault(f)
	if err != nil {
		t.Fatal(err)
	}
	if form == "persistent" {
		time.AfterFunc(3*time.Second, armed.Disarm)
	}
	c.start(t, w)
	c.trigger(t, w)
	c.wait(t, w)
	armed.Disarm()
	row := reconcileRow{call: call.name, fault: kind.name, form: form, of: len(c.names), fired: armed.Answered(), triggerRetries: c.triggerRetries}
	for _, name := range c.names {
		if fmt.Sprint(w.Source.Tags(t, w.Ctx, name)) == fmt.Sprint(w.Dest.Tags(t, w.Ctx, "mirror/"+name)) {
			row.repaired++
		}
	}
	row.reported = strings.Count(c.logs.String(), `"msg":"reconcile failure (permanent, reported)"`)
	if c.triggerFailed {
		row.reported++
	}
	msgs, _ := w.SB.QueueMessages(srcAcct, region, c.prefix+"-dlq")
	row.deadLetters = len(msgs)
	switch {
	case row.fired == 0:
		t.Errorf("the fault never fired: the cell does not exercise %s", call.name)
	case row.repaired == row.of && row.reported == 0 && row.deadLetters == 0:
		row.outcome = "repaired in the run"
	case kind.permanent && row.reported > 0:
		row.outcome = fmt.Sprintf("reported (%d), %d repaired", row.reported, row.repaired)
	default:
		row.outcome = "FAILED"
		t.Errorf("%d of %d repaired, %d reported, %d dead letters: a %s failure must be repaired in the run (or, permanent, reported)\n%s",
			row.repaired, row.of, row.reported, row.deadLetters, kind.name, grepLines(c.logs.String(), "error", "warn", "WARN", "ERROR"))
	}
	if !kind.permanent && row.reported > 0 {
		t.Errorf("a %s failure was reported as permanent %d times", kind.name, row.reported)
	}
	return row
}

func newMatrixCell(t *testing.T, w *sandboxtest.World, base v1.Image, idx int) *matrixCell {
	c := &matrixCell{prefix: fmt.Sprintf("cell%02d", idx), user: fmt.Sprintf("cell%02d", idx), logs: &sandboxtest.LogBuffer{}, emf: &sandboxtest.LogBuffer{}}
	key, secret, err := w.SB.Credentials(srcAcct, c.user)
	if err != nil {
		t.Fatal(err)
	}
	c.cfg, err = config.LoadDefaultConfig(w.Ctx, config.WithRegion(region), config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(key, secret, "")))
	if err != nil {
		t.Fatal(err)
	}
	q := sqs.NewFromConfig(w.Source.Config)
	mk := func(name string, redrive bool) string {
		// The function timeout (5 s, start): Lambda refuses a shorter visibility timeout.
		attrs := map[string]string{"VisibilityTimeout": "5"}
		if redrive {
			attrs["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"5"}`, sandboxtest.QueueARN(c.prefix+"-dlq"))
		}
		out, err := q.CreateQueue(w.Ctx, &sqs.CreateQueueInput{QueueName: aws.String(c.prefix + "-" + name), Attributes: attrs})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.QueueUrl)
	}
	mk("dlq", false)
	c.env = map[string]string{
		wiring.EnvReconcileQueueURL: mk("reconcile", true), wiring.EnvCopyQueueURL: mk("copy", true),
		"REPLICATION_RULES": fmt.Sprintf(`{"rules":[{"name":"m","repositories":["%s/**"],"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
			c.prefix, dstAcct, region, w.DestinationRoleARN(), sandboxtest.ExternalID),
	}
	c.names = seedCell(t, w, c.prefix, base)
	return c
}

// seedCell makes three repositories with v1 on both sides and v2 in the source only.
func seedCell(t *testing.T, w *sandboxtest.World, prefix string, img v1.Image) []string {
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	src := ecr.NewFromConfig(w.Source.Config)
	var names []string
	for i := range 3 {
		name := fmt.Sprintf("%s/r%d", prefix, i)
		names = append(names, name)
		w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(name)})
		w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/" + name), Tags: sandboxtest.Owned()})
		w.Source.Push(t, name, "v1", img)
		w.Dest.Push(t, "mirror/"+name, "v1", img)
		variant := strings.Replace(string(raw), `"config"`, fmt.Sprintf(`"annotations":{"cell":%q},"config"`, name), 1)
		if _, err := src.PutImage(w.Ctx, &ecr.PutImageInput{RepositoryName: aws.String(name), ImageManifest: aws.String(variant),
			ImageManifestMediaType: aws.String(string(mt)), ImageTag: aws.String("v2")}); err != nil {
			t.Fatal(err)
		}
	}
	return names
}

func (c *matrixCell) getenv(k string) string { return c.env[k] }

// start runs the cell's reconcile and copy queues into its functions, at the template's
// batch settings (ReconcileBatchSize 10, ReconcileMaximumConcurrency 10, CopyBatchSize 10,
// CopyConcurrency 2), with 5-second function timeouts.
func (c *matrixCell) start(t *testing.T, w *sandboxtest.World) {
	log := wiring.Logger(c.logs, func(string) string { return "" })
	q := sqs.NewFromConfig(w.Source.Config)
	ctx, stop := context.WithCancel(w.Ctx)
	t.Cleanup(stop)
	for url, fn := range map[string]func() (eventsource.Handler, error){
		c.env[wiring.EnvReconcileQueueURL]: func() (eventsource.Handler, error) {
			return wiring.New(w.Ctx, c.cfg, "reconcile", log, c.getenv).Reconciler(c.getenv, c.emf, fastRetries), nil
		},
		c.env[wiring.EnvCopyQueueURL]: func() (eventsource.Handler, error) {
			return wiring.New(w.Ctx, c.cfg, "replicate", log, c.getenv).Handler(c.getenv, c.emf), nil
		},
	} {
		batch, conc := 10, 10
		if url == c.env[wiring.EnvCopyQueueURL] {
			conc = 2
		}
		cfg := eventsource.Config{QueueURL: url, BatchSize: batch, MaximumConcurrency: conc,
			FunctionTimeout: 5 * time.Second, ReportBatchItemFailures: true, Invoke: eventsource.NewEnvironments(fn).Invoke}
		go func() {
			if err := eventsource.Run(ctx, q, cfg); err != nil {
				t.Errorf("event source of %s: %v", cfg.QueueURL, err)
			}
		}()
	}
}

// trigger invokes the reconcile function as the schedule does, with Lambda's two
// retries of a failed asynchronous invocation (here 1 and 2 seconds apart).
func (c *matrixCell) trigger(t *testing.T, w *sandboxtest.World) {
	log := wiring.Logger(c.logs, func(string) string { return "" })
	for attempt := range 3 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * time.Second)
		}
		ctx, cancel := context.WithTimeout(w.Ctx, 5*time.Second)
		_, err := wiring.New(w.Ctx, c.cfg, "reconcile", log, c.getenv).Reconciler(c.getenv, c.emf, fastRetries).Handle(ctx, json.RawMessage(`{}`))
		cancel()
		if err == nil {
			return
		}
		if attempt < 2 {
			c.triggerRetries++
		}
	}
	c.triggerFailed = true
}

func (c *matrixCell) wait(t *testing.T, w *sandboxtest.World) {
	ctx, cancel := context.WithTimeout(w.Ctx, 60*time.Second)
	defer cancel()
	// The persistent form ends after three seconds: wait that out before asking for idle
	// queues (a retry may be delayed in between).
	time.Sleep(500 * time.Millisecond)
	if err := eventsource.WaitIdle(ctx, sqs.NewFromConfig(w.Source.Config), c.env[wiring.EnvReconcileQueueURL], c.env[wiring.EnvCopyQueueURL]); err != nil {
		t.Fatalf("queues did not drain: %v", err)
	}
}

func writeReconcileMatrix(t *testing.T, rows []reconcileRow) {
	sort.Slice(rows, func(i, j int) bool {
		return rows[i].call+rows[i].fault+rows[i].form < rows[j].call+rows[j].fault+rows[j].form
	})
	repaired, reported := 0, 0
	var b strings.Builder
	fmt.Fprintf(&b, "| call | fault | form | outcome | repaired | reported | dead letters | trigger retried | faults fired |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d/%d | %d | %d | %d | %d |\n", r.call, r.fault, r.form, r.outcome, r.repaired, r.of, r.reported, r.deadLetters, r.triggerRetries, r.fired)
		if strings.HasPrefix(r.outcome, "repaired") {
			repaired++
		} else if strings.HasPrefix(r.outcome, "reported") {
			reported++
		}
	}
	t.Logf("reconcile fault matrix: %d cells, %d repaired in the run, %d reported", len(rows), repaired, reported)
	if out := os.Getenv("RECONCILE_MATRIX_OUT"); out != "" {
		head := fmt.Sprintf("# Reconcile fault matrix\n\nGenerated by `make reconcile-matrix` (TestReconcileFaultMatrix, internal/tooling/reliability): every call the reconcile makes, faulted with every kind of failure, transient (the fault answers twice) and persistent (three seconds: longer than the SDK's retries and an invocation's own), through the local event source at the template's batch settings. %d cells: %d repaired in the same run, %d reported with their code (failures no retry can help).\n\n", len(rows), repaired, reported)
		if err := os.WriteFile(out, []byte(head+b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}
