package sandbox_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// startWithClock starts a sandbox whose clock the test can move forward.
func startWithClock(t *testing.T) (*env, func(time.Duration)) {
	t.Helper()
	var offset atomic.Int64
	cfg := sandbox.TwoAccounts(extID)
	cfg.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	for _, svc := range []string{"ECR", "STS", "SQS", "EVENTBRIDGE"} {
		t.Setenv("AWS_ENDPOINT_URL_"+svc, sb.APIURL())
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	// Stay well inside SigV4's 15-minute skew window.
	return &env{sb: sb, ctx: ctx}, func(d time.Duration) { offset.Add(int64(d)) }
}

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestSQS(t *testing.T) {
	e, advance := startWithClock(t)
	cfg := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	client := sqs.NewFromConfig(cfg)
	ctx := e.ctx

	dlq, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("work-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	if want := e.sb.APIURL() + "/" + sandbox.SourceAccount + "/work-dlq"; aws.ToString(dlq.QueueUrl) != want {
		t.Fatalf("queue URL = %q, want %q", aws.ToString(dlq.QueueUrl), want)
	}
	dlqAttrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	if err != nil {
		t.Fatal(err)
	}
	dlqARN := dlqAttrs.Attributes["QueueArn"]
	if want := "arn:aws:sqs:us-east-1:" + sandbox.SourceAccount + ":work-dlq"; dlqARN != want {
		t.Fatalf("QueueArn = %q, want %q", dlqARN, want)
	}
	attrs := map[string]string{
		"VisibilityTimeout": "30",
		"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"2"}`, dlqARN),
	}
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("work"), Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	url := q.QueueUrl

	t.Run("create and look up", func(t *testing.T) {
		again, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("work"), Attributes: attrs})
		if err != nil || aws.ToString(again.QueueUrl) != aws.ToString(url) {
			t.Fatalf("idempotent create: %v, %v", again, err)
		}
		_, err = client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("work"), Attributes: map[string]string{"VisibilityTimeout": "5"}})
		var exists *sqstypes.QueueNameExists
		if !errors.As(err, &exists) || errorCode(err) != "QueueAlreadyExists" {
			t.Fatalf("create with other attributes: %v, want QueueNameExists (QueueAlreadyExists)", err)
		}
		_, err = client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("orphan"), Attributes: map[string]string{
			"RedrivePolicy": `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:111111111111:nope","maxReceiveCount":2}`,
		}})
		if errorCode(err) != "InvalidAttributeValue" {
			t.Fatalf("redrive to a missing queue: %v", err)
		}
		if _, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("bad name")}); errorCode(err) != "InvalidParameterValue" {
			t.Fatalf("bad name: %v", err)
		}
		got, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("work")})
		if err != nil || aws.ToString(got.QueueUrl) != aws.ToString(url) {
			t.Fatalf("GetQueueUrl: %v, %v", got, err)
		}
		_, err = client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("missing")})
		var missing *sqstypes.QueueDoesNotExist
		if !errors.As(err, &missing) || errorCode(err) != "AWS.SimpleQueueService.NonExistentQueue" {
			t.Fatalf("missing queue: %v", err)
		}
		// Queues are per account: the destination account does not see the source's.
		other := sqs.NewFromConfig(e.userConfig(t, sandbox.DestinationAccount, sandbox.AdminUser))
		if _, err := other.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("work")}); !errors.As(err, &missing) {
			t.Fatalf("other account: %v", err)
		}
		if _, err := other.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String("x")}); errorCode(err) != "AccessDenied" {
			t.Fatalf("other account's send: %v", err)
		}
	})

	batch := func(n int) []sqstypes.SendMessageBatchRequestEntry {
		var out []sqstypes.SendMessageBatchRequestEntry
		for i := range n {
			out = append(out, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprintf("e%d", i)), MessageBody: aws.String(fmt.Sprintf(`{"item":%d}`, i))})
		}
		return out
	}
	_, err = client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: url, Entries: batch(12)})
	var tooMany *sqstypes.TooManyEntriesInBatchRequest
	if !errors.As(err, &tooMany) || errorCode(err) != "AWS.SimpleQueueService.TooManyEntriesInBatchRequest" {
		t.Fatalf("batch of 12: %v", err)
	}
	dup := batch(2)
	dup[1].Id = dup[0].Id
	if _, err := client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: url, Entries: dup}); errorCode(err) != "AWS.SimpleQueueService.BatchEntryIdsNotDistinct" {
		t.Fatalf("duplicate ids: %v", err)
	}
	if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String(strings.Repeat("x", 256<<10+1))}); errorCode(err) != "InvalidParameterValue" {
		t.Fatalf("oversized message: %v", err)
	}
	sent, err := client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: url, Entries: batch(10)})
	if err != nil {
		t.Fatal(err)
	}
	if len(sent.Successful) != 10 || len(sent.Failed) != 0 {
		t.Fatalf("batch of 10: %d successful, %d failed", len(sent.Successful), len(sent.Failed))
	}
	for _, s := range sent.Successful {
		var i int
		fmt.Sscanf(aws.ToString(s.Id), "e%d", &i)
		if want := md5Hex(fmt.Sprintf(`{"item":%d}`, i)); aws.ToString(s.MD5OfMessageBody) != want {
			t.Errorf("entry %s: MD5 %s, want %s", aws.ToString(s.Id), aws.ToString(s.MD5OfMessageBody), want)
		}
	}

	counts := func() (visible, notVisible string) {
		t.Helper()
		out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: url, AttributeNames: []sqstypes.QueueAttributeName{"All"}})
		if err != nil {
			t.Fatal(err)
		}
		if out.Attributes["VisibilityTimeout"] != "30" || !strings.Contains(out.Attributes["RedrivePolicy"], `"maxReceiveCount":2`) {
			t.Errorf("attributes = %v", out.Attributes)
		}
		return out.Attributes["ApproximateNumberOfMessages"], out.Attributes["ApproximateNumberOfMessagesNotVisible"]
	}
	if v, nv := counts(); v != "10" || nv != "0" {
		t.Fatalf("after send: %s visible, %s not visible", v, nv)
	}

	receive := func(max int32) []sqstypes.Message {
		t.Helper()
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: url, MaxNumberOfMessages: max,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{"ApproximateReceiveCount", "SentTimestamp"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return out.Messages
	}
	if _, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 11}); errorCode(err) != "InvalidParameterValue" {
		t.Fatalf("MaxNumberOfMessages 11: %v", err)
	}
	first := receive(10)
	if len(first) != 10 {
		t.Fatalf("first receive: %d messages", len(first))
	}
	for _, m := range first {
		if m.Attributes["ApproximateReceiveCount"] != "1" || m.Attributes["SentTimestamp"] == "" {
			t.Fatalf("first receive attributes: %v", m.Attributes)
		}
	}
	if v, nv := counts(); v != "0" || nv != "10" {
		t.Fatalf("in flight: %s visible, %s not visible", v, nv)
	}
	if got := receive(10); len(got) != 0 {
		t.Fatalf("received %d in-flight messages", len(got))
	}
	if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: url, ReceiptHandle: first[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}

	advance(31 * time.Second)
	second := receive(10)
	if len(second) != 9 {
		t.Fatalf("redelivery: %d messages, want 9", len(second))
	}
	for _, m := range second {
		if m.Attributes["ApproximateReceiveCount"] != "2" {
			t.Fatalf("second receive count: %v", m.Attributes)
		}
	}
	// A stale receipt handle succeeds without deleting (AWS's documented behaviour).
	stale := first[1]
	if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: url, ReceiptHandle: stale.ReceiptHandle}); err != nil {
		t.Fatalf("stale handle: %v", err)
	}
	if msgs, _ := e.sb.QueueMessages(sandbox.SourceAccount, sandbox.DefaultRegion, "work"); len(msgs) != 9 {
		t.Fatalf("after a stale delete: %d messages, want 9", len(msgs))
	}
	_, err = client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: url, ReceiptHandle: aws.String("not-a-handle")})
	var badHandle *sqstypes.ReceiptHandleIsInvalid
	if !errors.As(err, &badHandle) {
		t.Fatalf("malformed handle: %v", err)
	}
	// Delete one with the current handle, and extend another's visibility.
	del, err := client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: url, Entries: []sqstypes.DeleteMessageBatchRequestEntry{
		{Id: aws.String("ok"), ReceiptHandle: second[0].ReceiptHandle},
		{Id: aws.String("bad"), ReceiptHandle: aws.String("junk")},
	}})
	if err != nil || len(del.Successful) != 1 || len(del.Failed) != 1 || aws.ToString(del.Failed[0].Code) != "ReceiptHandleIsInvalid" {
		t.Fatalf("DeleteMessageBatch: %+v, %v", del, err)
	}
	if _, err := client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: url, ReceiptHandle: second[1].ReceiptHandle, VisibilityTimeout: 120}); err != nil {
		t.Fatal(err)
	}

	advance(31 * time.Second)
	// Received twice already (maxReceiveCount 2): the third receive moves them to the DLQ.
	if got := receive(10); len(got) != 0 {
		t.Fatalf("third receive returned %d messages, want none", len(got))
	}
	moved, err := e.sb.QueueMessages(sandbox.SourceAccount, sandbox.DefaultRegion, "work-dlq")
	if err != nil || len(moved) != 7 {
		t.Fatalf("DLQ holds %d messages (%v), want 7", len(moved), err)
	}
	for _, m := range moved {
		if m.ReceiveCount != 2 || !m.Visible {
			t.Fatalf("DLQ message %+v", m)
		}
	}
	left, _ := e.sb.QueueMessages(sandbox.SourceAccount, sandbox.DefaultRegion, "work")
	if len(left) != 1 || left[0].Visible || left[0].MessageID != aws.ToString(second[1].MessageId) {
		t.Fatalf("source queue after redrive: %+v", left)
	}
	if v, nv := counts(); v != "0" || nv != "1" {
		t.Fatalf("after redrive: %s visible, %s not visible", v, nv)
	}

	t.Run("purge", func(t *testing.T) {
		if _, err := client.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: dlq.QueueUrl}); err != nil {
			t.Fatal(err)
		}
		if msgs, _ := e.sb.QueueMessages(sandbox.SourceAccount, sandbox.DefaultRegion, "work-dlq"); len(msgs) != 0 {
			t.Fatalf("after purge: %d messages", len(msgs))
		}
		_, err := client.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: dlq.QueueUrl})
		var inProgress *sqstypes.PurgeQueueInProgress
		if !errors.As(err, &inProgress) {
			t.Fatalf("second purge within 60 s: %v", err)
		}
	})

	t.Run("long polling", func(t *testing.T) {
		type result struct {
			out *sqs.ReceiveMessageOutput
			err error
			d   time.Duration
		}
		done := make(chan result, 1)
		go func() {
			start := time.Now()
			out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: dlq.QueueUrl, WaitTimeSeconds: 10})
			done <- result{out, err, time.Since(start)}
		}()
		time.Sleep(200 * time.Millisecond)
		if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: dlq.QueueUrl, MessageBody: aws.String("wake up")}); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-done:
			if r.err != nil || len(r.out.Messages) != 1 || aws.ToString(r.out.Messages[0].Body) != "wake up" {
				t.Fatalf("long poll: %+v, %v", r.out, r.err)
			}
			if r.d > 2*time.Second {
				t.Fatalf("long poll returned after %v", r.d)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("long poll did not return when a message arrived")
		}
		// With nothing to receive, the poll ends after WaitTimeSeconds, empty.
		start := time.Now()
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: dlq.QueueUrl, WaitTimeSeconds: 1})
		if err != nil || len(out.Messages) != 0 || time.Since(start) < time.Second {
			t.Fatalf("empty long poll: %+v, %v after %v", out, err, time.Since(start))
		}
		if _, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: dlq.QueueUrl, WaitTimeSeconds: 21}); errorCode(err) != "InvalidParameterValue" {
			t.Fatalf("WaitTimeSeconds 21: %v", err)
		}
	})

	t.Run("per-entry failures and attributes", func(t *testing.T) {
		out, err := client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: dlq.QueueUrl, Entries: []sqstypes.SendMessageBatchRequestEntry{
			{Id: aws.String("bad"), MessageBody: aws.String("nul \x00 byte")},
		}})
		if err != nil || len(out.Successful) != 0 || len(out.Failed) != 1 || aws.ToString(out.Failed[0].Code) != "InvalidMessageContents" || !out.Failed[0].SenderFault {
			t.Fatalf("invalid body in a batch: %+v, %v", out, err)
		}
		sent, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: dlq.QueueUrl, MessageBody: aws.String("with attributes"),
			MessageAttributes: map[string]sqstypes.MessageAttributeValue{
				"kind": {DataType: aws.String("String"), StringValue: aws.String("backfill")},
				"blob": {DataType: aws.String("Binary"), BinaryValue: []byte{0, 1, 2}},
			}})
		if err != nil || aws.ToString(sent.MD5OfMessageAttributes) == "" {
			t.Fatalf("send with attributes: %+v, %v", sent, err)
		}
		got, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: dlq.QueueUrl, MessageAttributeNames: []string{"All"}})
		if err != nil || len(got.Messages) != 1 {
			t.Fatalf("receive with attributes: %+v, %v", got, err)
		}
		m := got.Messages[0]
		if aws.ToString(m.MessageAttributes["kind"].StringValue) != "backfill" || string(m.MessageAttributes["blob"].BinaryValue) != "\x00\x01\x02" ||
			aws.ToString(m.MD5OfMessageAttributes) != aws.ToString(sent.MD5OfMessageAttributes) {
			t.Fatalf("received attributes: %+v", m)
		}
		if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: dlq.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("throttling", func(t *testing.T) {
		noRetry := sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.Retryer = aws.NopRetryer{} })
		e.sb.ThrottleAPI("sqs", "ReceiveMessage", 1)
		mark := e.sb.AccessLogMark()
		if _, err := noRetry.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url}); errorCode(err) != "ThrottlingException" {
			t.Fatalf("throttled receive: %v", err)
		}
		if _, err := noRetry.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url}); err != nil {
			t.Fatalf("after the fault: %v", err)
		}
		if got := e.sb.FaultsFired()["api:sqs:ThrottlingException"]; got != 1 {
			t.Fatalf("faults fired = %d", got)
		}
		log := e.sb.AccessLogSince(mark)
		if len(log) != 2 || log[0].Fault != "ThrottlingException" || log[1].Action != "sqs:ReceiveMessage" || log[1].Reference != "work" || log[1].Status != 200 {
			t.Fatalf("access log: %+v", log)
		}
	})
}
