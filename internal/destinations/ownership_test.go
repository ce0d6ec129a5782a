package destinations_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

func tag(k, v string) ecrtypes.Tag { return ecrtypes.Tag{Key: aws.String(k), Value: aws.String(v)} }

// destTags are a destination repository's resource tags.
func (w *world) destTags(t *testing.T, repo string) map[string]string {
	t.Helper()
	arn := fmt.Sprintf("arn:aws:ecr:%s:%s:repository/%s", sandbox.DefaultRegion, sandbox.DestinationAccount, repo)
	out, err := ecr.NewFromConfig(w.dstCfg).ListTagsForResource(w.ctx, &ecr.ListTagsForResourceInput{ResourceArn: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, tg := range out.Tags {
		m[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	return m
}

// TestCreatedRepositoryIsOwned: a repository the replicator creates carries its owner
// (the replicator's account), the source it mirrors and the mirrored tags — never a
// source's own ecr-replicator: tags (a source that is itself a mirror) — and later runs
// write to it.
func TestCreatedRepositoryIsOwned(t *testing.T) {
	w := newWorld(t)
	w.createSourceRepo(t, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app"),
		Tags: []ecrtypes.Tag{tag("team", "a"), tag(ecraccess.OwnerTag, "999999999999"), tag(ecraccess.SourceTag, "elsewhere")}})
	img, _ := random.Image(256, 1)
	d := w.push(t, "team-a/app", "v1", img)
	tg := targetFor("mirror/", "team-a/app")
	tg.Destination.MirrorRepositoryTags = true
	src := destinations.Image{Repo: srcRepo("team-a/app"), Digest: d.String(), Tag: "v1"}
	if r := one(t, w.mirror().Replicate(w.ctx, src, []rules.Target{tg})); r.Err != nil || !r.Created {
		t.Fatalf("first copy: %+v", r)
	}
	want := map[string]string{ecraccess.OwnerTag: sandbox.SourceAccount, "team": "a",
		ecraccess.SourceTag: "arn:aws:ecr:" + sandbox.DefaultRegion + ":" + sandbox.SourceAccount + ":repository/team-a/app"}
	if got := w.destTags(t, "mirror/team-a/app"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("created repository's tags = %v, want %v", got, want)
	}
	img2, _ := random.Image(256, 1)
	src.Digest = w.push(t, "team-a/app", "v2", img2).String()
	src.Tag = "v2"
	if r := one(t, w.mirror().Replicate(w.ctx, src, []rules.Target{tg})); r.Err != nil || r.Created || r.Outcome != destinations.Copied {
		t.Fatalf("a later run: %+v", r)
	}
}

// TestNotOwnedRepository: an existing destination repository without the replicator's
// owner tag — the destination's own, another replicator's — is a permanent, reported
// RepositoryNotOwned that says how to adopt it, and is never tagged by the replicator;
// once an administrator adopts it, the next run writes to it.
func TestNotOwnedRepository(t *testing.T) {
	w := newWorld(t)
	dst := ecr.NewFromConfig(w.dstCfg)
	for repo, tags := range map[string][]ecrtypes.Tag{"prod/payments": nil, "team-b/app": {tag(ecraccess.OwnerTag, "333333333333")}} {
		if _, err := dst.CreateRepository(w.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo), Tags: tags}); err != nil {
			t.Fatal(err)
		}
		w.createSourceRepo(t, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
		img, _ := random.Image(256, 1)
		src := destinations.Image{Repo: srcRepo(repo), Digest: w.push(t, repo, "latest", img).String(), Tag: "latest"}
		mark := w.sb.AccessLogMark()
		r := one(t, w.mirror().Replicate(w.ctx, src, []rules.Target{targetFor("", repo)}))
		msg := fmt.Sprint(r.Err)
		if r.Code != destinations.CodeRepositoryNotOwned || r.Retryable || r.Outcome != destinations.Failed ||
			!strings.Contains(msg, "aws ecr tag-resource") || !strings.Contains(msg, "repository/"+repo) || !strings.Contains(msg, "Value="+sandbox.SourceAccount) {
			t.Errorf("%s: %+v, want a permanent %s saying how to adopt it", repo, r, destinations.CodeRepositoryNotOwned)
		}
		if tags != nil && !strings.Contains(msg, "333333333333") {
			t.Errorf("%s: %q does not name the owner it found", repo, msg)
		}
		for _, e := range w.sb.AccessLogSince(mark) {
			if e.Account == sandbox.DestinationAccount && (e.Action == "ecr:TagResource" || e.Action == "ecr:PutImage" || e.Action == "ecr:InitiateLayerUpload") {
				t.Errorf("%s: the replicator did %s on a repository it does not own", repo, e.Action)
			}
		}
		if got := w.destDigest(t, repo, "latest"); got != "" {
			t.Errorf("%s:latest = %s, want nothing written", repo, got)
		}
	}

	// The administrator adopts prod/payments.
	arn := fmt.Sprintf("arn:aws:ecr:%s:%s:repository/prod/payments", sandbox.DefaultRegion, sandbox.DestinationAccount)
	if _, err := dst.TagResource(w.ctx, &ecr.TagResourceInput{ResourceArn: aws.String(arn), Tags: sandboxtest.Owned()}); err != nil {
		t.Fatal(err)
	}
	img, _ := random.Image(256, 1)
	src := destinations.Image{Repo: srcRepo("prod/payments"), Digest: w.push(t, "prod/payments", "latest", img).String(), Tag: "latest"}
	if r := one(t, w.mirror().Replicate(w.ctx, src, []rules.Target{targetFor("", "prod/payments")})); r.Err != nil || w.destDigest(t, "prod/payments", "latest") != src.Digest {
		t.Fatalf("after adoption: %+v", r)
	}
}

// TestDeleteKeepsImmutableTags: delete mirroring never removes a tag the destination
// repository keeps immutable — by tag, or by digest (every tag of the image) — unless the
// rule sets deleteImmutableTags; the outcome says so. Exclusion filters decide per tag; an
// untagged image, or a tag the destination no longer has, is no reason to keep anything.
func TestDeleteKeepsImmutableTags(t *testing.T) {
	w := newWorld(t)
	dst := ecr.NewFromConfig(w.dstCfg)
	const (
		deleted = destinations.Deleted
		kept    = destinations.KeptImmutable
		skipped = destinations.Skipped
	)
	cases := []struct {
		mutability ecrtypes.ImageTagMutability
		filter     string
		tag        string // "": an untagged image
		byDigest   bool
		optIn      bool
		absent     bool // the destination does not have the image
		want       destinations.Outcome
	}{
		{ecrtypes.ImageTagMutabilityMutable, "", "v1", false, false, false, deleted},
		{ecrtypes.ImageTagMutabilityImmutable, "", "v1", false, false, false, kept},
		{ecrtypes.ImageTagMutabilityImmutable, "", "v1", true, false, false, kept},
		{ecrtypes.ImageTagMutabilityImmutable, "", "v1", false, true, false, deleted},
		{ecrtypes.ImageTagMutabilityImmutable, "", "v1", true, true, false, deleted},
		{ecrtypes.ImageTagMutabilityImmutable, "", "", true, false, false, deleted},
		{ecrtypes.ImageTagMutabilityImmutable, "", "v1", false, false, true, skipped},
		{ecrtypes.ImageTagMutabilityImmutable, "", "v1", true, false, true, skipped},
		{ecrtypes.ImageTagMutabilityImmutableWithExclusion, "dev-*", "dev-1", false, false, false, deleted},
		{ecrtypes.ImageTagMutabilityImmutableWithExclusion, "dev-*", "v1", false, false, false, kept},
		{ecrtypes.ImageTagMutabilityMutableWithExclusion, "release-*", "release-1", true, false, false, kept},
		{ecrtypes.ImageTagMutabilityMutableWithExclusion, "release-*", "v1", false, false, false, deleted},
	}
	for i, c := range cases {
		repo := fmt.Sprintf("imm-%d", i)
		what := fmt.Sprintf("%s %q tag %q byDigest=%t deleteImmutableTags=%t absent=%t", c.mutability, c.filter, c.tag, c.byDigest, c.optIn, c.absent)
		in := &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo), ImageTagMutability: c.mutability, Tags: sandboxtest.Owned()}
		if c.filter != "" {
			in.ImageTagMutabilityExclusionFilters = []ecrtypes.ImageTagMutabilityExclusionFilter{{FilterType: ecrtypes.ImageTagMutabilityExclusionFilterTypeWildcard, Filter: aws.String(c.filter)}}
		}
		if _, err := dst.CreateRepository(w.ctx, in); err != nil {
			t.Fatal(err)
		}
		img, _ := random.Image(256, 1)
		w.createSourceRepo(t, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
		h, _ := img.Digest()
		d, ref := h.String(), firstNonEmpty(c.tag, h.String())
		w.push(t, repo, ref, img)
		if !c.absent {
			if err := remote.Write(w.ref(t, w.dstHost, repo, ref), img, remote.WithAuth(w.dstAuth)); err != nil {
				t.Fatal(err)
			}
		}
		id := ecrtypes.ImageIdentifier{ImageTag: aws.String(c.tag)}
		src := destinations.Image{Repo: srcRepo(repo), Digest: d, Tag: c.tag}
		if c.byDigest {
			id = ecrtypes.ImageIdentifier{ImageDigest: aws.String(d)}
		}
		if _, err := ecr.NewFromConfig(w.srcCfg).BatchDeleteImage(w.ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String(repo), ImageIds: []ecrtypes.ImageIdentifier{id}}); err != nil {
			t.Fatal(err)
		}
		if c.byDigest {
			src.Tag = "" // ECR's DELETE event for an image deleted by digest
		}
		tg := targetFor("", repo)
		tg.MirrorDeletes, tg.DeleteImmutableTags = true, c.optIn
		r := one(t, w.mirror().Delete(w.ctx, src, []rules.Target{tg}))
		got := w.destDigest(t, repo, ref)
		switch {
		case r.Err != nil || r.Outcome != c.want:
			t.Errorf("%s: %+v, want outcome %s", what, r, c.want)
		case c.want == kept && (got != d || !strings.Contains(r.Reason, "deleteImmutableTags")):
			t.Errorf("%s: kept (%s), but the destination has %q, want %s", what, r.Reason, got, d)
		case c.want != kept && got != "":
			t.Errorf("%s: %s, but the destination still has %s", what, r.Outcome, got)
		}
	}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestLongSourceNameIsReplicated: a source repository whose name is long enough that its
// ARN is over 256 characters — the limit of an ECR tag value (API_Tag), which the sandbox
// enforces — is still created, owned, and copied to: the created repository's
// ecr-replicator:source tag fits the limit and still names the source.
func TestLongSourceNameIsReplicated(t *testing.T) {
	w := newWorld(t)
	repo := "team-a/" + strings.Repeat("a", 223) // "mirror/" + it: 237 characters, a valid name
	w.createSourceRepo(t, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
	img, _ := random.Image(256, 1)
	d := w.push(t, repo, "v1", img).String()
	r := one(t, w.mirror().Replicate(w.ctx, destinations.Image{Repo: srcRepo(repo), Digest: d, Tag: "v1"}, []rules.Target{targetFor("mirror/", repo)}))
	if r.Err != nil || w.destDigest(t, "mirror/"+repo, "v1") != d {
		t.Fatalf("a source repository of %d characters: %s %v", len(repo), r.Code, r.Err)
	}
	got := w.destTags(t, "mirror/"+repo)
	if v := got[ecraccess.SourceTag]; len(v) > 256 || !strings.HasPrefix(v, "arn:aws:ecr:"+sandbox.DefaultRegion+":"+sandbox.SourceAccount+":repository/team-a/aaaa") {
		t.Errorf("%s = %q (%d characters)", ecraccess.SourceTag, v, len(v))
	}
	if got[ecraccess.OwnerTag] != sandbox.SourceAccount {
		t.Errorf("%s = %q", ecraccess.OwnerTag, got[ecraccess.OwnerTag])
	}
}
