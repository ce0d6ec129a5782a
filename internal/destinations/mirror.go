// Package mirror replicates one source image to the destinations the rules give it: it
// resolves access to each registry (assuming destination roles), creates missing
// destination repositories with settings mirrored from the source, runs the replication
// engine for each destination in parallel, and reports one result per destination. The
// replicate function, the backfill and the CLI all go through it.
package destinations

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

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
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
const Deleted copyengine.Outcome = "deleted"

// Result is what happened at one destination.
type Result struct {
	Rule         string
	AccountID    string
	Region       string
	Repository   string
	Outcome      copyengine.Outcome
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
	copier     *copyengine.Copier
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
func New(resolver *ecraccess.Resolver, copier *copyengine.Copier, opts ...Option) *Mirror {
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
	if t.Err != nil {
		return failed(res, start, t.Err)
	}
	if reason := replicaOfReplica(src, t); reason != "" {
		res.Outcome, res.Reason, res.Duration = copyengine.Skipped, reason, time.Since(start)
		return res
	}
	rt, err := m.route(ctx, src, t, t.Destination.CreateRepository)
	res.Created = rt.created
	if err != nil {
		return failed(res, start, err)
	}
	r := m.copy(ctx, rt, src, t)
	res.take(r)
	var re *copyengine.Error
	if errors.As(r.Err, &re) && re.AtDest && re.Code == "NAME_UNKNOWN" {
		// The destination repository is gone (deleted under us, or never made): retry
		// only if the next attempt creates it.
		res.Retryable = t.Destination.CreateRepository
	}
	if r.Err == nil && r.SourceTagMissing && t.MirrorDeletes {
		// The source deleted the tag (before this push event was handled, or while it
		// was): the destination follows, as the tag's own DELETE event would — this
		// handler may be the last one to look at the tag.
		res = m.followSourceDelete(ctx, rt, src, t, firstNonEmpty(r.TagDigest, src.Digest), res)
	}
	res.Duration = time.Since(start)
	return res
}

// route is where one image goes: both registries, resolved, the destination
// repository ensured.
type route struct {
	srcReg, dstReg   *ecraccess.Registry
	srcRepo, dstRepo name.Repository
	created          bool
}

// route resolves both registries (assuming the destination role), makes sure the
// destination repository exists (creating it with the source's settings when create),
// and names both repositories for the engine.
func (m *Mirror) route(ctx context.Context, src Source, t rules.Target, create bool) (route, error) {
	var rt route
	srcReg, err := m.resolver.Registry(ctx, ecraccess.Access{AccountID: src.AccountID, Region: src.Region, RoleARN: m.sourceRole})
	if err != nil {
		return rt, err
	}
	srcHost, err := srcReg.Host(ctx, src.Repository)
	if err != nil {
		return rt, err
	}
	d := t.Destination
	dstReg, err := m.resolver.Registry(ctx, ecraccess.Access{AccountID: d.AccountID, Region: d.Region, RoleARN: d.RoleARN, ExternalID: d.ExternalID})
	if err != nil {
		return rt, err
	}
	var settings ecraccess.RepositorySettings
	if create {
		if settings, err = m.sourceSettings(ctx, srcReg, src.Repository, d); err != nil {
			return rt, err
		}
	}
	rt.created, err = dstReg.EnsureRepository(ctx, t.Repository, settings, create)
	if err != nil {
		return rt, err
	}
	dstHost, err := dstReg.Host(ctx, t.Repository)
	if err != nil {
		return rt, err
	}
	if rt.srcRepo, err = name.NewRepository(srcHost + "/" + src.Repository); err != nil {
		return rt, fmt.Errorf("source repository %s/%s: %w", srcHost, src.Repository, err)
	}
	if rt.dstRepo, err = name.NewRepository(dstHost + "/" + t.Repository); err != nil {
		return rt, fmt.Errorf("destination repository %s/%s: %w", dstHost, t.Repository, err)
	}
	rt.srcReg, rt.dstReg = srcReg, dstReg
	return rt, nil
}

// copy runs the engine for src along rt. A destination repository gone under us is
// forgotten (looked for again next time) and retried only if the rule creates it.
func (m *Mirror) copy(ctx context.Context, rt route, src Source, t rules.Target) copyengine.Result {
	r := m.copier.Copy(ctx, copyengine.Request{
		Source:      copyengine.Endpoint{Repository: rt.srcRepo, Auth: rt.srcReg.Authenticator(), Transport: rt.srcReg.Transport(nil)},
		Digest:      src.Digest,
		Tag:         src.Tag,
		Destination: copyengine.Endpoint{Repository: rt.dstRepo, Auth: rt.dstReg.Authenticator(), Transport: rt.dstReg.Transport(nil)},
		Referrers:   t.Referrers,
	})
	var re *copyengine.Error
	if errors.As(r.Err, &re) && re.AtDest && re.Code == "NAME_UNKNOWN" {
		rt.dstReg.Forget(t.Repository)
	}
	return r
}

// followSourceDelete deletes the destination tag the source no longer has — by tag and
// digest, so a tag a newer push moved is never removed (ECR refuses the mismatch with
// ImageTagDoesNotMatchDigest, API_ImageFailure) — then looks at the source again: a tag
// pushed back meanwhile is copied back, so the destination never ends behind, whatever
// the interleaving. Bounded: a tag that keeps coming and going is left to its events.
func (m *Mirror) followSourceDelete(ctx context.Context, rt route, src Source, t rules.Target, digest string, res Result) Result {
	for round := 0; round < 3 && digest != ""; round++ {
		o, reason, err := deleteImage(ctx, rt.dstReg, t.Repository, ecrtypes.ImageIdentifier{ImageTag: aws.String(src.Tag), ImageDigest: aws.String(digest)})
		if err != nil {
			return res.failedWith(err)
		}
		res.Outcome, res.Reason = o, reason
		r := m.copy(ctx, rt, Source{AccountID: src.AccountID, Region: src.Region, Repository: src.Repository, Tag: src.Tag}, t)
		if r.Err != nil && !r.SourceTagMissing {
			return res.failedWith(r.Err)
		}
		if !r.SourceTagMissing {
			res.take(r)
			res.Reason = "the source has the tag again; the destination follows it"
			return res
		}
		if r.TagDigest == digest || r.TagDigest == "" {
			return res
		}
		digest = r.TagDigest // another digest arrived under the tag meanwhile
	}
	return res
}

// deleteImage is one BatchDeleteImage, its per-image failures read (deleteFailure).
func deleteImage(ctx context.Context, reg *ecraccess.Registry, repo string, id ecrtypes.ImageIdentifier) (copyengine.Outcome, string, error) {
	out, err := reg.API().BatchDeleteImage(ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String(repo), ImageIds: []ecrtypes.ImageIdentifier{id}})
	var nf *ecrtypes.RepositoryNotFoundException
	if errors.As(err, &nf) {
		return copyengine.Skipped, "destination repository does not exist", nil
	}
	if err != nil {
		return "", "", ecraccess.WrapAWS("ecr:BatchDeleteImage", err)
	}
	for _, f := range out.Failures {
		return deleteFailure(f)
	}
	if len(out.ImageIds) == 0 {
		return copyengine.Skipped, "already absent from the destination", nil
	}
	return Deleted, "", nil
}

