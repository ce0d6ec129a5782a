package reliability_test

// Review of issue 21 (independent reviewer): failing tests for what the change still
// loses. Each test states the consequence it demonstrates.

import (
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestReview21ReferrerAfterSubjectWithAnUntaggedRuleElsewhere: issue 21 item 4 in the
// presence of a second rule. Rule "signed" sends team-a/** to mirror/ with untagged:
// false and referrers: true; rule "dr" sends the same repositories to dr/ with untagged
// images (the default). A signature pushed after its subject was replicated must reach
// mirror/ through the reconcile (the copy of its subject's tag brings it), as it does when
// "dr" does not exist (TestReconcileReferrerAfterSubject).
//
// backfill.Expand plans an untagged referrer as a plain untagged image as soon as any
// rule replicates untagged images of the repository, and only then follows its subject
// otherwise: the referrer goes to dr/ only, mirror/ never gets it — on every run, with
// nothing reported.
func TestReview21ReferrerAfterSubjectWithAnUntaggedRuleElsewhere(t *testing.T) {
	w := sandboxtest.Start(t)
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"mirror/team-a/app", "dr/team-a/app"} {
		w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(r), Tags: sandboxtest.Owned()})
		w.Dest.Push(t, r, "v1", img)
	}
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Source.Push(t, "team-a/app", "v1", img)
	sig := referrer(t, img)
	sigDigest := w.Source.Push(t, "team-a/app", "", sig)

	dest := func(prefix string) string {
		return fmt.Sprintf(`{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":%q}`,
			sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), sandboxtest.ExternalID, prefix)
	}
	rules := `{"rules":[` +
		`{"name":"signed","repositories":["team-a/**"],"untagged":false,"referrers":true,"destinations":[` + dest("mirror/") + `]},` +
		`{"name":"dr","repositories":["team-a/**"],"untagged":true,"referrers":false,"destinations":[` + dest("dr/") + `]}]}`
	s := startReconcile(t, w, rules)
	s.trigger(t, `{}`)
	s.wait(t)

	if got := w.Dest.Digest(t, "dr/team-a/app", sigDigest.String()); got != sigDigest.String() {
		t.Errorf("control: the referrer did not reach dr/ either (%q)", got)
	}
	if got := w.Dest.Digest(t, "mirror/team-a/app", sigDigest.String()); got != sigDigest.String() {
		t.Errorf("the referrer %s never reached mirror/team-a/app (rule \"signed\": referrers true); "+
			"reported failures: %v, dead letters: %d — the drift was acknowledged as done",
			sigDigest, s.metric("ReconcileFailures"), len(s.deadLetters(t)))
	}
}

// TestReview21ReferrerOfAReferrerAfterItsSubject: with untagged: false and referrers:
// true, a signature of an SBOM (a referrer whose subject is itself a referrer — notation
// and cosign sign attestations this way) pushed after the image and its SBOM were
// replicated never reaches the destination. The copy engine copies referrers three levels
// deep, so the work "copy the image's tag" would bring it; but backfill.Expand follows a
// referrer's subject only one level (x.subjects holds tagged images only), so the
// signature is neither planned nor counted, on every run.
func TestReview21ReferrerOfAReferrerAfterItsSubject(t *testing.T) {
	w := sandboxtest.Start(t)
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	sbom := referrer(t, img)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/team-a/app"), Tags: sandboxtest.Owned()})
	for _, side := range []struct {
		s    sandboxtest.Side
		repo string
	}{{w.Source, "team-a/app"}, {w.Dest, "mirror/team-a/app"}} {
		side.s.Push(t, side.repo, "v1", img)
		side.s.Push(t, side.repo, "", sbom)
	}
	sigOfSBOM := referrer(t, sbom)
	sigDigest := w.Source.Push(t, "team-a/app", "", sigOfSBOM)
	s := startReconcile(t, w, reconcileRules(w, `,"untagged":false,"referrers":true`))
	s.trigger(t, `{}`)
	s.wait(t)
	if got := w.Dest.Digest(t, "mirror/team-a/app", sigDigest.String()); got != sigDigest.String() {
		t.Errorf("the signature %s of the SBOM never reached the destination; reported failures: %v, dead letters: %d",
			sigDigest, s.metric("ReconcileFailures"), len(s.deadLetters(t)))
	}
	// Control: the work the plan should have sent — copy the subject's tag — brings it.
	subject, _ := img.Digest()
	body, err := ecrevent.Marshal(ecrevent.WorkItem{Kind: ecrevent.WorkItemKind, Version: ecrevent.WorkItemVersion, Action: ecrevent.WorkCopy, Rule: "all",
		Source:      ecrevent.ImageRef{AccountID: sandbox.SourceAccount, Region: sandbox.DefaultRegion, Repository: "team-a/app", Digest: subject.String(), Tag: "v1"},
		Destination: ecrevent.RepositoryRef{AccountID: sandbox.DestinationAccount, Region: sandbox.DefaultRegion, Repository: "mirror/team-a/app"},
		CreatedAt:   time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.q.SendMessage(w.Ctx, &sqs.SendMessageInput{QueueUrl: aws.String(s.urls["copy"]), MessageBody: aws.String(string(body))}); err != nil {
		t.Fatal(err)
	}
	s.wait(t)
	if got := w.Dest.Digest(t, "mirror/team-a/app", sigDigest.String()); got != sigDigest.String() {
		t.Errorf("control: copying %s:v1 did not bring the signature of its SBOM either", subject)
	}
}
