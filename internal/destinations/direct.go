package destinations

import (
	"context"
	"log/slog"
	"math"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
)

// A direct copy is the CLI's copy: one repository to another that the user names, in any
// registry, without rules. It goes through destinations as a replication does — the
// engine, the source's settings, a destination repository created owned — so that the
// two ways of copying cannot drift apart.

// Endpoint is one side of a direct copy: a repository and how to reach it.
type Endpoint = copyengine.Endpoint

// CopyError is a copy's classified failure: the operation, which side, the registry's
// code and HTTP status.
type CopyError = copyengine.Error

// The codes of the copy failures the engine itself finds (CopyError.Code).
const (
	CodeDigestMismatch = copyengine.CodeDigestMismatch
	CodeInvalid        = copyengine.CodeInvalid
)

// Progress is one event of a blob transfer (EngineOptions.Progress).
type Progress = copyengine.Progress

// The events of a blob transfer (Progress.Event).
const (
	BlobStarted = copyengine.BlobStarted
	BlobBytes   = copyengine.BlobBytes
	BlobDone    = copyengine.BlobDone
)

// EngineOptions are what a command sets of the copy engine it starts (the CLI's copy and
// sync; the functions' engine is the wiring's).
type EngineOptions struct {
	Jobs     int            // blobs transferred in parallel (0: the engine's default)
	Log      *slog.Logger   // nil: the engine's default
	Progress func(Progress) // told of every blob transfer (nil: nobody)
	// Unpaced leaves manifest writes unpaced: they are paced for ECR's PutImage quota,
	// which other registries do not publish (a 429 is still backed off).
	Unpaced bool
}

// NewEngine returns the copy engine of a command, for New or StartDirect.
func NewEngine(o EngineOptions) *copyengine.Engine {
	var opts []copyengine.Option
	if o.Jobs > 0 {
		opts = append(opts, copyengine.WithJobs(o.Jobs))
	}
	if o.Log != nil {
		opts = append(opts, copyengine.WithLogger(o.Log))
	}
	if o.Unpaced {
		opts = append(opts, copyengine.WithManifestRate(math.Inf(1), 1))
	}
	if o.Progress != nil {
		opts = append(opts, copyengine.WithProgress(o.Progress))
	}
	return copyengine.New(opts...)
}

// Direct is one direct copy command: its copies share one engine run.
type Direct struct{ copies *copyengine.Run }

// StartDirect begins a direct copy command with engine.
func StartDirect(engine *copyengine.Engine) *Direct { return &Direct{copies: engine.Start()} }

// Copy copies the image digest, or the one tag names (resolved by the engine: one GET of
// the manifest), from src to dst, with its referrers when referrers.
func (d *Direct) Copy(ctx context.Context, src, dst Endpoint, digest, tag string, referrers bool) CopyResult {
	return d.copies.Copy(ctx, copyengine.Request{Source: src, Digest: digest, Tag: tag, Destination: dst, Referrers: referrers})
}

// SourceSettings reads the settings of the source repository that a created destination
// repository mirrors (its lifecycle policy, its tags: when asked), with the encryption
// a destination can have: a source KMS key lives in the source account and region, so
// the destination uses kmsKey (a rule's), or else the AWS-managed ECR key of its own
// account.
func SourceSettings(ctx context.Context, srcReg *ecraccess.Client, repository string, lifecycle, tags bool, kmsKey string) (ecraccess.RepositorySettings, error) {
	s, err := srcReg.ReadSettings(ctx, repository, lifecycle, tags)
	if err != nil {
		return s, err
	}
	return withDestinationKey(s, kmsKey), nil
}

// CreateOwned makes sure a destination repository exists, creating it when create with
// settings and tagged as the replicator's of account owner (ecraccess.OwnedTags), beside
// settings' own tags. It describes the repository, and says whether it created it.
func CreateOwned(ctx context.Context, dstReg *ecraccess.Client, repository string, settings ecraccess.RepositorySettings, owner string, create bool) (ecraccess.Repository, error) {
	settings.Tags = ecraccess.OwnedTags(owner, settings.ARN, settings.Tags)
	return dstReg.EnsureRepository(ctx, repository, settings, create)
}
