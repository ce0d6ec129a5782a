package cli

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// indexListings keeps, while the plan lists the source, the listing of each repository
// that holds an image index: counting an index's bytes needs its platforms' sizes and
// whether the rules copy them as images of their own.
type indexListings struct {
	mu    sync.Mutex
	repos map[string][]backfill.Image
}

func newIndexListings() *indexListings { return &indexListings{repos: map[string][]backfill.Image{}} }

func isIndex(img backfill.Image) bool { return types.MediaType(img.MediaType).IsIndex() }

// listed keeps repo's listing if it holds an index (backfill.Backfill.Listed).
func (l *indexListings) listed(repo string, images []backfill.Image) {
	if slices.ContainsFunc(images, isIndex) {
		l.mu.Lock()
		l.repos[repo] = images
		l.mu.Unlock()
	}
}

// indexUploads is, per index to copy to a destination repository (indexKey), what its
// copy uploads besides the index itself: the platforms the rules do not copy to that
// destination as images of their own (those are counted where they are copies), with
// their ECR sizes. An index whose manifest could not be read has no entry: it counts
// ECR's size of the index, its largest platform.
type indexUploads map[string][]platformSize

type platformSize struct {
	digest string
	size   int64
}

func indexKey(repo, digest, dest string) string { return repo + "@" + digest + ">" + dest }

// readIndexes reads (ecr:BatchGetImage, 100 at a time) the manifest of each index the
// plan copies where the destination lacks it, and says which of its platforms the copy
// uploads. It returns how many indexes could not be read, and the error code why.
func readIndexes(ctx context.Context, src *ecraccess.Client, doc *rules.Document, since time.Time, listings *indexListings, work []backfill.Work) (indexUploads, int, string) {
	byRepo := map[string][]string{} // repository → index digests to read
	for _, w := range work {
		images := listings.repos[w.Repository]
		if !w.DigestMissing || !slices.ContainsFunc(images, func(img backfill.Image) bool { return img.Digest == w.Digest && isIndex(img) }) {
			continue
		}
		if !slices.Contains(byRepo[w.Repository], w.Digest) {
			byRepo[w.Repository] = append(byRepo[w.Repository], w.Digest)
		}
	}
	out, unread, code := indexUploads{}, 0, ""
	for repo, digests := range byRepo {
		children, err := indexChildren(ctx, src, repo, digests)
		if err != nil {
			unread += len(digests)
			code = apiCode(err)
			continue
		}
		unread += len(digests) - len(children)
		images := listings.repos[repo]
		sizes := make(map[string]int64, len(images))
		for _, img := range images {
			sizes[img.Digest] = img.Size
		}
		copied := map[string]bool{} // child digest > destination: a copy of its own
		for _, c := range backfill.Expand(doc, repo, images, since).Candidates {
			copied[c.Digest+">"+c.Target.Repo().String()] = true
		}
		for _, w := range work {
			kids, ok := children[w.Digest]
			if w.Repository != repo || !w.DigestMissing || !ok {
				continue
			}
			dest := w.Target.Repo().String()
			uploads := []platformSize{}
			for _, k := range kids {
				if !copied[k+">"+dest] {
					uploads = append(uploads, platformSize{digest: k, size: sizes[k]})
				}
			}
			out[indexKey(repo, w.Digest, dest)] = uploads
		}
	}
	return out, unread, code
}

// indexChildren reads indexes of repo and returns each one's child manifests' digests;
// an index the answer lacks (or that does not parse) is left out.
func indexChildren(ctx context.Context, src *ecraccess.Client, repo string, digests []string) (map[string][]string, error) {
	out := map[string][]string{}
	for start := 0; start < len(digests); start += 100 {
		ids := []ecrtypes.ImageIdentifier{}
		for _, d := range digests[start:min(start+100, len(digests))] {
			ids = append(ids, ecrtypes.ImageIdentifier{ImageDigest: aws.String(d)})
		}
		resp, err := src.API().BatchGetImage(ctx, &ecr.BatchGetImageInput{RegistryId: src.RegistryID(), RepositoryName: aws.String(repo), ImageIds: ids,
			AcceptedMediaTypes: []string{string(types.OCIImageIndex), string(types.DockerManifestList)}})
		if err != nil {
			return nil, err
		}
		for _, img := range resp.Images {
			m, err := v1.ParseIndexManifest(strings.NewReader(aws.ToString(img.ImageManifest)))
			if err != nil || img.ImageId == nil {
				continue
			}
			for _, c := range m.Manifests {
				out[aws.ToString(img.ImageId.ImageDigest)] = append(out[aws.ToString(img.ImageId.ImageDigest)], c.Digest.String())
			}
		}
	}
	return out, nil
}

// planIndexes reads the indexes a dry run copies (readIndexes) from the source registry,
// warning when some could not be read (their bytes are then under-counted).
func planIndexes(ctx context.Context, a *app, log *slog.Logger, sess *awsSession, src ecraccess.Access, doc *rules.Document, since time.Time,
	listings *indexListings, work []backfill.Work) indexUploads {
	if len(listings.repos) == 0 {
		return nil
	}
	reg, err := sess.resolver.Client(ctx, src)
	if err != nil {
		log.Debug("indexes not read", "error", err.Error())
		return nil
	}
	uploads, unread, code := readIndexes(ctx, reg, doc, since, listings, work)
	if unread > 0 && ctx.Err() == nil {
		why := ""
		if code != "" {
			why = " (" + code + ")"
		}
		what := fmt.Sprintf("%d image indexes", unread)
		if unread == 1 {
			what = "1 image index"
		}
		a.warn("%s could not be read%s: each counts ECR's size of an index (its largest platform) in the bytes to upload, which under-counts it", what, why)
	}
	return uploads
}
