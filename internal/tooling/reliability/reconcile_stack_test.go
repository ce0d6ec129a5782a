package reliability_test

// The reconcile as deployed, for the scenario tests: the schedule's trigger (retried as
// Lambda retries an asynchronous invocation), the reconcile queue and the copy queue,
// each driven into its function by the local event source at the template's batch
// settings, one dead-letter queue behind both.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventsource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// reconcileStack is one deployment's reconcile path.
type reconcileStack struct {
	w    *sandboxtest.World
	q    *sqs.Client
	logs *sandboxtest.LogBuffer
	emf  *sandboxtest.LogBuffer
	urls map[string]string // "reconcile", "copy", "dlq"
	env  map[string]string

	mu     sync.Mutex
	copied map[string]int // work-item bodies received by the copy queue's function, by image and destination
	// triggerErrs are the errors the trigger answered, one per attempt.
	triggerErrs []error
	// triggerTimeout is the trigger function's timeout (default 10 s).
	triggerTimeout time.Duration
}

// visibility is the scenario queues' visibility timeout: a message a function did not
// finish comes back this long after it was received. Lambda refuses one shorter than the
// function timeout (run's 5 s).
const visibility = 5 * time.Second

func (s *reconcileStack) queue(t *testing.T, name string, redrive bool) string {
	t.Helper()
	attrs := map[string]string{"VisibilityTimeout": fmt.Sprint(int(visibility.Seconds()))}
	if redrive {
		attrs["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"5"}`, sandboxtest.QueueARN("rec-dlq"))
	}
	out, err := s.q.CreateQueue(s.w.Ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.QueueUrl)
}

// run drains the stack's queues into fn (an SQS-batch handler) until the test ends.
func (s *reconcileStack) run(t *testing.T, queue string, batch, concurrency int, fn func() (eventsource.Handler, error)) {
	envs := eventsource.NewEnvironments(fn)
	ctx, stop := context.WithCancel(s.w.Ctx)
	t.Cleanup(stop)
	cfg := eventsource.Config{
		QueueURL: queue, BatchSize: batch, MaximumConcurrency: concurrency, FunctionTimeout: 5 * time.Second,
		ReportBatchItemFailures: true, Invoke: envs.Invoke,
		OnInvoke: func(inv eventsource.Invocation) {
			if queue != s.urls["copy"] {
				return
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, r := range inv.Records {
				var w struct {
					Source      struct{ Repository, Digest, Tag string }
					Destination struct{ Repository string }
				}
				_ = json.Unmarshal([]byte(r.Body), &w)
				s.copied[w.Source.Repository+"@"+w.Source.Digest+":"+w.Source.Tag+" → "+w.Destination.Repository]++
			}
		},
	}
	go func() {
		if err := eventsource.Run(ctx, s.q, cfg); err != nil {
			t.Errorf("event source of %s: %v", queue, err)
		}
	}()
}

// trigger invokes the schedule's target once, as EventBridge does (asynchronously):
// Lambda retries a failed asynchronous invocation twice
// (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html),
// here after 2 and 4 seconds instead of about 1 and 2 minutes.
func (s *reconcileStack) trigger(t *testing.T, payload string) {
	t.Helper()
	for attempt := range 3 {
		if attempt > 0 {
			time.Sleep(time.Duration(2*attempt) * time.Second)
		}
		err := s.invokeTrigger(t, payload)
		s.mu.Lock()
		s.triggerErrs = append(s.triggerErrs, err)
		s.mu.Unlock()
		if err == nil {
			return
		}
		t.Logf("trigger attempt %d: %v", attempt+1, err)
	}
}

// wait waits until the reconcile and copy queues are empty.
func (s *reconcileStack) wait(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(s.w.Ctx, 90*time.Second)
	defer cancel()
	if err := eventsource.WaitIdle(ctx, s.q, s.urls["reconcile"], s.urls["copy"]); err != nil {
		t.Fatalf("queues did not drain: %v", err)
	}
}

// deadLetters is what the dead-letter queue holds.
func (s *reconcileStack) deadLetters(t *testing.T) []string {
	t.Helper()
	msgs, err := s.w.SB.QueueMessages(sandbox.SourceAccount, sandbox.DefaultRegion, "rec-dlq")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, m.Body)
	}
	return out
}

// duplicates is how many work items the copy queue delivered beyond one per image and
// destination (a redelivery of an unfinished message counts too).
func (s *reconcileStack) duplicates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.copied {
		n += c - 1
	}
	return n
}

// metric sums an EMF metric over every record the functions wrote, optionally only
// where a dimension has a value ("Code=AccessDeniedException").
func (s *reconcileStack) metric(name string, where ...string) float64 {
	var sum float64
	for _, line := range strings.Split(s.emf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		ok := true
		for _, w := range where {
			k, v, _ := strings.Cut(w, "=")
			if fmt.Sprint(rec[k]) != v {
				ok = false
			}
		}
		if v, isNum := rec[name].(float64); ok && isNum {
			sum += v
		}
	}
	return sum
}

// setEnv sets the functions' environment (wiring reads the process's).
func (s *reconcileStack) setEnv(t *testing.T, rules string) {
	t.Setenv("REPLICATION_RULES", rules)
	t.Setenv("REPLICATION_RULES_FILE", "")
	t.Setenv(wiring.EnvQueueURL, "")
	t.Setenv(wiring.EnvWriters, "2")
	for k, v := range s.env {
		t.Setenv(k, v)
	}
}

func contextWithTimeout(s *reconcileStack, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.w.Ctx, d)
}
