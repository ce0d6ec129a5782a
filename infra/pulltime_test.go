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

	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// TestReplicatorPullsLeavePullTimes: every replication pull updated the source image's
// lastRecordedPullTime, so lifecycle rules on "days since last pull"
// (sinceImagePulled) never expired what the replicator reads. The stack registers its
// role as a pull-time update exclusion (AWS::ECR::PullTimeUpdateExclusion), unless
// ExcludeReplicatorPulls is false.
func TestReplicatorPullsLeavePullTimes(t *testing.T) {
	for _, tc := range []struct {
		exclude    string
		wantPulled bool
	}{{"", false}, {"false", true}} {
		t.Run("ExcludeReplicatorPulls="+tc.exclude, func(t *testing.T) {
			params := map[string]any{
				"DestinationAccountId": sandbox.DestinationAccount, "DestinationRegion": sandbox.DefaultRegion,
				"ExternalId": sandboxtest.ExternalID, "DestinationRepositoryPrefix": "mirror/", "CreateRepositories": "true",
			}
			if tc.exclude != "" {
				params["ExcludeReplicatorPulls"] = tc.exclude
			}
			w := sandboxtest.Start(t, sandboxtest.Deployed(t, params))
			ctx := w.Ctx
			for k, v := range w.FunctionEnv(t) {
				t.Setenv(k, v)
			}
			t.Setenv("REPLICATION_RULES", fmt.Sprintf(`{"rules":[{"name":"all","repositories":["team-a/**"],"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
				sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), sandboxtest.ExternalID))
			t.Setenv("REPLICATION_QUEUE_URL", "")
			t.Setenv("RESULT_EVENT_BUS", "")
			const repo = "team-a/app"
			w.Source.CreateRepository(t, ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
			img, _ := random.Image(1024, 1)
			d := w.Source.Push(t, repo, "v1", img).String()

			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			deps, err := wiring.Load(ctx, "replicate", log, os.Getenv)
			if err != nil || deps.RulesErr != nil {
				t.Fatal(err, deps.RulesErr)
			}
			out, err := sandboxtest.ReplicateHandler(deps, eventhandler.Config{Log: log}).Handle(ctx, json.RawMessage(sandboxtest.ImageEvent("e1", "PUSH", repo, d, "v1")))
			if b, _ := json.Marshal(out); err != nil || !strings.Contains(string(b), `"succeeded":1`) {
				t.Fatalf("not replicated: %v %s", err, b)
			}
			di, err := ecr.NewFromConfig(w.Source.Config).DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String(repo)})
			if err != nil {
				t.Fatal(err)
			}
			if pulled := di.ImageDetails[0].LastRecordedPullTime != nil; pulled != tc.wantPulled {
				t.Fatalf("after the replicator pulled the image, lastRecordedPullTime set: %v, want %v", pulled, tc.wantPulled)
			}
		})
	}
}
