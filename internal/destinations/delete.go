package destinations

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// deleteOne mirrors a deletion. A tag's deletion converges the destination tag on the
// source's as it is now: gone (then it is deleted where it still points at the deleted
// digest: one BatchDeleteImage by tag and digest), or back (then it is copied) — a late
// DELETE never undoes a newer push. A digest's deletion deletes the image unless the
// source has it again. "Gone" is the answer of the source repository: when the source has
// no such repository, nothing is deleted (CodeSourceRepositoryNotFound) — the message is a
// claim, and only ECR can confirm it.
func (r *Batch) deleteOne(ctx context.Context, src Image, t rules.Target) Result {
	res := newResult(src, t)
	if t.Err != nil {
		return res.failed(t.Err)
	}
	if !t.MirrorDeletes {
		res.Outcome, res.Reason = Skipped, "mirrorDeletes is off for rule "+t.Rule
		return res
	}
	if src.Tag == "" {
		return r.deleteDigest(ctx, src, t, res)
	}
	rt, err := r.route(ctx, src, t, false)
	var ae *ecraccess.Error
	if errors.As(err, &ae) && ae.Code == ecraccess.CodeRepositoryNotFound {
		res.Outcome, res.Reason = Skipped, "destination repository does not exist"
		return res
	}
	if err != nil {
		return res.failed(err)
	}
	if back, _ := r.recheck(ctx, rt, src, t, &res); back {
		return res
	}
	return r.followSourceDelete(ctx, rt, src, t, src.Digest, res)
}

// recheck copies src's tag as the source has it now. back: the source has the tag
// (res holds that copy's result, or its failure); otherwise tagDigest is where the
// destination tag was seen.
func (r *Batch) recheck(ctx context.Context, rt route, src Image, t rules.Target, res *Result) (back bool, tagDigest string) {
	c := r.copy(ctx, rt, Image{Repo: src.Repo, Tag: src.Tag}, t)
	switch {
	case c.Err != nil && !c.SourceTagMissing:
		*res = res.failed(c.Err)
		return true, ""
	case !c.SourceTagMissing:
		res.take(c)
		res.Reason = "the source has the tag again; the destination follows it"
		return true, ""
	}
	// The registry answered 404 for the tag: deleted, or its image archived (archived.go).
	st, err := archivedStatus(ctx, rt.srcReg.API(), src.Repo, ecrtypes.ImageIdentifier{ImageTag: aws.String(src.Tag)})
	switch {
	case err != nil:
		*res = res.failed(err)
		return true, ""
	case st != "":
		res.Outcome, res.Reason = Skipped, "the source tag's image is "+string(st)+" (archive storage class), not deleted: the destination keeps it"
		return true, ""
	}
	return false, c.TagDigest
}

// followSourceDelete deletes the destination tag the source no longer has — by tag and
// digest, so a tag a newer push moved is never removed (ECR refuses the mismatch with
// ImageTagDoesNotMatchDigest, API_ImageFailure) — then looks at the source again: a tag
// pushed back meanwhile is copied back, so the destination never ends behind, whatever
// the interleaving. Bounded: a tag that keeps coming and going is left to its events.
func (r *Batch) followSourceDelete(ctx context.Context, rt route, src Image, t rules.Target, digest string, res Result) Result {
	for round := 0; round < 3 && digest != ""; round++ {
		switch reason, err := keepImmutable(ctx, rt.dstReg, t, src.Tag, digest); {
		case err != nil:
			return res.failed(err)
		case reason != "":
			res.Outcome, res.Reason = KeptImmutable, reason
			return res
		}
		o, reason, err := r.deleteImage(ctx, rt.dstReg, t, ecrtypes.ImageIdentifier{ImageTag: aws.String(src.Tag), ImageDigest: aws.String(digest)})
		if err != nil {
			return res.failed(err)
		}
		res.Outcome, res.Reason = o, reason
		back, at := r.recheck(ctx, rt, src, t, &res)
		if back || at == digest || at == "" {
			return res
		}
		digest = at // another digest arrived under the tag meanwhile
	}
	return res
}

