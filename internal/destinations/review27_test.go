package destinations_test

// Review of issue 27 ("the replicator writes only where it owns"): each test here is a
// way the change still loses work or leaves it retried for nothing.

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestReview27LifecyclePolicyLostAfterOneFailedPut: with mirrorLifecyclePolicy the
// created repository gets the source's lifecycle policy "only by the call that created
// the repository" (docs/SECURITY.md, "Lifecycle policy only at creation"). When that one
// PutLifecyclePolicy fails (a 500, a throttle past the SDK's retries, a lost answer) the
// copy fails and is retried — but the retry finds the repository existing and owned, so
// nothing ever sets the policy again: the copy ends "copied", and the mirror keeps every
// image forever (or never expires what the source's policy would), silently.
func TestReview27LifecyclePolicyLostAfterOneFailedPut(t *testing.T) {
	w := newWorld(t)
	w.createSourceRepo(t, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	policy := `{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}}]}`
	if _, err := ecr.NewFromConfig(w.srcCfg).PutLifecyclePolicy(w.ctx, &ecr.PutLifecyclePolicyInput{RepositoryName: aws.String("team-a/app"), LifecyclePolicyText: aws.String(policy)}); err != nil {
		t.Fatal(err)
	}
	img, _ := random.Image(256, 1)
	src := destinations.Image{Repo: srcRepo("team-a/app"), Digest: w.push(t, "team-a/app", "v1", img).String(), Tag: "v1"}
	tg := targetFor("mirror/", "team-a/app")
	tg.Destination.MirrorLifecyclePolicy = true

	fault, err := w.sb.ArmAPIFault(sandbox.APIFault{Service: "ecr", Operation: "PutLifecyclePolicy", Account: sandbox.DestinationAccount, Code: "ServerException", Count: -1})
	if err != nil {
		t.Fatal(err)
	}
	first := one(t, w.mirror().Replicate(w.ctx, src, []rules.Target{tg}))
	fault.Disarm()
	if first.Outcome != destinations.Failed || !first.Created {
		t.Fatalf("with PutLifecyclePolicy failing: %+v, want a failed copy that created the repository", first)
	}
	// The redelivery (or the next push, or the reconcile).
	again := one(t, w.mirror().Replicate(w.ctx, src, []rules.Target{tg}))
	if again.Err != nil {
		t.Fatalf("the retry: %+v", again)
	}
	out, err := ecr.NewFromConfig(w.dstCfg).GetLifecyclePolicy(w.ctx, &ecr.GetLifecyclePolicyInput{RepositoryName: aws.String("mirror/team-a/app")})
	var nf *ecrtypes.LifecyclePolicyNotFoundException
	switch {
	case errors.As(err, &nf):
		t.Errorf("after one failed PutLifecyclePolicy (first attempt: %s %s) and a successful retry (%s), mirror/team-a/app has no lifecycle policy: "+
			"mirrorLifecyclePolicy is lost for good, and nothing reports it", first.Code, first.Outcome, again.Outcome)
	case err != nil:
		t.Fatal(err)
	case aws.ToString(out.LifecyclePolicyText) != policy:
		t.Errorf("lifecycle policy = %s, want %s", aws.ToString(out.LifecyclePolicyText), policy)
	}
}

// TestReview27KeptImmutableIndexSendsItsChildrenToTheDLQ: an IMMUTABLE destination
// keeps a multi-platform tag when the source deletes it (outcome kept-immutable, by
// design). The source then deletes the index's platform manifests (untagged now); their
// DELETE events are mirrored by digest: the destination refuses each with
// ImageReferencedByManifestList — the index it kept still references them — which
// imageFailure classes retryable ("the index's own DELETE event is on its way"). But that
// DELETE was already handled: it kept the index. Every platform's message is retried
// until maxReceiveCount and lands in the dead-letter queue (DeadLetterQueueAlarm), and a
// redrive repeats it: an outcome the change chose (kept) reported as a failure to retry.
func TestReview27KeptImmutableIndexSendsItsChildrenToTheDLQ(t *testing.T) {
	w := newWorld(t)
	const repo = "team-a/multi"
	if _, err := ecr.NewFromConfig(w.dstCfg).CreateRepository(w.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo),
		ImageTagMutability: ecrtypes.ImageTagMutabilityImmutable, Tags: sandboxtest.Owned()}); err != nil {
		t.Fatal(err)
	}
	w.createSourceRepo(t, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
	idx, _ := random.Index(256, 1, 2)
	if err := remote.WriteIndex(w.ref(t, w.srcHost, repo, "v1"), idx, remote.WithAuth(w.srcAuth)); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	tg := targetFor("", repo)
	tg.MirrorDeletes = true
	if r := one(t, w.mirror().Replicate(w.ctx, destinations.Image{Repo: srcRepo(repo), Digest: idxDigest.String(), Tag: "v1"}, []rules.Target{tg})); r.Err != nil {
		t.Fatalf("copy of the index: %+v", r)
	}
	im, _ := idx.IndexManifest()
	srcAPI := ecr.NewFromConfig(w.srcCfg)
	// The source deletes the multi-platform image: the index, then its platforms.
	ids := []ecrtypes.ImageIdentifier{{ImageDigest: aws.String(idxDigest.String())}}
	for _, m := range im.Manifests {
		ids = append(ids, ecrtypes.ImageIdentifier{ImageDigest: aws.String(m.Digest.String())})
	}
	for _, id := range ids {
		if _, err := srcAPI.BatchDeleteImage(w.ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String(repo), ImageIds: []ecrtypes.ImageIdentifier{id}}); err != nil {
			t.Fatal(err)
		}
	}
	// The index's DELETE: kept, as designed.
	if r := one(t, w.mirror().Delete(w.ctx, destinations.Image{Repo: srcRepo(repo), Digest: idxDigest.String()}, []rules.Target{tg})); r.Outcome != destinations.KeptImmutable {
		t.Fatalf("the index's delete: %+v, want %s", r, destinations.KeptImmutable)
	}
	// Its platforms' DELETEs, each handled as a redelivery would handle it again.
	for _, m := range im.Manifests {
		for attempt := 1; attempt <= 3; attempt++ {
			r := one(t, w.mirror().Delete(w.ctx, destinations.Image{Repo: srcRepo(repo), Digest: m.Digest.String()}, []rules.Target{tg}))
			if r.Outcome == destinations.Failed && r.Retryable {
				t.Errorf("platform %s, attempt %d: a retryable %s (%v) — the index that references it was kept on purpose, so every retry fails "+
					"the same way until the message is in the dead-letter queue", m.Digest.String()[:19], attempt, r.Code, r.Err)
				break
			}
		}
	}
	if got := w.destDigest(t, repo, "v1"); got != idxDigest.String() {
		t.Errorf("the kept index: v1 = %q", got)
	}
}

