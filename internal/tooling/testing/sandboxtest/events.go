package sandboxtest

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// ImageEvent is an EventBridge "ECR Image Action" event (the shape of events/push.json)
// from the sandbox's source account and default region, pushed two seconds ago.
func ImageEvent(id, action, repo, digest, tag string) string {
	return string(ecrevent.ImageAction{
		EventID: id, Account: sandbox.SourceAccount, Region: sandbox.DefaultRegion, Time: time.Now().Add(-2 * time.Second),
		Repository: repo, Digest: digest, Tag: tag, ActionType: action,
		ManifestMediaType: "application/vnd.oci.image.manifest.v1+json",
	}.Event())
}

// SQSMessage is one message of an SQS batch.
type SQSMessage struct{ ID, Body string }

// SQSBatch is the event Lambda's SQS event source mapping delivers for msgs: from the
// stack's queue in the source account, each at its receiveCount-th receive.
func SQSBatch(receiveCount int, msgs ...SQSMessage) []byte {
	ev := events.SQSEvent{Records: make([]events.SQSMessage, 0, len(msgs))}
	for _, m := range msgs {
		ev.Records = append(ev.Records, events.SQSMessage{
			MessageId: m.ID, ReceiptHandle: "rh-" + m.ID, Body: m.Body,
			Attributes:     map[string]string{"ApproximateReceiveCount": fmt.Sprint(receiveCount)},
			EventSource:    "aws:sqs",
			EventSourceARN: QueueARN(QueueName), AWSRegion: sandbox.DefaultRegion,
		})
	}
	out, _ := json.Marshal(ev) // strings and maps of strings: cannot fail
	return out
}
