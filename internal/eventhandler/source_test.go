package eventhandler_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/gate"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// recordingRun is a Copier that copies nothing and records what it was asked.
type recordingRun struct {
	mu    sync.Mutex
	asked []string
}

func (r *recordingRun) do(src destinations.Image, targets []rules.Target) []destinations.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, src.Repo.String())
	out := make([]destinations.Result, len(targets))
	for i, t := range targets {
		out[i] = destinations.Result{CopyResult: destinations.CopyResult{Outcome: destinations.Skipped}, Rule: t.Rule, Destination: t.Repo()}
	}
	return out
}

func (r *recordingRun) Replicate(_ context.Context, src destinations.Image, t []rules.Target) []destinations.Result {
	return r.do(src, t)
}
func (r *recordingRun) Delete(_ context.Context, src destinations.Image, t []rules.Target) []destinations.Result {
	return r.do(src, t)
}

func handlerWithSource(t *testing.T, source func(context.Context) (ecrname.Registry, error)) (*eventhandler.Handler, *recordingRun, *bytes.Buffer) {
	t.Helper()
	doc, err := rules.Parse([]byte(rulesDoc(true, true)))
	if err != nil {
		t.Fatal(err)
	}
	run, emf := &recordingRun{}, &bytes.Buffer{}
	return eventhandler.New(eventhandler.Config{Rules: doc, Source: source, Start: func() eventhandler.Copier { return run },
		EMF: emf, Namespace: "test"}), run, emf
}

