package backfill_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/sandbox/eventsource"
	"github.com/ecr-replicator/ecr-replicator/internal/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// TestReconcileEveryRepository: one trigger of the backfill function (the schedule's
// `{}`) reconciles every repository in scope through the reconcile queue and the
// replicate function — here as Lambda's event source mapping would drive it, with a
// short function timeout — under ECR's PutImage quota, with nobody following a
// continuation token. Afterwards the destinations hold what the sources hold, the
// coverage adds up (repositories reconciled = repositories in scope), and the next run
// finds the previous one ended.
func TestReconcileEveryRepository(t *testing.T) {
	const repos = 240
	w := sandboxtest.Start(t)
	ctx := w.Ctx
	src := ecr.NewFromConfig(w.Source.Config)
	dst := ecr.NewFromConfig(w.Dest.Config)
	base, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	w.Source.CreateRepository(t, ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/base")})
	w.Source.Push(t, "team-a/base", "v0", base)
	raw, _ := base.RawManifest()
	mt, _ := base.MediaType()
	// Every repository: two images (manifests sharing the base's blobs), already in the
	// destination except one image in every tenth repository: drift.
	names := make([]string, repos)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range repos {
		names[i] = fmt.Sprintf("team-a/r%03d", i)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			for _, c := range []*ecr.Client{src, dst} {
				name := names[i]
				if c == dst {
					name = "mirror/" + name
				}
				if _, err := c.CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(name)}); err != nil {
					t.Error(err)
					return
				}
			}
			// Blobs exist per repository: push the base once to each, then tags by manifest.
			w.Source.Push(t, names[i], "v1", base)
			w.Dest.Push(t, "mirror/"+names[i], "v1", base)
			variant := strings.Replace(string(raw), `"config"`, fmt.Sprintf(`"annotations":{"n":"%d"},"config"`, i), 1)
			if _, err := src.PutImage(ctx, &ecr.PutImageInput{RepositoryName: aws.String(names[i]), ImageManifest: aws.String(variant),
				ImageManifestMediaType: aws.String(string(mt)), ImageTag: aws.String("v2")}); err != nil {
				t.Error(err)
				return
			}
			if i%10 != 0 {
				if _, err := dst.PutImage(ctx, &ecr.PutImageInput{RepositoryName: aws.String("mirror/" + names[i]), ImageManifest: aws.String(variant),
					ImageManifestMediaType: aws.String(string(mt)), ImageTag: aws.String("v2")}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	w.SB.SetPutImageRate(10) // ECR's default, from now on

	q := sqs.NewFromConfig(w.Source.Config)
	_, err = q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("reconcile-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	// The stack's reconcile and copy queues, redriving to one dead-letter queue.
	queue := func(name string) string {
		out, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{
			"VisibilityTimeout": "6",
			"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"5"}`, sandboxtest.QueueARN("reconcile-dlq")),
		}})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.QueueUrl)
	}
	env := map[string]string{wiring.EnvReconcileQueueURL: queue("reconcile"), wiring.EnvCopyQueueURL: queue("copy")}
	getenv := func(k string) string { return env[k] }
	t.Setenv("REPLICATION_RULES", fmt.Sprintf(`{"rules":[{"name":"all","repositories":["team-a/r*"],"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
		sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), sandboxtest.ExternalID))
	const copyConcurrency = 2
	t.Setenv(wiring.EnvWriters, fmt.Sprint(copyConcurrency))
	emf := &sandboxtest.LogBuffer{}
	logs := &sandboxtest.LogBuffer{}
	log := wiring.Logger(logs, func(string) string { return "" })
	// The replicate function: a handler per execution environment, as on Lambda (each
	// with its engine, so its own share of the PutImage quota).
	fn := eventsource.NewEnvironments(func() (eventsource.Handler, error) {
		deps, err := wiring.Load(ctx, "replicate", log)
		if err != nil {
			return nil, err
		}
		return deps.Handler(getenv, emf), nil
	})
	esCtx, stop := context.WithCancel(ctx)
	defer stop()
	var invocations sync.Map
	// Its two mappings: reconcile items wide, copies narrow.
	for queue, concurrency := range map[string]int{env[wiring.EnvReconcileQueueURL]: 5, env[wiring.EnvCopyQueueURL]: copyConcurrency} {
		go eventsource.Run(esCtx, q, eventsource.Config{
			QueueURL: queue, BatchSize: 10, MaximumConcurrency: concurrency, FunctionTimeout: 5 * time.Second,
			ReportBatchItemFailures: true, Invoke: fn.Invoke,
			OnInvoke: func(inv eventsource.Invocation) { invocations.Store(inv.Start, len(inv.Records)) },
		})
	}

	bdeps, err := wiring.Load(ctx, "backfill", log)
	if err != nil {
		t.Fatal(err)
	}
	trigger := func() map[string]any {
		t.Helper()
		bctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a short-lived trigger
		defer cancel()
		resp, err := bdeps.Backfill(getenv, io.Discard).Handle(bctx, json.RawMessage(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		b, _ := json.Marshal(resp)
		_ = json.Unmarshal(b, &m)
		return m
	}
	start := time.Now()
	first := trigger()
	if first["mode"] != "reconcile" || first["repositoriesScanned"] != float64(repos) || first["enqueued"] != float64(repos) {
		t.Fatalf("trigger answered %v", first)
	}
	if err := eventsource.WaitIdle(ctx, q, env[wiring.EnvReconcileQueueURL], env[wiring.EnvCopyQueueURL]); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	for _, n := range names {
		st, dt := w.Source.Tags(t, ctx, n), w.Dest.Tags(t, ctx, "mirror/"+n)
		if fmt.Sprint(st) != fmt.Sprint(dt) {
			t.Errorf("%s: destination %v, source %v", n, dt, st)
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, n+`"`) && !strings.Contains(l, "seed") {
					t.Log(l)
				}
			}
		}
	}
	reconciled := strings.Count(logs.String(), `"msg":"reconcile repository"`)
	if reconciled != repos {
		t.Errorf("%d repositories reported reconciled, %d in scope", reconciled, repos)
	}
	if left, _ := w.SB.QueueMessages(sandbox.SourceAccount, sandbox.DefaultRegion, "reconcile-dlq"); len(left) > 0 {
		t.Errorf("%d messages in the dead-letter queue", len(left))
	}
	// The run's copies say which run found them: coverage per run from the logs alone.
	run, _ := first["run"].(string)
	if n := strings.Count(logs.String(), `"msg":"image replicated","message_id"`); n != repos/10 {
		t.Errorf("%d images replicated, want %d", n, repos/10)
	}
	if n := strings.Count(logs.String(), `"event_id":"reconcile:`+run+`","action":"replicate"`); n != repos/10 {
		t.Errorf("%d copies logged with the run's event_id %q, want %d", n, "reconcile:"+run, repos/10)
	}
	throttled := w.SB.FaultsFired()["quota:PutImage"]
	n := 0
	invocations.Range(func(any, any) bool { n++; return true })
	// How the fleet shares the quota is measured where writes are many: the scale
	// benchmark and TestFleetSharesThePutImageQuota.
	t.Logf("reconciled %d repositories (%d drifted) in %v: %d invocations, %d PutImage throttled", reconciled, repos/10, elapsed.Round(time.Millisecond), n, throttled)

	// The next run finds the previous one ended, and nothing to copy.
	second := trigger()
	if second["previousRunIncomplete"] == true {
		t.Errorf("the second run found the first one unfinished: %v", second)
	}
	if err := eventsource.WaitIdle(ctx, q, env[wiring.EnvReconcileQueueURL], env[wiring.EnvCopyQueueURL]); err != nil {
		t.Fatal(err)
	}
}

