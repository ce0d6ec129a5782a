package backfill

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// warmDestinations starts resolving every destination of the rules in the background
// (ecraccess.Resolver.Warm) and returns a function that waits for that to end.
func (b *Backfill) warmDestinations(ctx context.Context, doc *rules.Document) (wait func()) {
	var wg sync.WaitGroup
	for _, a := range destinations.DestinationAccesses(doc) {
		wg.Go(func() { b.Resolver.Warm(ctx, a.Access) })
	}
	return wg.Wait
}

// listRepositories returns the in-scope source repositories, sorted by name.
func (r *invocation) listRepositories(ctx context.Context, api *ecr.Client) ([]string, error) {
	var names []string
	p := ecr.NewDescribeRepositoriesPaginator(api, &ecr.DescribeRepositoriesInput{RegistryId: aws.String(r.srcAccount), MaxResults: aws.Int32(1000)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ecr:DescribeRepositories in %s/%s: %w", r.srcAccount, r.b.SourceRegion, err)
		}
		for _, repo := range out.Repositories {
			if n := aws.ToString(repo.RepositoryName); r.doc.RepositoryInScope(n) {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// Images lists every image of a repository (ecr:DescribeImages), in every storage
// status: without the filter DescribeImages lists ACTIVE images only
// (DescribeImagesFilter, https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DescribeImagesFilter.html).
// found is false when the repository does not exist; an error is classified
// (ecraccess.WrapAWS).
func Images(ctx context.Context, api ecr.DescribeImagesAPIClient, registryID, repo string) (imgs []Image, found bool, err error) {
	p := ecr.NewDescribeImagesPaginator(api, &ecr.DescribeImagesInput{RegistryId: aws.String(registryID), RepositoryName: aws.String(repo), MaxResults: aws.Int32(1000),
		Filter: &ecrtypes.DescribeImagesFilter{ImageStatus: ecrtypes.ImageStatusFilterAny}})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		var nf *ecrtypes.RepositoryNotFoundException
		if errors.As(err, &nf) {
			return nil, false, nil
		}
		if err != nil {
			return nil, true, ecraccess.WrapAWS("ecr:DescribeImages", err)
		}
		for _, d := range out.ImageDetails {
			imgs = append(imgs, Image{
				Digest: aws.ToString(d.ImageDigest), Tags: d.ImageTags, PushedAt: aws.ToTime(d.ImagePushedAt),
				MediaType: aws.ToString(d.ImageManifestMediaType), ArtifactMediaType: aws.ToString(d.ArtifactMediaType),
				Subject: aws.ToString(d.SubjectManifestDigest), Size: aws.ToInt64(d.ImageSizeInBytes), Status: string(d.ImageStatus),
			})
		}
	}
	return imgs, true, nil
}

// ListDestinations lists, concurrently, every destination repository of targets; wait
// returns the listings by destination repository (an entry with Err: not listed; none:
// the repository does not exist). listOnly resolves the destinations' roles to sessions
// that may only list (ecraccess.Access.ListOnly).
func ListDestinations(ctx context.Context, resolver *ecraccess.Resolver, targets []rules.Target, listOnly bool) (wait func() map[ecrname.Repo]*Listing) {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		out = make(map[ecrname.Repo]*Listing, len(targets))
	)
	for _, t := range targets {
		if t.Err != nil {
			continue // reported by Expand if an image needs it
		}
		wg.Go(func() {
			a := destinations.DestinationAccess(t.Destination)
			a.ListOnly = listOnly
			reg, err := resolver.Client(ctx, a)
			var (
				imgs  []Image
				found bool
			)
			if err == nil {
				imgs, found, err = Images(ctx, reg.API(), t.Destination.AccountID, t.Repository)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				out[t.Repo()] = &Listing{Err: err}
			case found:
				out[t.Repo()] = listingOf(imgs)
			}
		})
	}
	return func() map[ecrname.Repo]*Listing {
		wg.Wait()
		return out
	}
}

func listingOf(imgs []Image) *Listing {
	l := &Listing{Exists: true, Digests: make(map[string]bool, len(imgs)), Tags: make(map[string]string, len(imgs))}
	for _, img := range imgs {
		l.Digests[img.Digest] = true
		for _, t := range img.Tags {
			l.Tags[t] = img.Digest
		}
	}
	return l
}
