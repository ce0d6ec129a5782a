package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
)

// destinationState is what a dry run needs to know of an ECR destination repository:
// whether it exists (and would be created), and its tag mutability.
type destinationState struct {
	missing bool
	create  bool                 // --create-repository
	tags    ecraccess.Repository // its tag mutability (TagImmutable)
}

// readDestination reads, for a dry run, an ECR destination repository's state (one
// DescribeRepositories); another registry's repositories are taken to exist, mutable.
func readDestination(ctx context.Context, o copyOptions, c copyArgs, dst *endpointFor) (destinationState, error) {
	st := destinationState{create: o.createRepo}
	if dst.ecr == nil {
		return st, nil
	}
	out, err := dst.ecr.API().DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RegistryId: dst.ecr.RegistryID(), RepositoryNames: []string{c.dstRepo.RepositoryStr()}})
	var nf *ecrtypes.RepositoryNotFoundException
	switch {
	case errors.As(err, &nf):
		st.missing = true
	case err != nil:
		return st, dst.explainDenied(repositoryProblem(err, "destination", c.dstRepo, dst.region))
	case len(out.Repositories) == 1:
		r := out.Repositories[0]
		st.tags = ecraccess.Repository{TagMutability: r.ImageTagMutability, MutabilityFilters: r.ImageTagMutabilityExclusionFilters}
	}
	return st, nil
}

// dryRunRow is what a copy would do with one item.
type dryRunRow struct {
	item   copyItem
	digest string
	state  string // stateInSync, stateToCopy, stateConflict, stateFailed
	reason string // why to copy (backfill's reasons), or why the copy cannot be made or the lookup failed
	code   string // a failed lookup's, or a copy's that cannot be made
	lookup bool   // failed: the lookup failed (not a copy: the digest is unknown)
}

// dryRunCounts are a dry run's rows by what they are.
type dryRunCounts struct {
	inSync, toCopy, cannotCopy, lookupsFailed int
}

func countRows(rows []dryRunRow) dryRunCounts {
	var c dryRunCounts
	for _, r := range rows {
		switch {
		case r.state == stateInSync:
			c.inSync++
		case r.state == stateToCopy:
			c.toCopy++
		case r.lookup:
			c.lookupsFailed++
		default:
			c.cannotCopy++
		}
	}
	return c
}

// dryRunCopy compares SRC's tags (or digest) with DST's and prints what a copy would do.
func dryRunCopy(ctx context.Context, a *app, o copyOptions, srcRepo name.Repository, src, dst *endpointFor, items []copyItem, dest destinationState, unit string) error {
	start := time.Now()
	rows := make([]dryRunRow, len(items))
	g := errgroup.Group{}
	g.SetLimit(o.concurrency)
	for i, it := range items {
		g.Go(func() error {
			rows[i] = lookupDryRun(ctx, srcRepo, src, dst, it, dest)
			return nil
		})
	}
	g.Wait()
	if ctx.Err() != nil {
		return interrupted(0, len(items))
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].item.tag < rows[j].item.tag })
	counts := countRows(rows)
	// The repository is created only for a copy to make (none: the copy creates nothing).
	create := dest.missing && counts.toCopy > 0
	if a.json() {
		if err := dryRunDocument(a, srcRepo, dst, rows, counts, create, unit, start).write(a); err != nil {
			return err
		}
	} else {
		writeDryRun(a, dst, rows, counts, create, unit)
	}
	switch {
	case counts.lookupsFailed > 0, counts.cannotCopy > 0:
		return exitError{ExitFailed}
	case o.detailed && counts.toCopy > 0:
		return exitError{ExitDrift}
	}
	return nil
}

