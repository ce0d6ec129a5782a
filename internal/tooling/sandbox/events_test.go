package sandbox_test

import (
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

func TestPutEvents(t *testing.T) {
	e, _ := startWithClock(t)
	cfg := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	client := eventbridge.NewFromConfig(cfg)
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	out, err := client.PutEvents(e.ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{
		{Source: aws.String("ecr-replicator"), DetailType: aws.String("Replication Completed"), Detail: aws.String(`{"repository":"team-a/app"}`), Resources: []string{"arn:aws:ecr:us-east-1:111111111111:repository/team-a/app"}, Time: &at},
		{Source: aws.String("ecr-replicator"), DetailType: aws.String("Replication Completed"), Detail: aws.String(`not json`)},
		{Source: aws.String("aws.ecr"), DetailType: aws.String("ECR Image Action"), Detail: aws.String(`{}`)},
		{Source: aws.String("ecr-replicator"), DetailType: aws.String("Other"), Detail: aws.String(`{"n":1}`), EventBusName: aws.String("arn:aws:events:us-east-1:111111111111:event-bus/replication")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if out.FailedEntryCount != 2 || len(out.Entries) != 4 {
		t.Fatalf("PutEvents: %+v", out)
	}
	if aws.ToString(out.Entries[0].EventId) == "" || aws.ToString(out.Entries[3].EventId) == "" {
		t.Fatalf("accepted entries lack an EventId: %+v", out.Entries)
	}
	if aws.ToString(out.Entries[1].ErrorCode) != "MalformedDetail" || aws.ToString(out.Entries[2].ErrorCode) != "NotAuthorizedForSourceException" {
		t.Fatalf("rejected entries: %+v, %+v", out.Entries[1], out.Entries[2])
	}
	got := e.sb.PutEvents()
	if len(got) != 2 {
		t.Fatalf("recorded %d events, want 2", len(got))
	}
	ev := got[0]
	if ev.Account != sandbox.SourceAccount || ev.Region != sandbox.DefaultRegion || ev.EventBus != "default" || ev.Source != "ecr-replicator" ||
		ev.DetailType != "Replication Completed" || string(ev.Detail) != `{"repository":"team-a/app"}` || !ev.Time.Equal(at) ||
		len(ev.Resources) != 1 || ev.EventID != aws.ToString(out.Entries[0].EventId) {
		t.Fatalf("recorded event: %+v", ev)
	}
	if got[1].EventBus != "replication" {
		t.Fatalf("bus named by ARN recorded as %q", got[1].EventBus)
	}

	var many []ebtypes.PutEventsRequestEntry
	for range 11 {
		many = append(many, ebtypes.PutEventsRequestEntry{Source: aws.String("s"), DetailType: aws.String("d"), Detail: aws.String(`{}`)})
	}
	if _, err := client.PutEvents(e.ctx, &eventbridge.PutEventsInput{Entries: many}); errorCode(err) != "ValidationException" {
		t.Fatalf("11 entries: %v", err)
	}

	e.sb.ThrottleAPI("events", "PutEvents", 1)
	noRetry := eventbridge.NewFromConfig(cfg, func(o *eventbridge.Options) { o.Retryer = aws.NopRetryer{} })
	_, err = noRetry.PutEvents(e.ctx, &eventbridge.PutEventsInput{Entries: many[:1]})
	var throttled *ebtypes.ThrottlingException
	if !errors.As(err, &throttled) {
		t.Fatalf("throttled PutEvents: %v", err)
	}
	if n := len(e.sb.PutEvents()); n != 2 {
		t.Fatalf("recorded %d events after failures, want 2", n)
	}
}
