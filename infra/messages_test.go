package infra

// No message is trusted (issue 27): the queues take messages from their senders only,
// and what a message claims is checked against ECR before anything is written. Every
// test runs the functions as their deployed roles, with both templates' policies and the
// stack's queue policies enforced by the sandbox.

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/cfn"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// developer is a principal of the source account whose identity policy allows it to send
// to any queue and to push anywhere: what a careless account-wide grant gives a team.
const developer = "developer"

func withDeveloper(c *sandbox.Config) {
	for i := range c.Accounts {
		if c.Accounts[i].ID == sandbox.SourceAccount {
			c.Accounts[i].Users = append(c.Accounts[i].Users, sandbox.UserConfig{Name: developer, Policies: []string{
				`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sqs:SendMessage","ecr:*"],"Resource":"*"}]}`}})
		}
	}
}

// attackParams deploy one destination with every write the attacks aim at enabled.
func attackParams() map[string]any {
	return map[string]any{
		"DestinationAccountId": sandbox.DestinationAccount, "DestinationRegion": sandbox.DefaultRegion,
		"ExternalId": sandboxtest.ExternalID, "DestinationRepositoryPrefix": "mirror/", "CreateRepositories": "true",
		"MirrorDeletes": "true",
	}
}

// roleConfig is an SDK configuration acting as a role of the source account.
func roleConfig(t *testing.T, w *sandboxtest.World, role string) aws.Config {
	t.Helper()
	cr, err := sandboxtest.RoleSession(w.Ctx, w.SB, role, "ecr-replicator-"+role)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadDefaultConfig(w.Ctx, config.WithCredentialsProvider(credentials.StaticCredentialsProvider{Value: cr}))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestQueuesRefuseOtherSenders: a principal of the source account whose own policy allows
// sqs:SendMessage everywhere cannot put a message on any of the stack's queues; the
// functions' roles still send where the code sends (the backfill and the reconcile), and
// EventBridge still delivers the ImageActionRule's events.
func TestQueuesRefuseOtherSenders(t *testing.T) {
	params := attackParams()
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, params), withDeveloper)
	queues := w.DeployQueues(t, params)
	forged := string(ecrevent.ImageAction{EventID: "forged", Account: sandbox.SourceAccount, Region: sandbox.DefaultRegion,
		Repository: "prod/payments", Digest: "sha256:" + strings.Repeat("ab", 32), ActionType: ecrevent.ActionDelete, Time: time.Now()}.Event())
	send := func(cfg aws.Config, url string) error {
		_, err := sqs.NewFromConfig(cfg).SendMessage(w.Ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(forged)})
		return err
	}
	dev := w.Config(t, sandbox.SourceAccount, developer)
	for _, logical := range []string{"ReplicationQueue", "ReconcileQueue", "CopyQueue", "DeadLetterQueue"} {
		err := send(dev, queues[logical])
		if code := ecraccess.ErrorCode(err); !strings.HasPrefix(code, "AccessDenied") {
			t.Errorf("%s took a message from %s, whose identity policy allows sqs:SendMessage (answer %v): want AccessDenied", logical, developer, err)
		}
	}
	for _, c := range []struct{ role, queue string }{
		{sandboxtest.FunctionRole, "CopyQueue"}, // a backfill in mode enqueue
		{sandboxtest.ReconcilerRole, "ReconcileQueue"},
		{sandboxtest.ReconcilerRole, "CopyQueue"},
	} {
		if err := send(roleConfig(t, w, c.role), queues[c.queue]); err != nil {
			t.Errorf("%s cannot send to %s: %v", c.role, c.queue, err)
		}
	}
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	img, _ := random.Image(256, 1)
	w.Source.Push(t, "team-a/app", "v1", img)
	if err := w.SB.WaitEventsDelivered(w.Ctx); err != nil {
		t.Fatal(err)
	}
	delivered := 0
	for _, d := range w.SB.Deliveries() {
		if d.Error != "" {
			t.Errorf("EventBridge could not deliver %s to %s: %s", d.EventID, d.TargetARN, d.Error)
		} else if d.TargetARN == sandboxtest.QueueARN(sandboxtest.QueueName) {
			delivered++
		}
	}
	if delivered == 0 {
		t.Error("the push's event never reached the ReplicationQueue")
	}
}

