package backfill_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/sqssend"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/lambdatest"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

func TestMain(m *testing.M) { lambdatest.Main(m) }

// TestEnqueueDrainedByReplicate sends the plan to the sandbox queue, checks every
// message is a valid work item, drains the queue into the replicate function's handler
// and checks that a fresh backfill then finds nothing.
func TestEnqueueDrainedByReplicate(t *testing.T) {
	e := start(t, "")
	repos := repoNames("q", 3)
	e.seed(t, repos, 7)
	e.pushExtras(t, repos[2])
	client := sqs.NewFromConfig(e.src)
	q, err := client.CreateQueue(e.ctx, &sqs.CreateQueueInput{QueueName: aws.String("ecr-replicator-queue")})
	if err != nil {
		t.Fatal(err)
	}
	b := e.backfill()
	b.Sender, b.QueueURL = sqssend.New(client), aws.ToString(q.QueueUrl)
	mark := e.sb.AccessLogMark()
	resp, err := b.Invoke(e.ctx, backfill.Request{}) // mode defaults to enqueue
	if err != nil {
		t.Fatal(err)
	}
	if resp.Mode != backfill.ModeEnqueue || resp.Drift != 25 || resp.Enqueued != 25 || resp.Remaining != 0 || resp.Failed != 0 || resp.ContinuationToken != "" {
		t.Fatalf("enqueue: %+v", resp)
	}
	if resp.EstimatedSecondsAtQuota != 2.5 {
		t.Fatalf("estimate %v", resp.EstimatedSecondsAtQuota)
	}
	log := e.sb.AccessLogSince(mark)
	if n := count(log, func(en sandbox.Entry) bool { return en.Operation == "SendMessageBatch" }); n != 4 { // ⌈7/10⌉ + ⌈7/10⌉ + ⌈11/10⌉, one repository at a time
		t.Fatalf("SendMessageBatch calls = %d", n)
	}
	msgs, err := e.sb.QueueMessages(sandbox.SourceAccount, sandbox.DefaultRegion, "ecr-replicator-queue")
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 25 {
		t.Fatalf("%d messages queued", len(msgs))
	}
	for _, m := range msgs {
		parsed, err := ecrevent.Parse([]byte(m.Body))
		if err != nil || parsed.Kind != ecrevent.KindWorkItem || parsed.WorkItem.Destination.Repository != "mirror/"+parsed.WorkItem.Source.Repository {
			t.Fatalf("message %s: %+v %v", m.Body, parsed, err)
		}
	}

	// Drain into the replicate function's handler.
	h := eventhandler.New(eventhandler.Config{
		Rules: e.doc,
		Start: func() eventhandler.Copier { return destinations.New(e.resolver, copyengine.New()).Start() },
		Log:   slog.New(slog.DiscardHandler),
		Source: func(context.Context) (ecrname.Registry, error) {
			return ecrname.Registry{AccountID: sandbox.SourceAccount, Region: sandbox.DefaultRegion}, nil
		},
	})
	for range 20 {
		out, err := client.ReceiveMessage(e.ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 60})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			break
		}
		var ev events.SQSEvent
		for _, m := range out.Messages {
			ev.Records = append(ev.Records, events.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body),
				EventSource: "aws:sqs", EventSourceARN: "arn:aws:sqs:us-east-1:111111111111:ecr-replicator-queue", AWSRegion: sandbox.DefaultRegion,
				Attributes: map[string]string{"ApproximateReceiveCount": "1"}})
		}
		payload, _ := json.Marshal(ev)
		res, err := h.Handle(e.ctx, payload)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(res)
		var br events.SQSEventResponse
		json.Unmarshal(raw, &br)
		if len(br.BatchItemFailures) > 0 {
			t.Fatalf("replicate failures: %s", raw)
		}
		for _, m := range out.Messages {
			if _, err := client.DeleteMessage(e.ctx, &sqs.DeleteMessageInput{QueueUrl: q.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.assertMirrored(t, repos)
	mark = e.sb.AccessLogMark()
	resp, err = b.Invoke(e.ctx, backfill.Request{})
	if err != nil || resp.Drift != 0 || resp.Enqueued != 0 || resp.InSync != 25 {
		t.Fatalf("after draining: %+v %v", resp, err)
	}
	if n := registryRequests(e.sb.AccessLogSince(mark)); n != 0 {
		t.Fatalf("%d registry requests in a synchronized scope", n)
	}
}

// flaky refuses some entries of each batch the first times it sees them.
type flaky struct {
	refusals map[string]int  // body → times refused
	victim   map[string]bool // bodies refused (every other one, by first sight)
	limit    int
	sent     []string
	calls    int
	// resetFirst fails the first call whole, as a connection reset the SDK did not ride
	// over (it retries resets itself; the sender does not retry a failed call again).
	resetFirst bool
}

func (f *flaky) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	f.calls++
	if f.calls == 1 && f.resetFirst {
		// What the SDK returns for a connection reset while sending.
		return nil, &smithyhttp.RequestSendError{Err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}}
	}
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		body := aws.ToString(e.MessageBody)
		v, seen := f.victim[body]
		if !seen {
			v = len(f.victim)%2 == 0
			f.victim[body] = v
		}
		if v && f.refusals[body] < f.limit {
			f.refusals[body]++
			out.Failed = append(out.Failed, sqstypes.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), SenderFault: false})
			continue
		}
		f.sent = append(f.sent, body)
		out.Successful = append(out.Successful, sqstypes.SendMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func TestEnqueueRetriesRefusedEntries(t *testing.T) {
	e := start(t, "")
	e.seed(t, []string{"r/a"}, 12)
	for _, tc := range []struct {
		limit, enqueued, failed int
		resetFirst              bool
		code                    string
	}{{limit: 2, enqueued: 12}, {limit: 100, enqueued: 6, failed: 6, code: "InternalError"}, {limit: 0, enqueued: 2, failed: 10, resetFirst: true, code: "ECONNRESET"}} {
		f := &flaky{refusals: map[string]int{}, victim: map[string]bool{}, limit: tc.limit, resetFirst: tc.resetFirst}
		b := e.backfill()
		b.Sender, b.QueueURL = sqssend.New(f, sqssend.WithParallel(1), sqssend.WithResend(retry.Policy{Attempts: 5, Initial: time.Millisecond})), "https://sqs.example/q"
		resp, err := b.Invoke(e.ctx, backfill.Request{})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Enqueued != tc.enqueued || resp.Failed != tc.failed || len(f.sent) != tc.enqueued {
			t.Fatalf("limit %d: %+v, sent %d", tc.limit, resp, len(f.sent))
		}
		if tc.failed > 0 && (resp.Failures[0].Code != tc.code || !strings.Contains(resp.Failures[0].Reason, "sqs:SendMessageBatch")) {
			t.Fatalf("failure: %+v, want code %s", resp.Failures[0], tc.code)
		}
	}
}

// TestEndToEndUnderRIE invokes the real backfill bootstrap under the Runtime Interface
// Emulator, running as the deployed function role (sandboxtest.Deployed: IAM enforced with
// template.yaml's and infra/destination-role.yaml's policies): a bad request, a dry run, an
// inline run, a run that finds nothing, then an enqueue run onto the stack's queue.
func TestEndToEndUnderRIE(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bootstrap and the RIE")
	}
	e := start(t, "", sandboxtest.Deployed(t, map[string]any{
		"DestinationAccountId": sandbox.DestinationAccount, "DestinationRegion": sandbox.DefaultRegion,
		"ExternalId": extID, "DestinationRepositoryPrefix": "mirror/", "CreateRepositories": "true",
	}))
	repos := repoNames("e2e", 2)
	e.seed(t, repos, 5)
	q, err := sqs.NewFromConfig(e.src).CreateQueue(e.ctx, &sqs.CreateQueueInput{QueueName: aws.String(sandboxtest.CopyQueueName)})
	if err != nil {
		t.Fatal(err)
	}
	env, err := sandbox.ClientEnv(e.sb, sandbox.DefaultRegion, extID)
	if err != nil {
		t.Fatal(err)
	}
	env["REPLICATION_RULES"] = strings.NewReplacer("ROLE", sandbox.RoleARN(sandbox.DestinationAccount, sandbox.DestinationRole), "EXTID", extID).Replace(defaultRules)
	env["COPY_QUEUE_URL"] = aws.ToString(q.QueueUrl)
	env = sandboxtest.FunctionEnvFor(t, e.ctx, e.sb, env)
	fn := lambdatest.Start(t, "github.com/ecr-replicator/ecr-replicator/functions/backfill", env)
	defer func() {
		for _, d := range sandboxtest.Denials(e.sb, 0) {
			t.Errorf("denied under the deployed policies: %+v", d)
		}
		asFunction := 0
		for _, en := range e.sb.AccessLog() {
			if strings.HasPrefix(en.Principal, "arn:aws:sts::"+sandbox.SourceAccount+":assumed-role/"+sandboxtest.FunctionRole+"/") {
				asFunction++
			}
		}
		if asFunction == 0 {
			t.Error("no request made as the function role")
		}
	}()

	_, err = fn.Invoke(e.ctx, []byte(`{"dryRun":true,"repos":["x"]}`))
	var fe *lambdatest.FunctionError
	if !errors.As(err, &fe) || !strings.Contains(fe.Message, `"repos"`) {
		t.Fatalf("unknown field: %v", err)
	}
	invoke := func(payload string) map[string]any {
		t.Helper()
		mark := e.sb.AccessLogMark()
		out, err := fn.Invoke(e.ctx, []byte(payload))
		if err != nil {
			t.Fatalf("invoke %s: %v", payload, err)
		}
		var resp map[string]any
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		resp["_registryRequests"] = float64(registryRequests(e.sb.AccessLogSince(mark)))
		return resp
	}
	resp := invoke(`{"dryRun":true}`)
	if resp["drift"] != 10.0 || resp["repositoriesScanned"] != 2.0 || resp["_registryRequests"] != 0.0 || resp["estimatedSecondsAtQuota"] != 1.0 {
		t.Fatalf("dry run: %v", resp)
	}
	if _, ok := resp["continuationToken"]; ok {
		t.Fatalf("dry run has a continuation token: %v", resp)
	}
	resp = invoke(`{"mode":"inline"}`)
	if resp["mode"] != "inline" || resp["copied"] != 10.0 || resp["failed"] != 0.0 {
		t.Fatalf("inline: %v", resp)
	}
	e.assertMirrored(t, repos)
	resp = invoke(`{}`)
	if resp["drift"] != 0.0 || resp["inSync"] != 10.0 || resp["_registryRequests"] != 0.0 {
		t.Fatalf("second run: %v", resp)
	}
	// A new repository: the default mode with a queue enqueues its image (sqs:SendMessage).
	e.seed(t, []string{"e2e-new"}, 1)
	resp = invoke(`{}`)
	if resp["mode"] != "enqueue" || resp["drift"] != 1.0 || resp["enqueued"] != 1.0 || resp["failed"] != 0.0 {
		t.Fatalf("enqueue: %v", resp)
	}
	msgs, err := e.sb.QueueMessages(sandbox.SourceAccount, sandbox.DefaultRegion, sandboxtest.CopyQueueName)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("queued %d messages: %v", len(msgs), err)
	}
	var totals, emf int
	fn.AwaitJSONLines(e.ctx, func(lines []map[string]any) bool {
		totals, emf = 0, 0
		for _, l := range lines {
			if l["msg"] == "backfill totals" {
				totals++
			}
			if _, ok := l["_aws"]; ok {
				if _, ok := l["BackfillDrift"]; ok {
					emf++
				}
			}
		}
		return totals >= 4 && emf >= 4
	})
	if totals != 4 || emf != 4 {
		t.Fatalf("log lines: %d totals, %d EMF with BackfillDrift\n%s", totals, emf, fn.Stdout())
	}
}

func (f *flaky) GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	return &sqs.GetQueueAttributesOutput{}, nil
}
