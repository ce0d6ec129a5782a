package eventsource_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventsource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/stack"
)

// imageActionPattern is template.yaml's ImageActionRule pattern with RepositoryPrefixFilter
// "team-a/" and MirrorDeletes on (the stack package checks it is the template's).
var imageActionPattern = stack.ImageActionPattern(sandbox.SourceAccount, true, "team-a/")

// ecrEvent is what the test's function reads of an ECR Image Action event.
type ecrEvent struct {
	DetailType string `json:"detail-type"`
	Detail     struct {
		Repository string `json:"repository-name"`
		Digest     string `json:"image-digest"`
		Action     string `json:"action-type"`
		Tag        string `json:"image-tag"`
	} `json:"detail"`
}

// TestPushReachesTheFunction wires what template.yaml deploys, in the sandbox: an image
// pushed with go-containerregistry into the source registry makes ECR emit an event, the
// ImageActionRule sends it to the ReplicationQueue, and the event source invokes a
// function (here in-process, recording what it gets) with it. Clients find the sandbox
// through the standard AWS_ENDPOINT_URL_<SERVICE> variables.
func TestPushReachesTheFunction(t *testing.T) {
	sb, err := sandbox.New(sandbox.TwoAccounts(""))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	vars, err := sb.Env(sandbox.SourceAccount, sandbox.SourceUser, sandbox.DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range vars {
		t.Setenv(k, v)
	}
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client := sqs.NewFromConfig(cfg)
	h := &harness{sb: sb, client: client, ctx: ctx}

	// The stack's queues and rule.
	_, dlqARN := h.queue(t, "DeadLetterQueue", 30, "", 0)
	queueURL, queueARN := h.queue(t, "ReplicationQueue", 30, dlqARN, 5)
	if err := sb.PutRule(sandbox.SourceAccount, sandbox.DefaultRegion, sandbox.Rule{Name: "ImageActionRule", EventPattern: imageActionPattern, Targets: []string{queueARN}}); err != nil {
		t.Fatal(err)
	}

	// The function: records each event it is given.
	var mu sync.Mutex
	var got []ecrEvent
	var firstAt time.Time
	es, stop := h.start(t, eventsource.Config{
		QueueURL: queueURL, BatchSize: 5, MaximumConcurrency: 2, ReportBatchItemFailures: true, FunctionTimeout: 5 * time.Second,
		Invoke: func(ctx context.Context, payload []byte) ([]byte, error) {
			var batch events.SQSEvent
			if err := json.Unmarshal(payload, &batch); err != nil {
				return nil, err
			}
			mu.Lock()
			defer mu.Unlock()
			if firstAt.IsZero() {
				firstAt = time.Now()
				t.Logf("first payload: %s", payload)
			}
			for _, r := range batch.Records {
				var ev ecrEvent
				if err := json.Unmarshal([]byte(r.Body), &ev); err != nil {
					return nil, err
				}
				got = append(got, ev)
			}
			return json.Marshal(events.SQSEventResponse{})
		},
	})

	// Push as a user would: ECR's token, then the registry.
	ecrc := ecr.NewFromConfig(cfg)
	for _, repo := range []string{"team-a/app", "team-b/app"} {
		if _, err := ecrc.CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)}); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := ecrc.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(aws.ToString(tok.AuthorizationData[0].AuthorizationToken))
	user, pass, _ := strings.Cut(string(raw), ":")
	host := strings.TrimPrefix(aws.ToString(tok.AuthorizationData[0].ProxyEndpoint), "http://")
	auth := remote.WithAuth(&authn.Basic{Username: user, Password: pass})
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	push := func(repo, tag string) {
		t.Helper()
		ref, err := name.ParseReference(host + "/" + repo + ":" + tag)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img, auth, remote.WithContext(ctx)); err != nil {
			t.Fatal(err)
		}
	}
	pushed := time.Now()
	push("team-a/app", "v1")
	push("team-b/app", "v1") // outside the rule's prefix
	if err := sb.WaitEventsDelivered(ctx); err != nil {
		t.Fatal(err)
	}
	if err := es.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(got) != 1 || got[0].DetailType != "ECR Image Action" || got[0].Detail.Repository != "team-a/app" ||
		got[0].Detail.Action != "PUSH" || got[0].Detail.Tag != "v1" || got[0].Detail.Digest != digest.String() {
		t.Fatalf("the function got %+v", got)
	}
	t.Logf("from the push to the function: %s", firstAt.Sub(pushed))
	mu.Unlock()

	// A lost event never arrives (repairing that is the reconcile's job); the next ones do.
	sb.DropEvents(1)
	push("team-a/app", "lost")
	push("team-a/app", "v2")
	if _, err := ecrc.BatchDeleteImage(ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String("team-a/app"), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("v1")}}}); err != nil {
		t.Fatal(err)
	}
	if err := sb.WaitEventsDelivered(ctx); err != nil {
		t.Fatal(err)
	}
	if err := es.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	var tags []string
	for _, ev := range got {
		tags = append(tags, fmt.Sprintf("%s:%s", ev.Detail.Action, ev.Detail.Tag))
	}
	sort.Strings(tags[1:]) // two pollers: the last two may come in either order
	if strings.Join(tags, ",") != "PUSH:v1,DELETE:v1,PUSH:v2" {
		t.Fatalf("the function got %v", tags)
	}
	if st := es.Stats(); st.Deleted != 3 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
}
