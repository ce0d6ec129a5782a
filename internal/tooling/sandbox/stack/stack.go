// Package stack deploys into a sandbox the push path template.yaml deploys in the source
// account — the DeadLetterQueue, the ReplicationQueue redriving to it, their policy (only
// the rule sends), the ImageActionRule sending ECR's "ECR Image Action" events to the
// queue — and drives the queue into a function as ReplicateFunction's ReplicationQueue
// event source does, with the template's settings. The demo and the latency benchmark run
// the product through it, so what they show is what a deployment does: nobody hands the
// function an event.
//
// What the template sets is written here once, in Go; stack_test.go renders template.yaml
// (internal/tooling/testing/cfn) and checks that both say the same. Like the template, the stack
// names the functions' environment variables as text and imports none of the functions'
// code: it is the deployment, and the functions are what it runs — as deployed, the
// demo's and the benchmarks' functions read only what the template gives them.
package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventsource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/signin"
)

// template.yaml's defaults for the push path.
const (
	// QueueName and DeadLetterQueueName are the queues' names in the sandbox (CloudFormation
	// would name them after the stack; the sandbox's other helpers use these).
	QueueName           = "ecr-replicator-queue"
	DeadLetterQueueName = "ecr-replicator-dlq"
	// CopyQueueName is the CopyQueue's: backfill and reconcile copies, and the re-checks
	// of copies promotion gates hold.
	CopyQueueName = "ecr-replicator-copy"
	// RuleName is the rule's logical ID; GateRuleName the promotion gates' (scan-complete
	// events), deployed with PromotionGates.
	RuleName     = "ImageActionRule"
	GateRuleName = "GateEventRule"
	// BatchSize and MaximumConcurrency are the parameters of the same names: messages per
	// invocation and most invocations at once of the ReplicationQueue event source. The
	// template sets no MaximumBatchingWindowInSeconds: Lambda's default for SQS is 0, an
	// invocation as soon as a poll returns messages
	// (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html).
	BatchSize          = 5
	MaximumConcurrency = 10
	// MaxReceiveCount is the ReplicationQueue's redrive policy: receives before a message
	// moves to the DeadLetterQueue.
	MaxReceiveCount = 5
	// ReplicateTimeout is the ReplicateFunction's timeout.
	ReplicateTimeout = 300 * time.Second
	// CopyConcurrency and PutImageRate are the parameters the ReplicateFunction's
	// environment carries as PUT_IMAGE_WRITERS and PUT_IMAGE_RATE; LogLevel as LOG_LEVEL.
	CopyConcurrency = 2
	CopyBatchSize   = 10
	PutImageRate    = 10
	LogLevel        = "info"
)

// VisibilityTimeout is the ReplicationQueue's visibility timeout for a function timeout:
// six times it (the template's QueueVisibilityTimeout mapping), as Lambda's guide
// recommends for a queue that is an event source
// (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html).
func VisibilityTimeout(replicateTimeout time.Duration) time.Duration { return 6 * replicateTimeout }

// ImageActionPattern is ImageActionRule's event pattern for the template parameters
// MirrorDeletes and RepositoryPrefixFilter: successful pushes (and deletes) of ECR in the
// stack's own account (an event forwarded from another account's bus is not the
// source's), of repositories starting with the prefix when one is given.
func ImageActionPattern(account string, mirrorDeletes bool, repositoryPrefixFilter string) string {
	actions := []string{"PUSH"}
	if mirrorDeletes {
		actions = append(actions, "DELETE")
	}
	detail := map[string]any{"result": []string{"SUCCESS"}, "action-type": actions}
	if repositoryPrefixFilter != "" {
		detail["repository-name"] = []any{map[string]string{"prefix": repositoryPrefixFilter}}
	}
	return mustJSON(map[string]any{"source": []string{"aws.ecr"}, "detail-type": []string{"ECR Image Action"},
		"account": []string{account}, "detail": detail})
}

// RuleARN is the ARN of ImageActionRule in an account's default event bus.
func RuleARN(region, account string) string {
	return fmt.Sprintf("arn:aws:events:%s:%s:rule/%s", region, account, RuleName)
}

// GateRuleARN is the ARN of GateEventRule in an account's default event bus.
func GateRuleARN(region, account string) string {
	return fmt.Sprintf("arn:aws:events:%s:%s:rule/%s", region, account, GateRuleName)
}

