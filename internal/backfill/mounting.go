package backfill

import (
	"bytes"
	"context"
	"fmt"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// A dry run says, per destination registry, what ECR blob mounting does or would do for the
// copies it plans: a layer that the copies upload into several repositories of one
// registry goes over the network once when the registry has BLOB_MOUNTING enabled, and
// is mounted into the others ("Blob mounting in Amazon ECR",
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/blob-mounting.html). Listings
// name images, not layers, so the dry run reads the manifests (never the layers) of the
// images to copy into registries where two or more repositories receive copies: 100 per
// ecr:BatchGetImage, at most MaxMountingReads.

// MaxMountingReads bounds the manifests a dry run reads to count shared layers.
const MaxMountingReads = 1000

// Mounting is what blob mounting does, or would do, for one destination registry's copies.
type Mounting struct {
	Registry string `json:"registry"` // accountId/region
	// BlobMounting is the registry's BLOB_MOUNTING account setting: ENABLED, DISABLED, or
	// UNKNOWN (Reason says why).
	BlobMounting string `json:"blobMounting"`
	// BytesMountable is, of the layers the planned copies upload into this registry, what
	// another of its repositories receives too (counted for each repository after the
	// first): mounted instead of uploaded when blob mounting is ENABLED. A lower bound:
	// layers the registry already holds from earlier copies are not counted.
	BytesMountable int64 `json:"bytesMountable"`
	// ImagesRead counts the manifests read to count it; Partial, that some images to copy
	// were not read (the bound, the time, or a read that failed: Reason).
	ImagesRead int    `json:"imagesRead"`
	Partial    bool   `json:"partial,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// upload is a planned copy that uploads an image its destination lacks.
type upload struct {
	repo   string // source repository
	digest string
	dest   ecrname.Repo
	access ecraccess.Access
}

// noteUploads remembers the work of a dry run that uploads (for planMounting).
func (r *run) noteUploads(work []Work) {
	for i := range work {
		if w := &work[i]; w.Size > 0 {
			r.uploads = append(r.uploads, upload{repo: w.Repository, digest: w.Digest, dest: w.Target.Repo(), access: w.Target.Destination.Access()})
		}
	}
}

// planMounting reports blob mounting for the registries that the dry run's copies upload
// into two or more repositories of.
func (r *run) planMounting(ctx context.Context) []Mounting {
	repos := map[ecrname.Registry]map[ecrname.Repo]bool{}
	for _, u := range r.uploads {
		if repos[u.dest.Registry] == nil {
			repos[u.dest.Registry] = map[ecrname.Repo]bool{}
		}
		repos[u.dest.Registry][u.dest] = true
	}
	var want []upload // uploads into registries with two repositories or more
	for _, u := range r.uploads {
		if len(repos[u.dest.Registry]) > 1 {
			want = append(want, u)
		}
	}
	if len(want) == 0 {
		return nil
	}
	blobs, read, readErr := r.readLayers(ctx, want)
	shared := map[ecrname.Registry]map[string]*sharedLayer{}
	access := map[ecrname.Registry]ecraccess.Access{}
	partial := readErr != nil
	for _, u := range want {
		access[u.dest.Registry] = u.access
		layers, ok := blobs[u.repo+"@"+u.digest]
		if !ok {
			partial = true
			continue
		}
		if shared[u.dest.Registry] == nil {
			shared[u.dest.Registry] = map[string]*sharedLayer{}
		}
		for _, l := range layers {
			s := shared[u.dest.Registry][l.digest]
			if s == nil {
				s = &sharedLayer{size: l.size, repos: map[ecrname.Repo]bool{}}
				shared[u.dest.Registry][l.digest] = s
			}
			s.repos[u.dest] = true
		}
	}
	var out []Mounting
	for reg, a := range access {
		m := Mounting{Registry: reg.AccountID + "/" + reg.Region, ImagesRead: read, Partial: partial}
		for _, s := range shared[reg] {
			m.BytesMountable += s.size * int64(len(s.repos)-1)
		}
		m.BlobMounting, m.Reason = r.blobMounting(ctx, a)
		if readErr != nil && m.Reason == "" {
			m.Reason = briefly("reading the manifests of the images to copy", readErr)
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Registry < out[j].Registry })
	return out
}

// briefly is what went wrong in a few words: the error's code, not an SDK error chain.
func briefly(what string, err error) string {
	if code, _ := retry.Classify(err); code != "" {
		return what + ": " + code
	}
	return what + ": " + err.Error()
}

type sharedLayer struct {
	size  int64
	repos map[ecrname.Repo]bool
}

// blobMounting asks the destination registry for its BLOB_MOUNTING setting, with the
// identity the copies use.
func (r *run) blobMounting(ctx context.Context, a ecraccess.Access) (setting, reason string) {
	reg, err := r.b.Resolver.Registry(ctx, a)
	if err != nil {
		return "UNKNOWN", briefly("reaching the registry", err)
	}
	on, err := reg.BlobMounting(ctx)
	switch {
	case err != nil:
		return "UNKNOWN", briefly("ecr:GetAccountSetting", err)
	case on:
		return "ENABLED", ""
	}
	return "DISABLED", ""
}

// layer is a blob an image brings with it.
type layer struct {
	digest string
	size   int64
}

// readLayers reads the manifests of the uploads' images from the source (an index's
// platforms too), at most MaxMountingReads and while time remains, and returns each
// image's blobs by source repository and digest.
func (r *run) readLayers(ctx context.Context, uploads []upload) (map[string][]layer, int, error) {
	src, err := r.b.Resolver.Registry(ctx, ecraccess.Access{AccountID: r.srcAccount, Region: r.srcRegion, RoleARN: r.doc.SourceRoleARN()})
	if err != nil {
		return nil, 0, err
	}
	byRepo := map[string][]string{}
	seen := map[string]bool{}
	for _, u := range uploads {
		if k := u.repo + "@" + u.digest; !seen[k] {
			seen[k] = true
			byRepo[u.repo] = append(byRepo[u.repo], u.digest)
		}
	}
	names := make([]string, 0, len(byRepo))
	for n := range byRepo {
		names = append(names, n)
	}
	sort.Strings(names)
	out := map[string][]layer{}
	read := 0
	for _, repo := range names {
		if read >= MaxMountingReads || r.timeUp() {
			break
		}
		n, err := r.readRepository(ctx, src.API(), repo, byRepo[repo], MaxMountingReads-read, out)
		read += n
		if err != nil {
			return out, read, err
		}
	}
	return out, read, nil
}

// readRepository reads up to limit manifests of one source repository (digests, then
// the platforms of those that are indexes) into out, and returns how many it read.
func (r *run) readRepository(ctx context.Context, api *ecr.Client, repo string, digests []string, limit int, out map[string][]layer) (int, error) {
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
		out[repo+"@"+d] = m.layers
	}
	if len(platforms) > 0 {
		platforms = platforms[:min(len(platforms), max(limit-read, 0))]
		pm, err := batchGetManifests(ctx, api, r.srcAccount, repo, platforms)
		read += len(pm)
		if err != nil {
			return read, err
		}
		for idx, cs := range children {
			var all []layer
			for _, c := range cs {
				all = append(all, pm[c].layers...)
			}
			out[repo+"@"+idx] = all
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
