package destinations_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// TestYoungUnownedRepositoryReadAgain: a repository seen without an owner tag moments
// after its creation (a concurrent creation whose tags ECR may not show yet) is read
// again once before the permanent verdict; an older one is not.
func TestYoungUnownedRepositoryReadAgain(t *testing.T) {
	var ago atomic.Int64 // how far the sandbox's clock is behind
	w := newWorld(t, func(c *sandbox.Config) {
		c.Now = func() time.Time { return time.Now().Add(-time.Duration(ago.Load())) }
	})
	dst := ecr.NewFromConfig(w.dstCfg)
	for _, c := range []struct {
		repo string
		ago  time.Duration
		want int
	}{{"old/app", 2 * time.Minute, 1}, {"young/app", 0, 2}} {
		ago.Store(int64(c.ago))
		if _, err := dst.CreateRepository(w.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(c.repo)}); err != nil {
			t.Fatal(err)
		}
		ago.Store(0)
		w.createSourceRepo(t, &ecr.CreateRepositoryInput{RepositoryName: aws.String(c.repo)})
		img, _ := random.Image(256, 1)
		d := w.push(t, c.repo, "v1", img).String()
		mark := w.sb.AccessLogMark()
		r := one(t, w.mirror().Replicate(w.ctx, destinations.Image{Repo: srcRepo(c.repo), Digest: d, Tag: "v1"}, []rules.Target{targetFor("", c.repo)}))
		if r.Code != destinations.CodeRepositoryNotOwned {
			t.Errorf("%s: %s %v, want %s", c.repo, r.Code, r.Err, destinations.CodeRepositoryNotOwned)
		}
		reads := 0
		for _, e := range w.sb.AccessLogSince(mark) {
			if e.Operation == "ListTagsForResource" && e.Repository == c.repo {
				reads++
			}
		}
		if reads != c.want {
			t.Errorf("%s, created %s ago: its tags read %d times, want %d", c.repo, c.ago, reads, c.want)
		}
	}
}

// TestDeleteIntoARememberedMirrorThatIsGone: a warm process remembers a mirror as owned;
// the destination's administrator deletes it; a mirrored delete then says the repository
// does not exist (skipped), as it would have without the memory — not a failure.
func TestDeleteIntoARememberedMirrorThatIsGone(t *testing.T) {
	w := newWorld(t)
	rep := destinations.New(w.resolver, copyengine.New())
	w.createSourceRepo(t, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	img, _ := random.Image(256, 1)
	src := destinations.Image{Repo: srcRepo("team-a/app"), Digest: w.push(t, "team-a/app", "v1", img).String(), Tag: "v1"}
	tg := targetFor("mirror/", "team-a/app")
	tg.MirrorDeletes = true
	if r := one(t, rep.Start().Replicate(w.ctx, src, []rules.Target{tg})); r.Err != nil {
		t.Fatal(r.Err)
	}
	if _, err := ecr.NewFromConfig(w.dstCfg).DeleteRepository(w.ctx, &ecr.DeleteRepositoryInput{RepositoryName: aws.String("mirror/team-a/app"), Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := ecr.NewFromConfig(w.srcCfg).BatchDeleteImage(w.ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String("team-a/app"),
		ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("v1")}}}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []destinations.Image{src, {Repo: src.Repo, Digest: src.Digest}} {
		if r := one(t, rep.Start().Delete(w.ctx, s, []rules.Target{tg})); r.Err != nil || r.Outcome != destinations.Skipped {
			t.Errorf("delete of %q into the deleted mirror: %s %s %v, want skipped", s.Tag, r.Outcome, r.Code, r.Err)
		}
	}
}
