// Package destinations replicates one source image to the destinations the rules give
// it: it resolves access to each registry (assuming destination roles), creates missing
// destination repositories with settings mirrored from the source, runs the copy engine
// for each destination in parallel, mirrors deletes, and reports one result per
// destination. The replicate function, the backfill, the reconcile and the CLI all go
// through it: it is their one door to the copy engine (the outcomes and results, the
// engine of a CLI command, the CLI's direct copy: direct.go), and it maps the rules'
// source and destinations to registry access (access.go).
package destinations

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// Image is the image to replicate (or whose deletion to mirror).
type Image struct {
	Repo   ecrname.Repo
	Digest string
	Tag    string // empty: digest-only
}

// Deleted is an outcome of Delete, beside the engine's outcomes.
const Deleted Outcome = "deleted"

// Result is what happened at one destination: the engine's result, and what the
// destination adds.
type Result struct {
	CopyResult
	Rule        string
	Destination ecrname.Repo
	Code        string // AWS or registry error code, when failed
	Retryable   bool   // failed, and trying again later may succeed
	Created     bool   // the destination repository was created
}

// Replicator replicates images to their destinations. It is long-lived (a warm Lambda
// keeps it) and safe for concurrent use; its batches (Start) hold what one unit of work
// caches.
type Replicator struct {
	resolver     *ecraccess.Resolver
	engine       *copyengine.Engine
	sourceRole   string
	parallel     int
	log          *slog.Logger
	owned        *ownedCache   // destination repositories found owned (ownership.go)
	recheckDelay time.Duration // before reading a young repository without an owner tag again
}

// Option configures a Replicator.
type Option func(*Replicator)

// WithSourceRole reads the source through a role in the source account (rules'
// source.roleArn), for a replicator running in a third, central account.
func WithSourceRole(roleARN string) Option { return func(m *Replicator) { m.sourceRole = roleARN } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(m *Replicator) {
		if l != nil {
			m.log = l
		}
	}
}

// ownershipTTL is how long a verdict of ownership is remembered (ownership.go).
const ownershipTTL = 5 * time.Minute

