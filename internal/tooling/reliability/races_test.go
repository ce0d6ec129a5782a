package reliability_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestKilledInvocationLeavesNoOlderTag: invocation A handles v1→D1. While A copies, the
// source moves v1 to D2 and invocation B (another execution environment) replicates D2
// completely. A's PUT by tag then lands v1→D1, and A dies before re-checking the source.
// The redelivered message finds the source at D2 — a stale event — and must still
// converge the destination tag on D2, not leave it on D1 for good.
func TestKilledInvocationLeavesNoOlderTag(t *testing.T) {
	f := newFx(t, 1500)
	const repo = "team-a/race"
	d1 := f.push(t, repo, "v1", f.image(t, 4096, 1))
	img2 := f.image(t, 4096, 1)
	b := f.newHandler(t)

	ctxA, killA := context.WithCancel(f.ctx)
	defer killA()
	var bDone bool
	// 1. A's first blob upload is held: meanwhile the source moves and B replicates D2.
	_, err := f.sb.HoldRequests(sandbox.Hold{Account: dstAcct, Step: sandbox.StepUploadPUT, Repository: prefix + repo,
		Reached: func(sandbox.Entry) {
			d2 := f.push(t, repo, "v1", img2)
			out, err := b.Handle(f.ctx, sandboxtest.SQSBatch(1, f.records(sandboxtest.ImageEvent("b", "PUSH", repo, d2, "v1"))...))
			if err != nil || len(batchFailures(t, out)) > 0 {
				t.Errorf("invocation B: %v %s", err, toJSON(out))
			}
			bDone = f.w.Dest.Digest(t, prefix+repo, "v1") == d2
			// 2. A's PUT by tag lands after B's; A is killed before it is answered.
			if _, err := f.sb.HoldRequests(sandbox.Hold{Account: dstAcct, Step: sandbox.StepManifestPUT, Repository: prefix + repo, Reference: "v1",
				Reached: func(sandbox.Entry) { killA() }}); err != nil {
				t.Error(err)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	recs := f.records(sandboxtest.ImageEvent("a", "PUSH", repo, d1, "v1"))
	out, err := f.h.Handle(ctxA, sandboxtest.SQSBatch(1, recs...))
	if err != nil {
		t.Fatal(err)
	}
	if !bDone {
		t.Fatal("invocation B did not replicate D2 while A was held: the interleaving did not happen")
	}
	if !batchFailures(t, out)[recs[0].ID] {
		t.Fatalf("the killed invocation acknowledged its message: %s", toJSON(out))
	}
	if got := f.w.Dest.Digest(t, prefix+repo, "v1"); got != d1 {
		t.Fatalf("setup: after A's late write the destination v1 is %s, want D1 %s", got, d1)
	}
	// 3. The redelivery of A's message: the source is at D2.
	f.deliver(t, recs, nil)
	f.verify(t, repo)
	report(t, "A killed between its late tag PUT (v1→D1) and its re-check, after B wrote v1→D2: the redelivered stale event moved the destination to D2")
}

// TestDeleteNeverRemovesANewerTag: between the delete mirroring's check of the source
// and its delete in the destination, a push moves the tag (source and destination) to a
// new digest. The delete must go by tag and digest, so the newer tag survives (ECR
// refuses the mismatch with ImageTagDoesNotMatchDigest).
func TestDeleteNeverRemovesANewerTag(t *testing.T) {
	f := newFx(t, 1600, withRules(func(e string) string { return rulesDoc(e, true) }))
	const repo = "team-a/del"
	d1 := f.push(t, repo, "v1", f.image(t, 2048, 1))
	f.deliver(t, f.records(sandboxtest.ImageEvent("p1", "PUSH", repo, d1, "v1")), nil)
	f.deleteSource(t, repo, ecrtypes.ImageIdentifier{ImageTag: aws.String("v1")})
	img2 := f.image(t, 2048, 1)
	b := f.newHandler(t)
	mark := f.sb.AccessLogMark()
	moved := false
	// The delete mirroring asks the source for v1 and reads the destination's v1. The
	// destination's answer is held until the source has answered "v1 is gone"; meanwhile
	// v1 comes back on a new digest and is replicated. (The ECR API hold is where an
	// engine that checks the destination with BatchGetImage would be.)
	sourceAnswered := func() bool {
		for _, e := range f.sb.AccessLogSince(mark) {
			if e.Account == srcAcct && e.Repository == repo && e.Status == 404 && strings.Contains(e.Reference, "v1") ||
				e.Account == srcAcct && e.Operation == "BatchGetImage" && e.Repository == repo {
				return true
			}
		}
		return false
	}
	fire := func(sandbox.Entry) {
		for deadline := time.Now().Add(5 * time.Second); !sourceAnswered() && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		d2 := f.push(t, repo, "v1", img2)
		if _, err := b.Handle(f.ctx, sandboxtest.SQSBatch(1, f.records(sandboxtest.ImageEvent("p2", "PUSH", repo, d2, "v1"))...)); err != nil {
			t.Error(err)
		}
		moved = f.w.Dest.Digest(t, prefix+repo, "v1") == d2
	}
	var fired atomic.Bool // the first held request acts; the others (B's own among them) pass
	for _, h := range []sandbox.Hold{
		{Account: dstAcct, Step: sandbox.StepManifestHEAD, Repository: prefix + repo, Reference: "v1"},
		{Account: dstAcct, Operation: "BatchGetImage", Repository: prefix + repo},
	} {
		h.Reached = func(e sandbox.Entry) {
			if fired.CompareAndSwap(false, true) {
				fire(e)
			}
		}
		remove, err := f.sb.HoldRequests(h)
		if err != nil {
			t.Fatal(err)
		}
		defer remove()
	}
	out, err := f.h.Handle(f.ctx, json.RawMessage(sandboxtest.ImageEvent("d1", "DELETE", repo, d1, "v1")))
	if err != nil {
		t.Fatal(err)
	}
	if !moved {
		t.Fatal("the tag was not moved during the delete's check: the interleaving did not happen")
	}
	f.verify(t, repo) // v1 → D2 on both sides
	// A delete, if one was sent, named both: ECR's Reference holds the image IDs of the call.
	for _, e := range f.sb.AccessLogSince(mark) {
		if e.Operation == "BatchDeleteImage" && e.Account == dstAcct && !strings.Contains(e.Reference, "sha256:") {
			t.Errorf("BatchDeleteImage by %q: want the tag and the digest", e.Reference)
		}
	}
	report(t, "push moved v1 between the delete's source check and its delete: destination kept the newer v1 (%s)", toJSON(out.(eventhandler.Summary).Results))
}

// TestDeleteFailuresAreRead: BatchDeleteImage reports per-image failures in the answer,
// not as an error. Deleting a child image out of order — the destination's index that
// references it is deleted by a later event — fails with ImageReferencedByManifestList:
// a retryable failure (the index's delete is on its way), not "already absent".
func TestDeleteFailuresAreRead(t *testing.T) {
	f := newFx(t, 1700, withRules(func(e string) string { return rulesDoc(e, true) }))
	const repo = "team-a/kids"
	child := f.image(t, 2048, 1)
	c := f.push(t, repo, "c1", child)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: child})
	i := f.w.Source.Push(t, repo, "i1", idx).String()
	f.deliver(t, f.records(sandboxtest.ImageEvent("pc", "PUSH", repo, c, "c1"), sandboxtest.ImageEvent("pi", "PUSH", repo, i, "i1")), nil)
	// The source deletes the index, then the child.
	f.deleteSource(t, repo, ecrtypes.ImageIdentifier{ImageDigest: aws.String(i)})
	f.deleteSource(t, repo, ecrtypes.ImageIdentifier{ImageTag: aws.String("c1")})
	// The child's DELETE event arrives first.
	childDel := f.records(sandboxtest.ImageEvent("dc", "DELETE", repo, c, "c1"))
	out, err := f.h.Handle(f.ctx, sandboxtest.SQSBatch(1, childDel...))
	if err != nil {
		t.Fatal(err)
	}
	if !batchFailures(t, out)[childDel[0].ID] {
		t.Fatalf("the refused delete was acknowledged: %s\n%s", toJSON(out), lastLines(f.logs.String(), 2))
	}
	if !strings.Contains(f.logs.String(), `"error_code":"ImageReferencedByManifestList"`) {
		t.Errorf("the log does not name ImageReferencedByManifestList")
	}
	// The index's delete, then the child's redelivery.
	f.deliver(t, f.records(sandboxtest.ImageEvent("di", "DELETE", repo, i, "i1")), nil)
	f.deliver(t, childDel, nil)
	if tags := f.w.Dest.Tags(t, f.ctx, prefix+repo); len(tags) != 0 {
		t.Fatalf("destination still has %v", tags)
	}
	report(t, "child deleted before its index: ImageReferencedByManifestList, retried; after the index's delete, the redelivery deleted it")
}

// TestDeleteRecheckReadsFailures: before mirroring a delete by digest, the source is
// asked whether it has the image again (BatchGetImage). That answer reports per-image
// failures (KmsError, UpstreamUnavailable: API_ImageFailure), not as an error; a
// transient one must not read as "gone". It did, and a mirrored delete removed a
// destination image the source still had.
func TestDeleteRecheckReadsFailures(t *testing.T) {
	f := newFx(t, 1800, withRules(func(e string) string { return rulesDoc(e, true) }))
	const repo = "team-a/kept"
	img := f.image(t, 2048, 1)
	d := f.push(t, repo, "v1", img)
	f.deliver(t, f.records(sandboxtest.ImageEvent("p", "PUSH", repo, d, "v1")), nil)
	// The source deletes the image and pushes it back before the DELETE event is handled.
	f.deleteSource(t, repo, ecrtypes.ImageIdentifier{ImageDigest: aws.String(d)})
	f.push(t, repo, "v1", img)
	if err := f.sb.InjectAPIFault(sandbox.APIFault{Service: "ecr", Operation: "BatchGetImage", Account: srcAcct, ImageFailure: "KmsError", Count: 1}); err != nil {
		t.Fatal(err)
	}
	del := f.records(sandboxtest.ImageEvent("d", "DELETE", repo, d, ""))
	out, err := f.h.Handle(f.ctx, sandboxtest.SQSBatch(1, del...))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.w.Dest.Digest(t, prefix+repo, d); got != d {
		t.Fatalf("the destination image was deleted while the source still has it (the re-check failed with KmsError): %s", lastLines(f.logs.String(), 2))
	}
	if !batchFailures(t, out)[del[0].ID] {
		t.Fatalf("the failed re-check was acknowledged: %s", toJSON(out))
	}
	if !strings.Contains(f.logs.String(), `"error_code":"KmsError"`) {
		t.Errorf("the log does not name KmsError")
	}
	f.deliver(t, del, nil) // the redelivery sees the image: not deleted
	f.verify(t, repo)
	report(t, "DELETE by digest, source re-pushed it, its BatchGetImage re-check failed with KmsError: retried, destination kept the image")
}

// TestArchivedSourceImage: an image archived at the source cannot be pulled (404,
// archive-image.html) but is still the source's. A late push event for it (a redelivery,
// a work item sent before the archive) never deletes: with mirrorDeletes the source tag
// answered 404, was read as deleted, and the destination's tag was deleted. And one the
// destination lacks is a permanent failure that says why (ImageArchived), not a retry.
func TestArchivedSourceImage(t *testing.T) {
	f := newFx(t, 1900, withRules(func(e string) string { return rulesDoc(e, true) }))
	const repo = "team-a/cold"
	archive := func(tag string) {
		if _, err := ecr.NewFromConfig(f.w.Source.Config).UpdateImageStorageClass(f.ctx, &ecr.UpdateImageStorageClassInput{RepositoryName: aws.String(repo),
			ImageId: &ecrtypes.ImageIdentifier{ImageTag: aws.String(tag)}, TargetStorageClass: ecrtypes.TargetStorageClassArchive}); err != nil {
			t.Fatal(err)
		}
	}
	d1 := f.push(t, repo, "v1", f.image(t, 2048, 1))
	ev1 := sandboxtest.ImageEvent("p1", "PUSH", repo, d1, "v1")
	f.deliver(t, f.records(ev1), nil)
	d2 := f.push(t, repo, "v2", f.image(t, 2048, 1)) // its event is late
	archive("v1")
	archive("v2")
	late := f.records(ev1, sandboxtest.ImageEvent("p2", "PUSH", repo, d2, "v2"))
	out, err := f.h.Handle(f.ctx, sandboxtest.SQSBatch(2, late...))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.w.Dest.Digest(t, prefix+repo, "v1"); got != d1 {
		t.Fatalf("the destination tag was deleted because the source image is archived: %s", lastLines(f.logs.String(), 2))
	}
	if len(batchFailures(t, out)) != 0 {
		t.Fatalf("an archived source image is retried: %s", toJSON(out))
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `"error_code":"ImageArchived"`) || !strings.Contains(logs, "(archive storage class): its tag is kept") {
		t.Errorf("the outcomes do not say the source images are archived: %s", lastLines(logs, 2))
	}
	// A DELETE event of the tag (a stale one: the tag is still the source's, archived).
	f.deliver(t, f.records(sandboxtest.ImageEvent("d1", "DELETE", repo, d1, "v1")), nil)
	if got := f.w.Dest.Digest(t, prefix+repo, "v1"); got != d1 {
		t.Fatalf("a stale DELETE deleted the tag of an archived source image: %s", lastLines(f.logs.String(), 1))
	}
	report(t, "late push events of images archived at the source (mirrorDeletes on): the one at the destination kept its tag; the missing one failed for good with ImageArchived; a stale DELETE left the tag")
}
