package sandboxtest

import (
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/cfn"
)

// Queues are the URLs of the stack's queues by their logical names in template.yaml
// (ReplicationQueue, ReconcileQueue, CopyQueue, DeadLetterQueue).
type Queues map[string]string

// DeployQueues deploys template.yaml's queues, ImageActionRule and (with PromotionGates)
// GateEventRule, rendered for params,
// into the sandbox's source account as CloudFormation would: each queue with its
// visibility timeout, retention and redrive policy, then each AWS::SQS::QueuePolicy on
// its queues — which the sandbox enforces on senders and on EventBridge's deliveries —
// and the rules with their event patterns, targeting ReplicationQueue (its DeadLetterConfig
// is not modelled by the sandbox). Names and ARNs are those Deployed resolves.
func (w *World) DeployQueues(t testing.TB, params map[string]any) Queues {
	t.Helper()
	src := renderSource(t, params)
	policies, err := src.QueuePolicies()
	if err != nil {
		t.Fatal(err)
	}
	client := sqs.NewFromConfig(w.Source.Config)
	urls := Queues{}
	// The dead-letter queue first: the others' redrive policies name it.
	for _, logical := range []string{"DeadLetterQueue", "ReplicationQueue", "ReconcileQueue", "CopyQueue"} {
		props, err := src.Resource(logical, "AWS::SQS::Queue")
		if err != nil {
			t.Fatal(err)
		}
		attrs := queueAttributes(t, props)
		if p, ok := policies[logical]; ok {
			attrs["Policy"] = p
		}
		out, err := client.CreateQueue(w.Ctx, &sqs.CreateQueueInput{QueueName: aws.String(stackQueues[logical]), Attributes: attrs})
		if err != nil {
			t.Fatalf("creating %s: %v", logical, err)
		}
		urls[logical] = aws.ToString(out.QueueUrl)
	}
	for _, name := range []string{ImageActionRule, GateEventRule} {
		rule, err := src.Resource(name, "AWS::Events::Rule")
		if err != nil && name == GateEventRule {
			continue // deployed with PromotionGates only
		}
		if err != nil {
			t.Fatal(err)
		}
		pattern, err := json.Marshal(rule["EventPattern"])
		if err != nil {
			t.Fatal(err)
		}
		if err := w.SB.PutRule(sandbox.SourceAccount, sandbox.DefaultRegion, sandbox.Rule{
			Name: name, EventPattern: string(pattern), Targets: []string{QueueARN(QueueName)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	return urls
}

// queueAttributes are the SQS attributes of a rendered AWS::SQS::Queue.
func queueAttributes(t testing.TB, props map[string]any) map[string]string {
	t.Helper()
	attrs := map[string]string{}
	for _, k := range []string{"VisibilityTimeout", "MessageRetentionPeriod"} {
		if v, ok := props[k]; ok {
			attrs[k] = cfn.ScalarString(v)
		}
	}
	if rp, ok := props["RedrivePolicy"].(map[string]any); ok {
		b, err := json.Marshal(map[string]string{
			"deadLetterTargetArn": cfn.ScalarString(rp["deadLetterTargetArn"]),
			"maxReceiveCount":     cfn.ScalarString(rp["maxReceiveCount"]),
		})
		if err != nil {
			t.Fatal(err)
		}
		attrs["RedrivePolicy"] = string(b)
	}
	return attrs
}