// ReplicationQueuePolicy is ReplicationQueuePolicy's document, on the ReplicationQueue
// and the DeadLetterQueue, with no QueueOperatorArns: EventBridge may send for the rule
// (and, with promotion gates, for GateEventRule: gateRuleARN, "" without) only, and every
// other sender is refused.
func ReplicationQueuePolicy(queueARN, deadLetterQueueARN, ruleARN, gateRuleARN string) string {
	queues := []string{queueARN, deadLetterQueueARN}
	var senders any = ruleARN
	if gateRuleARN != "" {
		senders = []string{ruleARN, gateRuleARN}
	}
	statements := []any{
		map[string]any{"Sid": "ImageActionRuleOnly", "Effect": "Allow", "Principal": map[string]any{"Service": "events.amazonaws.com"},
			"Action": "sqs:SendMessage", "Resource": queues,
			"Condition": map[string]any{"ArnEquals": map[string]any{"aws:SourceArn": ruleARN}}},
		map[string]any{"Sid": "NoOtherSender", "Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage", "Resource": queues,
			"Condition": map[string]any{"ArnNotEquals": map[string]any{"aws:SourceArn": senders}}},
	}
	if gateRuleARN != "" {
		statements = append(statements, map[string]any{"Sid": "GateEventRuleOnly", "Effect": "Allow", "Principal": map[string]any{"Service": "events.amazonaws.com"},
			"Action": "sqs:SendMessage", "Resource": queues,
			"Condition": map[string]any{"ArnEquals": map[string]any{"aws:SourceArn": gateRuleARN}}})
	}
	return mustJSON(map[string]any{"Version": "2012-10-17", "Statement": statements})
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // strings, lists and maps of them
	}
	return string(b)
}

// GateEventPattern is GateEventRule's event pattern: scan-complete events of basic
// (ECR) and enhanced (Inspector) scanning of ECR resources, in the stack's own account.
func GateEventPattern(account string) string {
	return mustJSON(map[string]any{"source": []string{"aws.ecr", "aws.inspector2"}, "detail-type": []string{"ECR Image Scan", "Inspector2 Scan"},
		"account": []string{account}, "resources": []any{map[string]string{"prefix": "arn:aws:ecr:"}}})
}

// Options are the template parameters the push path depends on (zero: their defaults).
type Options struct {
	MirrorDeletes          bool
	RepositoryPrefixFilter string
	ReplicateTimeout       time.Duration
	MaxReceiveCount        int
	// PromotionGates deploys GateEventRule, sending scan-complete events to the queue.
	PromotionGates bool
}

// Stack is the push path deployed in a sandbox's source account and default region.
type Stack struct {
	// SQS is a client of the source account's admin.
	SQS                                    *sqs.Client
	QueueURL, QueueARN                     string
	DeadLetterQueueURL, DeadLetterQueueARN string
	CopyQueueURL                           string

	sb   *sandbox.Sandbox
	opts Options
}

// Deploy creates the queues and the rule in sb's source account.
func Deploy(ctx context.Context, sb *sandbox.Sandbox, opts Options) (*Stack, error) {
	if opts.ReplicateTimeout == 0 {
		opts.ReplicateTimeout = ReplicateTimeout
	}
	if opts.MaxReceiveCount == 0 {
		opts.MaxReceiveCount = MaxReceiveCount
	}
	cfg, err := signin.Config(ctx, sb, sandbox.SourceAccount)
	if err != nil {
		return nil, err
	}
	s := &Stack{SQS: sqs.NewFromConfig(cfg), sb: sb, opts: opts}
	s.DeadLetterQueueURL, s.DeadLetterQueueARN, err = s.createQueue(ctx, DeadLetterQueueName, nil)
	if err != nil {
		return nil, err
	}
	redrive, _ := json.Marshal(map[string]string{"deadLetterTargetArn": s.DeadLetterQueueARN, "maxReceiveCount": strconv.Itoa(opts.MaxReceiveCount)})
	queueAttrs := map[string]string{
		"VisibilityTimeout": strconv.Itoa(int(VisibilityTimeout(opts.ReplicateTimeout).Seconds())),
		"RedrivePolicy":     string(redrive),
	}
	if s.QueueURL, s.QueueARN, err = s.createQueue(ctx, QueueName, queueAttrs); err != nil {
		return nil, err
	}
	if s.CopyQueueURL, _, err = s.createQueue(ctx, CopyQueueName, queueAttrs); err != nil {
		return nil, err
	}
	gateRule := ""
	if opts.PromotionGates {
		gateRule = GateRuleARN(sandbox.DefaultRegion, sandbox.SourceAccount)
	}
	policy := ReplicationQueuePolicy(s.QueueARN, s.DeadLetterQueueARN, RuleARN(sandbox.DefaultRegion, sandbox.SourceAccount), gateRule)
	for _, url := range []string{s.QueueURL, s.DeadLetterQueueURL} {
		if _, err := s.SQS.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(url), Attributes: map[string]string{"Policy": policy}}); err != nil {
			return nil, fmt.Errorf("setting the policy of %s: %w", url, err)
		}
	}
	// The rule's target DeadLetterConfig (events EventBridge could not deliver) is stored,
	// not used, by the sandbox (docs/SANDBOX.md): it is left out.
	err = sb.PutRule(sandbox.SourceAccount, sandbox.DefaultRegion, sandbox.Rule{
		Name: RuleName, EventPattern: ImageActionPattern(sandbox.SourceAccount, opts.MirrorDeletes, opts.RepositoryPrefixFilter), Targets: []string{s.QueueARN},
	})
	if err != nil {
		return nil, err
	}
	if opts.PromotionGates {
		err = sb.PutRule(sandbox.SourceAccount, sandbox.DefaultRegion, sandbox.Rule{Name: GateRuleName, EventPattern: GateEventPattern(sandbox.SourceAccount), Targets: []string{s.QueueARN}})
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Stack) createQueue(ctx context.Context, name string, attrs map[string]string) (url, arn string, err error) {
	out, err := s.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		return "", "", fmt.Errorf("creating queue %s: %w", name, err)
	}
	a, err := s.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: out.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		return "", "", fmt.Errorf("reading queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), a.Attributes[string(types.QueueAttributeNameQueueArn)], nil
}

