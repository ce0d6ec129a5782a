package backfill

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
)

// What the plan reads of the source to count what blob mounting saves: the manifests of
// the images to copy (never their layers).

// layer is a blob an image brings with it.
type layer struct {
	digest string
	size   int64
}

// readImage is one source image as the plan read it: its blobs (an index's platforms'),
// and how many manifests that took.
type readImage struct {
	layers    []layer
	manifests int
}

// readLayers reads the manifests of the uploads' images from the source (an index's
// platforms too), at most MaxMountingReads and while time remains, and returns them by
// source repository and digest (upload.key).
func (r *invocation) readLayers(ctx context.Context, api *ecr.Client, uploads []upload) (map[string]readImage, error) {
	byRepo := map[string][]string{}
	seen := map[string]bool{}
	for _, u := range uploads {
		if k := u.key(); !seen[k] {
			seen[k] = true
			byRepo[u.repo] = append(byRepo[u.repo], u.digest)
		}
	}
	out := map[string]readImage{}
	read := 0
	for _, repo := range slices.Sorted(maps.Keys(byRepo)) {
		if read >= MaxMountingReads || r.timeUp() {
			break
		}
		n, err := r.readRepository(ctx, api, repo, byRepo[repo], MaxMountingReads-read, out)
		read += n
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// readRepository reads up to limit manifests of one source repository (digests, then
// the platforms of those that are indexes) into out, and returns how many it read.
func (r *invocation) readRepository(ctx context.Context, api *ecr.Client, repo string, digests []string, limit int, out map[string]readImage) (int, error) {
	digests = digests[:min(len(digests), limit)]
	manifests, err := batchGetManifests(ctx, api, r.srcAccount, repo, digests)
	if err != nil {
		return len(manifests), err
	}
	read := len(manifests)
	children := map[string][]string{} // index → its platforms
	var platforms []string
	for d, m := range manifests {
		if m.mediaType.IsIndex() {
			children[d] = m.children
			platforms = append(platforms, m.children...)
			continue
		}
		out[repo+"@"+d] = readImage{layers: m.layers, manifests: 1}
	}
	if len(platforms) > 0 {
		platforms = platforms[:min(len(platforms), max(limit-read, 0))]
		pm, err := batchGetManifests(ctx, api, r.srcAccount, repo, platforms)
		read += len(pm)
		if err != nil {
			return read, err
		}
		for idx, cs := range children {
			img := readImage{manifests: 1}
			for _, c := range cs {
				if p, ok := pm[c]; ok {
					img.layers = append(img.layers, p.layers...)
					img.manifests++
				}
			}
			out[repo+"@"+idx] = img
		}
	}
	return read, nil
}

// manifestLayers is one manifest as readRepository needs it.
type manifestLayers struct {
	mediaType types.MediaType
	layers    []layer  // an image's config and layers
	children  []string // an index's manifests
}

// acceptedManifestTypes: every type ECR stores, so that it returns each as stored.
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-manifest-formats.html
var acceptedManifestTypes = []string{
	string(types.DockerManifestSchema2), string(types.DockerManifestList), string(types.OCIManifestSchema1),
	string(types.OCIImageIndex), string(types.DockerManifestSchema1), string(types.DockerManifestSchema1Signed),
}

// batchGetManifests reads manifests by digest with ecr:BatchGetImage, 100 at a time (the
// most imageIds it takes, API_BatchGetImage). Images it cannot return (failures) are left
// out.
func batchGetManifests(ctx context.Context, api *ecr.Client, registryID, repo string, digests []string) (map[string]manifestLayers, error) {
	out := map[string]manifestLayers{}
	for start := 0; start < len(digests); start += 100 {
		var ids []ecrtypes.ImageIdentifier
		for _, d := range digests[start:min(start+100, len(digests))] {
			ids = append(ids, ecrtypes.ImageIdentifier{ImageDigest: aws.String(d)})
		}
		res, err := api.BatchGetImage(ctx, &ecr.BatchGetImageInput{RegistryId: aws.String(registryID), RepositoryName: aws.String(repo),
			ImageIds: ids, AcceptedMediaTypes: acceptedManifestTypes})
		if err != nil {
			return out, ecraccess.WrapAWS("ecr:BatchGetImage", err)
		}
		for _, img := range res.Images {
			if img.ImageId == nil {
				continue
			}
			m, err := parseLayers(types.MediaType(aws.ToString(img.ImageManifestMediaType)), []byte(aws.ToString(img.ImageManifest)))
			if err != nil {
				return out, fmt.Errorf("%s@%s: %w", repo, aws.ToString(img.ImageId.ImageDigest), err)
			}
			out[aws.ToString(img.ImageId.ImageDigest)] = m
		}
	}
	return out, nil
}

// parseLayers reads an index's manifests, or an image's config and distributable layers
// with their sizes (a Docker schema 1 manifest declares none: nothing to count).
func parseLayers(mt types.MediaType, raw []byte) (manifestLayers, error) {
	m := manifestLayers{mediaType: mt}
	switch {
	case mt.IsIndex():
		idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return m, err
		}
		for _, c := range idx.Manifests {
			if c.MediaType.IsImage() {
				m.children = append(m.children, c.Digest.String())
			}
		}
	case mt.IsSchema1():
	default:
		mf, err := v1.ParseManifest(bytes.NewReader(raw))
		if err != nil {
			return m, err
		}
		for _, d := range append([]v1.Descriptor{mf.Config}, mf.Layers...) {
			if d.MediaType.IsDistributable() && d.Size > 0 {
				m.layers = append(m.layers, layer{digest: d.Digest.String(), size: d.Size})
			}
		}
	}
	return m, nil
}
