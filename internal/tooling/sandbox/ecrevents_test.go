package sandbox_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/stack"
)

// imageAction is the detail of an ECR Image Action event, with image-tag told apart
// from an absent one.
type imageAction struct {
	Result            string  `json:"result"`
	RepositoryName    string  `json:"repository-name"`
	ImageDigest       string  `json:"image-digest"`
	ActionType        string  `json:"action-type"`
	ImageTag          *string `json:"image-tag"`
	ManifestMediaType string  `json:"manifest-media-type"`
	ArtifactMediaType string  `json:"artifact-media-type"`
}

func detailOf(t *testing.T, ev sandbox.RecordedEvent) imageAction {
	t.Helper()
	var d imageAction
	if err := json.Unmarshal(ev.Detail, &d); err != nil {
		t.Fatalf("detail %s: %v", ev.Detail, err)
	}
	return d
}

func tagOf(d imageAction) string {
	if d.ImageTag == nil {
		return "<none>"
	}
	return *d.ImageTag
}

// eventsSince returns the ECR events after the first n.
func eventsSince(sb *sandbox.Sandbox, n int) []sandbox.RecordedEvent {
	return sb.ECREvents()[n:]
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

type pusher struct {
	e    *env
	host string
	auth authn.Authenticator
	repo string
}

func (p pusher) write(t *testing.T, tagOrDigest string, img v1.Image) {
	t.Helper()
	if err := remote.Write(ref(t, p.host, p.repo, tagOrDigest), img, remote.WithAuth(p.auth), remote.WithContext(p.e.ctx)); err != nil {
		t.Fatal(err)
	}
}

func digestOf(t *testing.T, d interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func TestECRImageActionEvents(t *testing.T) {
	e, _ := startWithClock(t)
	cfg := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	createRepo(t, e.ctx, cfg, "team-a/app", ecrtypes.ImageTagMutabilityMutable)
	host, auth := registryAuth(t, e.ctx, cfg)
	p := pusher{e: e, host: host, auth: auth, repo: "team-a/app"}
	api := ecr.NewFromConfig(cfg)

	t.Run("push by tag", func(t *testing.T) {
		before := len(e.sb.ECREvents())
		img, err := random.Image(512, 2)
		if err != nil {
			t.Fatal(err)
		}
		p.write(t, "v1", img)
		evs := eventsSince(e.sb, before)
		if len(evs) != 1 {
			t.Fatalf("%d events, want 1: %+v", len(evs), evs)
		}
		ev := evs[0]
		t.Logf("event: %s", ev.Event)
		if ev.Source != "aws.ecr" || ev.DetailType != "ECR Image Action" || ev.Account != sandbox.SourceAccount ||
			ev.Region != sandbox.DefaultRegion || ev.EventBus != "default" || ev.Dropped || ev.Principal != "" {
			t.Fatalf("event: %+v", ev)
		}
		d := detailOf(t, ev)
		want := imageAction{Result: "SUCCESS", RepositoryName: "team-a/app", ImageDigest: digestOf(t, img), ActionType: "PUSH",
			ManifestMediaType: "application/vnd.docker.distribution.manifest.v2+json", ArtifactMediaType: "application/vnd.docker.container.image.v1+json"}
		if tagOf(d) != "v1" {
			t.Fatalf("image-tag = %s, want v1", tagOf(d))
		}
		d.ImageTag = nil
		if d != want {
			t.Fatalf("detail = %+v, want %+v", d, want)
		}
		// The envelope, as targets receive it.
		var env struct {
			Version    string          `json:"version"`
			ID         string          `json:"id"`
			DetailType string          `json:"detail-type"`
			Source     string          `json:"source"`
			Account    string          `json:"account"`
			Time       string          `json:"time"`
			Region     string          `json:"region"`
			Resources  json.RawMessage `json:"resources"`
			Detail     json.RawMessage `json:"detail"`
		}
		if err := json.Unmarshal(ev.Event, &env); err != nil {
			t.Fatal(err)
		}
		at, err := time.Parse(time.RFC3339, env.Time)
		if env.Version != "0" || !uuidPattern.MatchString(env.ID) || env.ID != ev.EventID || env.DetailType != "ECR Image Action" ||
			env.Source != "aws.ecr" || env.Account != sandbox.SourceAccount || env.Region != sandbox.DefaultRegion ||
			string(env.Resources) != "[]" || string(env.Detail) != string(ev.Detail) || err != nil || time.Since(at) > time.Minute {
			t.Fatalf("envelope %s", ev.Event)
		}
		if !strings.HasPrefix(string(ev.Event), `{"version":"0","id":`) {
			t.Fatalf("envelope field order: %s", ev.Event)
		}
	})

	var untagged string
	t.Run("push by digest has no image-tag", func(t *testing.T) {
		before := len(e.sb.ECREvents())
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		untagged = digestOf(t, img)
		p.write(t, untagged, img)
		evs := eventsSince(e.sb, before)
		if len(evs) != 1 {
			t.Fatalf("%d events, want 1", len(evs))
		}
		if d := detailOf(t, evs[0]); d.ImageTag != nil || d.ImageDigest != untagged || d.ActionType != "PUSH" {
			t.Fatalf("detail %s", evs[0].Detail)
		}
		if strings.Contains(string(evs[0].Event), "image-tag") {
			t.Fatalf("a digest-only push carries image-tag: %s", evs[0].Event)
		}
	})

	t.Run("index: children by digest, then the index", func(t *testing.T) {
		before := len(e.sb.ECREvents())
		idx, err := random.Index(256, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteIndex(ref(t, host, "team-a/app", "multi"), idx, remote.WithAuth(auth), remote.WithContext(e.ctx)); err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		children := map[string]bool{}
		for _, m := range im.Manifests {
			children[m.Digest.String()] = true
		}
		evs := eventsSince(e.sb, before)
		if len(evs) != 3 {
			t.Fatalf("%d events, want 3", len(evs))
		}
		for _, ev := range evs[:2] {
			d := detailOf(t, ev)
			if d.ImageTag != nil || !children[d.ImageDigest] || d.ManifestMediaType != "application/vnd.docker.distribution.manifest.v2+json" {
				t.Fatalf("child event %s", ev.Detail)
			}
			delete(children, d.ImageDigest)
		}
		d := detailOf(t, evs[2])
		if tagOf(d) != "multi" || d.ImageDigest != digestOf(t, idx) || d.ManifestMediaType != "application/vnd.oci.image.index.v1+json" ||
			d.ArtifactMediaType != "application/vnd.oci.image.index.v1+json" {
			t.Fatalf("index event %s", evs[2].Detail)
		}
	})

	var v1Digest, v1Manifest string
	t.Run("PutImage", func(t *testing.T) {
		got, err := api.BatchGetImage(e.ctx, &ecr.BatchGetImageInput{RepositoryName: aws.String("team-a/app"), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("v1")}}})
		if err != nil || len(got.Images) != 1 {
			t.Fatalf("BatchGetImage: %v %+v", err, got)
		}
		v1Digest, v1Manifest = aws.ToString(got.Images[0].ImageId.ImageDigest), aws.ToString(got.Images[0].ImageManifest)
		before := len(e.sb.ECREvents())
		if _, err := api.PutImage(e.ctx, &ecr.PutImageInput{RepositoryName: aws.String("team-a/app"), ImageManifest: aws.String(v1Manifest), ImageTag: aws.String("v2")}); err != nil {
			t.Fatal(err)
		}
		// Already there under that tag: refused, no event.
		if _, err := api.PutImage(e.ctx, &ecr.PutImageInput{RepositoryName: aws.String("team-a/app"), ImageManifest: aws.String(v1Manifest), ImageTag: aws.String("v2")}); errorCode(err) != "ImageAlreadyExistsException" {
			t.Fatalf("second PutImage: %v", err)
		}
		evs := eventsSince(e.sb, before)
		if len(evs) != 1 {
			t.Fatalf("%d events, want 1", len(evs))
		}
		if d := detailOf(t, evs[0]); tagOf(d) != "v2" || d.ImageDigest != v1Digest || d.ActionType != "PUSH" {
			t.Fatalf("detail %s", evs[0].Detail)
		}
	})

	t.Run("deletes", func(t *testing.T) {
		before := len(e.sb.ECREvents())
		out, err := api.BatchDeleteImage(e.ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String("team-a/app"), ImageIds: []ecrtypes.ImageIdentifier{
			{ImageTag: aws.String("v2")},        // v1 still points at the image: only the tag goes
			{ImageDigest: aws.String(untagged)}, // by digest
			{ImageTag: aws.String("missing")},   // a failure: no event
		}})
		if err != nil || len(out.ImageIds) != 2 || len(out.Failures) != 1 {
			t.Fatalf("BatchDeleteImage: %v %+v", err, out)
		}
		evs := eventsSince(e.sb, before)
		if len(evs) != 2 {
			t.Fatalf("%d events, want 2", len(evs))
		}
		if d := detailOf(t, evs[0]); d.ActionType != "DELETE" || tagOf(d) != "v2" || d.ImageDigest != v1Digest || d.Result != "SUCCESS" || d.RepositoryName != "team-a/app" {
			t.Fatalf("delete by tag: %s", evs[0].Detail)
		}
		if d := detailOf(t, evs[1]); d.ActionType != "DELETE" || d.ImageTag != nil || d.ImageDigest != untagged {
			t.Fatalf("delete by digest: %s", evs[1].Detail)
		}
		// Through the registry API too.
		if err := remote.Delete(ref(t, host, "team-a/app", "v1"), remote.WithAuth(auth), remote.WithContext(e.ctx)); err != nil {
			t.Fatal(err)
		}
		evs = eventsSince(e.sb, before+2)
		if len(evs) != 1 || detailOf(t, evs[0]).ActionType != "DELETE" || tagOf(detailOf(t, evs[0])) != "v1" || detailOf(t, evs[0]).ImageDigest != v1Digest {
			t.Fatalf("registry DELETE: %+v", evs)
		}
	})
}