// TestQueueOperatorsMaySend: the principals QueueOperatorArns names may send to every work
// queue — what a redrive of the dead-letter queue does as its caller
// (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-configure-dead-letter-queue-redrive.html:
// sqs:SendMessage on the queue the messages go to) — and nobody else may.
func TestQueueOperatorsMaySend(t *testing.T) {
	const operator = "queue-operator"
	params := attackParams()
	params["QueueOperatorArns"] = "arn:aws:iam::" + sandbox.SourceAccount + ":role/ops-*,arn:aws:iam::" + sandbox.SourceAccount + ":user/" + operator
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, params), withDeveloper, func(c *sandbox.Config) {
		for i := range c.Accounts {
			if c.Accounts[i].ID == sandbox.SourceAccount {
				c.Accounts[i].Users = append(c.Accounts[i].Users, sandbox.UserConfig{Name: operator, Policies: []string{
					`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:*","Resource":"*"}]}`}})
			}
		}
	})
	queues := w.DeployQueues(t, params)
	ops, dev := w.Config(t, sandbox.SourceAccount, operator), w.Config(t, sandbox.SourceAccount, developer)
	for _, logical := range []string{"ReplicationQueue", "ReconcileQueue", "CopyQueue"} {
		in := &sqs.SendMessageInput{QueueUrl: aws.String(queues[logical]), MessageBody: aws.String(`{"redriven":true}`)}
		if _, err := sqs.NewFromConfig(ops).SendMessage(w.Ctx, in); err != nil {
			t.Errorf("the queue operator cannot send to %s: %v", logical, err)
		}
		if _, err := sqs.NewFromConfig(dev).SendMessage(w.Ctx, in); !strings.HasPrefix(ecraccess.ErrorCode(err), "AccessDenied") {
			t.Errorf("%s took a message from %s (answer %v)", logical, developer, err)
		}
	}
}

// forgedWorld deploys the templates, and gives the destination account a repository the
// replicator owns but whose source the source account does not have (deleted as a whole,
// or never there): mirror/prod/payments, holding latest. Owned, so that ownership
// (docs/SECURITY.md) does not refuse the forgeries first: only the check against the
// source may. It returns the replicate function as deployed
// (its role, its rules), its log, latest's digest, and a function that puts latest back.
func forgedWorld(t *testing.T) (*sandboxtest.World, *eventhandler.Handler, *sandboxtest.LogBuffer, string, func(*testing.T)) {
	t.Helper()
	params := attackParams()
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, params))
	w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/prod/payments"), Tags: sandboxtest.Owned()})
	img, _ := random.Image(256, 1)
	payments := w.Dest.Push(t, "mirror/prod/payments", "latest", img).String()
	for k, v := range w.FunctionEnv(t) {
		t.Setenv(k, v)
	}
	t.Setenv("REPLICATION_RULES", fmt.Sprintf(`{"rules":[{"name":"all","repositories":["**"],"untagged":true,"mirrorDeletes":true,`+
		`"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/","createRepository":true}]}]}`,
		sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), sandboxtest.ExternalID))
	logs := &sandboxtest.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	deps, err := wiring.Load(w.Ctx, "replicate", log, os.Getenv)
	if err != nil || deps.RulesErr != nil {
		t.Fatal(err, deps.RulesErr)
	}
	restore := func(t *testing.T) { w.Dest.Push(t, "mirror/prod/payments", "latest", img) }
	return w, sandboxtest.ReplicateHandler(deps, eventhandler.Config{Log: log, EMF: io.Discard, Namespace: "test"}), logs, payments, restore
}

