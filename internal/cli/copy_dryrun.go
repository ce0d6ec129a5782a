package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
)

// dryRunRow is what a copy would do with one item.
type dryRunRow struct {
	item   copyItem
	digest string
	state  string // stateInSync, stateToCopy, stateFailed
	reason string // why to copy (backfill's reasons), or why the lookup failed
	code   string // a failed lookup's
}

// dryRunCopy compares SRC's tags (or digest) with DST's and prints what a copy would do.
func dryRunCopy(ctx context.Context, a *app, o copyOptions, srcRepo name.Repository, src, dst *endpointFor, items []copyItem, destMissing bool, unit string) error {
	start := time.Now()
	rows := make([]dryRunRow, len(items))
	g := errgroup.Group{}
	g.SetLimit(o.concurrency)
	for i, it := range items {
		g.Go(func() error {
			rows[i] = lookupDryRun(ctx, srcRepo, src, dst, it, destMissing)
			return nil
		})
	}
	g.Wait()
	if ctx.Err() != nil {
		return interrupted(0, len(items))
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].item.tag < rows[j].item.tag })
	counts := map[string]int{}
	for _, r := range rows {
		counts[r.state]++
	}
	if a.json() {
		if err := dryRunDocument(a, srcRepo, dst, rows, counts, destMissing, unit, start).write(a); err != nil {
			return err
		}
	} else {
		writeDryRun(a, dst, rows, counts, destMissing, unit)
	}
	switch {
	case counts[stateFailed] > 0:
		return exitError{ExitFailed}
	case o.detailed && counts[stateToCopy] > 0:
		return exitError{ExitDrift}
	}
	return nil
}

// lookupDryRun resolves one item at the source and looks for it at the destination.
func lookupDryRun(ctx context.Context, srcRepo name.Repository, src, dst *endpointFor, it copyItem, destMissing bool) dryRunRow {
	r := dryRunRow{item: it, digest: it.digest}
	failed := func(err error, tag string, repo name.Repository) dryRunRow {
		r.state = stateFailed
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
	case destMissing:
		r.state, r.reason = stateToCopy, backfill.ReasonRepositoryMissing
	case it.tag != "":
		d, err := headTag(ctx, dst, it.tag)
		switch {
		case err != nil && isNotFound(err):
			r.state, r.reason = stateToCopy, backfill.ReasonTagMissing
		case err != nil:
			return failed(err, "", dst.repo)
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

// writeDryRun prints the dry run's rows and totals.
func writeDryRun(a *app, dst *endpointFor, rows []dryRunRow, counts map[string]int, destMissing bool, unit string) {
	for _, r := range rows {
		res := imageResult{Destination: dst.repo.String(), Tag: r.item.tag, Digest: r.digest, Outcome: r.state}
		if r.state == stateFailed {
			res.Message = r.reason
		} else {
			res.Reason = r.reason
		}
		fmt.Fprintln(a.stdout, res.line(a))
	}
	summary := fmt.Sprintf("%s: %d in sync, %d to copy", plural(len(rows), unit), counts[stateInSync], counts[stateToCopy])
	if counts[stateFailed] > 0 {
		summary += fmt.Sprintf(", %d could not be looked up", counts[stateFailed])
	}
	if destMissing {
		summary += fmt.Sprintf("; repository %s would be created", dst.repo.RepositoryStr())
	}
	fmt.Fprintln(a.stdout, summary+" (dry run: nothing was copied)")
}

// dryRunDocument is the dry run as the JSON document.
func dryRunDocument(a *app, srcRepo name.Repository, dst *endpointFor, rows []dryRunRow, counts map[string]int, destMissing bool, unit string, start time.Time) *document {
	doc := newDocument(a, true, countedCopy(unit))
	doc.Complete = counts[stateFailed] == 0
	digests := map[string]bool{}
	for _, r := range rows {
		if r.digest != "" {
			digests[r.digest] = true
		}
		it := item{Source: srcRepo.String(), Destination: dst.repo.String(), Tag: r.item.tag, Digest: r.digest, State: r.state}
		if r.state == stateFailed {
			it.Error = &errorJSON{Code: r.code, Message: r.reason}
		} else {
			it.Reason = r.reason
		}
		doc.Items = append(doc.Items, it)
	}
	toCopy := counts[stateToCopy]
	doc.Totals = totals{Repositories: 1, Images: len(digests), Copies: len(rows), InSync: counts[stateInSync], ToCopy: toCopy,
		Failed: counts[stateFailed], DurationMs: time.Since(start).Milliseconds()}
	doc.Repositories = []repositoryPlan{{Source: srcRepo.String(), Destination: dst.repo.String(), InSync: counts[stateInSync], ToCopy: toCopy, CreateRepository: destMissing}}
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