// deleteDigest mirrors the deletion of an image by digest (all its tags), unless the
// source has the image again.
func (r *Batch) deleteDigest(ctx context.Context, src Image, t rules.Target, res Result) Result {
	srcReg, err := r.resolver.Client(ctx, ecraccess.SourceAccess(src.Repo.Registry, r.sourceRole))
	if err != nil {
		return res.failed(err)
	}
	id := ecrtypes.ImageIdentifier{ImageDigest: aws.String(src.Digest)}
	still, err := imageExists(ctx, srcReg.API(), src.Repo, id)
	if err != nil {
		return res.failed(err)
	}
	if still {
		res.Outcome, res.Reason = Skipped, "the source has the image again; not deleting"
		return res
	}
	dstReg, err := r.resolver.Client(ctx, DestinationAccess(t.Destination))
	if err != nil {
		return res.failed(err)
	}
	if done, guarded := r.guardDelete(ctx, srcReg, dstReg, src, t, id, res); done {
		return guarded
	}
	o, reason, err := r.deleteImage(ctx, dstReg, t, id)
	if code, _ := Classify(err); code == string(ecrtypes.ImageFailureCodeImageReferencedByManifestList) {
		// Retryable, unless the index that references it is one delete mirroring kept.
		switch kept, kerr := keptByIndex(ctx, dstReg, t, src.Digest); {
		case kerr != nil:
			return res.failed(kerr)
		case kept != "":
			res.Outcome, res.Reason = KeptImmutable, kept
			return res
		}
	}
	if err != nil {
		return res.failed(err)
	}
	res.Outcome, res.Reason = o, reason
	return res
}

// CodeSourceRepositoryNotFound is the failure of a deletion whose source repository does
// not exist: nothing is deleted. A repository deleted as a whole, a message naming one the
// source never had: either way "gone" would be a guess about an image nobody can ask the
// source about, and a forged message could delete what the source never held. Reported,
// not retried (a retry asks the same question).
const CodeSourceRepositoryNotFound = "SourceRepositoryNotFound"

// errSourceRepository is a source repository that does not exist.
type errSourceRepository struct{ repo ecrname.Repo }

func sourceRepositoryMissing(repo ecrname.Repo) error { return &errSourceRepository{repo: repo} }

func (e *errSourceRepository) Error() string {
	return fmt.Sprintf("the source repository %s does not exist: a deletion is mirrored only while the source repository exists and no longer holds the image (nothing deleted)", e.repo)
}
func (e *errSourceRepository) ErrorCode() string { return CodeSourceRepositoryNotFound }
func (e *errSourceRepository) Retryable() bool   { return false }

// guardDelete checks, before a delete by digest, that the destination repository is the
// replicator's and that the delete keeps the tags it holds immutable (done: res is the
// answer).
func (r *Batch) guardDelete(ctx context.Context, srcReg, dstReg *ecraccess.Client, src Image, t rules.Target, id ecrtypes.ImageIdentifier, res Result) (bool, Result) {
	_, _, err := r.destination(ctx, srcReg, dstReg, src, t, false)
	var ae *ecraccess.Error
	switch {
	case errors.As(err, &ae) && ae.Code == ecraccess.CodeRepositoryNotFound:
		res.Outcome, res.Reason = Skipped, "destination repository does not exist"
		return true, res
	case err != nil:
		return true, res.failed(err)
	}
	switch reason, err := keepImmutable(ctx, dstReg, t, "", aws.ToString(id.ImageDigest)); {
	case err != nil:
		return true, res.failed(err)
	case reason != "":
		res.Outcome, res.Reason = KeptImmutable, reason
		return true, res
	}
	return false, res
}

// deleteImage is one BatchDeleteImage, its per-image failures read (deleteFailure). A
// repository gone, or a refusal, drops what the process knows of it (forget).
func (r *Batch) deleteImage(ctx context.Context, reg *ecraccess.Client, t rules.Target, id ecrtypes.ImageIdentifier) (Outcome, string, error) {
	out, err := reg.API().BatchDeleteImage(ctx, &ecr.BatchDeleteImageInput{RegistryId: reg.RegistryID(), RepositoryName: aws.String(t.Repository), ImageIds: []ecrtypes.ImageIdentifier{id}})
	var nf *ecrtypes.RepositoryNotFoundException
	if errors.As(err, &nf) {
		r.forget(reg, t.Repository)
		return Skipped, "destination repository does not exist", nil
	}
	if err != nil {
		err = ecraccess.WrapAWS("ecr:BatchDeleteImage", err)
		if code, _ := Classify(err); ecraccess.IsAccessDenied(code) {
			r.forget(reg, t.Repository)
		}
		return "", "", err
	}
	for _, f := range out.Failures {
		return deleteFailure(f)
	}
	if len(out.ImageIds) == 0 {
		return Skipped, "already absent from the destination", nil
	}
	return Deleted, "", nil
}