// New returns a Replicator that resolves access with resolver and copies with engine.
func New(resolver *ecraccess.Resolver, engine *copyengine.Engine, opts ...Option) *Replicator {
	m := &Replicator{resolver: resolver, engine: engine, parallel: 4, log: slog.New(slog.DiscardHandler),
		owned: newOwnedCache(ownershipTTL), recheckDelay: recheckDelay}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Batch is one unit of work (an invocation, a CLI command): its copies share one engine
// run, and source repository settings are read once. (Each destination repository's
// ownership is remembered longer, by the Replicator: ownership.go.)
type Batch struct {
	*Replicator
	copies *copyengine.Run

	mu       sync.Mutex
	settings map[settingsKey]ecraccess.RepositorySettings
}

type settingsKey struct {
	repo            ecrname.Repo
	lifecycle, tags bool
}

// Start begins a batch.
func (m *Replicator) Start() *Batch {
	return &Batch{Replicator: m, copies: m.engine.Start(), settings: map[settingsKey]ecraccess.RepositorySettings{}}
}

// Replicate copies src to every target in parallel and returns one result per target,
// in the targets' order. Targets with a validation error are reported, not copied.
func (r *Batch) Replicate(ctx context.Context, src Image, targets []rules.Target) []Result {
	return r.each(ctx, src, targets, r.replicateOne)
}

// Delete mirrors a source deletion to every target whose rule enables mirrorDeletes (see
// deleteOne).
func (r *Batch) Delete(ctx context.Context, src Image, targets []rules.Target) []Result {
	return r.each(ctx, src, targets, r.deleteOne)
}

// each runs one per target, at most parallel at a time, and returns the results in the
// targets' order.
func (r *Batch) each(ctx context.Context, src Image, targets []rules.Target, one func(context.Context, Image, rules.Target) Result) []Result {
	results := make([]Result, len(targets))
	g := new(errgroup.Group)
	g.SetLimit(r.parallel)
	for i, t := range targets {
		g.Go(func() error {
			start := time.Now()
			results[i] = one(ctx, src, t)
			results[i].Duration = time.Since(start)
			return nil
		})
	}
	g.Wait()
	return results
}

func newResult(src Image, t rules.Target) Result {
	return Result{CopyResult: CopyResult{Digest: src.Digest, Tag: src.Tag}, Rule: t.Rule, Destination: t.Repo()}
}

func (r *Batch) replicateOne(ctx context.Context, src Image, t rules.Target) Result {
	res := newResult(src, t)
	if t.Err != nil {
		return res.failed(t.Err)
	}
	if reason := replicaOfReplica(src, t); reason != "" {
		res.Outcome, res.Reason = Skipped, reason
		return res
	}
	rt, err := r.route(ctx, src, t, t.Destination.CreateRepository)
	res.Created = rt.created
	if err != nil {
		return res.failed(err)
	}
	c := r.copy(ctx, rt, src, t)
	if rt.cached && refusedAtDestination(c.Err) {
		// Remembered as owned, refused now (deleted, re-created, un-adopted since): the
		// process forgot it (copy); look at it again, once, for the verdict ECR gives now.
		if rt, err = r.route(ctx, src, t, t.Destination.CreateRepository); err != nil {
			return res.failed(err)
		}
		res.Created = rt.created
		c = r.copy(ctx, rt, src, t)
	}
	res.take(c)
	var re *copyengine.Error
	if errors.As(c.Err, &re) && re.AtDest && re.Code == "NAME_UNKNOWN" {
		// The destination repository is gone (deleted under us, or never made): retry
		// only if the next attempt creates it.
		res.Retryable = t.Destination.CreateRepository
	}
	if done, archived := r.archivedSource(ctx, rt, src, t, c, res); done {
		return archived
	}
	if c.Err == nil && c.SourceTagMissing && t.MirrorDeletes {
		// The source deleted the tag (before this push event was handled, or while it
		// was): the destination follows, as the tag's own DELETE event would — this
		// handler may be the last one to look at the tag.
		res = r.followSourceDelete(ctx, rt, src, t, firstNonEmpty(c.TagDigest, src.Digest), res)
	}
	return res
}

// route is where one image goes: both registries, resolved, the destination
// repository ensured.
type route struct {
	srcReg, dstReg   *ecraccess.Client
	srcRepo, dstRepo name.Repository
	dst              ecraccess.Repository
	created          bool
	cached           bool // the ownership verdict came from the process's memory
}

// route resolves both registries (assuming the destination role), makes sure the
// destination repository exists (creating it with the source's settings when create)
// and is the replicator's, and names both repositories for the engine.
func (r *Batch) route(ctx context.Context, src Image, t rules.Target, create bool) (route, error) {
	var rt route
	srcReg, err := r.resolver.Client(ctx, ecraccess.SourceAccess(src.Repo.Registry, r.sourceRole))
	if err != nil {
		return rt, err
	}
	srcHost, err := srcReg.Host(ctx, src.Repo.Name)
	if err != nil {
		return rt, err
	}
	dstReg, err := r.resolver.Client(ctx, DestinationAccess(t.Destination))
	if err != nil {
		return rt, err
	}
	rt.dst, rt.cached, err = r.destination(ctx, srcReg, dstReg, src, t, create)
	rt.created = rt.dst.Created
	if err != nil {
		return rt, err
	}
	dstHost, err := dstReg.Host(ctx, t.Repository)
	if err != nil {
		return rt, err
	}
	if rt.srcRepo, err = name.NewRepository(srcHost + "/" + src.Repo.Name); err != nil {
		return rt, fmt.Errorf("source repository %s/%s: %w", srcHost, src.Repo.Name, err)
	}
	if rt.dstRepo, err = name.NewRepository(dstHost + "/" + t.Repository); err != nil {
		return rt, fmt.Errorf("destination repository %s/%s: %w", dstHost, t.Repository, err)
	}
	rt.srcReg, rt.dstReg = srcReg, dstReg
	return rt, nil
}

// copy runs the engine for src along rt. A destination repository gone under us, or
// one that refused a write, is forgotten (looked for again, and its ownership read
// again, next time).
func (r *Batch) copy(ctx context.Context, rt route, src Image, t rules.Target) CopyResult {
	c := r.copies.Copy(ctx, copyengine.Request{
		Source: copyengine.Endpoint{Repository: rt.srcRepo, Auth: rt.srcReg.Authenticator(), Transport: rt.srcReg.Transport(nil),
			Tags: repositoryTags{api: rt.srcReg.API(), registry: src.Repo.AccountID, repo: src.Repo.Name}},
		Digest: src.Digest,
		Tag:    src.Tag,
		Destination: copyengine.Endpoint{Repository: rt.dstRepo, Auth: rt.dstReg.Authenticator(), Transport: rt.dstReg.Transport(nil),
			Tags: repositoryTags{api: rt.dstReg.API(), registry: t.Destination.AccountID, repo: t.Repository}, Mounting: mounting(ctx, rt.dstReg, rt.dst)},
		Referrers: t.Referrers,
		Pinned:    t.Gated(),
		// A gated copy brings signatures, attestations and SBOMs, never an image its
		// gate did not decide (docs/PROMOTION.md).
		ArtifactReferrersOnly: t.Gated(),
	})
	if refusedAtDestination(c.Err) {
		r.forget(rt.dstReg, t.Repository)
	}
	return c
}

// refusedAtDestination says whether a copy failed because the destination repository is
// gone (NAME_UNKNOWN) or refused the write (401/403, an AccessDenied of its API).
func refusedAtDestination(err error) bool {
	var re *copyengine.Error
	if errors.As(err, &re) {
		return re.AtDest && (re.Code == "NAME_UNKNOWN" || re.Code == "DENIED" || re.Status == 401 || re.Status == 403 || ecraccess.IsAccessDenied(re.Code))
	}
	return false
}

// mounting is whether the engine may mount blobs into the destination repository: the
// registry's blob mounting setting (asked once in a while, ecraccess), the repository's
// encryption, read when it was ensured, and who copies — the destination role, whose
// prefix bounds what it may mount from (without a role, the registry's Authenticator
// stands for the process's own identity). Without the setting (not granted, say), every
// blob is uploaded.
func mounting(ctx context.Context, reg *ecraccess.Client, repo ecraccess.Repository) copyengine.Mounting {
	on, _ := reg.BlobMounting(ctx) // a failure is logged there
	return copyengine.Mounting{Enabled: on, Encryption: repo.Encryption, Identity: reg.Access().RoleARN}
}

// replicaOfReplica stops replication loops within one registry: copying a repository
// onto itself, or copying a replica (whose push event the same rule sees again) onto a
// replica of a replica.
func replicaOfReplica(src Image, t rules.Target) string {
	d := t.Destination
	if d.Registry() != src.Repo.Registry {
		return ""
	}
	if t.Repository == src.Repo.Name {
		return "destination is the source repository itself"
	}
	if d.RepositoryPrefix != "" && strings.HasPrefix(src.Repo.Name, d.RepositoryPrefix) {
		return "source is itself a replica under " + d.RepositoryPrefix + " in the same registry; not chaining"
	}
	return ""
}

// sourceSettings reads (once per run) what a created destination repository mirrors.
func (r *Batch) sourceSettings(ctx context.Context, srcReg *ecraccess.Client, repo ecrname.Repo, d rules.Destination) (ecraccess.RepositorySettings, error) {
	key := settingsKey{repo: repo, lifecycle: d.MirrorLifecyclePolicy, tags: d.MirrorRepositoryTags}
	r.mu.Lock()
	s, ok := r.settings[key]
	r.mu.Unlock()
	if !ok {
		var err error
		if s, err = srcReg.ReadSettings(ctx, repo.Name, d.MirrorLifecyclePolicy, d.MirrorRepositoryTags); err != nil {
			return s, err
		}
		r.mu.Lock()
		r.settings[key] = s
		r.mu.Unlock()
	}
	return withDestinationKey(s, d.KMSKey), nil
}

// withDestinationKey is s with the encryption a destination can have. A source KMS key
// lives in the source account and region; the destination uses kmsKey (the key the rule
// names), or else the AWS-managed ECR key of its own account.
func withDestinationKey(s ecraccess.RepositorySettings, kmsKey string) ecraccess.RepositorySettings {
	if kmsKey != "" {
		s.EncryptionType, s.KMSKey = ecrtypes.EncryptionTypeKms, kmsKey
	} else if s.EncryptionType == ecrtypes.EncryptionTypeKms || s.EncryptionType == ecrtypes.EncryptionTypeKmsDsse {
		s.KMSKey = ""
	}
	return s
}

// take records an engine result; byte and blob counts add up over several copies.
func (res *Result) take(c CopyResult) {
	prev := res.CopyResult
	digest, tag := res.Digest, res.Tag
	res.CopyResult = c
	res.BytesCopied += prev.BytesCopied
	res.BlobsCopied += prev.BlobsCopied
	res.BlobsSkipped += prev.BlobsSkipped
	res.BlobsMounted += prev.BlobsMounted
	res.BytesMounted += prev.BytesMounted
	res.BytesMountable += prev.BytesMountable
	res.Digest, res.Tag = firstNonEmpty(c.Digest, digest), tag
	res.Code, res.Retryable = "", false
	if c.Err != nil {
		res.Code, res.Retryable = Classify(c.Err)
	}
}

func (res Result) failed(err error) Result {
	res.Outcome, res.Err = Failed, err
	res.Code, res.Retryable = Classify(err)
	return res
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
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
