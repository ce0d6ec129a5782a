package sandbox_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// The destination role of these tests owns what it tagged: it creates a repository only
// with the owner tag, writes only into repositories carrying it, and only in a session
// tagged for writing, in us-east-1.
const ownerRolePolicy = `{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:DescribeRepositories","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"],"Resource":"*"},
  {"Effect":"Allow","Action":["ecr:CreateRepository","ecr:TagResource"],"Resource":"*",
   "Condition":{"StringEquals":{"aws:RequestTag/owner":"111111111111","aws:RequestedRegion":"us-east-1"},"ForAllValues:StringEquals":{"aws:TagKeys":["owner","note"]}}},
  {"Effect":"Allow","Action":["ecr:BatchCheckLayerAvailability","ecr:InitiateLayerUpload","ecr:UploadLayerPart","ecr:CompleteLayerUpload","ecr:PutImage"],"Resource":"*",
   "Condition":{"StringEquals":{"aws:ResourceTag/owner":"111111111111","aws:PrincipalTag/access":"write","aws:RequestedRegion":"us-east-1"}}},
  {"Effect":"Allow","Action":"ecr:PutLifecyclePolicy","Resource":"*","Condition":{"Null":{"aws:ResourceTag/owner":"false"}}}]}`

const ownerRoleTrust = `{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:user/writer"},"Action":["sts:AssumeRole","sts:TagSession"]},
  {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:user/reader"},"Action":"sts:AssumeRole"}]}`