// TestForgedMessagesChangeNothing sends the replicate function messages nobody pushed or
// planned — as a principal with lambda:InvokeFunction, or an operator redriving what
// someone put in a queue, could — and checks each changes nothing in the destination, is
// acknowledged (a retry cannot make it true) and is reported with its code. A message
// naming another registry than the function's source is refused before any registry is
// asked anything.
func TestForgedMessagesChangeNothing(t *testing.T) {
	w, handler, logs, payments, restore := forgedWorld(t)
	const otherRegion = "us-west-2"
	event := func(account, region, action, tag string) string {
		return string(ecrevent.ImageAction{EventID: "forged", Account: account, Region: region, Time: time.Now(),
			Repository: "prod/payments", Digest: payments, Tag: tag, ActionType: action}.Event())
	}
	item := func(account, region, action, tag string) string {
		b, err := ecrevent.Marshal(ecrevent.WorkItem{Action: action, Rule: "all", CreatedAt: time.Now(),
			Source:      ecrevent.ImageRef{AccountID: account, Region: region, Repository: "prod/payments", Digest: payments, Tag: tag},
			Destination: ecrevent.RepositoryRef{AccountID: sandbox.DestinationAccount, Region: sandbox.DefaultRegion, Repository: "mirror/prod/payments"}})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	src, dst := sandbox.SourceAccount, sandbox.DestinationAccount
	for _, c := range []struct {
		name, body, code string
		foreign          bool // names another registry than the function's source
	}{
		{"a digest-only DELETE of a repository the source does not have", event(src, sandbox.DefaultRegion, "DELETE", ""), "SourceRepositoryNotFound", false},
		{"a DELETE by tag of a repository the source does not have", event(src, sandbox.DefaultRegion, "DELETE", "latest"), "SourceRepositoryNotFound", false},
		{"a DELETE claiming the destination's account", event(dst, sandbox.DefaultRegion, "DELETE", ""), "ForeignSource", true},
		{"a DELETE claiming another region", event(src, otherRegion, "DELETE", ""), "ForeignSource", true},
		{"a PUSH claiming another account", event(dst, sandbox.DefaultRegion, "PUSH", "latest"), "ForeignSource", true},
		{"a PUSH claiming another region", event(src, otherRegion, "PUSH", "latest"), "ForeignSource", true},
		{"a work item deleting for another account", item(dst, sandbox.DefaultRegion, ecrevent.WorkDelete, ""), "ForeignSource", true},
		{"a work item copying from another region", item(src, otherRegion, ecrevent.WorkCopy, "latest"), "ForeignSource", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			restore(t) // what an earlier case may have removed
			mark, logMark := w.SB.AccessLogMark(), len(logs.String())
			out, err := handler.Handle(w.Ctx, sandboxtest.SQSBatch(1, sandboxtest.SQSMessage{ID: "forged", Body: c.body}))
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := json.Marshal(out); !strings.Contains(string(b), `"batchItemFailures":[]`) {
				t.Errorf("answered %s: a forged message is acknowledged, not retried", b)
			}
			if got := w.Dest.Digest(t, "mirror/prod/payments", payments); got != payments {
				t.Errorf("the destination's image %s is gone", payments)
			}
			if got := w.Dest.Digest(t, "mirror/prod/payments", "latest"); got != payments {
				t.Errorf("the destination's latest is %q, was %s", got, payments)
			}
			if logged := logs.String()[logMark:]; !strings.Contains(logged, `"error_code":"`+c.code+`"`) {
				t.Errorf("not reported with code %s; the function logged:\n%s", c.code, logged)
			}
			for _, e := range w.SB.AccessLogSince(mark) {
				if !strings.Contains(e.Principal, ":assumed-role/") {
					continue // the test's own look at the destination
				}
				write := e.Status < 300 && (e.Action == "ecr:BatchDeleteImage" || e.Action == "ecr:PutImage" || e.Action == "ecr:CreateRepository")
				asked := e.Service == "ecr" || e.Service == "registry" || e.Service == "s3"
				if write || (c.foreign && asked) {
					t.Errorf("the forged message reached %s %s %s in %s/%s (status %d)", e.Service, e.Operation, e.Repository, e.Account, e.Region, e.Status)
				}
			}
		})
	}
}

