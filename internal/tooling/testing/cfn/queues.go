package cfn

import (
	"fmt"
	"strings"
)

// QueuePolicies returns the policy each queue gets from the template's
// AWS::SQS::QueuePolicy resources, as JSON, by the queue's logical name (the Queues
// entries are Refs to the template's queues). A queue named by two of them is an error:
// CloudFormation would leave whichever it applied last.
// https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-sqs-queuepolicy.html
func (r *Template) QueuePolicies() (map[string]string, error) {
	out := map[string]string{}
	for name, res := range r.Resources() {
		if res["Type"] != "AWS::SQS::QueuePolicy" {
			continue
		}
		props, _ := res["Properties"].(map[string]any)
		doc, err := policyJSON(props["PolicyDocument"])
		if err != nil {
			return nil, fmt.Errorf("%s: %s.PolicyDocument: %w", r.File, name, err)
		}
		queues, _ := props["Queues"].([]any)
		for _, q := range queues {
			s, _ := q.(string)
			queue, ok := strings.CutPrefix(s, "ref:")
			if !ok {
				return nil, fmt.Errorf("%s: %s.Queues: %v is not a Ref to a queue of the template", r.File, name, q)
			}
			if _, dup := out[queue]; dup {
				return nil, fmt.Errorf("%s: %s: queue %s has two policies", r.File, name, queue)
			}
			out[queue] = doc
		}
	}
	return out, nil
}
