package eventhandler_test

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// blackHole is an endpoint on 127.0.0.1 that takes connections and requests and never
// answers: EventBridge as a function in a VPC without a route to it sees it.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c) // until the client gives up
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestResultEventsNeverDelayTheAnswer: result events go out after the copies, within the
// invocation's reserve: an EventBridge endpoint that never answers costs the events (a
// warning), never the answer. Publishing had the invocation's whole context, so the
// answer came at the deadline — too late: Lambda times the invocation out and returns
// the whole batch, the replicated image's message included, to the queue.
func TestResultEventsNeverDelayTheAnswer(t *testing.T) {
	f := newFixture(t, rulesDoc(true, false))
	digest := f.push(t, "team-a/app", "v1")
	out := &lockedBuffer{}
	log := wiring.Logger(out, func(string) string { return "" })
	deps, err := wiring.Load(f.ctx, "replicate", log, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	unreachable := eventbridge.NewFromConfig(deps.AWS, func(o *eventbridge.Options) { o.BaseEndpoint = aws.String(blackHole(t)) })
	h := sandboxtest.ReplicateHandler(deps, eventhandler.Config{Log: log, Events: unreachable, EventBus: bus, Reserve: time.Second})

	deadline := time.Now().Add(3 * time.Second)
	ctx, cancel := context.WithDeadline(f.ctx, deadline)
	defer cancel()
	resp, err := h.Handle(ctx, sqsBatch(sandboxtest.ImageEvent("e1", "PUSH", "team-a/app", digest, "v1")))
	answered := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if !answered.Before(deadline) {
		t.Fatalf("answered %v after the deadline: Lambda would have timed the invocation out and returned the replicated image's message", answered.Sub(deadline))
	}
	if f := resp.(events.SQSEventResponse).BatchItemFailures; len(f) != 0 {
		t.Fatalf("batchItemFailures %+v: the image was replicated", f)
	}
	if got := f.destinationHead(t, "mirror/team-a/app", "v1"); got != digest {
		t.Fatalf("destination v1 = %q", got)
	}
	if !strings.Contains(out.String(), "publishing result events failed") {
		t.Errorf("no warning about the unpublished events:\n%s", out)
	}
	t.Logf("EventBridge never answered; the batch was answered %.1f s before the deadline", deadline.Sub(answered).Seconds())
}
