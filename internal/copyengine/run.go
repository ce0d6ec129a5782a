package copyengine

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// Run is one unit of work of an Engine: its Copy calls share what they learn about
// the registries (see the package doc). Safe for concurrent use; dropped when done.
type Run struct {
	*Engine
	// started is when the run began: with a context deadline, the time a whole run has
	// (an invocation's), against which uploads are weighed (budget.go).
	started time.Time

	blobs     onceMap // key: destination repo + blob digest
	manifests onceMap // key: destination repo + manifest digest

	runMu     sync.Mutex
	endpoints map[endpointKey]*endpoint
	// noReferrersAPI marks source registries that answered the referrers API with "not
	// supported" in this run, so later subjects go straight to the tag schema.
	noReferrersAPI map[string]bool
	// sourceTags and destTags answer "may the repository have this tag?" from one
	// listing once a run has asked often enough (cosign tags at the source, tags about
	// to be written at the destination).
	sourceTags, destTags tagIndex
}

// Start begins a run.
func (e *Engine) Start() *Run {
	return &Run{Engine: e, started: time.Now(), endpoints: map[endpointKey]*endpoint{}, noReferrersAPI: map[string]bool{}}
}

// Copy copies req.Digest and everything it references from the source to the
// destination, then (if req.Tag is set) converges the destination tag on the
// source tag. It never returns an error directly: Result.Err carries it.
func (c *Run) Copy(ctx context.Context, req Request) Result {
	start := time.Now()
	res := Result{Digest: req.Digest, Tag: req.Tag}
	ctx, throttled := countThrottles(ctx)
	s, digest, err := c.newSession(req)
	if err == nil {
		err = s.run(ctx, digest, &res)
		s.fill(&res)
	}
	res.ManifestsThrottled = int(throttled.Load())
	res.Duration = time.Since(start)
	res.Err = err
	written := res.BlobsCopied > 0 || res.BlobsMounted > 0 || res.ManifestsWritten > 0
	var e *Error
	switch {
	case errors.As(err, &e) && e.Code == string(transport.TagInvalidErrorCode):
		res.Outcome = Conflict
	case errors.As(err, &e) && e.Code == CodeTooLarge:
		res.Outcome = TooLarge
	case err != nil:
		res.Outcome = Failed
	case written:
		res.Outcome = Copied
	case s != nil && s.tagWrites.Load() > 0:
		res.Outcome = TagUpdated
	case res.Reason != "":
		res.Outcome = Skipped
	default:
		res.Outcome = AlreadyPresent
	}
	level := slog.LevelInfo
	if err != nil {
		level = slog.LevelWarn
	}
	c.log.Log(ctx, level, "copy", "src", req.Source.Repository.String(), "dst", req.Destination.Repository.String(),
		"digest", res.Digest, "tag", req.Tag, "outcome", res.Outcome, "reason", res.Reason,
		"blobs_copied", res.BlobsCopied, "blobs_skipped", res.BlobsSkipped, "bytes_copied", res.BytesCopied,
		"blobs_mounted", res.BlobsMounted, "bytes_mounted", res.BytesMounted, "bytes_mountable", res.BytesMountable,
		"manifests_written", res.ManifestsWritten, "manifests_skipped", res.ManifestsSkipped,
		"referrers_copied", res.ReferrersCopied, "duration", res.Duration, "retryable", retry.IsRetryable(err), "err", err)
	return res
}
