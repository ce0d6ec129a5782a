package eventhandler_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/signing"
)

// gzippedTar is a one-file root filesystem, gzipped: what a runtime unpacks.
func gzippedTar(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	body := []byte("#!/bin/sh\necho smuggled\n")
	if err := tw.WriteHeader(&tar.Header{Name: "entrypoint.sh", Mode: 0o755, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestReview25bRunnableReferrerWithAnUntypedLayer: a gated copy leaves out a referrer
// that is "an image (a manifest with a filesystem layer)", a filesystem layer being one
// whose media type starts application/vnd.oci.image.layer. or
// application/vnd.docker.image.rootfs. (copyengine/artifacts.go). Docker Engine's pull
// (moby daemon/internal/distribution, checkSupportedMediaType) accepts any layer whose
// media type is "", application/octet-stream, application/json, text/html or starts
// application/vnd.oci.image. / application/vnd.docker. (compared in lower case), and
// detects the compression from the bytes: an OCI image manifest with an image config and
// one gzipped tar layer typed application/octet-stream is an image Docker pulls and runs.
// Pushed by anyone who can push to the build repository, with a signed, clean image as
// its subject, unsigned and with a CRITICAL finding, it is copied into the gated
// destination with the promoted image, pullable there by its digest.
func TestReview25bRunnableReferrerWithAnUntypedLayer(t *testing.T) {
	key := signing.NewKey(t)
	rules := fmt.Sprintf(`{"rules":[{"name":"gated","repositories":["team-a/*"],
	  "require":{"signatures":{"signers":[{"name":"release","publicKey":%q}]},"scan":{"severity":"CRITICAL"}},
	  "destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
		key.PublicPEM(t), dstAcct, region, sandbox.RoleARN(dstAcct, sandbox.DestinationRole), extID)
	f := newFixture(t, rules)
	h, _ := f.handler(t)

	good := f.push(t, "team-a/app", "v1")
	r := signing.NewRepo(t, f.w.Source.Host, "team-a/app", f.w.Source.Auth)
	subject := r.Subject(t, good)
	key.Cosign(t, r, subject, signing.Options{})
	if err := f.sb.SetImageScan(srcAcct, region, "team-a/app", good, sandbox.ScanResult{}); err != nil {
		t.Fatal(err)
	}

	for _, layerType := range []types.MediaType{"application/octet-stream", "", "Application/Vnd.Oci.Image.Layer.v1.Tar+Gzip"} {
		t.Run(fmt.Sprintf("layer %q", layerType), func(t *testing.T) {
			img, err := mutate.Append(mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1),
				mutate.Addendum{Layer: static.NewLayer(gzippedTar(t), layerType)})
			if err != nil {
				t.Fatal(err)
			}
			img, err = mutate.Config(img, v1.Config{Entrypoint: []string{"/entrypoint.sh"}})
			if err != nil {
				t.Fatal(err)
			}
			smuggled := mutate.Subject(img, v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}).(v1.Image)
			sd := f.w.Source.Push(t, "team-a/app", "", smuggled).String()
			if err := f.sb.SetImageScan(srcAcct, region, "team-a/app", sd, sandbox.ScanResult{Findings: []sandbox.ScanFinding{{Name: "CVE-2026-6668", Severity: "CRITICAL"}}}); err != nil {
				t.Fatal(err)
			}
			out, err := h.Handle(f.ctx, json.RawMessage(sandboxtest.ImageEvent("e-good-"+sd[7:19], "PUSH", "team-a/app", good, "v1")))
			if b, _ := json.Marshal(out); err != nil || strings.Contains(string(b), `"outcome":"blocked"`) || strings.Contains(string(b), `"outcome":"held"`) {
				t.Fatalf("the signed, clean image was not promoted: %s %v", b, err)
			}
			if got := f.destinationHead(t, "mirror/team-a/app", sd); got != "" {
				t.Fatalf("a runnable image (image config, one gzipped tar layer typed %q), unsigned, CRITICAL CVE-2026-6668, a referrer of the promoted image, was copied into the gated destination as %s", layerType, sd)
			}
		})
	}
}
