package reliability_test

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// reconcileRules replicates team-a/** under mirror/.
func reconcileRules(w *sandboxtest.World, extra string) string {
	return fmt.Sprintf(`{"rules":[{"name":"all","repositories":["team-a/**"]%s,"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
		extra, sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), sandboxtest.ExternalID)
}

// seedDrift creates n repositories team-a/rNN in the source and mirror/team-a/rNN in the
// destination, each with v1 on both sides and v2 in the source only: n tags of drift.
func seedDrift(t *testing.T, w *sandboxtest.World, n int) []string {
	t.Helper()
	base, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	return seedDriftOf(t, w, n, base)
}

// seedDriftOf is seedDrift with the image the repositories' manifests share.
func seedDriftOf(t *testing.T, w *sandboxtest.World, n int, base v1.Image) []string {
	t.Helper()
	ctx := w.Ctx
	src := ecr.NewFromConfig(w.Source.Config)
	raw, _ := base.RawManifest()
	mt, _ := base.MediaType()
	names := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		names[i] = fmt.Sprintf("team-a/r%03d", i)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			w.Source.CreateRepository(t, ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(names[i])})
			w.Dest.CreateRepository(t, ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/" + names[i]), Tags: sandboxtest.Owned()})
			w.Source.Push(t, names[i], "v1", base)
			w.Dest.Push(t, "mirror/"+names[i], "v1", base)
			variant := strings.Replace(string(raw), `"config"`, fmt.Sprintf(`"annotations":{"n":"%d"},"config"`, i), 1)
			if _, err := src.PutImage(ctx, &ecr.PutImageInput{RepositoryName: aws.String(names[i]), ImageManifest: aws.String(variant),
				ImageManifestMediaType: aws.String(string(mt)), ImageTag: aws.String("v2")}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return names
}

// outOfSync lists the repositories whose destination tags differ from the source's.
func outOfSync(t *testing.T, w *sandboxtest.World, names []string) []string {
	t.Helper()
	var out []string
	for _, n := range names {
		if fmt.Sprint(w.Source.Tags(t, w.Ctx, n)) != fmt.Sprint(w.Dest.Tags(t, w.Ctx, "mirror/"+n)) {
			out = append(out, n)
		}
	}
	return out
}

// holdFault keeps a persistent API fault armed until it has answered `answers` calls
// (proof that the work was retried, not acknowledged) or `most` has passed, then
// disarms it. It returns how many calls it answered.
func holdFault(t *testing.T, sb *sandbox.Sandbox, f sandbox.APIFault, answers int, most time.Duration) func() int {
	t.Helper()
	f.Count = -1
	armed, err := sb.ArmAPIFault(f)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		deadline := time.Now().Add(most)
		for armed.Answered() < answers && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		armed.Disarm()
		done <- armed.Answered()
	}()
	return func() int { return <-done }
}

// TestReconcileRetriesListingFailures: a repository whose source or destination listing
// is throttled for a while (more than the SDK's own retries cover) is repaired in the
// same run once the throttling ends; nothing goes to the dead-letter queue and nothing is
// acknowledged as handled before it was.
func TestReconcileRetriesListingFailures(t *testing.T) {
	for _, c := range []struct {
		name     string
		resource string
		account  string
	}{
		{"source", "*:repository/team-a/r003", sandbox.SourceAccount},
		{"destination", "*:repository/mirror/team-a/r003", sandbox.DestinationAccount},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := sandboxtest.Start(t)
			names := seedDrift(t, w, 6)
			s := startReconcile(t, w, reconcileRules(w, ""))
			answered := holdFault(t, w.SB, sandbox.APIFault{Service: "ecr", Operation: "DescribeImages", Account: c.account, Resource: c.resource}, 6, 12*time.Second)
			s.trigger(t, `{}`)
			n := answered()
			s.wait(t)
			if bad := outOfSync(t, w, names); len(bad) > 0 {
				t.Errorf("after the throttling ended (it answered %d calls), still out of sync: %v", n, bad)
			}
			if dl := s.deadLetters(t); len(dl) > 0 {
				t.Errorf("%d messages in the dead-letter queue", len(dl))
			}
		})
	}
}

// TestReconcileListingDeniedIsReported: a repository the source will not list
// (AccessDenied) is a permanent failure: reported with its code in the metrics the
// template alarms on, never counted as reconciled.
func TestReconcileListingDeniedIsReported(t *testing.T) {
	w := sandboxtest.Start(t)
	seedDrift(t, w, 3)
	s := startReconcile(t, w, reconcileRules(w, ""))
	if err := w.SB.InjectAPIFault(sandbox.APIFault{Service: "ecr", Operation: "DescribeImages", Account: sandbox.SourceAccount,
		Resource: "*:repository/team-a/r001", Count: -1, Code: "AccessDeniedException"}); err != nil {
		t.Fatal(err)
	}
	s.trigger(t, `{}`)
	s.wait(t)
	if got := s.metric("ReconcileFailures", "Code=AccessDeniedException"); got != 1 {
		t.Errorf("ReconcileFailures{Code=AccessDeniedException} = %v, want 1\n%s", got, s.emf.String())
	}
}

// TestReconcileScanSendFailures: while SQS fails entries of the scan's batches (its
// side: SenderFault false) for longer than one invocation, no repository is lost: every
// one is reconciled once SQS recovers, in the same run.
func TestReconcileScanSendFailures(t *testing.T) {
	w := sandboxtest.Start(t)
	names := seedDrift(t, w, 25)
	s := newReconcileStack(t, w, reconcileRules(w, ""))
	s.trigger(t, `{}`)
	// Longer than a sender may keep one batch waiting: the items must survive the
	// invocation that could not send them.
	answered := holdFault(t, w.SB, sandbox.APIFault{Service: "sqs", Operation: "SendMessageBatch", Resource: "*:rec-reconcile", Entries: 3}, 1000, 9*time.Second)
	s.start(t)
	n := answered()
	s.wait(t)
	if bad := outOfSync(t, w, names); len(bad) > 0 {
		t.Errorf("SQS failed entries of %d batches; never reconciled: %v", n, bad)
	}
	t.Logf("duplicate work items: %d", s.duplicates())
}

// TestReconcileTriggerSendFailures: a trigger that cannot send (SQS throttles the
// reconcile queue for longer than its invocation) fails, so Lambda retries it, and the
// run then covers every repository; it never answers success for work it did not send.
func TestReconcileTriggerSendFailures(t *testing.T) {
	w := sandboxtest.Start(t)
	names := seedDrift(t, w, 12)
	s := startReconcile(t, w, reconcileRules(w, ""))
	s.triggerTimeout = 3 * time.Second
	var answered []func() int
	for _, op := range []string{"SendMessage", "SendMessageBatch"} {
		answered = append(answered, holdFault(t, w.SB, sandbox.APIFault{Service: "sqs", Operation: op, Resource: "*:rec-reconcile", Code: "ThrottlingException"}, 1000, 3500*time.Millisecond))
	}
	s.trigger(t, `{}`)
	for _, a := range answered {
		a()
	}
	s.wait(t)
	if bad := outOfSync(t, w, names); len(bad) > 0 {
		t.Errorf("never reconciled: %v (trigger answered %v)", bad, s.triggerErrs)
	}
}

// TestReconcileReferrerAfterSubject: with untagged: false and referrers: true, a
// signature pushed after its subject was replicated reaches the destination through the
// reconcile (the copy of its subject's tag brings it).
func TestReconcileReferrerAfterSubject(t *testing.T) {
	w := sandboxtest.Start(t)
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/team-a/app"), Tags: sandboxtest.Owned()})
	subject := w.Source.Push(t, "team-a/app", "v1", img)
	w.Dest.Push(t, "mirror/team-a/app", "v1", img)
	sig := referrer(t, img)
	sigDigest := w.Source.Push(t, "team-a/app", "", sig)
	s := startReconcile(t, w, reconcileRules(w, `,"untagged":false,"referrers":true`))
	s.trigger(t, `{}`)
	s.wait(t)
	if got := w.Dest.Digest(t, "mirror/team-a/app", sigDigest.String()); got != sigDigest.String() {
		t.Errorf("the referrer %s of %s is not in the destination (logs:\n%s)", sigDigest, subject, grepLines(s.logs.String(), "error", "not processed"))
	}
	if dl := s.deadLetters(t); len(dl) > 0 {
		t.Errorf("%d messages in the dead-letter queue", len(dl))
	}
}

// referrer is an OCI artifact manifest whose subject is img.
func referrer(t *testing.T, img v1.Image) v1.Image {
	t.Helper()
	d, _ := img.Digest()
	size, _ := img.Size()
	mt, _ := img.MediaType()
	layer, err := random.Layer(64, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		t.Fatal(err)
	}
	sig = mutate.ConfigMediaType(sig, "application/vnd.dev.cosign.artifact.sig.v1+json")
	return mutate.Subject(sig, v1.Descriptor{MediaType: mt, Digest: d, Size: size}).(v1.Image)
}

// TestReconcileReachesEveryRepository: a registry listed over several pages, in an order
// that is not by name (ECR documents none), with the listing continued in another
// invocation: every repository is reconciled.
func TestReconcileReachesEveryRepository(t *testing.T) {
	const repos = 1100 // two pages of DescribeRepositories
	w := sandboxtest.Start(t)
	src := ecr.NewFromConfig(w.Source.Config)
	var names []string
	for i := range repos {
		n := fmt.Sprintf("team-a/s%04d", i)
		names = append(names, n)
		if _, err := src.CreateRepository(w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(n)}); err != nil {
			t.Fatal(err)
		}
	}
	s := startReconcile(t, w, reconcileRules(w, ""))
	// The first page's items take the trigger past its soft stop (a fifth of its time
	// before the deadline): the listing continues elsewhere.
	w.SB.SetLatency(60 * time.Millisecond)
	s.triggerTimeout = 1800 * time.Millisecond
	s.trigger(t, `{}`)
	w.SB.SetLatency(0)
	s.wait(t)
	logs := s.logs.String()
	var missing []string
	for _, n := range names {
		if !strings.Contains(logs, `"repository":"`+n+`"`) {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("%d of %d repositories never reconciled, e.g. %v", len(missing), repos, missing[:min(5, len(missing))])
	}
}

func grepLines(s string, words ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
