package reliability_test

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ecr-replicator/ecr-replicator/internal/reconcile"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventsource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// startReconcile deploys the reconcile path and starts its consumers.
func startReconcile(t *testing.T, w *sandboxtest.World, rules string) *reconcileStack {
	s := newReconcileStack(t, w, rules)
	s.start(t)
	return s
}

// newReconcileStack deploys the reconcile path: the reconcile function is the trigger
// and consumes the reconcile queue (once started), the replicate function consumes the
// copy queue.
func newReconcileStack(t *testing.T, w *sandboxtest.World, rules string) *reconcileStack {
	s := &reconcileStack{w: w, q: sqs.NewFromConfig(w.Source.Config), logs: &sandboxtest.LogBuffer{}, emf: &sandboxtest.LogBuffer{}, copied: map[string]int{}}
	s.urls = map[string]string{}
	s.urls["dlq"] = s.queue(t, "rec-dlq", false)
	s.urls["reconcile"] = s.queue(t, "rec-reconcile", true)
	s.urls["copy"] = s.queue(t, "rec-copy", true)
	s.env = map[string]string{wiring.EnvReconcileQueueURL: s.urls["reconcile"], wiring.EnvCopyQueueURL: s.urls["copy"]}
	s.setEnv(t, rules)
	return s
}

// start starts the queues' consumers.
func (s *reconcileStack) start(t *testing.T) {
	w := s.w
	log := wiring.Logger(s.logs, func(string) string { return "" })
	getenv := func(k string) string { return s.env[k] }
	s.run(t, s.urls["reconcile"], 10, 5, func() (eventsource.Handler, error) {
		deps, err := wiring.Load(w.Ctx, "reconcile", log, os.Getenv)
		if err != nil {
			return nil, err
		}
		return deps.Reconciler(getenv, s.emf, fastRetries), nil
	})
	s.run(t, s.urls["copy"], 10, 2, func() (eventsource.Handler, error) {
		deps, err := wiring.Load(w.Ctx, "replicate", log, os.Getenv)
		if err != nil {
			return nil, err
		}
		return deps.Handler(getenv, s.emf), nil
	})
}

// fastRetries: an item's retries a few hundred milliseconds apart, not 30 s.
func fastRetries(c *reconcile.Config) { c.RetryDelay = 300 * time.Millisecond }

func (s *reconcileStack) invokeTrigger(t *testing.T, payload string) error {
	log := wiring.Logger(s.logs, func(string) string { return "" })
	deps, err := wiring.Load(s.w.Ctx, "reconcile", log, os.Getenv)
	if err != nil {
		return err
	}
	timeout := s.triggerTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := contextWithTimeout(s, timeout)
	defer cancel()
	resp, err := deps.Reconciler(func(k string) string { return s.env[k] }, s.emf, fastRetries).Handle(ctx, json.RawMessage(payload))
	b, _ := json.Marshal(resp)
	t.Logf("trigger answered %s (%v)", b, err)
	return err
}
