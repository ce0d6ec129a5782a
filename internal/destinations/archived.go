package destinations

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// An image in the archive storage class (ARCHIVED, or ACTIVATING while it is restored)
// cannot be pulled — the registry answers 404 — yet it is still the source's
// (https://docs.aws.amazon.com/AmazonECR/latest/userguide/archive-image.html). When the
// source answers 404, the replicator asks the ECR API before it concludes anything: a
// copy of an ARCHIVED image fails for good with ImageArchived (no delivery can pull it;
// the restore is not forwarded, so only a reconcile run or the CLI copies it once it is
// restored: docs/CONTRACT.md, "Archive storage class"); a copy of an ACTIVATING image is
// retried (ImageActivating): ACTIVATING always ends ACTIVE (API_UpdateImageStorageClass),
// and nothing else would copy it; a tag whose image is archived is never mirrored as
// deleted.

// CodeImageArchived is the failure of a copy whose source image is archived (permanent);
// CodeImageActivating, of one whose source image is being restored (retryable).
const (
	CodeImageArchived   = "ImageArchived"
	CodeImageActivating = "ImageActivating"
)

// archivedError: the source image is in the archive storage class.
type archivedError struct{ status ecrtypes.ImageStatus }

func (e *archivedError) Error() string {
	if e.activating() {
		return "the source image is ACTIVATING (being restored from the archive storage class) and cannot be pulled yet: retried until it is ACTIVE"
	}
	return fmt.Sprintf("the source image is %s (archive storage class) and cannot be pulled; its restore is not replicated by itself: once it is restored, "+
		"a reconcile run (ReconcileSchedule, or ReconcileFunction invoked) or `ecr-replicator copy` copies it", e.status)
}

func (e *archivedError) ErrorCode() string {
	if e.activating() {
		return CodeImageActivating
	}
	return CodeImageArchived
}

func (e *archivedError) Retryable() bool  { return e.activating() }
func (e *archivedError) activating() bool { return e.status == ecrtypes.ImageStatusActivating }

// archivedStatus is the source image's status when it is archived or being restored, ""
// otherwise (active, or gone). DescribeImages by image ID describes an image whatever its
// status ("it can still be described"; its listing, without a filter, shows only ACTIVE
// images). A source repository that does not exist is no answer (errSourceRepository).
func archivedStatus(ctx context.Context, api *ecr.Client, repo ecrname.Repo, id ecrtypes.ImageIdentifier) (ecrtypes.ImageStatus, error) {
	out, err := api.DescribeImages(ctx, &ecr.DescribeImagesInput{RegistryId: aws.String(repo.AccountID), RepositoryName: aws.String(repo.Name),
		ImageIds: []ecrtypes.ImageIdentifier{id}})
	var (
		inf *ecrtypes.ImageNotFoundException
		rnf *ecrtypes.RepositoryNotFoundException
	)
	switch {
	case errors.As(err, &rnf):
		return "", sourceRepositoryMissing(repo)
	case errors.As(err, &inf):
		return "", nil
	}
	if err != nil {
		return "", ecraccess.WrapAWS("ecr:DescribeImages", err)
	}
	for _, d := range out.ImageDetails {
		if d.ImageStatus == ecrtypes.ImageStatusArchived || d.ImageStatus == ecrtypes.ImageStatusActivating {
			return d.ImageStatus, nil
		}
	}
	return "", nil
}

// archivedSource looks at what a 404 from the source means after a copy (c): when the
// copied image is archived, the copy's failure is ImageArchived; when the image the source
// tag points at is archived, its tag is not mirrored as deleted (done: res is the answer).
func (r *Batch) archivedSource(ctx context.Context, rt route, src Image, t rules.Target, c CopyResult, res Result) (done bool, _ Result) {
	failed := sourceMissing(c.Err)
	if !failed && (c.Err != nil || !c.SourceTagMissing || !t.MirrorDeletes) {
		return false, res
	}
	id := ecrtypes.ImageIdentifier{ImageTag: aws.String(src.Tag)} // what the tag points at
	if failed && src.Digest != "" {
		id = ecrtypes.ImageIdentifier{ImageDigest: aws.String(src.Digest)} // what was copied
	}
	switch st, err := archivedStatus(ctx, rt.srcReg.API(), src.Repo, id); {
	case err != nil && !failed:
		return true, res.failed(err) // nothing is deleted on a guess
	case st != "" && failed:
		return true, res.failed(&archivedError{status: st})
	case st != "":
		res.Reason = "the source image is " + string(st) + " (archive storage class): its tag is kept"
		return true, res
	}
	return false, res
}

// sourceMissing: the copy failed because the source answered 404.
func sourceMissing(err error) bool {
	var e *copyengine.Error
	return errors.As(err, &e) && !e.AtDest && e.Status == http.StatusNotFound
}