// FunctionEnv is what the template puts in ReplicateFunction's environment for the push
// path at its defaults and the stack's Options (the rules document and the AWS endpoints and credentials are the
// caller's), plus the function timeout for the emulator.
func (s *Stack) FunctionEnv() map[string]string {
	return map[string]string{
		"REPLICATION_QUEUE_URL":       s.QueueURL,
		"COPY_QUEUE_URL":              s.CopyQueueURL,
		"PROMOTION_GATES":             strconv.FormatBool(s.opts.PromotionGates),
		"MIRROR_DELETES":              strconv.FormatBool(s.opts.MirrorDeletes),
		"REPOSITORY_PREFIX_FILTER":    s.opts.RepositoryPrefixFilter,
		"PUT_IMAGE_RATE":              strconv.Itoa(PutImageRate),
		"PUT_IMAGE_WRITERS":           strconv.Itoa(CopyConcurrency),
		"LOG_LEVEL":                   LogLevel,
		"AWS_LAMBDA_FUNCTION_TIMEOUT": strconv.Itoa(int(s.opts.ReplicateTimeout.Seconds())),
	}
}

// Mapping is the ReplicationQueue event source of ReplicateFunction; zero fields take the
// template's values.
type Mapping struct {
	BatchSize             int
	MaximumBatchingWindow time.Duration
	MaximumConcurrency    int
	// Invoke runs the function (eventsource.Config.Invoke); OnInvoke, when set, hears of
	// each invocation once settled.
	Invoke   func(ctx context.Context, payload []byte) ([]byte, error)
	OnInvoke func(eventsource.Invocation)
}

// Start runs the event source on the ReplicationQueue until stop is called (or ctx
// ends); stop (idempotent) waits for the invocations under way and returns the error Run ended with
// (nil, unless the queue could not be read).
func (s *Stack) Start(ctx context.Context, m Mapping) (es *eventsource.EventSource, stop func() error, err error) {
	if m.BatchSize == 0 {
		m.BatchSize = BatchSize
	}
	if m.MaximumConcurrency == 0 {
		m.MaximumConcurrency = MaximumConcurrency
	}
	return s.start(ctx, s.QueueURL, m)
}

// StartCopyQueue runs the event source of ReplicateFunction's CopyQueue mapping (batches
// of CopyBatchSize, at most CopyConcurrency at once), as Start does the ReplicationQueue's.
func (s *Stack) StartCopyQueue(ctx context.Context, m Mapping) (es *eventsource.EventSource, stop func() error, err error) {
	if m.BatchSize == 0 {
		m.BatchSize = CopyBatchSize
	}
	if m.MaximumConcurrency == 0 {
		m.MaximumConcurrency = CopyConcurrency
	}
	return s.start(ctx, s.CopyQueueURL, m)
}

func (s *Stack) start(ctx context.Context, queueURL string, m Mapping) (es *eventsource.EventSource, stop func() error, err error) {
	es, err = eventsource.New(s.SQS, eventsource.Config{
		QueueURL: queueURL, BatchSize: m.BatchSize, MaximumBatchingWindow: m.MaximumBatchingWindow,
		MaximumConcurrency: m.MaximumConcurrency, FunctionTimeout: s.opts.ReplicateTimeout,
		ReportBatchItemFailures: true, Invoke: m.Invoke, OnInvoke: m.OnInvoke,
	})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- es.Run(ctx) }()
	// Safe to call again (a deferred stop after an explicit one): the same answer.
	stop = sync.OnceValue(func() error { cancel(); return <-done })
	return es, stop, nil
}

// WaitIdle returns once every event emitted so far has been delivered by the rules and
// the event sources have handled their queues (their invocations settled), or when ctx
// ends. Delayed messages count as work: a held copy's re-checks are waited for, until
// the hold ends (passed or blocked).
func (s *Stack) WaitIdle(ctx context.Context, es ...*eventsource.EventSource) error {
	if err := s.sb.WaitEventsDelivered(ctx); err != nil {
		return err
	}
	for _, e := range es {
		if err := e.WaitIdle(ctx); err != nil {
			return err
		}
	}
	return nil
}

// DeadLetters counts the messages in the DeadLetterQueue (visible or in flight).
func (s *Stack) DeadLetters(ctx context.Context) (int, error) {
	out, err := s.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(s.DeadLetterQueueURL), AttributeNames: []types.QueueAttributeName{
		types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
	}})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, v := range out.Attributes {
		c, err := strconv.Atoi(v)
		if err != nil {
			return 0, errors.New("stack: unreadable queue attribute " + v)
		}
		n += c
	}
	return n, nil
}
