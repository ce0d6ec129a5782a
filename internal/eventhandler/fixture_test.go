package eventhandler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

const (
	extID   = sandboxtest.ExternalID
	region  = sandbox.DefaultRegion
	srcAcct = sandbox.SourceAccount
	dstAcct = sandbox.DestinationAccount
	bus     = "replication-results"
)

// rulesDoc replicates team-a/* to the destination account under mirror/, tagged only
// unless untagged, mirroring deletes when asked.
func rulesDoc(untagged, mirrorDeletes bool) string {
	return fmt.Sprintf(`{"rules":[{"name":"prod","repositories":["team-a/*"],"untagged":%t,"mirrorDeletes":%t,
"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/","createRepository":true}]}]}`,
		untagged, mirrorDeletes, dstAcct, region, sandbox.RoleARN(dstAcct, sandbox.DestinationRole), extID)
}

type fixture struct {
	w   *sandboxtest.World
	sb  *sandbox.Sandbox
	ctx context.Context
	env map[string]string // the function's environment (SDK variables, rules, bus)
}

// newFixture starts a sandbox and exports its client environment for the replicator
// user (also into the test process, for the in-process handler).
func newFixture(t *testing.T, rules string, cfg ...func(*sandbox.Config)) *fixture {
	t.Helper()
	w := sandboxtest.Start(t, cfg...)
	env := map[string]string{}
	for k, v := range w.Env {
		env[k] = v
	}
	env["AWS_CONFIG_FILE"] = "/dev/null"
	env["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
	// No SDK retries: an injected throttle is exhausted deterministically and fast.
	env["AWS_MAX_ATTEMPTS"] = "1"
	env["REPLICATION_RULES"] = rules
	env["RESULT_EVENT_BUS"] = bus
	for k, v := range env {
		t.Setenv(k, v)
	}
	return &fixture{w: w, sb: w.SB, ctx: w.Ctx, env: env}
}

// push creates repo in the source account and pushes a random image with tag (may be "").
func (f *fixture) push(t *testing.T, repo, tag string) string {
	t.Helper()
	f.w.Source.EnsureRepository(t, f.ctx, repo)
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	return f.w.Source.Push(t, repo, tag, img).String()
}

// destinationHead returns the digest the destination has for tagOrDigest, or "".
func (f *fixture) destinationHead(t *testing.T, repo, tagOrDigest string) string {
	t.Helper()
	return f.w.Dest.Digest(t, repo, tagOrDigest)
}

// sqsBatch wraps bodies as SQS records with messageIds m0, m1…, first received.
func sqsBatch(bodies ...string) []byte {
	msgs := make([]sandboxtest.SQSMessage, len(bodies))
	for i, b := range bodies {
		msgs[i] = sandboxtest.SQSMessage{ID: fmt.Sprintf("m%d", i), Body: b}
	}
	return sandboxtest.SQSBatch(1, msgs...)
}

type lockedBuffer = sandboxtest.LogBuffer

// handler builds the handler the way functions/replicate does, from the environment.
func (f *fixture) handler(t *testing.T, engine ...copyengine.Option) (*eventhandler.Handler, *lockedBuffer) {
	t.Helper()
	out := &lockedBuffer{}
	log := wiring.Logger(out, func(string) string { return "" })
	deps, err := wiring.Load(f.ctx, "replicate", log, os.Getenv, engine...)
	if err != nil {
		t.Fatal(err)
	}
	return sandboxtest.ReplicateHandler(deps, eventhandler.Config{
		Log: log, EMF: out, Namespace: "ECRReplicator",
		Events: eventbridge.NewFromConfig(deps.AWS), EventBus: bus,
	}), out
}

func jsonLines(s string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(s, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			m["_raw"] = l
			out = append(out, m)
		}
	}
	return out
}

func ecrDelete(t *testing.T, f *fixture, repo, digest string) (*ecr.BatchDeleteImageOutput, error) {
	return ecr.NewFromConfig(f.w.Source.Config).BatchDeleteImage(f.ctx, &ecr.BatchDeleteImageInput{
		RepositoryName: aws.String(repo),
		ImageIds:       []ecrtypes.ImageIdentifier{{ImageDigest: aws.String(digest)}},
	})
}
