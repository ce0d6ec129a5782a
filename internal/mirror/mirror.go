// Package mirror replicates one source image to the destinations the rules give it: it
// resolves access to each registry (assuming destination roles), creates missing
// destination repositories with settings mirrored from the source, runs the replication
// engine for each destination in parallel, and reports one result per destination. The
// replicate function, the backfill and the CLI all go through it.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/replication"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// Source is the image to replicate.
type Source struct {
	AccountID  string
	Region     string
	Repository string
	Digest     string
	Tag        string // empty: digest-only
}

// Deleted is an outcome of Delete, beside the engine's outcomes.
const Deleted replication.Outcome = "deleted"

// Result is what happened at one destination.
type Result struct {
	Rule         string
	AccountID    string
	Region       string
	Repository   string
	Outcome      replication.Outcome
	Digest       string
	Tag          string
	Reason       string
	Code         string // AWS or registry error code, when failed
	Retryable    bool   // failed, and trying again later may succeed
	Err          error
	Created      bool // the destination repository was created
	BytesCopied  int64
	BlobsCopied  int
	BlobsSkipped int
	Duration     time.Duration
}

// Destination names the result's destination for logs: account/region/repository.
func (r Result) Destination() string { return r.AccountID + "/" + r.Region + "/" + r.Repository }

// Mirror runs replications. It is safe for concurrent use.
type Mirror struct {
	resolver   *ecraccess.Resolver
	copier     *replication.Copier
	sourceRole string
	parallel   int
	log        *slog.Logger

	mu       sync.Mutex
	settings map[string]ecraccess.RepositorySettings // source repository settings, per run
}

// Option configures a Mirror.
type Option func(*Mirror)

// WithSourceRole reads the source through a role in the source account (rules'
// source.roleArn), for a replicator running in a third, central account.
func WithSourceRole(roleARN string) Option { return func(m *Mirror) { m.sourceRole = roleARN } }

// WithDestinationParallelism bounds how many destinations are written at once (default 4).
func WithDestinationParallelism(n int) Option {
	return func(m *Mirror) {
		if n > 0 {
			m.parallel = n
		}
	}
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(m *Mirror) { m.log = l } }

