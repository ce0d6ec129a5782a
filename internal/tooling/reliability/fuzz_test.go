package reliability_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// countingMirror stands in for the network: it records what the handler asked of it.
type countingMirror struct{ calls int }

func (m *countingMirror) Replicate(_ context.Context, src destinations.Image, ts []rules.Target) []destinations.Result {
	m.calls++
	out := make([]destinations.Result, len(ts))
	for i, t := range ts {
		out[i] = destinations.Result{CopyResult: destinations.CopyResult{Outcome: destinations.Copied, Digest: src.Digest, Tag: src.Tag}, Rule: t.Rule, Destination: t.Repo()}
	}
	return out
}

func (m *countingMirror) Delete(ctx context.Context, src destinations.Image, ts []rules.Target) []destinations.Result {
	return m.Replicate(ctx, src, ts)
}

// sandboxSource is the function's source registry: the sandbox's source account and region.
func sandboxSource(context.Context) (ecrname.Registry, error) {
	return ecrname.Registry{AccountID: sandbox.SourceAccount, Region: sandbox.DefaultRegion}, nil
}

// FuzzSQSBatch feeds whole SQS invocation payloads (and message bodies inside a valid
// envelope) to the replicate handler: it never panics, answers an SQS batch with an
// SQSEventResponse whose batchItemFailures name only records of the batch, and only
// reaches the mirror for bodies ecrevent accepts.
func FuzzSQSBatch(f *testing.F) {
	doc, err := rules.Parse([]byte(rulesDoc("ext", true)))
	if err != nil {
		f.Fatal(err)
	}
	ev := sandboxtest.ImageEvent("e", "PUSH", "team-a/app", goodDigest, "v1")
	f.Add([]byte(sandboxtest.SQSBatch(1, record{ID: "m1", Body: ev})), "")
	f.Add([]byte(`{"Records":[{"messageId":"a","body":"{}"},{"messageId":"a","body":""}]}`), ev)
	f.Add([]byte(`{"Records":null}`), workItemBody(nil))
	f.Add([]byte(`{"Records":[1]}`), `{"kind":"ecr-replicator/work-item"}`)
	f.Add([]byte(`[]`), sandboxtest.ImageEvent("e", "DELETE", "team-a/app", goodDigest, ""))
	f.Fuzz(func(t *testing.T, payload []byte, body string) {
		for _, p := range [][]byte{payload, sandboxtest.SQSBatch(1, record{ID: "m1", Body: body}, record{ID: "m2", Body: body})} {
			m := &countingMirror{}
			h := eventhandler.New(eventhandler.Config{Rules: doc, Start: func() eventhandler.Copier { return m }, Source: sandboxSource})
			out, err := h.Handle(context.Background(), json.RawMessage(p))
			var probe struct{ Records []struct{ MessageID string } }
			isBatch := json.Unmarshal(p, &probe) == nil && len(probe.Records) > 0
			if err != nil {
				continue
			}
			resp, ok := out.(events.SQSEventResponse)
			if isBatch && !ok {
				t.Fatalf("batch answered with %T", out)
			}
			if ok {
				ids := map[string]bool{}
				for _, r := range probe.Records {
					ids[r.MessageID] = true
				}
				for _, fl := range resp.BatchItemFailures {
					if !ids[fl.ItemIdentifier] {
						t.Fatalf("batchItemFailures names %q, not in the batch", fl.ItemIdentifier)
					}
				}
			}
		}
	})
}
