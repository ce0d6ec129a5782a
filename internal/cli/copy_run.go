package cli

import (
	"context"
	"errors"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// sourceSettings checks the source repository exists (one DescribeRepositories: a clear
// message now rather than one per image later) and reads the settings a created
// destination repository mirrors.
func sourceSettings(ctx context.Context, c copyArgs, src *endpointFor) (ecraccess.RepositorySettings, error) {
	if src.ecr == nil {
		return ecraccess.RepositorySettings{}, nil
	}
	settings, err := destinations.SourceSettings(ctx, src.ecr, c.src.repo.RepositoryStr(), false, false, "")
	if err != nil {
		return settings, src.explainDenied(repositoryProblem(err, "source", c.src.repo, src.region))
	}
	return settings, nil
}

// ensureDestination makes sure an ECR destination repository exists (creating it with the
// source's settings) when there is something to copy into it, and says whether it
// created it.
func ensureDestination(ctx context.Context, o copyOptions, c copyArgs, src, dst *endpointFor, settings ecraccess.RepositorySettings, needed bool) (bool, error) {
	if dst.ecr == nil || !needed {
		return false, nil
	}
	// A repository it creates is the replicator's, as a destination role requires of a
	// creation.
	repo, err := destinations.CreateOwned(ctx, dst.ecr, c.dstRepo.RepositoryStr(), settings, owner(o, src, dst), o.createRepo)
	if err != nil {
		return false, dst.explainDenied(repositoryProblem(err, "destination", c.dstRepo, dst.region))
	}
	return repo.Created, nil
}

// owner is the account a created destination repository is tagged as owned by: --owner,
// or the account of the replicator that keeps the mirror — the one deployed in the
// source account, so the source registry's account, whatever credentials the copy writes
// with (--dest-profile: the destination account's own, which no replicator is) — or,
// for a source outside ECR, the account of the identity acting.
func owner(o copyOptions, src, dst *endpointFor) string {
	switch {
	case o.owner != "":
		return o.owner
	case src.account != "":
		return src.account
	}
	return dst.caller.account
}

// copyItems is what to copy: every tag (--all-tags), the tag, or the digest; and what
// the counts count.
func copyItems(ctx context.Context, o copyOptions, c copyArgs, src *endpointFor) ([]copyItem, string, error) {
	switch {
	case o.allTags:
		tags, err := remote.List(src.endpoint.Repository, lookupOptions(ctx, src.endpoint)...)
		if err != nil {
			return nil, "", registryProblem(err, "listing the tags of", c.src.repo)
		}
		items := make([]copyItem, len(tags))
		for i, t := range tags {
			items[i] = copyItem{tag: t}
		}
		return items, "tags", nil
	case c.src.tag != "":
		return []copyItem{{tag: c.src.tag}}, "tags", nil
	}
	return []copyItem{{digest: c.src.digest}}, "images", nil
}

// sourceFails reads the one tag or digest a copy names (a listed tag exists) before the
// destination repository is created: when the source does not serve it — it lacks it,
// refuses this identity, or does not answer after the registry client's retries — that
// failure is the copy's result, and nothing is created. A source host that does not
// resolve is a usage error. A tag longer than the registry protocol's 128 characters is
// read through the ECR API (apiTag).
func sourceFails(ctx context.Context, c copyArgs, src, dst *endpointFor, items []copyItem) (*imageResult, error) {
	if len(items) != 1 || (c.src.tag != "" && items[0].tag != c.src.tag) {
		return nil, nil
	}
	it := items[0]
	err := readSource(ctx, src, it)
	switch _, dnsFailed := unresolvable(err); {
	case err == nil:
		return nil, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case dnsFailed:
		return nil, registryProblem(err, "reading", c.src.repo)
	}
	code, _ := retry.Classify(err)
	status := 0
	var te *transport.Error
	if errors.As(err, &te) {
		status = te.StatusCode
		switch {
		case len(te.Errors) > 0:
			code = string(te.Errors[0].Code)
		case isNotFound(err):
			code = string(transport.ManifestUnknownErrorCode)
		}
	}
	res := imageResult{Source: c.src.repo.String(), Destination: c.dstRepo.String(), Tag: it.tag, Digest: it.digest, Outcome: string(destinations.Failed)}
	res.Err = &destinations.CopyError{Op: "get source manifest", Code: code, Status: status, Err: err}
	res.Code, res.Message = explainCopy(copyFailure{err: res.Err, source: res.Source, destination: res.Destination, tag: it.tag, digest: it.digest, destECR: dst.ecr != nil})
	return &res, nil
}

// readSource reads the manifest a copy item names from the source.
func readSource(ctx context.Context, src *endpointFor, it copyItem) error {
	if apiTag(src, it.tag) {
		_, err := headTag(ctx, src, it.tag)
		return err
	}
	ref := src.endpoint.Repository.Digest(it.digest).String()
	if it.tag != "" {
		ref = src.endpoint.Repository.Tag(it.tag).String()
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil // not a reference the registry protocol can name: left to the copy
	}
	_, err = remote.Get(r, lookupOptions(ctx, src.endpoint)...)
	return err
}

// executeCopy copies the items, o.concurrency at a time, in one engine run, with a
// progress display; it returns one result per item.
func executeCopy(ctx context.Context, a *app, o copyOptions, c copyArgs, src, dst *endpointFor, items []copyItem, unit string) []imageResult {
	prog := newProgress(a, unit, len(items))
	// Manifest writes are paced for ECR's PutImage quota; other registries publish none.
	run := destinations.StartDirect(destinations.NewEngine(destinations.EngineOptions{
		Jobs: o.jobs, Log: a.logger(), Progress: progressFunc(prog), Unpaced: dst.ecr == nil}))
	results := make([]imageResult, len(items))
	g := errgroup.Group{}
	g.SetLimit(o.concurrency)
	for i, it := range items {
		g.Go(func() error {
			prog.itemStarted()
			results[i] = copyOne(ctx, run, o, c, src, dst, it)
			line := ""
			if ctx.Err() == nil && (!a.quiet || results[i].failed()) {
				line = results[i].line(a) // a copy cut by Ctrl-C is not a result
			}
			prog.itemDone(results[i].BytesCopied, line)
			return nil
		})
	}
	g.Wait()
	prog.finish()
	return results
}

// copyOne copies one item and explains a failure.
func copyOne(ctx context.Context, run *destinations.Direct, o copyOptions, c copyArgs, src, dst *endpointFor, it copyItem) imageResult {
	res := imageResult{Source: c.src.repo.String(), Destination: c.dstRepo.String(), Tag: it.tag, Digest: it.digest}
	r := run.Copy(ctx, src.endpoint, dst.endpoint, it.digest, it.tag, o.referrers)
	if r.Digest != "" {
		res.Digest = r.Digest
	}
	res.Outcome, res.Reason, res.BytesCopied = string(r.Outcome), r.Reason, r.BytesCopied
	if r.Err != nil {
		res.Err = r.Err
		res.Code, res.Message = explainCopy(copyFailure{err: r.Err, source: c.src.repo.String(), destination: c.dstRepo.String(),
			tag: it.tag, digest: res.Digest, destECR: dst.ecr != nil})
	}
	return res
}

func lookupOptions(ctx context.Context, e destinations.Endpoint) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(e.Auth)}
	if e.Transport != nil {
		opts = append(opts, remote.WithTransport(e.Transport))
	}
	return opts
}