// templatePattern is the pattern of template.yaml's ImageActionRule with a
// RepositoryPrefixFilter of "team-a/" and MirrorDeletes on (stack_test.go checks it is
// the template's).
var templatePattern = stack.ImageActionPattern(sandbox.SourceAccount, true, "team-a/")

func createQueue(t *testing.T, e *env, client *sqs.Client, name string) (url, arn string) {
	t.Helper()
	q, err := client.CreateQueue(e.ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	a, err := client.GetQueueAttributes(e.ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(q.QueueUrl), a.Attributes["QueueArn"]
}

// drain receives every message of a queue (they stay in flight).
func drain(t *testing.T, e *env, client *sqs.Client, url string) []string {
	t.Helper()
	var bodies []string
	for {
		out, err := client.ReceiveMessage(e.ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			return bodies
		}
		for _, m := range out.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
		}
	}
}

func TestEventRulesDeliverToQueues(t *testing.T) {
	e, _ := startWithClock(t)
	cfg := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	sqsc := sqs.NewFromConfig(cfg)
	eb := eventbridge.NewFromConfig(cfg)
	replURL, replARN := createQueue(t, e, sqsc, "replication")
	pushURL, pushARN := createQueue(t, e, sqsc, "all-pushes")
	appURL, appARN := createQueue(t, e, sqsc, "app-events")
	offURL, offARN := createQueue(t, e, sqsc, "disabled")

	// The template's rule through the Go API.
	if err := e.sb.PutRule(sandbox.SourceAccount, sandbox.DefaultRegion, sandbox.Rule{Name: "ImageActionRule", EventPattern: templatePattern, Targets: []string{replARN}}); err != nil {
		t.Fatal(err)
	}
	// The others through the EventBridge API, as the AWS CLI or an SDK would.
	put := func(name, pattern, state, target string) {
		t.Helper()
		out, err := eb.PutRule(e.ctx, &eventbridge.PutRuleInput{Name: aws.String(name), EventPattern: aws.String(pattern), State: ebtypes.RuleState(state)})
		if err != nil {
			t.Fatal(err)
		}
		if want := "arn:aws:events:us-east-1:" + sandbox.SourceAccount + ":rule/" + name; aws.ToString(out.RuleArn) != want {
			t.Fatalf("RuleArn %s, want %s", aws.ToString(out.RuleArn), want)
		}
		tout, err := eb.PutTargets(e.ctx, &eventbridge.PutTargetsInput{Rule: aws.String(name), Targets: []ebtypes.Target{{Id: aws.String("q"), Arn: aws.String(target)}}})
		if err != nil || tout.FailedEntryCount != 0 {
			t.Fatalf("PutTargets: %v %+v", err, tout)
		}
	}
	put("AllPushes", `{"source":["aws.ecr"],"detail-type":["ECR Image Action"],"detail":{"action-type":["PUSH"]}}`, "ENABLED", pushARN)
	put("AppEvents", `{"source":["my.app"]}`, "", appARN)
	put("Disabled", `{"source":["aws.ecr"]}`, "DISABLED", offARN)
	put("Ghost", `{"source":["my.app"]}`, "", "arn:aws:sqs:us-east-1:"+sandbox.SourceAccount+":no-such-queue")

	if _, err := eb.PutRule(e.ctx, &eventbridge.PutRuleInput{Name: aws.String("bad"), EventPattern: aws.String(`{"source":"aws.ecr"}`)}); errorCode(err) != "InvalidEventPatternException" {
		t.Fatalf("invalid pattern: %v", err)
	}
	if out, err := eb.PutTargets(e.ctx, &eventbridge.PutTargetsInput{Rule: aws.String("AppEvents"), Targets: []ebtypes.Target{{Id: aws.String("fn"), Arn: aws.String("arn:aws:lambda:us-east-1:111111111111:function:f")}}}); err != nil || out.FailedEntryCount != 1 {
		t.Fatalf("a Lambda target: %v %+v", err, out)
	}
	if _, err := eb.PutTargets(e.ctx, &eventbridge.PutTargetsInput{Rule: aws.String("nope"), Targets: []ebtypes.Target{{Id: aws.String("q"), Arn: aws.String(appARN)}}}); errorCode(err) != "ResourceNotFoundException" {
		t.Fatalf("PutTargets on a missing rule: %v", err)
	}
	list, err := eb.ListRules(e.ctx, &eventbridge.ListRulesInput{})
	if err != nil || len(list.Rules) != 5 || aws.ToString(list.Rules[0].Name) != "AllPushes" || list.Rules[2].State != ebtypes.RuleStateDisabled {
		t.Fatalf("ListRules: %v %+v", err, list)
	}
	targets, err := eb.ListTargetsByRule(e.ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String("ImageActionRule")})
	if err != nil || len(targets.Targets) != 1 || aws.ToString(targets.Targets[0].Arn) != replARN || aws.ToString(targets.Targets[0].Id) != "replication" {
		t.Fatalf("ListTargetsByRule: %v %+v", err, targets)
	}

	mark := e.sb.AccessLogMark()
	createRepo(t, e.ctx, cfg, "team-a/app", ecrtypes.ImageTagMutabilityMutable)
	createRepo(t, e.ctx, cfg, "team-b/app", ecrtypes.ImageTagMutabilityMutable)
	host, auth := registryAuth(t, e.ctx, cfg)
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	pusher{e: e, host: host, auth: auth, repo: "team-a/app"}.write(t, "v1", img) // replication, all-pushes
	pusher{e: e, host: host, auth: auth, repo: "team-b/app"}.write(t, "v1", img) // all-pushes
	if _, err := ecr.NewFromConfig(cfg).BatchDeleteImage(e.ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String("team-a/app"), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("v1")}}}); err != nil {
		t.Fatal(err) // replication
	}
	if _, err := eb.PutEvents(e.ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{
		{Source: aws.String("my.app"), DetailType: aws.String("Thing Happened"), Detail: aws.String(`{"n":1}`)}, // app-events
		{Source: aws.String("other.app"), DetailType: aws.String("Thing Happened"), Detail: aws.String(`{"n":2}`)},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := e.sb.WaitEventsDelivered(e.ctx); err != nil {
		t.Fatal(err)
	}

	evs := e.sb.ECREvents()
	if len(evs) != 3 {
		t.Fatalf("%d ECR events, want 3", len(evs))
	}
	bodies := func(url string) []string { return drain(t, e, sqsc, url) }
	if got, want := bodies(replURL), []string{string(evs[0].Event), string(evs[2].Event)}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("replication queue:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got, want := bodies(pushURL), []string{string(evs[0].Event), string(evs[1].Event)}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("all-pushes queue:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	put0 := e.sb.PutEvents()
	if got := bodies(appURL); len(put0) != 2 || len(got) != 1 || got[0] != string(put0[0].Event) || !strings.Contains(got[0], `"detail":{"n":1}`) {
		t.Fatalf("app-events queue: %q (put: %+v)", got, put0)
	}
	if got := bodies(offURL); len(got) != 0 {
		t.Fatalf("the disabled rule delivered %q", got)
	}
	ds := e.sb.Deliveries()
	if len(ds) != 6 {
		t.Fatalf("%d deliveries, want 6: %+v", len(ds), ds)
	}
	for _, d := range ds {
		if ghost := d.Rule == "Ghost"; ghost != (d.MessageID == "") || ghost != strings.HasPrefix(d.Error, "QueueDoesNotExist") {
			t.Fatalf("delivery %+v", d)
		}
	}
	for _, en := range e.sb.AccessLogSince(mark) {
		if en.Service == "sqs" && en.Operation == "SendMessage" {
			t.Fatalf("EventBridge's send is in the access log as a call: %+v", en)
		}
	}

	// A rule with targets is not deleted; without, it is.
	if _, err := eb.DeleteRule(e.ctx, &eventbridge.DeleteRuleInput{Name: aws.String("AppEvents")}); errorCode(err) != "ValidationException" {
		t.Fatalf("DeleteRule with targets: %v", err)
	}
	if _, err := eb.RemoveTargets(e.ctx, &eventbridge.RemoveTargetsInput{Rule: aws.String("AppEvents"), Ids: []string{"q"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := eb.DeleteRule(e.ctx, &eventbridge.DeleteRuleInput{Name: aws.String("AppEvents")}); err != nil {
		t.Fatal(err)
	}
	if _, err := eb.DescribeRule(e.ctx, &eventbridge.DescribeRuleInput{Name: aws.String("AppEvents")}); errorCode(err) != "ResourceNotFoundException" {
		t.Fatalf("DescribeRule after delete: %v", err)
	}
	if rules := e.sb.Rules(sandbox.SourceAccount, sandbox.DefaultRegion); len(rules) != 4 || rules[1].Name != "Disabled" || rules[3].Targets[0] != replARN {
		t.Fatalf("Rules: %+v", rules)
	}
}

func TestDropEvents(t *testing.T) {
	e, _ := startWithClock(t)
	cfg := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	sqsc := sqs.NewFromConfig(cfg)
	url, arn := createQueue(t, e, sqsc, "replication")
	if err := e.sb.PutRule(sandbox.SourceAccount, sandbox.DefaultRegion, sandbox.Rule{Name: "r", EventPattern: templatePattern, Targets: []string{arn}}); err != nil {
		t.Fatal(err)
	}
	createRepo(t, e.ctx, cfg, "team-a/app", ecrtypes.ImageTagMutabilityMutable)
	host, auth := registryAuth(t, e.ctx, cfg)
	p := pusher{e: e, host: host, auth: auth, repo: "team-a/app"}
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}

	e.sb.DropEvents(1)
	if n := e.sb.PendingFaults(); n != 1 {
		t.Fatalf("PendingFaults = %d, want 1", n)
	}
	p.write(t, "a", img)
	p.write(t, "b", img)
	e.sb.DropEventFraction(1, 7)
	p.write(t, "c", img)
	e.sb.ClearFaults()
	p.write(t, "d", img)
	if err := e.sb.WaitEventsDelivered(e.ctx); err != nil {
		t.Fatal(err)
	}
	var dropped, kept []string
	for _, ev := range e.sb.ECREvents() {
		if ev.Dropped {
			dropped = append(dropped, tagOf(detailOf(t, ev)))
		} else {
			kept = append(kept, tagOf(detailOf(t, ev)))
		}
	}
	if strings.Join(dropped, ",") != "a,c" || strings.Join(kept, ",") != "b,d" {
		t.Fatalf("dropped %v, kept %v", dropped, kept)
	}
	if n := e.sb.FaultsFired()["events:dropped"]; n != 2 {
		t.Fatalf("events:dropped = %d, want 2", n)
	}
	got := drain(t, e, sqsc, url)
	if len(got) != 2 || !strings.Contains(got[0], `"image-tag":"b"`) || !strings.Contains(got[1], `"image-tag":"d"`) {
		t.Fatalf("queue: %q", got)
	}

	// A fraction drops about that share, reproducibly for a seed.
	run := func(seed uint64, prefix string) []bool {
		before := len(e.sb.ECREvents())
		e.sb.DropEventFraction(0.5, seed)
		defer e.sb.DropEventFraction(0, 0)
		for i := range 16 {
			p.write(t, fmt.Sprintf("%s%d", prefix, i), img)
		}
		var out []bool
		for _, ev := range eventsSince(e.sb, before) {
			out = append(out, ev.Dropped)
		}
		return out
	}
	a, b := run(42, "x"), run(42, "y")
	n := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("seed 42 dropped %v, then %v", a, b)
		}
		if a[i] {
			n++
		}
	}
	if len(a) != 16 || n == 0 || n == len(a) {
		t.Fatalf("fraction 0.5 dropped %d of %d", n, len(a))
	}
}