// take records an engine result.
func (r *Result) take(x copyengine.Result) {
	r.Outcome, r.Reason, r.Err = x.Outcome, x.Reason, x.Err
	r.BytesCopied += x.BytesCopied
	r.BlobsCopied += x.BlobsCopied
	r.BlobsSkipped += x.BlobsSkipped
	if x.Err != nil {
		r.Code, r.Retryable = Classify(x.Err)
	}
}

func (r Result) failedWith(err error) Result {
	r.Outcome, r.Err = copyengine.Failed, err
	r.Code, r.Retryable = Classify(err)
	return r
}

func failed(res Result, start time.Time, err error) Result {
	res = res.failedWith(err)
	res.Duration = time.Since(start)
	return res
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
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
// tag is deleted only where it still points at the deleted digest (one BatchDeleteImage
// by tag and digest), and only while the source does not have it again (a late DELETE
// must not undo a newer push).
func (m *Mirror) Delete(ctx context.Context, src Source, targets []rules.Target) []Result {
	return m.each(ctx, src, targets, m.deleteOne)
}

func (m *Mirror) deleteOne(ctx context.Context, src Source, t rules.Target) Result {
	start := time.Now()
	res := newResult(src, t)
	done := func(r Result) Result {
		r.Duration = time.Since(start)
		return r
	}
	if t.Err != nil {
		return failed(res, start, t.Err)
	}
	if !t.MirrorDeletes {
		res.Outcome, res.Reason = copyengine.Skipped, "mirrorDeletes is off for rule "+t.Rule
		return done(res)
	}
	if src.Tag == "" {
		return done(m.deleteDigest(ctx, src, t, res))
	}
	rt, err := m.route(ctx, src, t, false)
	var ae *ecraccess.Error
	if errors.As(err, &ae) && ae.Code == "RepositoryNotFoundException" {
		res.Outcome, res.Reason = copyengine.Skipped, "destination repository does not exist"
		return done(res)
	}
	if err != nil {
		return failed(res, start, err)
	}
	// The destination tag converges on the source's tag as it is now: gone (then it is
	// deleted where it still points at the deleted digest), or back (then it is copied).
	r := m.copy(ctx, rt, Source{AccountID: src.AccountID, Region: src.Region, Repository: src.Repository, Tag: src.Tag}, t)
	if r.Err != nil && !r.SourceTagMissing {
		return done(res.failedWith(r.Err))
	}
	if !r.SourceTagMissing {
		res.take(r)
		res.Reason = "the source has the tag again; the destination follows it"
		return done(res)
	}
	return done(m.followSourceDelete(ctx, rt, src, t, src.Digest, res))
}

// deleteDigest mirrors the deletion of an image by digest (all its tags), unless the
// source has the image again.
func (m *Mirror) deleteDigest(ctx context.Context, src Source, t rules.Target, res Result) Result {
	srcReg, err := m.resolver.Registry(ctx, ecraccess.Access{AccountID: src.AccountID, Region: src.Region, RoleARN: m.sourceRole})
	if err != nil {
		return res.failedWith(err)
	}
	id := ecrtypes.ImageIdentifier{ImageDigest: aws.String(src.Digest)}
	still, err := imageExists(ctx, srcReg.API(), src.Repository, id)
	if err != nil {
		return res.failedWith(err)
	}
	if still {
		res.Outcome, res.Reason = copyengine.Skipped, "the source has the image again; not deleting"
		return res
	}
	d := t.Destination
	dstReg, err := m.resolver.Registry(ctx, ecraccess.Access{AccountID: d.AccountID, Region: d.Region, RoleARN: d.RoleARN, ExternalID: d.ExternalID})
	if err != nil {
		return res.failedWith(err)
	}
	o, reason, err := deleteImage(ctx, dstReg, t.Repository, id)
	if err != nil {
		return res.failedWith(err)
	}
	res.Outcome, res.Reason = o, reason
	return res
}

// deleteFailure maps one of BatchDeleteImage's failures (API_ImageFailure's codes) to
// what the delete mirroring did: nothing left to do (skipped), or a failure with its
// class.
func deleteFailure(f ecrtypes.ImageFailure) (copyengine.Outcome, string, error) {
	code := string(f.FailureCode)
	fail := func(retryable bool) (copyengine.Outcome, string, error) {
		return "", "", &deleteError{code: code, retryable: retryable, reason: aws.ToString(f.FailureReason)}
	}
	switch f.FailureCode {
	case ecrtypes.ImageFailureCodeImageNotFound:
		return copyengine.Skipped, "already absent from the destination", nil
	case ecrtypes.ImageFailureCodeImageTagDoesNotMatchDigest:
		return copyengine.Skipped, "the destination tag points at another digest (a newer push); not deleting", nil
	case ecrtypes.ImageFailureCodeKmsError, ecrtypes.ImageFailureCodeUpstreamTooManyRequests, ecrtypes.ImageFailureCodeUpstreamUnavailable:
		return fail(true)
	case ecrtypes.ImageFailureCodeImageReferencedByManifestList:
		// An index in the destination still uses the image. The source deleted it, so
		// no index there uses it any more: the index's own DELETE event is on its way
		// (events arrive in any order), and a retry after it succeeds. An index only the
		// destination has ends in the dead-letter queue, visibly.
		return fail(true)
	}
	// Invalid identifiers, upstream access denied, and codes added later: no retry fixes
	// them.
	return fail(false)
}

// deleteError is a failure BatchDeleteImage reported for the image (not the call).
type deleteError struct {
	code, reason string
	retryable    bool
}

func (e *deleteError) Error() string {
	return "ecr:BatchDeleteImage: " + e.code + ": " + e.reason
}
func (e *deleteError) ErrorCode() string { return e.code }
func (e *deleteError) Retryable() bool   { return e.retryable }

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