// New returns a Mirror that resolves access with resolver and copies with copier.
func New(resolver *ecraccess.Resolver, copier *replication.Copier, opts ...Option) *Mirror {
	m := &Mirror{resolver: resolver, copier: copier, parallel: 4, log: slog.Default(), settings: map[string]ecraccess.RepositorySettings{}}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Replicate copies src to every target in parallel and returns one result per target,
// in the targets' order. Targets with a validation error are reported, not copied.
func (m *Mirror) Replicate(ctx context.Context, src Source, targets []rules.Target) []Result {
	return m.each(ctx, src, targets, m.replicateOne)
}

// each runs one per target, at most m.parallel at a time, and returns the results in
// the targets' order.
func (m *Mirror) each(ctx context.Context, src Source, targets []rules.Target, one func(context.Context, Source, rules.Target) Result) []Result {
	results := make([]Result, len(targets))
	g := new(errgroup.Group)
	g.SetLimit(m.parallel)
	for i, t := range targets {
		g.Go(func() error {
			results[i] = one(ctx, src, t)
			return nil
		})
	}
	g.Wait()
	return results
}

func newResult(src Source, t rules.Target) Result {
	return Result{Rule: t.Rule, AccountID: t.Destination.AccountID, Region: t.Destination.Region, Repository: t.Repository, Digest: src.Digest, Tag: src.Tag}
}

func (m *Mirror) replicateOne(ctx context.Context, src Source, t rules.Target) Result {
	start := time.Now()
	res := newResult(src, t)
	fail := func(err error) Result {
		res.Outcome, res.Err, res.Duration = replication.Failed, err, time.Since(start)
		res.Code, res.Retryable = Classify(err)
		return res
	}
	if t.Err != nil {
		return fail(t.Err)
	}
	if reason := replicaOfReplica(src, t); reason != "" {
		res.Outcome, res.Reason, res.Duration = replication.Skipped, reason, time.Since(start)
		return res
	}
	srcReg, err := m.resolver.Registry(ctx, ecraccess.Access{AccountID: src.AccountID, Region: src.Region, RoleARN: m.sourceRole})
	if err != nil {
		return fail(err)
	}
	srcHost, err := srcReg.Host(ctx, src.Repository)
	if err != nil {
		return fail(err)
	}
	d := t.Destination
	dstReg, err := m.resolver.Registry(ctx, ecraccess.Access{AccountID: d.AccountID, Region: d.Region, RoleARN: d.RoleARN, ExternalID: d.ExternalID})
	if err != nil {
		return fail(err)
	}
	settings, err := m.sourceSettings(ctx, srcReg, src.Repository, d)
	if err != nil {
		return fail(err)
	}
	created, err := dstReg.EnsureRepository(ctx, t.Repository, settings, d.CreateRepository)
	res.Created = created
	if err != nil {
		return fail(err)
	}
	dstHost, err := dstReg.Host(ctx, t.Repository)
	if err != nil {
		return fail(err)
	}
	srcRepo, err := name.NewRepository(srcHost + "/" + src.Repository)
	if err != nil {
		return fail(fmt.Errorf("source repository %s/%s: %w", srcHost, src.Repository, err))
	}
	dstRepo, err := name.NewRepository(dstHost + "/" + t.Repository)
	if err != nil {
		return fail(fmt.Errorf("destination repository %s/%s: %w", dstHost, t.Repository, err))
	}
	r := m.copier.Copy(ctx, replication.Request{
		Source:      replication.Endpoint{Repository: srcRepo, Auth: srcReg.Authenticator(), Transport: srcReg.Transport(nil)},
		Digest:      src.Digest,
		Tag:         src.Tag,
		Destination: replication.Endpoint{Repository: dstRepo, Auth: dstReg.Authenticator(), Transport: dstReg.Transport(nil)},
		Referrers:   t.Referrers,
	})
	res.Outcome, res.Reason, res.Err = r.Outcome, r.Reason, r.Err
	res.BytesCopied, res.BlobsCopied, res.BlobsSkipped = r.BytesCopied, r.BlobsCopied, r.BlobsSkipped
	res.Duration = time.Since(start)
	if r.Err != nil {
		res.Code, res.Retryable = Classify(r.Err)
		var re *replication.Error
		if errors.As(r.Err, &re) && re.AtDest && re.Code == "NAME_UNKNOWN" {
			// The destination repository is gone (deleted under us, or never made):
			// look again next time, and retry only if that next time creates it.
			dstReg.Forget(t.Repository)
			res.Retryable = d.CreateRepository
		}
	}
	return res
}

// replicaOfReplica stops replication loops within one registry: copying a repository
// onto itself, or copying a replica (whose push event the same rule sees again) onto a
// replica of a replica.
func replicaOfReplica(src Source, t rules.Target) string {
	d := t.Destination
	if d.AccountID != src.AccountID || d.Region != src.Region {
		return ""
	}
	if t.Repository == src.Repository {
		return "destination is the source repository itself"
	}
	if d.RepositoryPrefix != "" && strings.HasPrefix(src.Repository, d.RepositoryPrefix) {
		return "source is itself a replica under " + d.RepositoryPrefix + " in the same registry; not chaining"
	}
	return ""
}

// sourceSettings reads (once per Mirror) what a created destination repository mirrors.
func (m *Mirror) sourceSettings(ctx context.Context, srcReg *ecraccess.Registry, repo string, d rules.Destination) (ecraccess.RepositorySettings, error) {
	if !d.CreateRepository {
		return ecraccess.RepositorySettings{}, nil
	}
	key := fmt.Sprintf("%s|%t|%t", repo, d.MirrorLifecyclePolicy, d.MirrorRepositoryTags)
	m.mu.Lock()
	s, ok := m.settings[key]
	m.mu.Unlock()
	if !ok {
		var err error
		if s, err = srcReg.ReadSettings(ctx, repo, d.MirrorLifecyclePolicy, d.MirrorRepositoryTags); err != nil {
			return s, err
		}
		m.mu.Lock()
		m.settings[key] = s
		m.mu.Unlock()
	}
	// A source KMS key lives in the source account and region; the destination uses the
	// key the rule names, or the AWS-managed ECR key of its own account.
	if d.KMSKey != "" {
		s.EncryptionType, s.KMSKey = ecrtypes.EncryptionTypeKms, d.KMSKey
	} else if s.EncryptionType == ecrtypes.EncryptionTypeKms || s.EncryptionType == ecrtypes.EncryptionTypeKmsDsse {
		s.KMSKey = ""
	}
	return s, nil
}

// Delete mirrors a source deletion to every target whose rule enables mirrorDeletes. A
// tag is deleted only where it still points at the deleted digest, and only while the
// source does not have it again (a late DELETE must not undo a newer push).
func (m *Mirror) Delete(ctx context.Context, src Source, targets []rules.Target) []Result {
	return m.each(ctx, src, targets, m.deleteOne)
}

func (m *Mirror) deleteOne(ctx context.Context, src Source, t rules.Target) Result {
	start := time.Now()
	res := newResult(src, t)
	done := func(o replication.Outcome, reason string, err error) Result {
		res.Outcome, res.Reason, res.Err, res.Duration = o, reason, err, time.Since(start)
		if err != nil {
			res.Outcome = replication.Failed
			res.Code, res.Retryable = Classify(err)
		}
		return res
	}
	if t.Err != nil {
		return done("", "", t.Err)
	}
	if !t.MirrorDeletes {
		return done(replication.Skipped, "mirrorDeletes is off for rule "+t.Rule, nil)
	}
	srcReg, err := m.resolver.Registry(ctx, ecraccess.Access{AccountID: src.AccountID, Region: src.Region, RoleARN: m.sourceRole})
	if err != nil {
		return done("", "", err)
	}
	id := ecrtypes.ImageIdentifier{}
	if src.Tag != "" {
		id.ImageTag = aws.String(src.Tag)
	} else {
		id.ImageDigest = aws.String(src.Digest)
	}
	still, err := imageExists(ctx, srcReg.API(), src.Repository, id)
	if err != nil {
		return done("", "", err)
	}
	if still {
		return done(replication.Skipped, "the source has the image again; not deleting", nil)
	}
	d := t.Destination
	dstReg, err := m.resolver.Registry(ctx, ecraccess.Access{AccountID: d.AccountID, Region: d.Region, RoleARN: d.RoleARN, ExternalID: d.ExternalID})
	if err != nil {
		return done("", "", err)
	}
	if src.Tag != "" && src.Digest != "" {
		// Only delete the destination tag while it points at the deleted digest.
		out, err := dstReg.API().BatchGetImage(ctx, &ecr.BatchGetImageInput{RepositoryName: aws.String(t.Repository), ImageIds: []ecrtypes.ImageIdentifier{id}})
		var nf *ecrtypes.RepositoryNotFoundException
		if errors.As(err, &nf) {
			return done(replication.Skipped, "destination repository does not exist", nil)
		}
		if err != nil {
			return done("", "", ecraccess.WrapAWS("ecr:BatchGetImage", err))
		}
		if len(out.Images) == 0 {
			return done(replication.Skipped, "destination tag already gone", nil)
		}
		if got := aws.ToString(out.Images[0].ImageId.ImageDigest); got != src.Digest {
			return done(replication.Skipped, "destination tag points at "+got+", not the deleted digest", nil)
		}
	}
	out, err := dstReg.API().BatchDeleteImage(ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String(t.Repository), ImageIds: []ecrtypes.ImageIdentifier{id}})
	var nf *ecrtypes.RepositoryNotFoundException
	if errors.As(err, &nf) {
		return done(replication.Skipped, "destination repository does not exist", nil)
	}
	if err != nil {
		return done("", "", ecraccess.WrapAWS("ecr:BatchDeleteImage", err))
	}
	if len(out.ImageIds) == 0 {
		return done(replication.Skipped, "already absent from the destination", nil)
	}
	return done(Deleted, "", nil)
}

func imageExists(ctx context.Context, api *ecr.Client, repo string, id ecrtypes.ImageIdentifier) (bool, error) {
	out, err := api.BatchGetImage(ctx, &ecr.BatchGetImageInput{RepositoryName: aws.String(repo), ImageIds: []ecrtypes.ImageIdentifier{id}})
	var nf *ecrtypes.RepositoryNotFoundException
	if errors.As(err, &nf) {
		return false, nil
	}
	if err != nil {
		return false, ecraccess.WrapAWS("ecr:BatchGetImage", err)
	}
	return len(out.Images) > 0, nil
}

// Classify returns an error's code and whether it is retryable, whichever layer made it
// (retry.Classify); an error nobody classified is reported as InvalidInput, permanent.
func Classify(err error) (code string, retryable bool) {
	code, retryable = retry.Classify(err)
	if code == "" {
		code = "InvalidInput"
	}
	return code, retryable
}