// TestReconcileRepositoryContinues: a repository item whose plan does not fit one
// invocation sends what it can to the copy queue and comes back as the same item with a
// cursor, each time a step further — no work item sent twice, none missed — and is
// acknowledged each time: it never cycles into the dead-letter queue.
func TestReconcileRepositoryContinues(t *testing.T) {
	e := start(t, "")
	e.seed(t, []string{"team/big"}, 25)
	client := sqs.NewFromConfig(e.src)
	url := func(name string) string {
		q, err := client.CreateQueue(e.ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(q.QueueUrl)
	}
	b := e.backfill()
	b.Queue, b.ReconcileQueueURL, b.CopyQueueURL = client, url("reconcile"), url("copy")
	b.Margin = time.Hour // the soft stop has passed: one batch per invocation
	item := &ecrevent.Reconcile{Kind: ecrevent.ReconcileKind, Version: ecrevent.ReconcileVersion, Run: "2026-12-01T10:00:00Z",
		Source: ecrevent.SourceRegistry{AccountID: sandbox.SourceAccount, Region: sandbox.DefaultRegion}, Repository: "team/big",
		CreatedAt: time.Now()}
	var cursors []string
	for range 10 { // bounded: 25 images need 3
		ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
		err := b.Reconcile(ctx, item)
		cancel()
		if err != nil {
			t.Fatalf("reconcile item %+v: %v", item, err)
		}
		out, err := client.ReceiveMessage(e.ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(b.ReconcileQueueURL), MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			break
		}
		if len(out.Messages) != 1 {
			t.Fatalf("%d continuations", len(out.Messages))
		}
		m := out.Messages[0]
		if _, err := client.DeleteMessage(e.ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(b.ReconcileQueueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
			t.Fatal(err)
		}
		parsed, err := ecrevent.Parse([]byte(aws.ToString(m.Body)))
		if err != nil || parsed.Reconcile == nil || parsed.Reconcile.Repository != "team/big" || parsed.Reconcile.Cursor == "" {
			t.Fatalf("continuation %s: %v", aws.ToString(m.Body), err)
		}
		item = parsed.Reconcile
		cursors = append(cursors, item.Cursor)
	}
	if len(cursors) != 2 || cursors[0] >= cursors[1] {
		t.Fatalf("cursors %q: want two, each further on", cursors)
	}
	msgs, err := e.sb.QueueMessages(sandbox.SourceAccount, sandbox.DefaultRegion, "copy")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		p, err := ecrevent.Parse([]byte(m.Body))
		if err != nil || p.WorkItem == nil {
			t.Fatalf("copy item %s: %v", m.Body, err)
		}
		k := p.WorkItem.Source.Digest + " " + p.WorkItem.Source.Tag
		if seen[k] {
			t.Fatalf("%s sent twice", k)
		}
		seen[k] = true
	}
	if len(seen) != 25 {
		t.Fatalf("%d images sent to the copy queue, want 25", len(seen))
	}
}
