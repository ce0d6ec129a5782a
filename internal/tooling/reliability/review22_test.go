package reliability_test

// Review of issue 22 (independent reviewer): failing tests for what the change still
// loses. Each test states the consequence it demonstrates.

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestReview22ActivatingSourceIsNotFinal: an image being restored from the archive
// (ACTIVATING) cannot be pulled yet, but will be: "ACTIVATING" is the way back to ACTIVE
// (UpdateImageStorageClass to STANDARD, https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_UpdateImageStorageClass.html;
// archive-image.html). A push event handled while the source image is ACTIVATING (a
// redelivery, an event late in the queue, a work item sent before it was archived) is
// failed for good with ImageArchived and acknowledged — the same verdict as ARCHIVED. A
// permanent verdict must rest on certainty; nothing else ever copies it: the template's
// event rule routes PUSH (and DELETE) only, not the restore's UPDATE_STORAGE_CLASS event,
// and the reconcile the message points to is off by default (ReconcileSchedule "").
// A retry through batchItemFailures would copy it once the restore completes.
func TestReview22ActivatingSourceIsNotFinal(t *testing.T) {
	f := newFx(t, 2201)
	const repo = "team-a/thaw"
	d := f.push(t, repo, "v1", f.image(t, 2048, 1))
	api := ecr.NewFromConfig(f.w.Source.Config)
	for _, target := range []ecrtypes.TargetStorageClass{ecrtypes.TargetStorageClassArchive, ecrtypes.TargetStorageClassStandard} {
		if _, err := api.UpdateImageStorageClass(f.ctx, &ecr.UpdateImageStorageClassInput{RepositoryName: aws.String(repo),
			ImageId: &ecrtypes.ImageIdentifier{ImageTag: aws.String("v1")}, TargetStorageClass: target}); err != nil {
			t.Fatal(err)
		}
	}
	// The source image is ACTIVATING: being restored.
	recs := f.records(sandboxtest.ImageEvent("p1", "PUSH", repo, d, "v1"))
	out, err := f.h.Handle(f.ctx, sandboxtest.SQSBatch(1, recs...))
	if err != nil {
		t.Fatal(err)
	}
	retried := batchFailures(t, out)[recs[0].ID]
	f.sb.CompleteRestores()
	if !retried {
		t.Fatalf("the push of an image being restored (ACTIVATING) was acknowledged as a permanent failure; after the restore "+
			"completes nothing copies it (no event for the restore is routed, no reconcile by default): %s", lastLines(f.logs.String(), 1))
	}
	f.deliver(t, recs, nil)
	if got := f.w.Dest.Digest(t, prefix+repo, "v1"); got != d {
		t.Fatalf("after the restore, the destination has v1 = %q, want %s", got, d)
	}
}
