package stack_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/rulesource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventpattern"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/stack"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/cfn"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// render renders template.yaml with params (DestinationAccountId, which has no default,
// added), resolving the queues to the names Deploy gives them.
func render(t *testing.T, params map[string]any) *cfn.Template {
	t.Helper()
	p := map[string]any{"DestinationAccountId": sandbox.DestinationAccount}
	for k, v := range params {
		p[k] = v
	}
	arn := func(name string) string {
		return fmt.Sprintf("arn:aws:sqs:%s:%s:%s", sandbox.DefaultRegion, sandbox.SourceAccount, name)
	}
	r, err := cfn.RenderFile(filepath.Join("..", "..", "..", "..", "template.yaml"), cfn.Options{
		Parameters: p, Region: sandbox.DefaultRegion, AccountID: sandbox.SourceAccount, StackName: "ecr-replicator",
		Resolve: func(ref string) (string, bool) {
			switch ref {
			case "ReplicationQueue.Arn":
				return arn(stack.QueueName), true
			case "DeadLetterQueue.Arn":
				return arn(stack.DeadLetterQueueName), true
			case "ImageActionRule.Arn":
				return stack.RuleARN(sandbox.DefaultRegion, sandbox.SourceAccount), true
			case "GateEventRule.Arn":
				return stack.GateRuleARN(sandbox.DefaultRegion, sandbox.SourceAccount), true
			}
			return "", false
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// jsonValue decodes JSON into plain values, so that two documents compare by content.
func jsonValue(t *testing.T, v any) any {
	t.Helper()
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return out
}

// path walks nested maps.
func path(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%v: no %s in %v", keys, k, v)
		}
		v = m[k]
	}
	return v
}

// TestImageActionPatternIsTheTemplates: the pattern the sandbox's rule gets is the one
// template.yaml deploys, for every combination of the parameters it depends on.
func TestImageActionPatternIsTheTemplates(t *testing.T) {
	for _, mirror := range []bool{false, true} {
		for _, prefix := range []string{"", "team-a/"} {
			r := render(t, map[string]any{"MirrorDeletes": fmt.Sprint(mirror), "RepositoryPrefixFilter": prefix})
			props, err := r.Resource(stack.RuleName, "AWS::Events::Rule")
			if err != nil {
				t.Fatal(err)
			}
			want := jsonValue(t, props["EventPattern"])
			got := jsonValue(t, []byte(stack.ImageActionPattern(sandbox.SourceAccount, mirror, prefix)))
			if !reflect.DeepEqual(got, want) {
				t.Errorf("MirrorDeletes=%v RepositoryPrefixFilter=%q: pattern %v, template %v", mirror, prefix, got, want)
			}
			targets, _ := props["Targets"].([]any)
			if len(targets) != 1 || path(t, targets[0], "Arn") != "arn:aws:sqs:us-east-1:"+sandbox.SourceAccount+":"+stack.QueueName {
				t.Errorf("targets %v, want the ReplicationQueue only", targets)
			}
		}
	}
}

// TestQueuePolicyIsTheTemplates: the policy Deploy gives the ReplicationQueue and the
// DeadLetterQueue is template.yaml's ReplicationQueuePolicy (without QueueOperatorArns),
// without promotion gates and with them (GateEventRule may send too).
func TestQueuePolicyIsTheTemplates(t *testing.T) {
	for _, gates := range []bool{false, true} {
		props, err := render(t, map[string]any{"PromotionGates": fmt.Sprint(gates)}).Resource("ReplicationQueuePolicy", "AWS::SQS::QueuePolicy")
		if err != nil {
			t.Fatal(err)
		}
		gateRule := ""
		if gates {
			gateRule = stack.GateRuleARN(sandbox.DefaultRegion, sandbox.SourceAccount)
		}
		want := jsonValue(t, props["PolicyDocument"])
		got := jsonValue(t, []byte(stack.ReplicationQueuePolicy(
			fmt.Sprintf("arn:aws:sqs:%s:%s:%s", sandbox.DefaultRegion, sandbox.SourceAccount, stack.QueueName),
			fmt.Sprintf("arn:aws:sqs:%s:%s:%s", sandbox.DefaultRegion, sandbox.SourceAccount, stack.DeadLetterQueueName),
			stack.RuleARN(sandbox.DefaultRegion, sandbox.SourceAccount), gateRule)))
		if !reflect.DeepEqual(got, want) {
			t.Errorf("PromotionGates=%v: policy\n %v\ntemplate\n %v", gates, got, want)
		}
	}
}

// TestGateEventPatternIsTheTemplates: with PromotionGates, the template's GateEventRule
// has the sandbox rule's pattern and sends to the ReplicationQueue; without, it is not
// deployed.
func TestGateEventPatternIsTheTemplates(t *testing.T) {
	if _, err := render(t, nil).Resource(stack.GateRuleName, "AWS::Events::Rule"); err == nil {
		t.Error("GateEventRule deployed without PromotionGates")
	}
	props, err := render(t, map[string]any{"PromotionGates": "true"}).Resource(stack.GateRuleName, "AWS::Events::Rule")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := jsonValue(t, []byte(stack.GateEventPattern(sandbox.SourceAccount))), jsonValue(t, props["EventPattern"]); !reflect.DeepEqual(got, want) {
		t.Errorf("pattern %v, template %v", got, want)
	}
	targets, _ := props["Targets"].([]any)
	if len(targets) != 1 || path(t, targets[0], "Arn") != "arn:aws:sqs:us-east-1:"+sandbox.SourceAccount+":"+stack.QueueName {
		t.Errorf("targets %v, want the ReplicationQueue only", targets)
	}
}

// TestSettingsAreTheTemplates: the event source's batch settings, the queue's and the
// function's environment are the template's defaults.
func TestSettingsAreTheTemplates(t *testing.T) {
	r := render(t, nil)
	fn, err := r.Resource("ReplicateFunction", "AWS::Serverless::Function")
	if err != nil {
		t.Fatal(err)
	}
	mapping := path(t, fn, "Events", "ReplicationQueue", "Properties")
	for key, want := range map[string]string{
		"BatchSize":             fmt.Sprint(stack.BatchSize),
		"FunctionResponseTypes": "[ReportBatchItemFailures]",
		"ScalingConfig":         fmt.Sprintf("map[MaximumConcurrency:%d]", stack.MaximumConcurrency),
		// No window: Mapping's zero MaximumBatchingWindow.
		"MaximumBatchingWindowInSeconds": "<nil>",
	} {
		if got := fmt.Sprint(path(t, mapping, key)); got != want {
			t.Errorf("ReplicationQueue event source %s = %s, want %s", key, got, want)
		}
	}
	copyMapping := path(t, fn, "Events", "CopyQueue", "Properties")
	for key, want := range map[string]string{
		"BatchSize":                      fmt.Sprint(stack.CopyBatchSize),
		"FunctionResponseTypes":          "[ReportBatchItemFailures]",
		"ScalingConfig":                  fmt.Sprintf("map[MaximumConcurrency:%d]", stack.CopyConcurrency),
		"MaximumBatchingWindowInSeconds": "<nil>",
	} {
		if got := fmt.Sprint(path(t, copyMapping, key)); got != want {
			t.Errorf("CopyQueue event source %s = %s, want %s", key, got, want)
		}
	}
	if got := fmt.Sprint(path(t, fn, "Timeout")); got != fmt.Sprint(stack.ReplicateTimeout.Seconds()) {
		t.Errorf("Timeout = %s, want %v", got, stack.ReplicateTimeout)
	}
	if got := fmt.Sprint(path(t, fn, "Environment", "Variables", wiring.EnvWriters)); got != fmt.Sprint(stack.CopyConcurrency) {
		t.Errorf("%s = %s, want %d", wiring.EnvWriters, got, stack.CopyConcurrency)
	}
	globals := path(t, r.Doc, "Globals", "Function", "Environment", "Variables")
	for key, want := range map[string]string{
		wiring.EnvPutImageRate: fmt.Sprint(stack.PutImageRate), "LOG_LEVEL": stack.LogLevel, wiring.EnvQueueURL: "ref:ReplicationQueue",
		wiring.EnvCopyQueueURL: "ref:CopyQueue",
	} {
		if got := fmt.Sprint(path(t, globals, key)); got != want {
			t.Errorf("Globals %s = %s, want %s", key, got, want)
		}
	}
	for _, timeout := range []int{60, 120, 180, 300, 600, 900} {
		got := fmt.Sprint(path(t, r.Doc, "Mappings", "QueueVisibilityTimeout", fmt.Sprint(timeout), "Seconds"))
		if want := fmt.Sprint(stack.VisibilityTimeout(time.Duration(timeout) * time.Second).Seconds()); got != want {
			t.Errorf("QueueVisibilityTimeout[%d] = %s, want %s", timeout, got, want)
		}
	}
	if got := fmt.Sprint(path(t, r.Params, "MaxReceiveCount")); got != fmt.Sprint(stack.MaxReceiveCount) {
		t.Errorf("MaxReceiveCount = %s, want %d", got, stack.MaxReceiveCount)
	}
}

// TestEnvironmentIsWhatTheFunctionsRead: the stack names the functions' environment as
// template.yaml does, as text; these are the names the functions read.
func TestEnvironmentIsWhatTheFunctionsRead(t *testing.T) {
	read := []string{wiring.EnvQueueURL, wiring.EnvCopyQueueURL, wiring.EnvPutImageRate, wiring.EnvWriters, rulesource.EnvPromotionGates,
		rulesource.EnvMirrorDeletes, rulesource.EnvRepositoryPrefixFilter,
		"LOG_LEVEL", "AWS_LAMBDA_FUNCTION_TIMEOUT"}
	env := (&stack.Stack{}).FunctionEnv()
	for _, name := range read {
		if _, ok := env[name]; !ok {
			t.Errorf("FunctionEnv sets no %s", name)
		}
	}
	for name := range env {
		if !slices.Contains(read, name) {
			t.Errorf("FunctionEnv sets %s, which no function reads", name)
		}
	}
}

// TestDeploy: the queue Deploy creates has the template's visibility timeout and redrive
// policy, and an image pushed with go-containerregistry reaches the function through the
// rule, the queue and the event source.
func TestDeploy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sb, err := sandbox.New(sandbox.TwoAccounts(""))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	st, err := stack.Deploy(ctx, sb, stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := st.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(st.QueueURL), AttributeNames: []sqstypes.QueueAttributeName{"All"}})
	if err != nil {
		t.Fatal(err)
	}
	queue, err := render(t, nil).Resource("ReplicationQueue", "AWS::SQS::Queue")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := attrs.Attributes["VisibilityTimeout"], fmt.Sprint(queue["VisibilityTimeout"]); got != want {
		t.Errorf("VisibilityTimeout %s, template %s", got, want)
	}
	if got, want := jsonValue(t, []byte(attrs.Attributes["RedrivePolicy"])), jsonValue(t, queue["RedrivePolicy"]); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("RedrivePolicy %v, template %v", got, want)
	}
	// The queues' policy holds: even the account's admin cannot send (only the rule may).
	for _, url := range []string{st.QueueURL, st.DeadLetterQueueURL} {
		_, err := st.SQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("{}")})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" {
			t.Errorf("a send to %s by the account's admin answered %v, want AccessDenied", url, err)
		}
	}

	var mu sync.Mutex
	var got []string
	es, stop, err := st.Start(ctx, stack.Mapping{Invoke: func(ctx context.Context, payload []byte) ([]byte, error) {
		var batch events.SQSEvent
		if err := json.Unmarshal(payload, &batch); err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, r := range batch.Records {
			var ev struct {
				Detail struct {
					Repository string `json:"repository-name"`
					Tag        string `json:"image-tag"`
				} `json:"detail"`
			}
			json.Unmarshal([]byte(r.Body), &ev)
			got = append(got, ev.Detail.Repository+":"+ev.Detail.Tag)
		}
		return []byte(`{"batchItemFailures":[]}`), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	push(t, ctx, sb, "team-a/app", "v1")
	if err := st.WaitIdle(ctx, es); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n, err := st.DeadLetters(ctx); err != nil || n != 0 {
		t.Errorf("dead letters %d, %v", n, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != "team-a/app:v1" {
		t.Fatalf("the function got %v", got)
	}
}

// push pushes a small random image as a user would: ECR's token, then the registry.
func push(t *testing.T, ctx context.Context, sb *sandbox.Sandbox, repo, tag string) {
	t.Helper()
	key, secret, err := sb.Credentials(sandbox.SourceAccount, sandbox.AdminUser)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(sandbox.DefaultRegion),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(key, secret, "")), config.WithBaseEndpoint(sb.APIURL()))
	if err != nil {
		t.Fatal(err)
	}
	api := ecr.NewFromConfig(cfg)
	if _, err := api.CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)}); err != nil {
		t.Fatal(err)
	}
	tok, err := api.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(aws.ToString(tok.AuthorizationData[0].AuthorizationToken))
	user, pass, _ := strings.Cut(string(raw), ":")
	host := strings.TrimPrefix(aws.ToString(tok.AuthorizationData[0].ProxyEndpoint), "http://")
	ref, err := name.ParseReference(host + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: pass}), remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
}

