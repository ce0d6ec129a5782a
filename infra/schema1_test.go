package infra

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// schema1 is a Docker image manifest, schema 1, as the registry stores it: its layers
// carry no size, so a copy learns it from the source.
type schema1 struct{ raw []byte }

func (m schema1) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m schema1) MediaType() (types.MediaType, error) { return types.DockerManifestSchema1Signed, nil }

// TestSchema1UnderDeployedPolicies: a Docker schema 1 image (layers without sizes)
// replicates as the deployed roles, with nothing denied. The engine HEADed each source
// blob for its size, an ecr:BatchCheckLayerAvailability the source policy does not grant:
// AccessDenied, a permanent failure, the push dropped.
func TestSchema1UnderDeployedPolicies(t *testing.T) {
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, map[string]any{
		"DestinationAccountId": sandbox.DestinationAccount, "DestinationRegion": sandbox.DefaultRegion,
		"ExternalId": sandboxtest.ExternalID, "DestinationRepositoryPrefix": "mirror/", "CreateRepositories": "true",
	}))
	ctx := w.Ctx
	for k, v := range w.FunctionEnv(t) {
		t.Setenv(k, v)
	}
	t.Setenv("REPLICATION_RULES", fmt.Sprintf(`{"rules":[{"name":"all","repositories":["team-a/**"],"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
		sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), sandboxtest.ExternalID))
	t.Setenv("REPLICATION_QUEUE_URL", "")
	t.Setenv("RESULT_EVENT_BUS", "")

	const repo = "team-a/legacy"
	w.Source.CreateRepository(t, ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
	var fsLayers, history []map[string]string
	for range 2 {
		l, err := random.Layer(2048, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteLayer(w.Source.Ref(t, repo, "v1").Context(), l, remote.WithAuth(w.Source.Auth)); err != nil {
			t.Fatal(err)
		}
		d, _ := l.Digest()
		fsLayers = append(fsLayers, map[string]string{"blobSum": d.String()})
		history = append(history, map[string]string{"v1Compatibility": fmt.Sprintf(`{"id":"%s"}`, d.Hex)})
	}
	raw, _ := json.Marshal(map[string]any{"schemaVersion": 1, "name": repo, "tag": "v1", "architecture": "amd64",
		"fsLayers": fsLayers, "history": history})
	if err := remote.Put(w.Source.Ref(t, repo, "v1"), schema1{raw}, remote.WithAuth(w.Source.Auth)); err != nil {
		t.Fatal(err)
	}
	digest := w.Source.Digest(t, repo, "v1")

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	deps, err := wiring.Load(ctx, "replicate", log, os.Getenv)
	if err != nil || deps.RulesErr != nil {
		t.Fatal(err, deps.RulesErr)
	}
	h := sandboxtest.ReplicateHandler(deps, eventhandler.Config{Log: log})
	mark := w.SB.AccessLogMark()
	out, err := h.Handle(ctx, json.RawMessage(sandboxtest.ImageEvent("e1", "PUSH", repo, digest, "v1")))
	b, _ := json.Marshal(out)
	for _, e := range sandboxtest.Denials(w.SB, mark) {
		t.Errorf("denied under the deployed policies: %s %s by %s: %s", e.Action, e.Repository, e.Principal, e.ErrorCode)
	}
	if err != nil || !strings.Contains(string(b), `"succeeded":1`) {
		t.Fatalf("schema 1 image not replicated: %v %s", err, b)
	}
	if got := w.Dest.Digest(t, "mirror/"+repo, "v1"); got != digest {
		t.Fatalf("destination v1 = %q, want %s", got, digest)
	}
}