// TestReview27WarmInvocationsReReadEveryRepository: before issue 27 a warm process asked
// ECR about a destination repository once (ecraccess.Client remembered the repositories
// it knew: 0 control-plane calls for later copies into it). Now every invocation (a Run)
// asks again, twice — DescribeRepositories and ListTagsForResource — for every
// destination repository it touches, although the destination role's IAM conditions
// enforce ownership on every write whatever the code cached. Measured here: 10 warm
// invocations copying into 10 existing repositories (in sync; one image each) make 200
// control-plane calls in the destination account, against 0 on d3bb391. Per push that is
// 2 calls per destination; at reconcile scale (10,000 repositories, copy-queue batches of
// 10 spread over many repositories) about 2 per work item, on ECR APIs whose rate quotas
// are not published (DescribeRepositories, ListTagsForResource share the account's
// control-plane throttle with every other tool of the destination account).
func TestReview27WarmInvocationsReReadEveryRepository(t *testing.T) {
	w := newWorld(t)
	rep := destinations.New(w.resolver, copyengine.New(copyengine.WithRetry(retry.Policy{Attempts: 3, Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond})))
	const repos, invocations = 10, 10
	var srcs []destinations.Image
	for i := range repos {
		repo := fmt.Sprintf("team-a/app%d", i)
		w.createSourceRepo(t, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
		img, _ := random.Image(256, 1)
		srcs = append(srcs, destinations.Image{Repo: srcRepo(repo), Digest: w.push(t, repo, "v1", img).String(), Tag: "v1"})
	}
	first := rep.Start() // creates the repositories
	for _, s := range srcs {
		if r := one(t, first.Replicate(w.ctx, s, []rules.Target{targetFor("mirror/", s.Repo.Name)})); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	mark := w.sb.AccessLogMark()
	for range invocations {
		run := rep.Start() // one invocation of the warm function
		for _, s := range srcs {
			if r := one(t, run.Replicate(w.ctx, s, []rules.Target{targetFor("mirror/", s.Repo.Name)})); r.Err != nil {
				t.Fatal(r.Err)
			}
		}
	}
	calls := map[string]int{}
	total := 0
	for _, e := range w.sb.AccessLogSince(mark) {
		if e.Service == "ecr" && e.CallerAccount == sandbox.DestinationAccount && e.Operation != "GetAuthorizationToken" {
			calls[e.Operation]++
			total++
		}
	}
	// At most one look per repository per warm process (what d3bb391 spent, and more).
	if total > 2*repos {
		t.Errorf("%d warm invocations copying into %d known, owned repositories made %d ECR control-plane calls in the destination (%v): "+
			"%.1f per copy, where d3bb391 made 0", invocations, repos, total, calls, float64(total)/float64(repos*invocations))
	}
}
