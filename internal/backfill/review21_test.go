package backfill

// Review of issue 21 (independent reviewer): failing tests for the plan's referrers.

import (
	"testing"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// TestReview21ReferrerPushedSinceFollowsAnOlderSubject: a reconcile (or backfill) scoped
// with "since" skips images pushed before it. A signature pushed after since, whose
// subject was pushed before, is in scope — but Expand only learns a subject's referrer
// targets from the subject itself, which since skipped, so the signature is neither
// planned nor counted (not in SkippedBefore, not in Candidates, no failure): an operator
// who runs {"since": <yesterday>} to repair yesterday's signatures gets "in sync".
func TestReview21ReferrerPushedSinceFollowsAnOlderSubject(t *testing.T) {
	doc := mustRules(t, false, true)
	since := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	imgs := []Image{
		{Digest: dg(1), Tags: []string{"v1"}, PushedAt: since.Add(-24 * time.Hour)},
		{Digest: dg(2), Subject: dg(1), PushedAt: since.Add(time.Hour)}, // the signature, pushed since
	}
	ex := Expand(doc, "team/app", imgs, since)
	planned := 0
	for _, c := range ex.Candidates {
		if c.Digest == dg(2) {
			planned++
		}
	}
	if planned == 0 {
		t.Errorf("the signature pushed after since is not planned (candidates %d, skipped before since %d, images seen %d): "+
			"dropped without a count", len(ex.Candidates), ex.SkippedBefore, ex.ImagesSeen)
	}
}

// TestReview21ReferrerFollowsItsSubjectBesideAnUntaggedRule is the plan-level form of
// internal/tooling/reliability's TestReview21ReferrerAfterSubjectWithAnUntaggedRuleElsewhere: a
// second rule that replicates untagged images of the repository elsewhere takes the
// referrer away from the referrers-only rule's destination.
func TestReview21ReferrerFollowsItsSubjectBesideAnUntaggedRule(t *testing.T) {
	doc, err := rules.Parse([]byte(`
rules:
  - name: signed
    repositories: ["team/**"]
    untagged: false
    referrers: true
    destinations:
      - {accountId: "222222222222", region: eu-west-1, repositoryPrefix: m/}
  - name: dr
    repositories: ["team/**"]
    untagged: true
    referrers: false
    destinations:
      - {accountId: "333333333333", region: us-east-1, repositoryPrefix: dr/}
`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	imgs := []Image{
		{Digest: dg(1), Tags: []string{"v1"}, PushedAt: now},
		{Digest: dg(2), Subject: dg(1), PushedAt: now},
	}
	ex := Expand(doc, "team/app", imgs, time.Time{})
	toSigned := false
	for _, c := range ex.Candidates {
		if c.Target.Rule == "signed" && (c.Digest == dg(2)) {
			toSigned = true
		}
	}
	if !toSigned {
		t.Errorf("the referrer %s is not planned for rule \"signed\" (referrers: true); candidates: %+v", dg(2), ex.Candidates)
	}
}

// TestReview21ReferrerOfAReferrerIsPlanned is the plan-level form of internal/tooling/reliability's
// TestReview21ReferrerOfAReferrerAfterItsSubject: a signature (dg(3)) of an SBOM (dg(2))
// of a tagged image (dg(1)) is planned nowhere when the rule copies referrers but not
// untagged images.
func TestReview21ReferrerOfAReferrerIsPlanned(t *testing.T) {
	doc := mustRules(t, false, true)
	now := time.Now()
	imgs := []Image{
		{Digest: dg(1), Tags: []string{"v1"}, PushedAt: now},
		{Digest: dg(2), Subject: dg(1), PushedAt: now},
		{Digest: dg(3), Subject: dg(2), PushedAt: now},
	}
	ex := Expand(doc, "team/app", imgs, time.Time{})
	planned := map[string]int{}
	for _, c := range ex.Candidates {
		planned[c.Digest]++
	}
	if planned[dg(2)] == 0 || planned[dg(3)] == 0 {
		t.Errorf("candidates per digest %v: the SBOM and its signature must both follow the tagged image", planned)
	}
}