// deleteFailure maps one of BatchDeleteImage's failures (API_ImageFailure's codes) to
// what the delete mirroring did: nothing left to do (skipped), or a failure with its
// class.
func deleteFailure(f ecrtypes.ImageFailure) (Outcome, string, error) {
	switch f.FailureCode {
	case ecrtypes.ImageFailureCodeImageNotFound:
		return Skipped, "already absent from the destination", nil
	case ecrtypes.ImageFailureCodeImageTagDoesNotMatchDigest:
		return Skipped, "the destination tag points at another digest (a newer push); not deleting", nil
	}
	return "", "", imageFailure("ecr:BatchDeleteImage", f)
}

// imageFailure is one of the per-image failures BatchGetImage and BatchDeleteImage report
// (API_ImageFailure's codes), classified: KMS and upstream trouble pass; so does an index
// that still references an image being deleted — the source deleted the image, so no index
// there uses it any more: the index's own DELETE event is on its way (events arrive in any
// order), and a retry after it succeeds (an index only the destination has ends in the
// dead-letter queue, visibly). Invalid identifiers, upstream access denied, and codes added
// later: no retry fixes them.
func imageFailure(op string, f ecrtypes.ImageFailure) error {
	e := &imageError{op: op, code: string(f.FailureCode), reason: aws.ToString(f.FailureReason)}
	switch f.FailureCode {
	case ecrtypes.ImageFailureCodeKmsError, ecrtypes.ImageFailureCodeUpstreamTooManyRequests, ecrtypes.ImageFailureCodeUpstreamUnavailable,
		ecrtypes.ImageFailureCodeImageReferencedByManifestList:
		e.retryable = true
	}
	return e
}

// imageError is a failure an ECR batch call reported for the image (not the call).
type imageError struct {
	op, code, reason string
	retryable        bool
}

func (e *imageError) Error() string     { return e.op + ": " + e.code + ": " + e.reason }
func (e *imageError) ErrorCode() string { return e.code }
func (e *imageError) Retryable() bool   { return e.retryable }

// imageExists asks the source whether it has the image. BatchGetImage answers a missing
// image with a per-image failure, ImageNotFound, and reports the others there too
// (API_ImageFailure): a transient one (KmsError, UpstreamUnavailable, …) is no answer, and
// reading it as "gone" would delete a destination image the source still has. Neither is
// a repository the source does not have (errSourceRepository).
func imageExists(ctx context.Context, api *ecr.Client, repo ecrname.Repo, id ecrtypes.ImageIdentifier) (bool, error) {
	out, err := api.BatchGetImage(ctx, &ecr.BatchGetImageInput{RegistryId: aws.String(repo.AccountID), RepositoryName: aws.String(repo.Name),
		ImageIds: []ecrtypes.ImageIdentifier{id}})
	var nf *ecrtypes.RepositoryNotFoundException
	if errors.As(err, &nf) {
		return false, sourceRepositoryMissing(repo)
	}
	if err != nil {
		return false, ecraccess.WrapAWS("ecr:BatchGetImage", err)
	}
	if len(out.Images) > 0 {
		return true, nil
	}
	for _, f := range out.Failures {
		switch f.FailureCode {
		case ecrtypes.ImageFailureCodeImageNotFound:
		case ecrtypes.ImageFailureCodeImageInaccessible:
			// It exists and cannot be pulled: archived (archived.go; that BatchGetImage
			// reports an archived image with this code is a guess).
			return true, nil
		default:
			return false, imageFailure("ecr:BatchGetImage", f)
		}
	}
	return false, nil
}