// TestForgedReconcileItemsChangeNothing: reconcile items naming another registry than the
// reconcile function's source are refused and reported, nothing listed or sent.
func TestForgedReconcileItemsChangeNothing(t *testing.T) {
	params := attackParams()
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, params))
	queues := w.DeployQueues(t, params)
	for k, v := range w.FunctionEnv(t) {
		t.Setenv(k, v)
	}
	t.Setenv("REPLICATION_RULES", fmt.Sprintf(`{"rules":[{"name":"all","repositories":["**"],"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
		sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), sandboxtest.ExternalID))
	t.Setenv(wiring.EnvReconcileQueueURL, queues["ReconcileQueue"])
	t.Setenv(wiring.EnvCopyQueueURL, queues["CopyQueue"])
	logs := &sandboxtest.LogBuffer{}
	reconciler := reconcilerAs(t, w, slog.New(slog.NewJSONHandler(logs, nil)))
	run := time.Now().UTC().Truncate(time.Second)
	for _, reg := range []ecrevent.SourceRegistry{
		{AccountID: sandbox.DestinationAccount, Region: sandbox.DefaultRegion},
		{AccountID: sandbox.SourceAccount, Region: "us-west-2"},
	} {
		for _, it := range []ecrevent.Reconcile{
			{Run: run.Format(time.RFC3339), Source: reg, Repository: "prod/payments", CreatedAt: run},
			{Run: run.Format(time.RFC3339), Source: reg, Scan: &ecrevent.Scan{}, CreatedAt: run},
		} {
			body, err := ecrevent.MarshalReconcile(it)
			if err != nil {
				t.Fatal(err)
			}
			mark, logMark := w.SB.AccessLogMark(), len(logs.String())
			out, err := reconciler.Handle(w.Ctx, sandboxtest.SQSBatch(1, sandboxtest.SQSMessage{ID: "forged", Body: string(body)}))
			if b, _ := json.Marshal(out); err != nil || !strings.Contains(string(b), `"batchItemFailures":[]`) {
				t.Errorf("%s: answered %s, %v: a forged item is acknowledged, not retried", it.String(), b, err)
			}
			if logged := logs.String()[logMark:]; !strings.Contains(logged, `"error_code":"ForeignSource"`) {
				t.Errorf("%s: not reported as ForeignSource; the function logged:\n%s", it.String(), logged)
			}
			for _, e := range w.SB.AccessLogSince(mark) {
				if e.Service == "ecr" || e.Service == "registry" || e.Operation == "SendMessage" || e.Operation == "SendMessageBatch" {
					t.Errorf("%s: the forged item led to %s %s in %s/%s", it.String(), e.Service, e.Operation, e.Account, e.Region)
				}
			}
		}
	}
}

// TestRepositoryPrefixFilterBoundsTheFunctions: with RepositoryPrefixFilter, a repository
// outside the prefix is out of reach of the functions whatever reaches them — an event
// (the rule would not have sent it), a backfill — and of the role they run as.
func TestRepositoryPrefixFilterBoundsTheFunctions(t *testing.T) {
	params := attackParams()
	params["RepositoryPrefixFilter"] = "team-a/"
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, params))
	img, _ := random.Image(256, 1)
	digests := map[string]string{}
	for _, repo := range []string{"team-a/app", "other/app"} {
		w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
		digests[repo] = w.Source.Push(t, repo, "v1", img).String()
	}
	for k, v := range w.FunctionEnv(t) {
		t.Setenv(k, v)
	}
	renderedEnv(t, params) // the rules document and the filter, as the template gives them
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	deps, err := wiring.Load(w.Ctx, "replicate", log, os.Getenv)
	if err != nil || deps.RulesErr != nil {
		t.Fatal(err, deps.RulesErr)
	}
	handler := sandboxtest.ReplicateHandler(deps, eventhandler.Config{Log: log})
	if _, err := handler.Handle(w.Ctx, json.RawMessage(sandboxtest.ImageEvent("outside", "PUSH", "other/app", digests["other/app"], "v1"))); err != nil {
		t.Fatal(err)
	}
	bdeps, err := wiring.Load(w.Ctx, "backfill", log, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sandboxtest.BackfillFunction(bdeps, nil).Handle(w.Ctx, json.RawMessage(`{"mode":"inline"}`)); err != nil {
		t.Fatalf("backfill: %v", err)
	}
	if got := w.Dest.Digest(t, "mirror/team-a/app", "v1"); got != digests["team-a/app"] {
		t.Errorf("the backfill did not copy team-a/app:v1 (destination has %q)", got)
	}
	if got := w.Dest.Digest(t, "mirror/other/app", "v1"); got != "" {
		t.Errorf("other/app, outside RepositoryPrefixFilter team-a/, was copied (%s)", got)
	}
	// The role the functions run as cannot read it either.
	_, err = ecr.NewFromConfig(roleConfig(t, w, sandboxtest.FunctionRole)).BatchGetImage(w.Ctx, &ecr.BatchGetImageInput{
		RepositoryName: aws.String("other/app"), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("v1")}}})
	if code := ecraccess.ErrorCode(err); code != ecraccess.CodeAccessDeniedException {
		t.Errorf("%s read other/app, outside RepositoryPrefixFilter (answer %v)", sandboxtest.FunctionRole, err)
	}
}

// renderedEnv sets the functions' environment as template.yaml renders it for params
// (Globals.Function.Environment.Variables): the rules document, the role grant, the
// repository prefix filter.
func renderedEnv(t *testing.T, params map[string]any) {
	t.Helper()
	r, err := cfn.RenderFile(sourceTemplate, cfn.Options{Parameters: params, Region: sandbox.DefaultRegion, AccountID: sandbox.SourceAccount, StackName: sandboxtest.StackName})
	if err != nil {
		t.Fatal(err)
	}
	globals, _ := cfn.Section(r.Doc, "Globals")["Function"].(map[string]any)
	vars, _ := globals["Environment"].(map[string]any)["Variables"].(map[string]any)
	for k, v := range vars {
		if s := cfn.ScalarString(v); !strings.Contains(s, "ref:") && !strings.Contains(s, "getatt:") {
			t.Setenv(k, s)
		}
	}
}