// TestForeignSourceRefused: events and work items naming another account or region than
// the function's source are acknowledged, reported as ForeignSource (summary, metric) and
// never reach a copy or a deletion; one of its own does.
func TestForeignSourceRefused(t *testing.T) {
	own := ecrname.Registry{AccountID: srcAcct, Region: region}
	h, run, emf := handlerWithSource(t, func(context.Context) (ecrname.Registry, error) { return own, nil })
	const digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	event := func(account, reg, action string) string {
		return string(ecrevent.ImageAction{EventID: "e", Account: account, Region: reg, Time: time.Now(),
			Repository: "team-a/app", Digest: digest, Tag: "v1", ActionType: action}.Event())
	}
	item, err := ecrevent.Marshal(ecrevent.WorkItem{Action: ecrevent.WorkCopy, Rule: "prod", CreatedAt: time.Now(),
		Source:      ecrevent.ImageRef{AccountID: dstAcct, Region: region, Repository: "team-a/app", Digest: digest},
		Destination: ecrevent.RepositoryRef{AccountID: dstAcct, Region: region, Repository: "mirror/team-a/app"}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Handle(t.Context(), sandboxtest.SQSBatch(1,
		sandboxtest.SQSMessage{ID: "account", Body: event(dstAcct, region, "PUSH")},
		sandboxtest.SQSMessage{ID: "region", Body: event(srcAcct, "eu-west-1", "DELETE")},
		sandboxtest.SQSMessage{ID: "item", Body: string(item)},
		sandboxtest.SQSMessage{ID: "own", Body: event(srcAcct, region, "PUSH")},
	))
	if err != nil {
		t.Fatal(err)
	}
	if resp := out.(events.SQSEventResponse); len(resp.BatchItemFailures) != 0 {
		t.Errorf("batchItemFailures %v: refused messages are acknowledged", resp.BatchItemFailures)
	}
	if len(run.asked) != 1 || run.asked[0] != own.String()+"/team-a/app" {
		t.Errorf("the run was asked about %v, want the own registry's team-a/app only", run.asked)
	}
	if !strings.Contains(emf.String(), `{"Reason":"ForeignSource","ReplicationFailures":[1,1,1]`) {
		t.Errorf("want ReplicationFailures 1, 1, 1 by Reason ForeignSource:\n%s", emf)
	}
	// A direct invocation's summary names the code.
	out, err = h.Handle(t.Context(), json.RawMessage(event(dstAcct, region, "DELETE")))
	if err != nil {
		t.Fatal(err)
	}
	s := out.(eventhandler.Summary)
	if len(s.Malformed) != 1 || s.Malformed[0].Code != eventhandler.CodeForeignSource || !strings.Contains(s.Malformed[0].Error, "names "+dstAcct+"/"+region) {
		t.Errorf("summary %+v, want one ForeignSource problem naming the registry", s.Malformed)
	}
}

// TestSourceUnknownRetriesEverything: when the function cannot tell its own source
// registry (STS unreachable), no message is judged: all are left for redelivery, and a
// direct invocation fails (Lambda retries it).
func TestSourceUnknownRetriesEverything(t *testing.T) {
	h, run, _ := handlerWithSource(t, func(context.Context) (ecrname.Registry, error) {
		return ecrname.Registry{}, errors.New("sts:GetCallerIdentity: connection reset")
	})
	ev := sandboxtest.ImageEvent("e", "PUSH", "team-a/app", "sha256:"+strings.Repeat("2", 64), "v1")
	out, err := h.Handle(t.Context(), sandboxtest.SQSBatch(1, sandboxtest.SQSMessage{ID: "a", Body: ev}, sandboxtest.SQSMessage{ID: "b", Body: ev}))
	if err != nil {
		t.Fatal(err)
	}
	if resp := out.(events.SQSEventResponse); len(resp.BatchItemFailures) != 2 {
		t.Errorf("batchItemFailures %v, want both messages", resp.BatchItemFailures)
	}
	if _, err := h.Handle(t.Context(), json.RawMessage(ev)); err == nil {
		t.Error("a direct invocation succeeded though nothing was checked")
	}
	if len(run.asked) != 0 {
		t.Errorf("the run was asked about %v", run.asked)
	}
}

// recordingGate is a promotion gate that decides nothing and records the images it was
// asked to look up.
type recordingGate struct {
	mu     sync.Mutex
	looked []string
}

func (g *recordingGate) Decide(_ context.Context, img gate.Image, reqs []*rules.Require) ([]gate.Decision, error) {
	return nil, errors.New("not decided here")
}
func (g *recordingGate) Lookup(_ context.Context, img gate.Image) (gate.Lookup, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.looked = append(g.looked, img.String())
	return gate.Lookup{}, nil
}
func (g *recordingGate) Parents(context.Context, gate.Image, time.Time) ([]gate.Lookup, error) {
	return nil, nil
}

// TestForeignTriggersRefused: a promotion gate's triggers are claims too. A scan-complete
// event, or the push of a cosign signature tag, naming another account than the
// function's source is refused as ForeignSource, and the gate never reads the registry
// it names; the same from the own source is looked up.
func TestForeignTriggersRefused(t *testing.T) {
	own := ecrname.Registry{AccountID: srcAcct, Region: region}
	doc, err := rules.Parse([]byte(`{"rules":[{"name":"gated","repositories":["team-a/*"],"require":{"scan":{"severity":"HIGH"}},
	  "destinations":[{"accountId":"` + dstAcct + `","region":"` + region + `"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	g, run, emf := &recordingGate{}, &recordingRun{}, &bytes.Buffer{}
	h := eventhandler.New(eventhandler.Config{Rules: doc, Source: func(context.Context) (ecrname.Registry, error) { return own, nil },
		Start: func() eventhandler.Copier { return run }, Gate: g, EMF: emf, Namespace: "test"})
	const digest = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	scan := func(account string) string {
		b, _ := json.Marshal(map[string]any{"version": "0", "id": "scan-" + account, "detail-type": "ECR Image Scan", "source": "aws.ecr",
			"account": account, "time": time.Now().UTC().Format(time.RFC3339), "region": region,
			"detail": map[string]any{"scan-status": "COMPLETE", "repository-name": "team-a/app", "image-digest": digest}})
		return string(b)
	}
	signature := func(account string) string {
		return string(ecrevent.ImageAction{EventID: "sig-" + account, Account: account, Region: region, Time: time.Now(),
			Repository: "team-a/app", Digest: "sha256:" + strings.Repeat("4", 64), Tag: "sha256-" + strings.Repeat("3", 64) + ".sig", ActionType: "PUSH"}.Event())
	}
	out, err := h.Handle(t.Context(), sandboxtest.SQSBatch(1,
		sandboxtest.SQSMessage{ID: "scan", Body: scan(dstAcct)},
		sandboxtest.SQSMessage{ID: "signature", Body: signature(dstAcct)},
		sandboxtest.SQSMessage{ID: "own-scan", Body: scan(srcAcct)},
	))
	if err != nil {
		t.Fatal(err)
	}
	if resp := out.(events.SQSEventResponse); len(resp.BatchItemFailures) != 0 {
		t.Errorf("batchItemFailures %v: refused messages are acknowledged", resp.BatchItemFailures)
	}
	if want := own.String() + "/team-a/app@" + digest; len(g.looked) != 1 || g.looked[0] != want {
		t.Errorf("the gate looked up %v, want %s only", g.looked, want)
	}
	if !strings.Contains(emf.String(), `{"Reason":"ForeignSource","ReplicationFailures":[1,1]`) {
		t.Errorf("want ReplicationFailures 1, 1 by Reason ForeignSource:\n%s", emf)
	}
}
