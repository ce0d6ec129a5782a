package reconcile_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/lambdatest"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

func TestMain(m *testing.M) { lambdatest.Main(m) }

// TestBootstrapUnderRIE runs the real reconcile bootstrap under the Runtime Interface
// Emulator as the deployed ReconcilerRole (template.yaml's policies enforced): the
// trigger starts a run, the scan item fans out, the repository item sends its copy to
// the copy queue — and nothing it does is denied.
func TestBootstrapUnderRIE(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bootstrap and the RIE")
	}
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, map[string]any{
		"DestinationAccountId": sandbox.DestinationAccount, "DestinationRegion": sandbox.DefaultRegion,
		"ExternalId": sandboxtest.ExternalID, "DestinationRepositoryPrefix": "mirror/",
	}))
	q := sqs.NewFromConfig(w.Source.Config)
	urls := map[string]string{}
	for _, name := range []string{sandboxtest.ReconcileQueueName, sandboxtest.CopyQueueName} {
		out, err := q.CreateQueue(w.Ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		urls[name] = aws.ToString(out.QueueUrl)
	}
	img, _ := random.Image(128, 1)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team/app")})
	w.Source.Push(t, "team/app", "v1", img)
	env := map[string]string{}
	for k, v := range w.Env {
		env[k] = v
	}
	env["RECONCILE_QUEUE_URL"], env["COPY_QUEUE_URL"] = urls[sandboxtest.ReconcileQueueName], urls[sandboxtest.CopyQueueName]
	env["REPLICATION_RULES"] = `{"rules":[{"name":"all","repositories":["team/**"],"destinations":[{"accountId":"` + sandbox.DestinationAccount +
		`","region":"` + sandbox.DefaultRegion + `","roleArn":"` + w.DestinationRoleARN() + `","externalId":"` + sandboxtest.ExternalID + `","repositoryPrefix":"mirror/"}]}]}`
	env = sandboxtest.RoleEnvFor(t, w.Ctx, w.SB, sandboxtest.ReconcilerRole, env)
	fn := lambdatest.Start(t, "github.com/ecr-replicator/ecr-replicator/functions/reconcile", env)

	out, err := fn.Invoke(w.Ctx, []byte(`{}`))
	if err != nil || !strings.Contains(string(out), `"run"`) {
		t.Fatalf("trigger: %s %v", out, err)
	}
	// The scan, then the repository item, as the event source mapping would deliver them.
	for step := range 2 {
		msgs, err := q.ReceiveMessage(w.Ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(urls[sandboxtest.ReconcileQueueName]), MaxNumberOfMessages: 10})
		if err != nil || len(msgs.Messages) != 1 {
			t.Fatalf("step %d: %d reconcile items, %v", step, len(msgs.Messages), err)
		}
		m := msgs.Messages[0]
		resp, err := fn.Invoke(w.Ctx, sandboxtest.SQSBatch(1, sandboxtest.SQSMessage{ID: aws.ToString(m.MessageId), Body: aws.ToString(m.Body)}))
		var r struct{ BatchItemFailures []any }
		if err != nil || json.Unmarshal(resp, &r) != nil || len(r.BatchItemFailures) != 0 {
			t.Fatalf("step %d: %s %v", step, resp, err)
		}
		if _, err := q.DeleteMessage(w.Ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(urls[sandboxtest.ReconcileQueueName]), ReceiptHandle: m.ReceiptHandle}); err != nil {
			t.Fatal(err)
		}
	}
	copies, err := w.SB.QueueMessages(sandbox.SourceAccount, sandbox.DefaultRegion, sandboxtest.CopyQueueName)
	if err != nil || len(copies) != 1 || !strings.Contains(copies[0].Body, `"repository":"mirror/team/app"`) {
		t.Fatalf("copy queue: %+v %v", copies, err)
	}
	for _, d := range sandboxtest.Denials(w.SB, 0) {
		t.Errorf("denied under the deployed policies: %s %s by %s", d.Action, d.Repository, d.Principal)
	}
	asReconciler := 0
	for _, e := range w.SB.AccessLog() {
		if strings.Contains(e.Principal, ":assumed-role/"+sandboxtest.ReconcilerRole+"/") {
			asReconciler++
		}
	}
	if asReconciler == 0 {
		t.Error("no request made as the reconciler role")
	}
}
