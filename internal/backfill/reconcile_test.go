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
	rq, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("reconcile"), Attributes: map[string]string{
		"VisibilityTimeout": "6",
		"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"5"}`, sandboxtest.QueueARN("reconcile-dlq")),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("REPLICATION_RULES", fmt.Sprintf(`{"rules":[{"name":"all","repositories":["team-a/r*"],"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
		sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), sandboxtest.ExternalID))
	t.Setenv(wiring.EnvReconcileQueueURL, aws.ToString(rq.QueueUrl))
	t.Setenv(wiring.EnvQueueURL, "")
	emf := &sandboxtest.LogBuffer{}
	logs := &sandboxtest.LogBuffer{}
	log := wiring.Logger(logs, func(string) string { return "" })
	fn, err := wiring.Load(ctx, "replicate", log)
	if err != nil || fn.RulesErr != nil {
		t.Fatal(err, fn.RulesErr)
	}
	handler := fn.Handler(func(k string) string {
		if k == wiring.EnvReconcileQueueURL {
			return aws.ToString(rq.QueueUrl)
		}
		return ""
	}, emf)

	esCtx, stop := context.WithCancel(ctx)
	defer stop()
	var invocations sync.Map
	go eventsource.Run(esCtx, q, eventsource.Config{
		QueueURL: aws.ToString(rq.QueueUrl), BatchSize: 10, MaximumConcurrency: 5, FunctionTimeout: 5 * time.Second,
		ReportBatchItemFailures: true,
		Invoke: func(ctx context.Context, payload []byte) ([]byte, error) {
			out, err := handler.Handle(ctx, payload)
			if err != nil {
				return nil, err
			}
			return json.Marshal(out)
		},
		OnInvoke: func(inv eventsource.Invocation) { invocations.Store(inv.Start, len(inv.Records)) },
	})

	bdeps, err := wiring.Load(ctx, "backfill", log)
	if err != nil {
		t.Fatal(err)
	}
	trigger := func() map[string]any {
		t.Helper()
		bctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a short-lived trigger
		defer cancel()
		resp, err := bdeps.Backfill(func(k string) string {
			if k == wiring.EnvReconcileQueueURL {
				return aws.ToString(rq.QueueUrl)
			}
			return ""
		}, io.Discard).Handle(bctx, json.RawMessage(`{}`))
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
	if err := eventsource.WaitIdle(ctx, q, aws.ToString(rq.QueueUrl)); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	for _, n := range names {
		st, dt := w.Source.Tags(t, ctx, n), w.Dest.Tags(t, ctx, "mirror/"+n)
		if fmt.Sprint(st) != fmt.Sprint(dt) {
			t.Errorf("%s: destination %v, source %v", n, dt, st)
		}
	}
	reconciled := strings.Count(logs.String(), `"msg":"reconcile repository"`)
	if reconciled != repos {
		t.Errorf("%d repositories reported reconciled, %d in scope", reconciled, repos)
	}
	if left, _ := w.SB.QueueMessages(sandbox.SourceAccount, sandbox.DefaultRegion, "reconcile-dlq"); len(left) > 0 {
		t.Errorf("%d messages in the dead-letter queue", len(left))
	}
	throttled := w.SB.FaultsFired()["quota:PutImage"]
	n := 0
	invocations.Range(func(any, any) bool { n++; return true })
	t.Logf("reconciled %d repositories (%d drifted) in %v: %d invocations, %d PutImage throttled", reconciled, repos/10, elapsed.Round(time.Millisecond), n, throttled)

	// The next run finds the previous one ended, and nothing to copy.
	second := trigger()
	if second["previousRunIncomplete"] == true {
		t.Errorf("the second run found the first one unfinished: %v", second)
	}
	if err := eventsource.WaitIdle(ctx, q, aws.ToString(rq.QueueUrl)); err != nil {
		t.Fatal(err)
	}
}
