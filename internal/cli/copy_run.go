package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// imageResult is what copying one item did.
type imageResult struct {
	Source      string // repository, as named (host/name)
	Destination string
	Tag         string
	Digest      string
	Outcome     string
	Reason      string
	Code        string
	Message     string // what went wrong and what to do, in one line
	Err         error  // the full error, for --debug
	BytesCopied int64
}

func (r imageResult) failed() bool {
	return destinations.Outcome(r.Outcome).Failure()
}

// ref is the destination reference of the result: repository, tag, digest (when known).
func (r imageResult) ref() string {
	s := r.Destination
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + shortDigest(r.Digest)
	}
	return s
}

// line is the result as copy and sync print it: the outcome, the destination reference,
// and what went wrong or why.
func (r imageResult) line(a *app) string {
	line := paint(a, r.Outcome) + " " + r.ref()
	switch {
	case r.Message != "":
		line += ": " + r.Message
	case r.Reason != "":
		line += " (" + r.Reason + ")"
	}
	return line
}

// item is the result in the JSON document.
func (r imageResult) item(debug bool) item {
	it := item{Source: r.Source, Destination: r.Destination, Tag: r.Tag, Digest: r.Digest, State: r.Outcome, BytesCopied: ptr(r.BytesCopied)}
	if r.Message != "" {
		it.Error = &errorJSON{Code: r.Code, Message: r.Message}
		if debug && r.Err != nil {
			it.Error.Detail = detail(r.Err)
		}
	} else {
		it.Reason = r.Reason
	}
	return it
}

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

// reportCopy prints the summary (text: the result lines were printed as they came) or the
// JSON document, and returns exitError{ExitFailed} when any item failed. created says the
// run created the destination repository.
func reportCopy(a *app, unit string, results []imageResult, start time.Time, created bool) error {
	failed, copied, inSync := 0, 0, 0
	counts := map[string]int{}
	var bytes int64
	digests := map[string]bool{}
	for _, r := range results {
		counts[r.Outcome]++
		bytes += r.BytesCopied
		if r.Digest != "" {
			digests[r.Digest] = true
		}
		switch destinations.Outcome(r.Outcome) {
		case destinations.Copied, destinations.TagUpdated:
			copied++
		case destinations.AlreadyPresent, destinations.Skipped:
			inSync++
		default:
			failed++
		}
	}
	if created && copied == 0 && len(results) > 0 {
		warnCreatedEmpty(a, results)
	}
	if a.json() {
		doc := newDocument(a, false, countedCopy(unit))
		doc.Totals = totals{Repositories: 1, Images: len(digests), Copies: len(results), InSync: inSync, ToCopy: len(results) - inSync,
			Copied: ptr(copied), Failed: failed, BytesCopied: ptr(bytes), DurationMs: time.Since(start).Milliseconds()}
		for _, r := range results {
			doc.Items = append(doc.Items, r.item(a.debug))
		}
		if err := doc.write(a); err != nil {
			return err
		}
	} else {
		if len(results) == 0 {
			fmt.Fprintf(a.stdout, "0 %s: nothing to copy\n", unit)
		} else {
			fmt.Fprintf(a.stdout, "%s: %s; %s copied\n", plural(len(results), unit), summarize(counts), humanBytes(bytes))
		}
	}
	if failed > 0 {
		return exitError{ExitFailed}
	}
	return nil
}

// warnCreatedEmpty says that the destination repository the run created is still empty,
// and what fills it: a rerun, when some copy failed in a way another run may not (a
// registry that did not answer, throttling); otherwise the failures must be fixed first.
func warnCreatedEmpty(a *app, results []imageResult) {
	retryable := false
	for _, r := range results {
		if _, ok := retry.Classify(r.Err); ok {
			retryable = true
		}
	}
	if retryable {
		a.warn("repository %s was created and is still empty: rerun to fill it, or delete it", results[0].Destination)
		return
	}
	a.warn("repository %s was created and is still empty: its copies failed in a way a rerun does not change; fix the failure above and rerun, or delete it", results[0].Destination)
}

// countedCopy says what copy's items count.
func countedCopy(unit string) string {
	if unit == "images" {
		return "copies: the image named by digest, to the destination repository"
	}
	return "copies: one per tag, to the destination repository"
}

func lookupOptions(ctx context.Context, e destinations.Endpoint) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(e.Auth)}
	if e.Transport != nil {
		opts = append(opts, remote.WithTransport(e.Transport))
	}
	return opts
}

// repositoryProblem explains a failed repository call on one side of a copy.
func repositoryProblem(err error, which string, repo name.Repository, region string) *problem {
	p := awsProblem(err, which+" repository "+repo.String())
	if p.code == "RepositoryNotFoundException" {
		p.exit = ExitUsage
		if which == "source" {
			p.msg = fmt.Sprintf("source repository %s not found (%s): check the name and the region in the host name; `aws ecr describe-repositories --region %s` lists them", repo, p.code, region)
		} else {
			p.msg = fmt.Sprintf("destination repository %s not found (%s) and --create-repository=false: create it, or let copy create it", repo, p.code)
		}
	}
	return p
}

// registryProblem explains a failed registry request made by the CLI itself (not the
// engine): listing tags, a dry run's lookups.
func registryProblem(err error, doing string, repo name.Repository) error {
	var te *transport.Error
	code, _ := retry.Classify(err)
	status := 0
	if errors.As(err, &te) {
		status = te.StatusCode
		if len(te.Errors) > 0 {
			code = string(te.Errors[0].Code)
		}
	}
	p := &problem{code: code, err: err, exit: ExitFailed, op: doing}
	host, dnsFailed := unresolvable(err)
	switch {
	case dnsFailed:
		p.exit = ExitUsage
		p.msg = unresolvableMessage(host)
	case code == string(transport.NameUnknownErrorCode) || (code == "" && status == http.StatusNotFound):
		p.exit = ExitUsage
		p.msg = fmt.Sprintf("repository %s not found (%s): check the name (repository names are lowercase)", repo, orStatus(code, status))
	case code == string(transport.UnauthorizedErrorCode) || code == string(transport.DeniedErrorCode) || status == http.StatusUnauthorized || status == http.StatusForbidden:
		p.exit = ExitUsage
		p.msg = fmt.Sprintf("%s refused %s %s (%s): log in to it first (docker login %s), or check the identity's permissions", repo.RegistryStr(), doing, repo, orStatus(code, status), repo.RegistryStr())
	case errors.Is(err, context.Canceled):
		return err
	default:
		p.msg = fmt.Sprintf("%s %s failed (%s): %s", doing, repo, orStatus(code, status), apiMessage(err))
	}
	return p
}

func orStatus(code string, status int) string {
	if code != "" {
		return code
	}
	if status != 0 {
		return fmt.Sprintf("HTTP %d", status)
	}
	return "no answer"
}

func isNotFound(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	if te.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range te.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}