// TestGateEventPatternTakesECRScansOnly: the GateEventRule's pattern (the template's,
// checked above) takes ECR's and Inspector's scan events of ECR images, and not
// Inspector's scans of EC2 instances or Lambda functions
// (https://docs.aws.amazon.com/inspector/latest/user/eventbridge-integration.html).
func TestGateEventPatternTakesECRScansOnly(t *testing.T) {
	p := eventpattern.MustCompile(stack.GateEventPattern(sandbox.SourceAccount))
	event := func(source, detailType, resource string) map[string]any {
		return map[string]any{"source": source, "detail-type": detailType, "account": sandbox.SourceAccount, "resources": []any{resource}}
	}
	for _, c := range []struct {
		name  string
		event map[string]any
		want  bool
	}{
		{"basic scan", event("aws.ecr", "ECR Image Scan", "arn:aws:ecr:us-east-1:"+sandbox.SourceAccount+":repository/team-a/app"), true},
		{"enhanced scan", event("aws.inspector2", "Inspector2 Scan", "arn:aws:ecr:us-east-1:"+sandbox.SourceAccount+":repository/team-a/app"), true},
		{"EC2 instance", event("aws.inspector2", "Inspector2 Scan", "i-087d63509b8c97098"), false},
		{"Lambda function", event("aws.inspector2", "Inspector2 Scan", "arn:aws:lambda:us-east-1:"+sandbox.SourceAccount+":function:f"), false},
	} {
		if got := p.MatchEvent(c.event); got != c.want {
			t.Errorf("%s: matched %v, want %v", c.name, got, c.want)
		}
	}
}
