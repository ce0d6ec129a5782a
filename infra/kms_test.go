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
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// TestDestinationKMSKeys: what the rules allow for a created destination repository's
// encryption, under the deployed policies. A destination's kmsKey (a key ARN) is used
// for the repositories created there: creating one needs kms:CreateGrant,
// kms:RetireGrant and kms:DescribeKey on the key, through ECR (encryption-at-rest.html),
// which the destination role grants on exactly the keys its KmsKeyArns names — not on
// any other. Without kmsKey the source's encryption type is mirrored, with the
// destination's AWS managed key, which needs no grant.
func TestDestinationKMSKeys(t *testing.T) {
	key := fmt.Sprintf("arn:aws:kms:%s:%s:key/1234abcd-12ab-34cd-56ef-1234567890ab", sandbox.DefaultRegion, sandbox.DestinationAccount)
	other := fmt.Sprintf("arn:aws:kms:%s:%s:key/9999abcd-12ab-34cd-56ef-1234567890ab", sandbox.DefaultRegion, sandbox.DestinationAccount)
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, map[string]any{
		"DestinationAccountId": sandbox.DestinationAccount, "DestinationRegion": sandbox.DefaultRegion,
		"ExternalId": sandboxtest.ExternalID, "DestinationRepositoryPrefix": "mirror/", "CreateRepositories": "true",
	}, map[string]any{"KmsKeyArns": key}))
	ctx := w.Ctx
	for k, v := range w.FunctionEnv(t) {
		t.Setenv(k, v)
	}
	dest := func(prefix, kmsKey string) string {
		d := fmt.Sprintf(`{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":%q`,
			sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), sandboxtest.ExternalID, prefix)
		if kmsKey != "" {
			d += fmt.Sprintf(`,"kmsKey":%q`, kmsKey)
		}
		return d + "}"
	}
	// Every prefix is under the role's RepositoryPrefix (mirror/).
	t.Setenv("REPLICATION_RULES", fmt.Sprintf(`{"rules":[
{"name":"granted","repositories":["team-a/granted"],"destinations":[%s]},
{"name":"other","repositories":["team-a/other"],"destinations":[%s]},
{"name":"mirrored","repositories":["team-a/mirrored"],"destinations":[%s]}]}`,
		dest("mirror/", key), dest("mirror/", other), dest("mirror/", "")))
	t.Setenv("REPLICATION_QUEUE_URL", "")
	t.Setenv("RESULT_EVENT_BUS", "")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	deps, err := wiring.Load(ctx, "replicate", log, os.Getenv)
	if err != nil || deps.RulesErr != nil {
		t.Fatal(err, deps.RulesErr)
	}
	h := sandboxtest.ReplicateHandler(deps, eventhandler.Config{Log: log})
	replicate := func(repo string, enc *ecrtypes.EncryptionConfiguration) eventhandler.Report {
		t.Helper()
		w.Source.CreateRepository(t, ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo), EncryptionConfiguration: enc})
		img, _ := random.Image(512, 1)
		d := w.Source.Push(t, repo, "v1", img).String()
		out, err := h.Handle(ctx, json.RawMessage(sandboxtest.ImageEvent("e-"+repo, "PUSH", repo, d, "v1")))
		if err != nil {
			t.Fatal(err)
		}
		return out.(eventhandler.Summary).Results[0]
	}
	encryption := func(repo string) ecrtypes.EncryptionConfiguration {
		t.Helper()
		out, err := ecr.NewFromConfig(w.Dest.Config).DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{repo}})
		if err != nil {
			t.Fatal(err)
		}
		return *out.Repositories[0].EncryptionConfiguration
	}

	mark := w.SB.AccessLogMark()
	if o := replicate("team-a/granted", nil); o.Outcome != "copied" {
		t.Fatalf("kmsKey the role grants: %+v", o)
	}
	if e := encryption("mirror/team-a/granted"); e.EncryptionType != ecrtypes.EncryptionTypeKms || aws.ToString(e.KmsKey) != key {
		t.Errorf("created with %s %s, want KMS %s", e.EncryptionType, aws.ToString(e.KmsKey), key)
	}
	if d := sandboxtest.Denials(w.SB, mark); len(d) > 0 {
		t.Fatalf("denied with the granted key: %+v", d)
	}

	o := replicate("team-a/other", nil)
	if o.Outcome != "failed" || o.Code != "KmsException" || o.Retryable || !strings.Contains(o.Error, "kms:") {
		t.Fatalf("a key the role does not grant: %+v; want a permanent KmsException", o)
	}

	kms := &ecrtypes.EncryptionConfiguration{EncryptionType: ecrtypes.EncryptionTypeKms}
	if o := replicate("team-a/mirrored", kms); o.Outcome != "copied" {
		t.Fatalf("mirrored KMS encryption: %+v", o)
	}
	if e := encryption("mirror/team-a/mirrored"); e.EncryptionType != ecrtypes.EncryptionTypeKms || !strings.HasSuffix(aws.ToString(e.KmsKey), ":alias/aws/ecr") {
		t.Errorf("mirrored: created with %s %s, want KMS with the AWS managed key", e.EncryptionType, aws.ToString(e.KmsKey))
	}
}
