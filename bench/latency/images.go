package main

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/signin"
)

// side is one account's registry as its admin sees it.
type side struct {
	account string
	*signin.Registry
}

func newSide(ctx context.Context, sb *sandbox.Sandbox, account string) (*side, error) {
	reg, err := signin.Login(ctx, sb, account)
	if err != nil {
		return nil, err
	}
	return &side{account: account, Registry: reg}, nil
}

// write pushes an image with remote.Write, or an index with remote.WriteIndex, by tag:
// what crane push does (an index's children by digest first, then the index).
func (s *side) write(ctx context.Context, repo, tag string, t remote.Taggable) error {
	ref, err := name.ParseReference(s.Host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		return err
	}
	opts := []remote.Option{remote.WithAuth(s.Auth), remote.WithContext(ctx)}
	switch x := t.(type) {
	case v1.ImageIndex:
		return remote.WriteIndex(ref, x, opts...)
	case v1.Image:
		return remote.Write(ref, x, opts...)
	}
	return fmt.Errorf("cannot push a %T", t)
}

// digestOf is the tag's digest in repo ("" when there is no such image).
func (s *side) digestOf(ctx context.Context, repo, tag string) (string, error) {
	out, err := s.API.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String(repo), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String(tag)}}})
	var nf *ecrtypes.ImageNotFoundException
	var rnf *ecrtypes.RepositoryNotFoundException
	switch {
	case errors.As(err, &nf), errors.As(err, &rnf):
		return "", nil
	case err != nil:
		return "", err
	case len(out.ImageDetails) != 1:
		return "", fmt.Errorf("DescribeImages %s:%s: %d images", repo, tag, len(out.ImageDetails))
	}
	return aws.ToString(out.ImageDetails[0].ImageDigest), nil
}

// remove deletes repo:tag with the ECR API's BatchDeleteImage, then the files of its
// blobs from the sandbox's data directory (see dropBlobs).
func (s *side) remove(ctx context.Context, dataDir, repo, tag string, blobs []v1.Hash) (int64, error) {
	out, err := s.API.BatchDeleteImage(ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String(repo), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String(tag)}}})
	if err != nil {
		return 0, err
	}
	if len(out.Failures) > 0 {
		return 0, fmt.Errorf("BatchDeleteImage %s:%s: %s %s", repo, tag, out.Failures[0].FailureCode, aws.ToString(out.Failures[0].FailureReason))
	}
	return dropBlobs(dataDir, s.account, blobs)
}

// dropBlobs removes the files of an account's blobs from the sandbox's data directory.
// The sandbox keeps a blob after BatchDeleteImage (it has no garbage collection, like a
// registry between GC runs), so 50 pushes of a 100 MiB image would keep 10 GiB on disk
// per configuration; the blobs here are random, so no other image shares them. This
// leans on the sandbox's layout, <DataDir>/<account>-<region>/blobs/<2 hex>/<hex>
// (internal/tooling/sandbox/registry.go newRegistry, store.go blobStore.path), and says how many
// bytes it freed so that a changed layout shows as 0.
func dropBlobs(dataDir, account string, blobs []v1.Hash) (int64, error) {
	var freed int64
	for _, h := range blobs {
		if h.Algorithm != "sha256" || len(h.Hex) != 64 {
			continue
		}
		p := filepath.Join(dataDir, account+"-"+sandbox.DefaultRegion, "blobs", h.Hex[:2], h.Hex)
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if err := os.Remove(p); err != nil {
			return freed, err
		}
		freed += fi.Size()
	}
	return freed, nil
}

// platforms the index's images are for, in order.
var platforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"},
	{OS: "linux", Architecture: "arm", Variant: "v7"}, {OS: "linux", Architecture: "s390x"},
	{OS: "linux", Architecture: "ppc64le"}, {OS: "linux", Architecture: "riscv64"},
	{OS: "linux", Architecture: "386"}, {OS: "linux", Architecture: "mips64le"},
}

// generator makes fresh random images.
type generator struct{ rng *rand.ChaCha8 }

func newGenerator() *generator {
	var seed [32]byte
	crand.Read(seed[:])
	return &generator{rng: rand.NewChaCha8(seed)}
}

// image is an OCI image of layers random uncompressed layers of total bytes in all,
// for platform. Random bytes do not compress, and uncompressed layers spare the
// benchmark gzip's CPU on a 2-core machine, where it would compete with the copy; the
// replicator copies blobs as they are either way.
func (g *generator) image(layers int, total int64, platform v1.Platform) (v1.Image, []v1.Hash, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var adds []mutate.Addendum
	var digests []v1.Hash
	for i := range layers {
		n := total / int64(layers)
		if i == layers-1 {
			n = total - n*int64(layers-1)
		}
		b := make([]byte, n)
		g.rng.Read(b)
		l := static.NewLayer(b, types.OCIUncompressedLayer)
		d, err := l.Digest()
		if err != nil {
			return nil, nil, err
		}
		adds = append(adds, mutate.Addendum{Layer: l})
		digests = append(digests, d)
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = platform.OS, platform.Architecture, platform.Variant
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, nil, err
	}
	return img, digests, nil
}

// index is an OCI index of n single-layer images, one per platform.
func (g *generator) index(n int, layerBytes int64) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms[:n] {
		img, _, err := g.image(1, layerBytes, p)
		if err != nil {
			return nil, err
		}
		pc := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &pc}})
	}
	return idx, nil
}
