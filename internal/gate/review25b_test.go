package gate_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/gate"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// rawTaggable is a manifest pushed as its bytes, with its media type.
type rawTaggable struct {
	body []byte
	mt   types.MediaType
}

func (r rawTaggable) RawManifest() ([]byte, error)        { return r.body, nil }
func (r rawTaggable) MediaType() (types.MediaType, error) { return r.mt, nil }

func digestOf(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }

// TestReview25bSchema1PlatformEscapesTheScan: the gate scans "every image a runtime may
// select" from an index, but it leaves out any child "of a media type that is neither an
// image nor an index" (index.go) — and a Docker schema 1 manifest is neither for
// go-containerregistry (IsImage is OCI and schema 2 only). The copy engine copies such a
// child as a manifest (copyDeps: IsSchema1), ECR stores schema 1 manifests, and Docker
// Engine's pull of a manifest list runs the schema 1 child its platform selects
// (moby pullManifestList, case *schema1.SignedManifest; containerd 1.x converts schema 1).
// An index with a clean linux/arm64 image and a linux/amd64 schema 1 image with a CRITICAL
// finding passes `scan: {severity: HIGH}`: only the arm64 image is scanned.
func TestReview25bSchema1PlatformEscapesTheScan(t *testing.T) {
	e := newEnv(t)
	e.n++
	repo := fmt.Sprintf("team/review25b-%d", e.n)
	e.w.Source.EnsureRepository(t, e.w.Ctx, repo)
	opts := []remote.Option{remote.WithAuth(e.w.Source.Auth)}
	img := gate.Image{Repo: ecrname.Repo{Registry: ecrname.Registry{AccountID: sandbox.SourceAccount, Region: sandbox.DefaultRegion}, Name: repo}}

	// The clean linux/arm64 image.
	arm, _ := random.Image(256, 1)
	armDigest := e.w.Source.Push(t, repo, "", arm)
	armRaw, _ := arm.RawManifest()
	armMT, _ := arm.MediaType()

	// The linux/amd64 image, a Docker schema 1 manifest (unsigned: application/vnd.docker.distribution.manifest.v1+json).
	layer := static.NewLayer([]byte("a root filesystem layer"), types.DockerLayer)
	ld, _ := layer.Digest()
	if err := remote.WriteLayer(e.w.Source.Ref(t, repo, "v1").Context(), layer, opts...); err != nil {
		t.Fatal(err)
	}
	s1, _ := json.Marshal(map[string]any{
		"schemaVersion": 1, "name": repo, "tag": "amd64", "architecture": "amd64",
		"fsLayers": []map[string]string{{"blobSum": ld.String()}},
		"history":  []map[string]string{{"v1Compatibility": `{"id":"1","os":"linux","architecture":"amd64","config":{"Entrypoint":["/bin/app"]}}`}},
	})
	s1Digest := digestOf(s1)
	if err := remote.Put(e.w.Source.Ref(t, repo, s1Digest), rawTaggable{s1, types.DockerManifestSchema1}, opts...); err != nil {
		t.Fatalf("push the schema 1 image: %v", err)
	}

	idx, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": types.OCIImageIndex,
		"manifests": []map[string]any{
			{"mediaType": armMT, "digest": armDigest.String(), "size": len(armRaw), "platform": map[string]string{"os": "linux", "architecture": "arm64"}},
			{"mediaType": types.DockerManifestSchema1, "digest": s1Digest, "size": len(s1), "platform": map[string]string{"os": "linux", "architecture": "amd64"}},
		},
	})
	if err := remote.Put(e.w.Source.Ref(t, repo, "v1"), rawTaggable{idx, types.OCIImageIndex}, opts...); err != nil {
		t.Fatalf("push the index: %v", err)
	}
	img.Digest = digestOf(idx)

	if err := e.w.SB.SetImageScan(img.Repo.AccountID, img.Repo.Region, repo, armDigest.String(), sandbox.ScanResult{}); err != nil {
		t.Fatal(err)
	}
	if err := e.w.SB.SetImageScan(img.Repo.AccountID, img.Repo.Region, repo, s1Digest, sandbox.ScanResult{Findings: []sandbox.ScanFinding{{Name: "CVE-2026-6669", Severity: "CRITICAL"}}}); err != nil {
		t.Fatal(err)
	}
	if d := e.decide(t, img, "scan"); d.Verdict == gate.Pass {
		t.Fatalf("an index whose linux/amd64 image (Docker schema 1, %s) has CRITICAL CVE-2026-6669 passed the HIGH scan gate: %s", s1Digest, d)
	}
}
