package backfill

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

func mustRules(t testing.TB, untagged, referrers bool) *rules.Document {
	t.Helper()
	doc, err := rules.Parse(fmt.Appendf(nil, `
rules:
  - name: prod
    repositories: ["team/**"]
    tags: ["v*"]
    untagged: %t
    referrers: %t
    destinations:
      - {accountId: "222222222222", region: eu-west-1, repositoryPrefix: m/}
      - {accountId: "333333333333", region: us-east-1}
`, untagged, referrers))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func dg(n int) string { return fmt.Sprintf("sha256:%064x", n) }

func TestDiffCases(t *testing.T) {
	doc := mustRules(t, false, true)
	now := time.Now()
	imgs := []Image{
		{Digest: dg(1), Tags: []string{"v1", "latest"}, PushedAt: now}, // latest: out of the tag scope
		{Digest: dg(2), Tags: []string{"v2"}, PushedAt: now},
		{Digest: dg(3), Tags: []string{"v3"}, PushedAt: now},
		{Digest: dg(4), Tags: []string{"v4"}, PushedAt: now},
		{Digest: dg(5), PushedAt: now},                                           // untagged, rule says no
		{Digest: dg(6), PushedAt: now, Subject: dg(2), ArtifactMediaType: "sig"}, // referrer of v2
		{Digest: dg(7), Tags: []string{"sha256-" + strings.Repeat("a", 64) + ".sig"}, PushedAt: now},
		{Digest: dg(8), Tags: []string{"v8"}, PushedAt: now.Add(-48 * time.Hour)}, // before since
		{Digest: dg(10), PushedAt: now, Subject: dg(1), ArtifactMediaType: "sig"}, // referrer of v1, pushed later
	}
	eu := ecrname.Repo{Registry: ecrname.Registry{AccountID: "222222222222", Region: "eu-west-1"}, Name: "m/team/app"}
	listings := map[ecrname.Repo]*Listing{
		eu: {Exists: true, Digests: map[string]bool{dg(1): true, dg(3): true, dg(9): true}, Tags: map[string]string{"v1": dg(1), "v4": dg(9)}},
		// 333333333333: repository missing
	}
	ex, d := Plan(doc, "team/app", imgs, now.Add(-time.Hour), listings)
	if ex.ImagesSeen != 9 || ex.SkippedBefore != 1 {
		t.Fatalf("expansion: %+v", ex)
	}
	got := map[string]string{}
	for _, w := range d.Work {
		got[w.Target.Destination.AccountID+" "+w.Digest[len(w.Digest)-1:]+" "+w.Tag] = w.Reason
	}
	// A referrer the destination lacks is work on its subject's tag (the rule copies
	// referrers, not untagged images: the copy of the tag brings them); v2's referrer
	// rides with v2's own copy.
	want := map[string]string{
		"222222222222 1 v1": ReasonReferrerMissing + " (" + dg(10) + ")",
		"222222222222 2 v2": ReasonDigestMissing,
		"222222222222 3 v3": ReasonTagMissing,
		"222222222222 4 v4": ReasonTagElsewhere,
		"222222222222 7 sha256-" + strings.Repeat("a", 64) + ".sig": ReasonDigestMissing,
	}
	for _, dd := range []string{"1 v1", "2 v2", "3 v3", "4 v4", "7 sha256-" + strings.Repeat("a", 64) + ".sig"} {
		want["333333333333 "+dd] = ReasonRepositoryMissing
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("work:\n got %v\nwant %v", got, want)
	}
	if d.InSync != 1 || !d.PerTarget[ecrname.Repo{Registry: ecrname.Registry{AccountID: "333333333333", Region: "us-east-1"}, Name: "team/app"}].CreateRepository || d.PerTarget[eu].Work != 5 {
		t.Fatalf("totals: %d %+v", d.InSync, d.PerTarget)
	}
	// Digest-only work sorts first (children and referrers before what points at them).
	for i := range d.Work[1:] {
		if d.Work[i].Tag != "" && d.Work[i+1].Tag == "" {
			t.Fatalf("digest-only work after tagged work: %+v", d.Work)
		}
	}
	// Resuming after a key skips exactly the work up to it.
	if rest := After(d.Work, d.Work[3].Key()); len(rest) != len(d.Work)-4 {
		t.Fatalf("after: %d of %d", len(rest), len(d.Work))
	}
}

func TestUntaggedFollowsRule(t *testing.T) {
	imgs := []Image{{Digest: dg(1)}, {Digest: dg(2), Tags: []string{"v2"}}}
	_, d := Plan(mustRules(t, true, true), "team/app", imgs, time.Time{}, nil)
	if len(d.Work) != 4 || d.Work[0].Tag != "" || d.Work[1].Tag != "" {
		t.Fatalf("untagged on: %+v", d.Work)
	}
	_, d = Plan(mustRules(t, false, true), "other/app", imgs, time.Time{}, nil)
	if len(d.Work) != 0 {
		t.Fatalf("out of scope: %+v", d.Work)
	}
}

func TestParseRequest(t *testing.T) {
	r, err := ParseRequest([]byte(`{"repositories":["team-a/*"],"tags":["v*"],"since":"2024-01-01T00:00:00Z","dryRun":true,"mode":"enqueue","continuationToken":""}`))
	if err != nil || !r.DryRun || r.Mode != ModeEnqueue || r.Since.Year() != 2024 || r.Repositories[0] != "team-a/*" {
		t.Fatalf("%+v %v", r, err)
	}
	for body, want := range map[string]string{
		`{"repos":["x"]}`:                 `unknown field "repos"`,
		`{"since":"yesterday"}`:           "since:",
		`{"mode":"turbo"}`:                "mode:",
		`{"dryRun":"yes"}`:                "dryRun",
		`{"continuationToken":"!!"}`:      "continuationToken",
		`{"continuationToken":"e30"}`:     "continuationToken",
		`{"dryRun":true} {"dryRun":true}`: "trailing",
	} {
		if _, err := ParseRequest([]byte(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
	if r, err := ParseRequest(nil); err != nil || r.Mode != "" {
		t.Fatalf("empty: %+v %v", r, err)
	}
	tok := encodeToken(position{RepoIndex: 3, Repository: "a/b", After: "1|x"})
	if p, err := decodeToken(tok); err != nil || p.Repository != "a/b" || p.After != "1|x" || p.RepoIndex != 3 {
		t.Fatalf("token: %+v %v", p, err)
	}
}

// BenchmarkPlan diffs 100,000 images (one tag each, every tenth also untagged-only) in
// one repository against one destination holding half of them.
func BenchmarkPlan(b *testing.B) {
	doc, err := rules.Parse([]byte(`
rules:
  - name: all
    destinations:
      - {accountId: "222222222222", region: eu-west-1}
`))
	if err != nil {
		b.Fatal(err)
	}
	const n = 100_000
	imgs := make([]Image, n)
	l := &Listing{Exists: true, Digests: map[string]bool{}, Tags: map[string]string{}}
	for i := range imgs {
		imgs[i] = Image{Digest: dg(i), PushedAt: time.Unix(int64(i), 0)}
		if i%10 != 0 {
			imgs[i].Tags = []string{fmt.Sprintf("build-%d", i)}
		}
		if i%2 == 0 {
			l.Digests[dg(i)] = true
			for _, t := range imgs[i].Tags {
				l.Tags[t] = dg(i)
			}
		}
	}
	listings := map[ecrname.Repo]*Listing{{Registry: ecrname.Registry{AccountID: "222222222222", Region: "eu-west-1"}, Name: "app"}: l}
	b.ReportAllocs()
	for b.Loop() {
		_, d := Plan(doc, "app", imgs, time.Time{}, listings)
		if len(d.Work) != n/2 {
			b.Fatalf("work %d", len(d.Work))
		}
	}
}

// TestWorkSize: a copy's Size is the listing's imageSizeInBytes when the destination
// lacks the digest, 0 when only a tag is written, and 0 for an index whose platforms
// (untagged in the listing) are copies of their own.
func TestWorkSize(t *testing.T) {
	const index = "application/vnd.oci.image.index.v1+json"
	now := time.Now()
	imgs := []Image{
		{Digest: dg(1), Tags: []string{"v1"}, PushedAt: now, Size: 100},
		{Digest: dg(2), Tags: []string{"v2"}, PushedAt: now, Size: 200},
		{Digest: dg(3), Tags: []string{"v3"}, PushedAt: now, Size: 300, MediaType: index}, // largest platform: 300
		{Digest: dg(4), PushedAt: now, Size: 300},                                         // a platform of v3
	}
	eu := ecrname.Repo{Registry: ecrname.Registry{AccountID: "222222222222", Region: "eu-west-1"}, Name: "m/team/app"}
	us := ecrname.Repo{Registry: ecrname.Registry{AccountID: "333333333333", Region: "us-east-1"}, Name: "team/app"}
	for _, tc := range []struct {
		untagged bool
		want     map[string]int64 // account digest tag → size
	}{
		{true, map[string]int64{"2 1 v1": 0, "2 2 v2": 200, "2 3 v3": 0, "2 4 ": 300, "3 1 v1": 100, "3 2 v2": 200, "3 3 v3": 0, "3 4 ": 300}},
		{false, map[string]int64{"2 1 v1": 0, "2 2 v2": 200, "2 3 v3": 300, "3 1 v1": 100, "3 2 v2": 200, "3 3 v3": 300}},
	} {
		listings := map[ecrname.Repo]*Listing{
			eu: {Exists: true, Digests: map[string]bool{dg(1): true}, Tags: map[string]string{}}, // v1's digest is there, untagged
			us: {Exists: true, Digests: map[string]bool{}, Tags: map[string]string{}},
		}
		_, d := Plan(mustRules(t, tc.untagged, true), "team/app", imgs, time.Time{}, listings)
		got := map[string]int64{}
		for _, w := range d.Work {
			got[w.Target.Destination.AccountID[:1]+" "+w.Digest[len(w.Digest)-1:]+" "+w.Tag] = w.Size
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("untagged %v: sizes\n got %v\nwant %v", tc.untagged, got, tc.want)
		}
	}
}

// TestGatedTargets: a gated destination gets tagged images only; a referrer or a cosign
// tag of an image it gets is work on that image (whose copy brings them), one of an
// image it does not get goes nowhere. The ungated destination of the same rule gets all.
func TestGatedTargets(t *testing.T) {
	doc, err := rules.Parse([]byte(`
rules:
  - name: prod
    repositories: ["team/**"]
    destinations:
      - {accountId: "222222222222", region: eu-west-1, require: {scan: {severity: HIGH}}}
      - {accountId: "333333333333", region: us-east-1}
`))
	if err != nil {
		t.Fatal(err)
	}
	sig := func(n int) string { return "sha256-" + strings.TrimPrefix(dg(n), "sha256:") + ".sig" }
	imgs := []Image{
		{Digest: dg(1), Tags: []string{"v1"}},
		{Digest: dg(2)},                 // untagged
		{Digest: dg(3), Subject: dg(1)}, // a referrer of v1
		{Digest: dg(4), Tags: []string{sig(1)}},
		{Digest: dg(5), Tags: []string{sig(9)}}, // the signature of an image not here
	}
	gated := ecrname.Repo{Registry: ecrname.Registry{AccountID: "222222222222", Region: "eu-west-1"}, Name: "team/app"}
	_, d := Plan(doc, "team/app", imgs, time.Time{}, map[ecrname.Repo]*Listing{gated: {Exists: true, Digests: map[string]bool{}, Tags: map[string]string{}}})
	var got []string
	for _, w := range d.Work {
		got = append(got, w.Target.Destination.AccountID+" "+w.Digest[len(w.Digest)-1:]+" "+w.Tag)
	}
	want := []string{
		"333333333333 2 ", "333333333333 3 ", "222222222222 1 v1", "333333333333 1 v1",
		"333333333333 4 " + sig(1), "333333333333 5 " + sig(9),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("work:\n got %v\nwant %v", got, want)
	}
	// The gated destination has v1 but not its signature: the work is v1 again.
	_, d = Plan(doc, "team/app", imgs, time.Time{}, map[ecrname.Repo]*Listing{gated: {Exists: true,
		Digests: map[string]bool{dg(1): true, dg(3): true}, Tags: map[string]string{"v1": dg(1)}}})
	for _, w := range d.Work {
		if w.Target.Destination.AccountID == "222222222222" && (w.Digest != dg(1) || w.Tag != "v1" || !strings.Contains(w.Reason, dg(4))) {
			t.Errorf("gated work %+v", w)
		}
	}
}
