package backfill_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
)

// review26Push pushes base plus one small layer of its own as repo:tag at the source
// (creating the repository when create is set).
func (e *env) review26Push(t *testing.T, repo, tag string, base v1.Image, create bool) {
	t.Helper()
	if create {
		if _, err := ecr.NewFromConfig(e.src).CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)}); err != nil {
			t.Fatal(err)
		}
	}
	own, _ := random.Layer(512, "application/vnd.oci.image.layer.v1.tar")
	img, _ := mutate.AppendLayers(base, own)
	ref, err := name.ParseReference(e.host + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(e.auth)); err != nil {
		t.Fatal(err)
	}
}

func layerBytes(t *testing.T, img v1.Image) int64 {
	t.Helper()
	layers, _ := img.Layers()
	var n int64
	for _, l := range layers {
		s, _ := l.Size()
		n += s
	}
	return n
}

func (e *env) enableBlobMounting(t *testing.T) {
	t.Helper()
	if _, err := ecr.NewFromConfig(e.w.Dest.Config).PutAccountSetting(e.ctx, &ecr.PutAccountSettingInput{Name: aws.String("BLOB_MOUNTING"), Value: aws.String("ENABLED")}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) planMounting(t *testing.T) backfill.Mounting {
	t.Helper()
	resp, err := e.backfill().Invoke(e.ctx, backfill.Request{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Mounting) != 1 {
		t.Fatalf("dry run: mounting %+v, want one destination registry", resp.Mounting)
	}
	return resp.Mounting[0]
}

// TestReview26PlanMountableIsNoLowerBound: the dry run's BytesMountable is documented as "a
// lower bound" and the CLI prints it as "at least …": mounted, or saved if mounting were
// enabled. Here every destination repository already holds the shared base from an earlier
// sync; the new images only add a small layer each. The plan still counts the base as
// mountable into every repository after the first — yet the copies upload and mount none
// of it (each destination repository has it: HEAD 200, skipped).
func TestReview26PlanMountableIsNoLowerBound(t *testing.T) {
	e := start(t, "")
	e.enableBlobMounting(t)
	repos := repoNames("shared", 3)
	base, _ := random.Image(64<<10, 2)
	baseSize := layerBytes(t, base)
	for _, repo := range repos {
		e.review26Push(t, repo, "v1", base, true)
	}
	if resp, err := e.backfill().Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline}); err != nil || resp.Failed != 0 || resp.Copied != len(repos) {
		t.Fatalf("first sync: %+v %v", resp, err)
	}
	// A new release of every repository on the same base.
	for _, repo := range repos {
		e.review26Push(t, repo, "v2", base, false)
	}
	m := e.planMounting(t)
	resp, err := e.backfill().Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline})
	if err != nil || resp.Failed != 0 || resp.Copied != len(repos) {
		t.Fatalf("second sync: %+v %v", resp, err)
	}
	e.assertMirrored(t, repos)
	t.Logf("plan: %s, %d bytes mountable (base %d); the copies mounted %d bytes and uploaded %d", m.BlobMounting, m.BytesMountable, baseSize, resp.BytesMounted, resp.BytesCopied)
	if m.BytesMountable > resp.BytesMounted {
		t.Errorf("the plan says blob mounting saves at least %d bytes (BlobMounting %s), but the copies it planned mounted %d: "+
			"the layers every destination repository already holds are counted as shared", m.BytesMountable, m.BlobMounting, resp.BytesMounted)
	}
}

// TestReview26PlanCountsMountsAcrossEncryption: ECR mounts only between repositories of the
// same encryption type and key (blob-mounting.html), and the engine never asks across
// encryption (TestNoMountAcrossEncryption). The dry run groups the shared layers by
// registry alone: with a KMS-encrypted and an AES256 destination repository sharing a base,
// it says that blob mounting, ENABLED, mounts the base — the copies then upload it twice.
func TestReview26PlanCountsMountsAcrossEncryption(t *testing.T) {
	e := start(t, `
rules:
  - name: plain
    repositories: ["plain/*"]
    destinations:
      - accountId: "222222222222"
        region: us-east-1
        roleArn: ROLE
        externalId: EXTID
        repositoryPrefix: mirror/
        createRepository: true
  - name: sealed
    repositories: ["sealed/*"]
    destinations:
      - accountId: "222222222222"
        region: us-east-1
        roleArn: ROLE
        externalId: EXTID
        repositoryPrefix: mirror/
        createRepository: true
        kmsKey: arn:aws:kms:us-east-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab
`)
	e.enableBlobMounting(t)
	base, _ := random.Image(64<<10, 2)
	baseSize := layerBytes(t, base)
	repos := []string{"plain/app", "sealed/app"}
	for _, repo := range repos {
		e.review26Push(t, repo, "v1", base, true)
	}
	m := e.planMounting(t)
	resp, err := e.backfill().Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline})
	if err != nil || resp.Failed != 0 || resp.Copied != len(repos) {
		t.Fatalf("sync: %+v %v", resp, err)
	}
	e.assertMirrored(t, repos)
	t.Logf("plan: %s, %d bytes mountable (base %d); the copies mounted %d bytes and uploaded %d", m.BlobMounting, m.BytesMountable, baseSize, resp.BytesMounted, resp.BytesCopied)
	if m.BytesMountable > resp.BytesMounted {
		t.Errorf("the plan says blob mounting (%s) mounts %d bytes of layers shared between repositories of different encryption; "+
			"ECR mounts none across encryption, and the copies mounted %d", m.BlobMounting, m.BytesMountable, resp.BytesMounted)
	}
}
