package infra

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// TestMirroredTagsRefusedAreDroppedAndReported: with mirrorRepositoryTags, a source
// repository carrying a tag key the destination role does not list (MirroredTagKeys) is
// created without its mirrored tags — owned, replicated — and the keys dropped are logged
// with the code MirroredTagsRefused; one whose keys are all listed keeps them.
func TestMirroredTagsRefusedAreDroppedAndReported(t *testing.T) {
	params := ownershipParams("mirror/")
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, params, map[string]any{"MirroredTagKeys": "team"}))
	for k, v := range w.FunctionEnv(t) {
		t.Setenv(k, v)
	}
	t.Setenv("REPLICATION_RULES", fmt.Sprintf(`{"rules":[{"name":"all","destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/","mirrorRepositoryTags":true}]}]}`,
		sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), sandboxtest.ExternalID))
	t.Setenv("DESTINATION_ROLE_ARNS", w.DestinationRoleARN())
	logs := &sandboxtest.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	deps, err := wiring.Load(w.Ctx, "replicate", log, os.Getenv)
	if err != nil || deps.RulesErr != nil {
		t.Fatal(err, deps.RulesErr)
	}
	h := sandboxtest.ReplicateHandler(deps, eventhandler.Config{Log: log, EMF: logs, Namespace: "test"})
	tag := func(k, v string) ecrtypes.Tag { return ecrtypes.Tag{Key: aws.String(k), Value: aws.String(v)} }
	for repo, tags := range map[string][]ecrtypes.Tag{
		"team-a/listed":   {tag("team", "a")},
		"team-a/unlisted": {tag("team", "a"), tag("cost-center", "1234")},
	} {
		w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo), Tags: tags})
		d := w.Source.Push(t, repo, "v1", image(t)).String()
		if _, err := h.Handle(w.Ctx, json.RawMessage(sandboxtest.ImageEvent("push-"+repo, "PUSH", repo, d, "v1"))); err != nil {
			t.Fatal(err)
		}
		if got := w.Dest.Digest(t, "mirror/"+repo, "v1"); got != d {
			t.Errorf("mirror/%s:v1 = %q, want %s", repo, got, d)
		}
	}
	listed, unlisted := resourceTags(t, w, "mirror/team-a/listed"), resourceTags(t, w, "mirror/team-a/unlisted")
	if listed["team"] != "a" || listed[ecraccess.OwnerTag] != sandbox.SourceAccount {
		t.Errorf("mirror/team-a/listed's tags: %v, want team=a and the owner", listed)
	}
	if _, ok := unlisted["team"]; ok || unlisted[ecraccess.OwnerTag] != sandbox.SourceAccount {
		t.Errorf("mirror/team-a/unlisted's tags: %v, want the owner's and no mirrored tag", unlisted)
	}
	if !strings.Contains(logs.String(), destinations.CodeMirroredTagsRefused) || !strings.Contains(logs.String(), "cost-center") {
		t.Errorf("no %s warning naming cost-center in the log:\n%s", destinations.CodeMirroredTagsRefused, logs)
	}
}

// resourceTags are a destination repository's resource tags.
func resourceTags(t *testing.T, w *sandboxtest.World, repo string) map[string]string {
	t.Helper()
	arn := fmt.Sprintf("arn:aws:ecr:%s:%s:repository/%s", sandbox.DefaultRegion, sandbox.DestinationAccount, repo)
	out, err := ecr.NewFromConfig(w.Dest.Config).ListTagsForResource(w.Ctx, &ecr.ListTagsForResourceInput{ResourceArn: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, tg := range out.Tags {
		m[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	return m
}