func startConditions(t *testing.T) (*env, *sandbox.Sandbox) {
	t.Helper()
	assumeAny := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sts:AssumeRole","sts:TagSession"],"Resource":"*"},{"Effect":"Allow","Action":["sqs:*"],"Resource":"*"}]}`
	orgOnly := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*","Condition":{"StringEquals":{"aws:ResourceOrgID":"o-abc"}}}]}`
	cfg := sandbox.Config{Accounts: []sandbox.AccountConfig{
		{ID: sandbox.SourceAccount, OrgID: "o-abc", Users: []sandbox.UserConfig{{Name: "writer", Policies: []string{assumeAny}}, {Name: "reader", Policies: []string{assumeAny}}, {Name: "org", Policies: []string{orgOnly}}, {Name: sandbox.AdminUser}}},
		{ID: sandbox.DestinationAccount, OrgID: "o-abc", Users: []sandbox.UserConfig{{Name: sandbox.AdminUser}}, Roles: []sandbox.RoleConfig{{Name: "owner", Policies: []string{ownerRolePolicy}, TrustPolicy: ownerRoleTrust}}},
		{ID: "333333333333", Roles: []sandbox.RoleConfig{{Name: "owner", Policies: []string{ownerRolePolicy}, TrustPolicy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"111111111111"},"Action":"sts:AssumeRole"}]}`}}},
	}}
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	for _, svc := range []string{"ECR", "STS", "SQS", "EVENTBRIDGE"} {
		t.Setenv("AWS_ENDPOINT_URL_"+svc, sb.APIURL())
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return &env{sb: sb, ctx: ctx}, sb
}

func (e *env) assume(t *testing.T, user, account string, tags map[string]string) aws.Config {
	t.Helper()
	base := e.userConfig(t, sandbox.SourceAccount, user)
	c := base.Copy()
	c.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(base), sandbox.RoleARN(account, "owner"), func(o *stscreds.AssumeRoleOptions) {
		for k, v := range tags {
			o.Tags = append(o.Tags, ststypes.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
	}))
	return c
}

// TestTagConditions: aws:RequestTag on creation, aws:ResourceTag and aws:PrincipalTag on
// writes (API and registry alike), sts:TagSession for session tags, aws:ResourceOrgID.
func TestTagConditions(t *testing.T) {
	e, _ := startConditions(t)
	writer := e.assume(t, "writer", sandbox.DestinationAccount, map[string]string{"access": "write"})
	client := ecr.NewFromConfig(writer)
	owned := []ecrtypes.Tag{{Key: aws.String("owner"), Value: aws.String(sandbox.SourceAccount)}}
	if _, err := client.CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/app"), Tags: owned}); err != nil {
		t.Fatalf("CreateRepository with the owner tag: %v", err)
	}
	for name, tags := range map[string][]ecrtypes.Tag{
		"no tag":        nil,
		"another owner": {{Key: aws.String("owner"), Value: aws.String("999999999999")}},
		"an extra key":  {{Key: aws.String("owner"), Value: aws.String(sandbox.SourceAccount)}, {Key: aws.String("team"), Value: aws.String("x")}},
	} {
		_, err := client.CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/" + name[:2]), Tags: tags})
		if errorCode(err) != "AccessDeniedException" {
			t.Errorf("CreateRepository with %s: %v, want AccessDeniedException", name, err)
		}
	}
	// Another region is refused by aws:RequestedRegion.
	west := writer.Copy()
	west.Region = "us-west-2"
	if _, err := ecr.NewFromConfig(west).CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/app"), Tags: owned}); errorCode(err) != "AccessDeniedException" {
		t.Errorf("CreateRepository in us-west-2: %v", err)
	}
	admin := e.userConfig(t, sandbox.DestinationAccount, sandbox.AdminUser)
	createRepo(t, e.ctx, admin, "prod/payments", "")

	push := func(cfg aws.Config, repo string) error {
		img, err := random.Image(256, 1) // new each time: a push of what is there writes nothing
		if err != nil {
			t.Fatal(err)
		}
		host, auth := registryAuth(t, e.ctx, cfg)
		return remote.Write(ref(t, host, repo, "latest"), img, remote.WithAuth(auth), remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
	}
	if err := push(writer, "mirror/app"); err != nil {
		t.Fatalf("push into the owned repository: %v", err)
	}
	var terr *transport.Error
	if err := push(writer, "prod/payments"); !errors.As(err, &terr) || terr.StatusCode != http.StatusForbidden {
		t.Errorf("push into a repository without the owner tag: %v, want 403", err)
	}
	if _, err := client.PutImage(e.ctx, &ecr.PutImageInput{RepositoryName: aws.String("prod/payments"), ImageManifest: aws.String("{}"), ImageTag: aws.String("x")}); errorCode(err) != "AccessDeniedException" {
		t.Errorf("PutImage into a repository without the owner tag: %v", err)
	}
	if _, err := client.PutLifecyclePolicy(e.ctx, &ecr.PutLifecyclePolicyInput{RepositoryName: aws.String("prod/payments"), LifecyclePolicyText: aws.String(`{"rules":[]}`)}); errorCode(err) != "AccessDeniedException" {
		t.Errorf("Null condition: PutLifecyclePolicy on an untagged repository: %v", err)
	}

	// A session without the write tag reads but does not write, even into what is owned.
	reader := e.assume(t, "reader", sandbox.DestinationAccount, nil)
	if _, err := ecr.NewFromConfig(reader).DescribeRepositories(e.ctx, &ecr.DescribeRepositoriesInput{}); err != nil {
		t.Fatalf("untagged session reads: %v", err)
	}
	if err := push(reader, "mirror/app"); !errors.As(err, &terr) || terr.StatusCode != http.StatusForbidden {
		t.Errorf("push from a session without the write tag: %v, want 403", err)
	}
	// Passing session tags needs sts:TagSession in the trust policy.
	_, err := sts.NewFromConfig(e.userConfig(t, sandbox.SourceAccount, "reader")).AssumeRole(e.ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String(sandbox.RoleARN(sandbox.DestinationAccount, "owner")), RoleSessionName: aws.String("s1"),
		Tags: []ststypes.Tag{{Key: aws.String("access"), Value: aws.String("write")}},
	})
	if errorCode(err) != "AccessDenied" {
		t.Errorf("session tags without sts:TagSession in the trust policy: %v, want AccessDenied", err)
	}

	// aws:ResourceOrgID: the role's account must belong to the organization.
	org := sts.NewFromConfig(e.userConfig(t, sandbox.SourceAccount, "org"))
	if _, err := org.AssumeRole(e.ctx, &sts.AssumeRoleInput{RoleArn: aws.String(sandbox.RoleARN(sandbox.DestinationAccount, "owner")), RoleSessionName: aws.String("s1")}); errorCode(err) != "AccessDenied" {
		// owner's trust does not name "org": refused by the trust policy, not the identity policy
		if err == nil {
			t.Errorf("AssumeRole trusted nowhere: allowed")
		}
	}
	_, err = org.AssumeRole(e.ctx, &sts.AssumeRoleInput{RoleArn: aws.String(sandbox.RoleARN("333333333333", "owner")), RoleSessionName: aws.String("s1")})
	if errorCode(err) != "AccessDenied" {
		t.Errorf("AssumeRole of a role outside the organization: %v, want AccessDenied", err)
	}
	assumeAny := e.userConfig(t, sandbox.SourceAccount, "writer")
	if _, err := sts.NewFromConfig(assumeAny).AssumeRole(e.ctx, &sts.AssumeRoleInput{RoleArn: aws.String(sandbox.RoleARN("333333333333", "owner")), RoleSessionName: aws.String("s1")}); err != nil {
		t.Errorf("AssumeRole the trust admits, no organization condition: %v", err)
	}
}

// TestQueuePolicy: an explicit Deny in a queue's policy refuses a sender its own policies
// allow; EventBridge delivers only where the policy allows the service for the rule.
func TestQueuePolicy(t *testing.T) {
	e, _ := startConditions(t)
	writer := e.userConfig(t, sandbox.SourceAccount, "writer")
	reader := e.userConfig(t, sandbox.SourceAccount, "reader")
	client := sqs.NewFromConfig(writer)
	url, arn := createQueue(t, e, client, "replication")
	ruleARN := "arn:aws:events:us-east-1:" + sandbox.SourceAccount + ":rule/ImageActions"
	policy := `{"Version":"2012-10-17","Statement":[
	  {"Effect":"Allow","Principal":{"Service":"events.amazonaws.com"},"Action":"sqs:SendMessage","Resource":"` + arn + `","Condition":{"ArnEquals":{"aws:SourceArn":"` + ruleARN + `"}}},
	  {"Effect":"Deny","Principal":"*","Action":"sqs:SendMessage","Resource":"` + arn + `","Condition":{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::` + sandbox.SourceAccount + `:user/writer"},"Null":{"aws:SourceArn":"true"}}}]}`
	if _, err := client.SetQueueAttributes(e.ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(url), Attributes: map[string]string{"Policy": policy}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.SendMessage(e.ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("from the writer")}); err != nil {
		t.Fatalf("the exempted sender: %v", err)
	}
	_, err := sqs.NewFromConfig(reader).SendMessage(e.ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("forged")})
	if errorCode(err) != "AccessDenied" {
		t.Errorf("a sender the queue policy denies: %v, want AccessDenied", err)
	}
	_, err = sqs.NewFromConfig(reader).SendMessageBatch(e.ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: []sqstypes.SendMessageBatchRequestEntry{{Id: aws.String("1"), MessageBody: aws.String("forged")}}})
	if errorCode(err) != "AccessDenied" {
		t.Errorf("a batch sender the queue policy denies: %v, want AccessDenied", err)
	}

	// The rule the policy names delivers; another rule does not.
	for _, name := range []string{"ImageActions", "Other"} {
		if err := e.sb.PutRule(sandbox.SourceAccount, sandbox.DefaultRegion, sandbox.Rule{Name: name, EventPattern: templatePattern, Targets: []string{arn}}); err != nil {
			t.Fatal(err)
		}
	}
	admin := e.userConfig(t, sandbox.SourceAccount, sandbox.AdminUser)
	createRepo(t, e.ctx, admin, "team-a/app", "")
	host, auth := registryAuth(t, e.ctx, admin)
	img, _ := random.Image(256, 1)
	if err := remote.Write(ref(t, host, "team-a/app", "v1"), img, remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	if err := e.sb.WaitEventsDelivered(e.ctx); err != nil {
		t.Fatal(err)
	}
	byRule := map[string]string{}
	for _, d := range e.sb.Deliveries() {
		byRule[d.Rule] = d.Error
	}
	if byRule["ImageActions"] != "" {
		t.Errorf("the allowed rule's delivery failed: %s", byRule["ImageActions"])
	}
	if e, ok := byRule["Other"]; !ok || e == "" {
		t.Errorf("another rule's delivery: %q, want refused", e)
	}
	if got := drain(t, e, client, url); len(got) != 2 {
		t.Errorf("queue holds %d messages, want 2 (the writer's, the rule's)", len(got))
	}
}