// lookupDryRun resolves one item at the source and looks for it at the destination.
func lookupDryRun(ctx context.Context, srcRepo name.Repository, src, dst *endpointFor, it copyItem, dest destinationState) dryRunRow {
	r := dryRunRow{item: it, digest: it.digest}
	failed := func(err error, tag string, repo name.Repository) dryRunRow {
		r.state, r.lookup = stateFailed, true
		r.code, r.reason = registryLookupMessage(err, tag, repo)
		return r
	}
	if it.tag != "" {
		d, err := headTag(ctx, src, it.tag)
		if err != nil {
			return failed(err, it.tag, srcRepo)
		}
		r.digest = d
	}
	switch {
	case dest.missing && !dest.create:
		r.state, r.code = stateFailed, "RepositoryNotFoundException"
		r.reason = fmt.Sprintf("repository %s does not exist and --create-repository=false: create it, or let copy create it", dst.repo)
	case dest.missing:
		r.state, r.reason = stateToCopy, backfill.ReasonRepositoryMissing
	case it.tag != "":
		d, err := headTag(ctx, dst, it.tag)
		switch {
		case err != nil && isNotFound(err):
			r.state, r.reason = stateToCopy, backfill.ReasonTagMissing
		case err != nil:
			return failed(err, "", dst.repo)
		case d != r.digest && dest.tags.TagImmutable(it.tag):
			r.state, r.code = stateConflict, immutableCode
			r.reason = immutableMessage(it.tag, d)
		case d != r.digest:
			r.state, r.reason = stateToCopy, backfill.ReasonTagElsewhere
		default:
			r.state = stateInSync
		}
	default:
		_, err := remote.Head(dst.endpoint.Repository.Digest(it.digest), lookupOptions(ctx, dst.endpoint)...)
		switch {
		case err != nil && isNotFound(err):
			r.state, r.reason = stateToCopy, backfill.ReasonDigestMissing
		case err != nil:
			return failed(err, "", dst.repo)
		default:
			r.state = stateInSync
		}
	}
	return r
}

// writeDryRun prints the dry run's rows (with --quiet, those that fail only) and totals.
func writeDryRun(a *app, dst *endpointFor, rows []dryRunRow, counts dryRunCounts, create bool, unit string) {
	for _, r := range rows {
		res := imageResult{Destination: dst.repo.String(), Tag: r.item.tag, Digest: r.digest, Outcome: r.state}
		if r.code != "" || r.lookup {
			res.Message = r.reason
		} else {
			res.Reason = r.reason
		}
		if !a.quiet || res.failed() {
			fmt.Fprintln(a.stdout, res.line(a))
		}
	}
	summary := fmt.Sprintf("%s: %d in sync, %d to copy", plural(len(rows), unit), counts.inSync, counts.toCopy)
	if counts.cannotCopy > 0 {
		summary += fmt.Sprintf(", %d cannot be copied", counts.cannotCopy)
	}
	if counts.lookupsFailed > 0 {
		summary += fmt.Sprintf(", %d could not be looked up", counts.lookupsFailed)
	}
	if create {
		summary += fmt.Sprintf("; repository %s would be created", dst.repo.RepositoryStr())
	}
	fmt.Fprintln(a.stdout, summary+" (dry run: nothing was copied)")
}

// dryRunDocument is the dry run as the JSON document. A lookup that failed is not a copy
// (its digest is unknown): it is counted in failed, not in copies.
func dryRunDocument(a *app, srcRepo name.Repository, dst *endpointFor, rows []dryRunRow, counts dryRunCounts, create bool, unit string, start time.Time) *document {
	doc := newDocument(a, true, countedCopy(unit))
	doc.Complete = counts.lookupsFailed == 0
	digests := map[string]bool{}
	for _, r := range rows {
		if r.digest != "" {
			digests[r.digest] = true
		}
		it := item{Source: srcRepo.String(), Destination: dst.repo.String(), Tag: r.item.tag, Digest: r.digest, State: r.state}
		if r.code != "" || r.lookup {
			it.Error = &errorJSON{Code: r.code, Message: r.reason}
		} else {
			it.Reason = r.reason
		}
		doc.Items = append(doc.Items, it)
	}
	toCopy := counts.toCopy
	doc.Totals = totals{Repositories: 1, Images: len(digests), Copies: counts.inSync + toCopy + counts.cannotCopy, InSync: counts.inSync, ToCopy: toCopy,
		CannotCopy: counts.cannotCopy, Failed: counts.lookupsFailed, DurationMs: time.Since(start).Milliseconds()}
	doc.Repositories = []repositoryPlan{{Source: srcRepo.String(), Destination: dst.repo.String(), InSync: counts.inSync, ToCopy: toCopy, CreateRepository: create}}
	// One destination registry: its PutImage quota paces every write. A listing of
	// sizes is not read, so the estimate has no bytes.
	doc.Estimate = newEstimate(toCopy, float64(toCopy)/putImageQuota, -1)
	return doc
}

// registryLookupMessage explains a failed manifest HEAD of a dry run: its code and one line.
func registryLookupMessage(err error, tag string, repo name.Repository) (string, string) {
	if isNotFound(err) && tag != "" {
		return "MANIFEST_UNKNOWN", fmt.Sprintf("tag %s not found in %s", tag, repo)
	}
	var p *problem
	if errors.As(registryProblem(err, "reading", repo), &p) {
		return p.code, p.msg
	}
	return "", apiMessage(err)
}
