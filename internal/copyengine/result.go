package copyengine

import "time"

// Outcome summarises what a Copy did.
type Outcome string

const (
	Copied         Outcome = "copied"          // blobs and/or manifests were written
	AlreadyPresent Outcome = "already-present" // nothing to do
	TagUpdated     Outcome = "tag-updated"     // content was there, only the tag moved
	Skipped        Outcome = "skipped"         // stale event: the source tag moved on, nothing written
	Conflict       Outcome = "conflict"        // the destination refused the tag (immutable), permanent
	// TooLarge: a layer cannot be uploaded within one run of a function with a deadline
	// (CodeTooLarge); permanent, copy it with the CLI.
	TooLarge Outcome = "too-large-for-function"
	Failed   Outcome = "failed" // see Result.Err and IsRetryable
)

// Failure reports whether the outcome is a failure: Result.Err says why, and whether
// it is worth another delivery.
func (o Outcome) Failure() bool { return o == Failed || o == Conflict || o == TooLarge }

// Result reports one Copy. Counters are exact: a blob or manifest counts once
// per Copy, as copied when this call wrote it, as skipped otherwise.
type Result struct {
	Outcome Outcome
	Digest  string
	Tag     string
	Reason  string

	BytesCopied, BytesSkipped int64
	BlobsCopied, BlobsSkipped int
	// BlobsMounted and BytesMounted: blobs mounted from another repository of the
	// destination registry instead of uploaded (not in BytesCopied, which is what was
	// uploaded).
	BlobsMounted int
	BytesMounted int64
	// BytesMountable: of BytesCopied, what another repository of the destination registry
	// (with the same encryption) was known to hold: mounted instead, had the registry
	// blob mounting enabled.
	BytesMountable   int64
	ManifestsWritten int
	ManifestsSkipped int
	ReferrersCopied  int
	// ReferrersRefused: referrers an ArtifactReferrersOnly copy left out (runnable).
	ReferrersRefused int
	// ManifestsThrottled counts the manifest writes the destination refused with 429
	// (ECR's PutImage quota) and that were sent again: pressure on the quota, whether or
	// not the copy then succeeded.
	ManifestsThrottled int

	// SourceTagMissing: the source no longer has Tag — deleted after the destination tag
	// was written, or already before (with a Tag-only request, that is also the error:
	// nothing to copy). The destination tag is left as it was: whether deletes are
	// mirrored is the caller's decision.
	SourceTagMissing bool
	// TagDigest is where this copy last saw or put the destination tag (empty: unknown).
	TagDigest string

	Duration time.Duration
	Err      error // *Error when classified
}

func (s *session) fill(r *Result) {
	r.BlobsCopied = int(s.blobsCopied.Load())
	r.BlobsSkipped = int(s.blobsSkipped.Load())
	r.BytesCopied = s.bytesCopied.Load()
	r.BytesSkipped = s.bytesSkipped.Load()
	r.BlobsMounted = int(s.blobsMounted.Load())
	r.BytesMounted = s.bytesMounted.Load()
	r.BytesMountable = s.bytesMountable.Load()
	r.ManifestsWritten = int(s.written.Load())
	r.ManifestsSkipped = int(s.skipped.Load())
	r.ReferrersCopied = int(s.referrersCopied.Load())
	r.ReferrersRefused = int(s.referrersRefused.Load())
}
