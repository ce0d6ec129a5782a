package sqssend_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/sqssend"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

func setup(t *testing.T) (*sandboxtest.World, *sqs.Client, string) {
	w := sandboxtest.Start(t)
	q := sqs.NewFromConfig(w.Source.Config, func(o *sqs.Options) { o.Retryer = aws.NopRetryer{} })
	out, err := q.CreateQueue(w.Ctx, &sqs.CreateQueueInput{QueueName: aws.String("work")})
	if err != nil {
		t.Fatal(err)
	}
	return w, q, aws.ToString(out.QueueUrl)
}

func messages(n int) []sqssend.Message {
	out := make([]sqssend.Message, n)
	for i := range out {
		out[i] = sqssend.Message{Body: fmt.Sprintf(`{"n":%d}`, i)}
	}
	return out
}

func queued(t *testing.T, w *sandboxtest.World) map[string]int {
	t.Helper()
	msgs, err := w.SB.QueueMessages(sandbox.SourceAccount, sandbox.DefaultRegion, "work")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range msgs {
		out[m.Body]++
	}
	return out
}

// TestSendPolicy: what SQS accepts is sent once; entries it failed on its side are sent
// again and then succeed; entries refused as the sender's fault fail for good with
// SQS's code; a call that fails whole fails its messages with the call's class.
func TestSendPolicy(t *testing.T) {
	t.Run("sent", func(t *testing.T) {
		w, q, url := setup(t)
		errs := sqssend.New(q).Send(w.Ctx, url, messages(25))
		if i := firstFailure(errs); i != 25 {
			t.Fatalf("first failure at %d: %v", i, errs[i])
		}
		if got := queued(t, w); len(got) != 25 {
			t.Fatalf("%d distinct messages queued, want 25", len(got))
		}
	})
	t.Run("entries SQS failed are sent again", func(t *testing.T) {
		w, q, url := setup(t)
		if err := w.SB.InjectAPIFault(sandbox.APIFault{Service: "sqs", Resource: "*:work", Entries: 3, Count: 2}); err != nil {
			t.Fatal(err)
		}
		s := sqssend.New(q, sqssend.WithResend(retry.Policy{Attempts: 3, Initial: time.Millisecond}), sqssend.WithParallel(1))
		errs := s.Send(w.Ctx, url, messages(10))
		if i := firstFailure(errs); i != 10 {
			t.Fatalf("first failure at %d: %v", i, errs[i])
		}
		for body, n := range queued(t, w) {
			if n != 1 {
				t.Errorf("%s queued %d times", body, n)
			}
		}
	})
	t.Run("entries SQS keeps failing", func(t *testing.T) {
		w, q, url := setup(t)
		if err := w.SB.InjectAPIFault(sandbox.APIFault{Service: "sqs", Resource: "*:work", Entries: 2, Count: -1}); err != nil {
			t.Fatal(err)
		}
		errs := sqssend.New(q, sqssend.WithResend(retry.Policy{Attempts: 2, Initial: time.Millisecond})).Send(w.Ctx, url, messages(10))
		if i := firstFailure(errs); i != 8 {
			t.Fatalf("first failure at %d, want 8", i)
		}
		code, retryable := retry.Classify(errs[9])
		if code != "InternalError" || !retryable {
			t.Errorf("entry failure %v: code %q retryable %v", errs[9], code, retryable)
		}
	})
	t.Run("sender fault", func(t *testing.T) {
		w, q, url := setup(t)
		if err := w.SB.InjectAPIFault(sandbox.APIFault{Service: "sqs", Resource: "*:work", Entries: 1, SenderFault: true, Code: "InvalidMessageContents"}); err != nil {
			t.Fatal(err)
		}
		errs := sqssend.New(q).Send(w.Ctx, url, messages(4))
		code, retryable := retry.Classify(errs[3])
		if code != "InvalidMessageContents" || retryable || firstFailure(errs) != 3 {
			t.Errorf("sender fault: %v (code %q, retryable %v)", errs[3], code, retryable)
		}
		if got := queued(t, w); len(got) != 3 {
			t.Errorf("%d queued, want 3", len(got))
		}
	})
	t.Run("call fails", func(t *testing.T) {
		w, q, url := setup(t)
		if err := w.SB.InjectAPIFault(sandbox.APIFault{Service: "sqs", Operation: "SendMessageBatch", Code: "AccessDenied", Count: -1}); err != nil {
			t.Fatal(err)
		}
		errs := sqssend.New(q).Send(w.Ctx, url, messages(3))
		for _, err := range errs {
			code, retryable := retry.Classify(err)
			if code != "AccessDenied" || retryable {
				t.Errorf("call failure: %v (code %q, retryable %v)", err, code, retryable)
			}
		}
		var se *sqssend.Error
		if !errors.As(errs[0], &se) {
			t.Errorf("%T is not a *sqssend.Error", errs[0])
		}
	})
	t.Run("reset", func(t *testing.T) {
		w, q, url := setup(t)
		if err := w.SB.InjectAPIFault(sandbox.APIFault{Service: "sqs", Operation: "SendMessageBatch", Reset: true}); err != nil {
			t.Fatal(err)
		}
		errs := sqssend.New(q).Send(w.Ctx, url, messages(3))
		if _, retryable := retry.Classify(errs[0]); !retryable {
			t.Errorf("a reset call: %v, want retryable", errs[0])
		}
	})
	t.Run("delay", func(t *testing.T) {
		w, q, url := setup(t)
		errs := sqssend.New(q).Send(w.Ctx, url, []sqssend.Message{{Body: "later", Delay: 30 * time.Second}})
		if errs[0] != nil {
			t.Fatal(errs[0])
		}
		ctx, cancel := context.WithTimeout(w.Ctx, time.Second)
		defer cancel()
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url)})
		if err != nil || len(out.Messages) != 0 {
			t.Errorf("a delayed message was delivered at once: %v %v", out, err)
		}
	})
}

// firstFailure is the index of the first message Send did not send (len(errs) when all
// were sent).
func firstFailure(errs []error) int {
	for i, err := range errs {
		if err != nil {
			return i
		}
	}
	return len(errs)
}
