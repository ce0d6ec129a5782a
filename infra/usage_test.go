package infra

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/signing"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// eventSourceMappingActions are granted to the function role for Lambda's SQS event
// source mapping, which polls the queue on the function's behalf: our code never calls them.
// https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html#events-sqs-permissions
// The logs actions are Lambda's too: it writes the function's output to its log group
// (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html); the
// sandbox has no CloudWatch Logs.
var eventSourceMappingActions = map[string]bool{
	"sqs:ReceiveMessage": true, "sqs:DeleteMessage": true, "sqs:GetQueueAttributes": true, "sqs:ChangeMessageVisibility": true,
	"logs:CreateLogStream": true, "logs:PutLogEvents": true,
}

// TestPoliciesGrantOnlyWhatTheCodeUses deploys both templates with every feature on
// (repository creation with mirrored lifecycle policy and tags and a customer managed KMS
// key, delete mirroring, result events, promotion gates — a scan read, a signature
// verified with a KMS key's public key, a held copy's re-check sent to the copy queue —,
// enqueue and inline backfill, a reconcile run),
// runs the replicate, backfill and reconcile handlers as the deployed roles, and compares
// what the access log shows them doing with what the policies grant: nothing used is
// denied, and nothing granted goes unused.
func TestPoliciesGrantOnlyWhatTheCodeUses(t *testing.T) {
	busARN := fmt.Sprintf("arn:aws:events:%s:%s:event-bus/results", sandbox.DefaultRegion, sandbox.SourceAccount)
	params := map[string]any{
		"DestinationAccountId": sandbox.DestinationAccount, "DestinationRegion": sandbox.DefaultRegion,
		"ExternalId": sandboxtest.ExternalID, "DestinationRepositoryPrefix": "mirror/", "CreateRepositories": "true",
		"MirrorDeletes": "true", "ResultEventBus": busARN, "PromotionGates": "true",
		"SigningKeyArns": signingKeyARN,
	}
	// The destinations' repositories are created encrypted with a customer managed key,
	// which the destination stack grants (KmsKeyArns).
	kmsKey := fmt.Sprintf("arn:aws:kms:%s:%s:key/1234abcd-12ab-34cd-56ef-1234567890ab", sandbox.DefaultRegion, sandbox.DestinationAccount)
	// They mirror the source repository's tag "team" (MirroredTagKeys).
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, params, map[string]any{"KmsKeyArns": kmsKey, "MirroredTagKeys": "team"}))
	signer := signing.NewKey(t)
	w.SB.PutKMSPublicKey(sandbox.SourceAccount, sandbox.DefaultRegion, "1234abcd-12ab-34cd-56ef-1234567890ab", "ECC_NIST_P256", signer.PublicDER(t))
	ctx := w.Ctx
	// The stack's queues, with their policies: the functions' sends must pass them.
	queues := w.DeployQueues(t, params)
	// A promotion gate (docs/PROMOTION.md) on team-b: its scan is read, its signature
	// verified with a KMS key's public key.
	rules := fmt.Sprintf(`{"rules":[{"name":"all","repositories":["team-a/**"],"mirrorDeletes":true,"destinations":[{"accountId":%[1]q,"region":%[2]q,"roleArn":%[3]q,"externalId":%[4]q,"repositoryPrefix":"mirror/","mirrorLifecyclePolicy":true,"mirrorRepositoryTags":true,"kmsKey":%[5]q}]},
	  {"name":"gated","repositories":["team-b/**"],"require":{"scan":{"severity":"CRITICAL"},"signatures":{"signers":[{"kmsKey":%[6]q}]}},"destinations":[{"accountId":%[1]q,"region":%[2]q,"roleArn":%[3]q,"externalId":%[4]q,"repositoryPrefix":"mirror/"}]}]}`,
		sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), sandboxtest.ExternalID, kmsKey, signingKeyARN)
	for k, v := range w.FunctionEnv(t) {
		t.Setenv(k, v)
	}
	rq, cq := aws.String(queues["ReconcileQueue"]), aws.String(queues["CopyQueue"])
	t.Setenv("REPLICATION_RULES", rules)
	t.Setenv(wiring.EnvQueueURL, queues["ReplicationQueue"])
	t.Setenv(wiring.EnvReconcileQueueURL, *rq)
	t.Setenv(wiring.EnvCopyQueueURL, *cq)

	// The source: a repository with a lifecycle policy and tags, two images.
	w.Source.CreateRepository(t, ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app"), Tags: []ecrtypes.Tag{{Key: aws.String("team"), Value: aws.String("a")}}})
	if _, err := ecr.NewFromConfig(w.Source.Config).PutLifecyclePolicy(ctx, &ecr.PutLifecyclePolicyInput{RepositoryName: aws.String("team-a/app"),
		LifecyclePolicyText: aws.String(`{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}}]}`)}); err != nil {
		t.Fatal(err)
	}
	img1, _ := random.Image(512, 2)
	d1 := w.Source.Push(t, "team-a/app", "v1", img1)
	w.Source.CreateRepository(t, ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/old")})
	img2, _ := random.Image(512, 2)
	w.Source.Push(t, "team-a/old", "v0", img2)
	// The same image in another repository, into a destination registry that mounts blobs:
	// its layers are mounted from the first replica (ecr:GetAccountSetting,
	// ecr:GetDownloadUrlForLayer on the replica).
	w.Source.CreateRepository(t, ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/twin")})
	w.Source.Push(t, "team-a/twin", "v0", img2)
	if _, err := ecr.NewFromConfig(w.Dest.Config).PutAccountSetting(ctx, &ecr.PutAccountSettingInput{Name: aws.String("BLOB_MOUNTING"), Value: aws.String("ENABLED")}); err != nil {
		t.Fatal(err)
	}
	// Enough tags of one repository that the engine lists the destination's tags once
	// (ecr:ListImages) instead of asking tag by tag: a denial there would be swallowed
	// (the engine falls back to HEADs), so only this test can see it.
	w.Source.CreateRepository(t, ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/many")})
	img3, _ := random.Image(256, 1)
	for i := range 16 {
		w.Source.Push(t, "team-a/many", fmt.Sprintf("v%d", i), img3)
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	deps, err := wiring.Load(ctx, "replicate", log, os.Getenv)
	if err != nil || deps.RulesErr != nil {
		t.Fatal(err, deps.RulesErr)
	}
	handler := sandboxtest.ReplicateHandler(deps, eventhandler.Config{
		Log: log, EMF: io.Discard, Namespace: "test", Events: eventbridge.NewFromConfig(deps.AWS), EventBus: busARN,
	})
	mark := w.SB.AccessLogMark()
	invoke := func(action, repo, digest, tag string) {
		t.Helper()
		ev := json.RawMessage(sandboxtest.ImageEvent("e-"+action+repo+tag, action, repo, digest, tag))
		out, err := handler.Handle(ctx, ev)
		if err != nil {
			t.Fatalf("%s %s: %v", action, tag, err)
		}
		if b, _ := json.Marshal(out); strings.Contains(string(b), `"failed"`) && !strings.Contains(string(b), `"failed":0`) {
			t.Fatalf("%s %s: %s", action, tag, b)
		}
	}
	invoke("PUSH", "team-a/app", d1.String(), "v1")
	if _, err := ecr.NewFromConfig(w.Source.Config).BatchDeleteImage(ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String("team-a/app"), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("v1")}}}); err != nil {
		t.Fatal(err)
	}
	invoke("DELETE", "team-a/app", d1.String(), "v1")

	// The gated repository: a signed image scanned clean is copied; an unsigned one is
	// held, its re-check sent to the copy queue (ReplicatorRole, under CopyQueuePolicy).
	w.Source.CreateRepository(t, ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-b/app")})
	rb := signing.NewRepo(t, w.Source.Host, "team-b/app", w.Source.Auth)
	for _, tag := range []string{"signed", "unsigned"} {
		img, _ := random.Image(256, 1)
		d := w.Source.Push(t, "team-b/app", tag, img)
		if tag == "signed" {
			signer.Cosign(t, rb, rb.Subject(t, d.String()), signing.Options{})
		}
		if err := w.SB.SetImageScan(sandbox.SourceAccount, sandbox.DefaultRegion, "team-b/app", d.String(), sandbox.ScanResult{}); err != nil {
			t.Fatal(err)
		}
		invoke("PUSH", "team-b/app", d.String(), tag)
		if got := w.Dest.Digest(t, "mirror/team-b/app", tag); (got == d.String()) != (tag == "signed") {
			t.Fatalf("gated image %s: destination has %q", tag, got)
		}
	}
	if n := queueDepth(t, w, queues["CopyQueue"]); n != 1 {
		t.Fatalf("the held copy's re-check: %d messages in the copy queue, want 1", n)
	}

	// A tag longer than the registry API takes goes through the ECR API on both sides
	// (BatchGetImage, PutImage); once the source image is archived, a late event for it
	// asks the source's ECR API what its 404 means (DescribeImages) instead of deleting.
	srcAPI := ecr.NewFromConfig(w.Source.Config)
	img4, _ := random.Image(256, 1)
	d4 := w.Source.Push(t, "team-a/app", "", img4)
	raw4, _ := img4.RawManifest()
	mt4, _ := img4.MediaType()
	long := "release-" + strings.Repeat("x", 192)
	if _, err := srcAPI.PutImage(ctx, &ecr.PutImageInput{RepositoryName: aws.String("team-a/app"), ImageManifest: aws.String(string(raw4)),
		ImageManifestMediaType: aws.String(string(mt4)), ImageTag: aws.String(long)}); err != nil {
		t.Fatal(err)
	}
	invoke("PUSH", "team-a/app", d4.String(), long)
	if _, err := srcAPI.UpdateImageStorageClass(ctx, &ecr.UpdateImageStorageClassInput{RepositoryName: aws.String("team-a/app"),
		ImageId: &ecrtypes.ImageIdentifier{ImageDigest: aws.String(d4.String())}, TargetStorageClass: ecrtypes.TargetStorageClassArchive}); err != nil {
		t.Fatal(err)
	}
	invoke("PUSH", "team-a/app", d4.String(), long)
	if got, err := ecr.NewFromConfig(w.Dest.Config).BatchGetImage(ctx, &ecr.BatchGetImageInput{RepositoryName: aws.String("mirror/team-a/app"),
		ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String(long)}}}); err != nil || len(got.Images) != 1 {
		t.Fatalf("the long tag is not at the destination (or was deleted when its source image was archived): %+v %v", got, err)
	}

	bdeps, err := wiring.Load(ctx, "backfill", log, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	bf := sandboxtest.BackfillFunction(bdeps, nil)
	for _, req := range []string{`{"dryRun":true}`, `{"mode":"enqueue"}`, `{"mode":"inline"}`} {
		if _, err := bf.Handle(ctx, json.RawMessage(req)); err != nil {
			t.Fatalf("backfill %s: %v", req, err)
		}
	}
	// A reconcile run, as ReconcilerRole: the trigger, then the reconcile function takes
	// its items and the replicate function the copies they sent, as the queues' event
	// source mappings would hand them over.
	reconciler := reconcilerAs(t, w, log)
	if _, err := reconciler.Handle(ctx, json.RawMessage(`{}`)); err != nil {
		t.Fatalf("reconcile trigger: %v", err)
	}
	handlers := map[*string]interface {
		Handle(context.Context, json.RawMessage) (any, error)
	}{rq: reconciler, cq: handler}
	for i := range 10 {
		q := []*string{rq, cq}[i%2]
		out, err := sqs.NewFromConfig(w.Source.Config).ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q, MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			continue
		}
		var recs []sandboxtest.SQSMessage
		for _, m := range out.Messages {
			recs = append(recs, sandboxtest.SQSMessage{ID: aws.ToString(m.MessageId), Body: aws.ToString(m.Body)})
		}
		resp, err := handlers[q].Handle(ctx, sandboxtest.SQSBatch(1, recs...))
		if b, _ := json.Marshal(resp); err != nil || !strings.Contains(string(b), `"batchItemFailures":[]`) {
			t.Fatalf("queued items: %s %v", b, err)
		}
		for _, m := range out.Messages {
			if _, err := sqs.NewFromConfig(w.Source.Config).DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: q, ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := w.Dest.Digest(t, "mirror/team-a/old", "v0"); got == "" {
		t.Fatal("the backfill did not copy team-a/old:v0")
	}
	if got := w.Dest.Digest(t, "mirror/team-a/many", "v15"); got == "" {
		t.Fatal("the backfill did not copy team-a/many:v15")
	}
	listed, mounted := false, false
	for _, e := range w.SB.AccessLogSince(mark) {
		if e.Account == sandbox.DestinationAccount && e.Action == "ecr:ListImages" && e.Service == "registry" {
			listed = true
		}
		mounted = mounted || (e.Account == sandbox.DestinationAccount && e.Mounted)
	}
	if !listed {
		t.Error("the engine never listed destination tags: the scenario no longer covers ecr:ListImages")
	}
	if !mounted {
		t.Error("the engine never mounted a blob: the scenario no longer covers blob mounting (ecr:GetDownloadUrlForLayer)")
	}

	for _, e := range sandboxtest.Denials(w.SB, mark) {
		t.Errorf("denied under the deployed policies: %s %s by %s: %s", e.Action, e.Repository, e.Principal, e.ErrorCode)
	}
	used := map[string]map[string]bool{sandboxtest.FunctionRole: {}, sandboxtest.ReconcilerRole: {}, sandbox.DestinationRole: {}}
	for _, e := range w.SB.AccessLogSince(mark) {
		// The reconcile's sessions of the destination role only list.
		if strings.Contains(e.Principal, ":assumed-role/"+sandbox.DestinationRole+"/ecr-replicator-reconcile-") &&
			e.Action != "ecr:DescribeImages" && e.Action != "ecr:DescribeRepositories" {
			t.Errorf("the reconcile's destination session did %s %s", e.Action, e.Repository)
		}
		for role := range used {
			// Authorized is what counts: a HEAD answered 404 still needed its action.
			if strings.Contains(e.Principal, ":assumed-role/"+role+"/") && e.Action != "" && !denied(e) {
				used[role][e.Action] = true
				for _, a := range e.AlsoAuthorized {
					used[role][a] = true
				}
			}
		}
	}
	for role, account := range map[string]string{sandboxtest.FunctionRole: sandbox.SourceAccount, sandboxtest.ReconcilerRole: sandbox.SourceAccount, sandbox.DestinationRole: sandbox.DestinationAccount} {
		var unused []string
		for _, p := range w.SB.RolePolicies(account, role) {
			for _, st := range p.Statement {
				if st.Effect == "Deny" {
					continue // grants nothing (the destination role's region pin)
				}
				for _, a := range st.Action {
					consumer := role == sandboxtest.FunctionRole || role == sandboxtest.ReconcilerRole
					if !used[role][a] && !(consumer && eventSourceMappingActions[a]) && !unusedByDesign[a] {
						unused = append(unused, a)
					}
				}
			}
		}
		sort.Strings(unused)
		if len(unused) > 0 {
			t.Errorf("%s grants actions the code never used: %v (used: %v)", role, unused, keys(used[role]))
		}
	}
	// The list-only session the reconcile asks for cannot write, whatever the role allows.
	listOnly, err := ecraccess.NewResolver(deps.AWS).Client(ctx, ecraccess.Access{AccountID: sandbox.DestinationAccount,
		Region: sandbox.DefaultRegion, RoleARN: w.DestinationRoleARN(), ExternalID: sandboxtest.ExternalID, ListOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = listOnly.API().PutImage(ctx, &ecr.PutImageInput{RepositoryName: aws.String("mirror/team-a/app"), ImageManifest: aws.String("{}"), ImageTag: aws.String("x")})
	if code := ecraccess.ErrorCode(err); code != ecraccess.CodeAccessDeniedException {
		t.Errorf("a list-only session's PutImage answered %v, want %s", err, ecraccess.CodeAccessDeniedException)
	}
}

func denied(e sandbox.Entry) bool {
	return strings.HasPrefix(e.ErrorCode, "AccessDenied") || (e.ErrorCode == "DENIED" && e.Status == 403) || e.DeniedAction != ""
}

// signingKeyARN is the KMS key whose public key verifies team-b's signatures.
var signingKeyARN = fmt.Sprintf("arn:aws:kms:%s:%s:key/1234abcd-12ab-34cd-56ef-1234567890ab", sandbox.DefaultRegion, sandbox.SourceAccount)

// queueDepth counts the messages in a queue, visible, in flight or delayed.
func queueDepth(t *testing.T, w *sandboxtest.World, url string) int {
	t.Helper()
	out, err := sqs.NewFromConfig(w.Source.Config).GetQueueAttributes(w.Ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range out.Attributes {
		c, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		n += c
	}
	return n
}

// unusedByDesign are granted for paths this run does not take.
var unusedByDesign = map[string]bool{}

// reconcilerAs builds the reconcile function as it runs deployed: as ReconcilerRole, with
// the process's environment (rules, queues).
func reconcilerAs(t *testing.T, w *sandboxtest.World, log *slog.Logger) interface {
	Handle(context.Context, json.RawMessage) (any, error)
} {
	t.Helper()
	cr, err := sandboxtest.RoleSession(w.Ctx, w.SB, sandboxtest.ReconcilerRole, "ecr-replicator-reconciler")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadDefaultConfig(w.Ctx, config.WithCredentialsProvider(credentials.StaticCredentialsProvider{Value: cr}))
	if err != nil {
		t.Fatal(err)
	}
	return wiring.New(w.Ctx, cfg, "reconcile", log, os.Getenv).Reconciler(os.Getenv, io.Discard)
}
