package backfill_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
)

// TestReview25InlineBackfillCopiesAGatedTag: the backfill function does not link the
// verifiers, so "in inline mode it sends gated copies to the copy queue for the replicate
// function to decide (with no queue they fail with GateNotConfigured)". But it copies in
// groups — every tag of one digest to one destination — and looks at the group's first
// item only: when an ungated rule (dev-*) and a gated one (v*) send two tags of one image
// to one destination, the group starts with dev-1, is not gated, and v1 is written too,
// decided by nobody. The deployed backfill function tags an unsigned, unscanned image v1
// in the gated destination.
func TestReview25InlineBackfillCopiesAGatedTag(t *testing.T) {
	e := start(t, `
rules:
  - name: dev
    repositories: ["team-a/*"]
    tags: ["dev-*"]
    destinations:
      - {accountId: "222222222222", region: us-east-1, roleArn: ROLE, externalId: EXTID, repositoryPrefix: mirror/, createRepository: true}
  - name: release
    repositories: ["team-a/*"]
    tags: ["v*"]
    require:
      scan: {severity: HIGH}
    destinations:
      - {accountId: "222222222222", region: us-east-1, roleArn: ROLE, externalId: EXTID, repositoryPrefix: mirror/, createRepository: true}
`)
	if _, err := ecr.NewFromConfig(e.src).CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")}); err != nil {
		t.Fatal(err)
	}
	img, _ := random.Image(256, 1)
	d := e.w.Source.Push(t, "team-a/app", "dev-1", img).String()
	e.w.Source.Push(t, "team-a/app", "v1", img) // never scanned
	resp, err := e.backfill().Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline})
	if err != nil {
		t.Fatal(err)
	}
	if tags := e.w.Dest.Tags(t, e.ctx, "mirror/team-a/app"); tags["v1"] != "" {
		t.Fatalf("the backfill function (no gate, no copy queue) tagged the unscanned %s v1 in the gated destination: %v (response %+v)", d, tags, resp)
	}
}
