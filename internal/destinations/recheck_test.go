package destinations_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/sandbox"
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
		r := one(t, w.mirror().Replicate(w.ctx, destinations.Source{Repo: srcRepo(c.repo), Digest: d, Tag: "v1"}, []rules.Target{targetFor("", c.repo)}))
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
