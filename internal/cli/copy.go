package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// side is how one end of a copy is reached.
type side struct {
	profile    string
	roleARN    string
	externalID string
}

type copyOptions struct {
	profile, sourceProfile, destProfile string
	region                              string
	sourceRole, destRole, externalID    string
	allTags, referrers, createRepo      bool
	dryRun, detailed                    bool
	jobs, concurrency                   int
	output                              string
}

const copyLong = `Copy SRC to DST registry-to-registry: the destination gets the same digest, multi-platform
indexes with every platform, and (by default) signatures and other referrers. Nothing already
in the destination is uploaded again; nothing goes through a Docker daemon or local disk.

SRC is an image reference: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:… (no tag
means :latest, as for docker pull); with --all-tags, a repository. DST is a repository, or
the same reference with the same tag (copies keep tags and digests).

ECR registries — ACCOUNT.dkr.ecr.REGION.amazonaws.com, and the China, FIPS and dual-stack
host names — are reached through the AWS SDK: credentials from --profile (or the default
chain: AWS_PROFILE, AWS_ACCESS_KEY_ID…, SSO, instance roles), the region from the host
name, and --dest-role-arn/--external-id to act in another account (the role must be in
DST's account). A missing ECR destination repository is created with the source's
settings (tag mutability, scan on push, encryption). Other registries use your Docker
credentials (~/.docker/config.json and credential helpers), and their repositories must
exist.

--dry-run resolves SRC and compares its tags and digests with DST's, and creates and
copies nothing (referrers are not compared).

` + exitCodesHelp + `
With --dry-run --detailed-exitcode: 0 in sync, 1 error, 2 something to copy.`

func newCopyCmd(a *app) *cobra.Command {
	o := copyOptions{}
	c := &cobra.Command{
		Use:   "copy SRC DST",
		Short: "Copy an image (or every tag of a repository) registry-to-registry, by digest",
		Long:  copyLong,
		Example: `  # one tag, same account, another region
  ecr-replicator copy 111111111111.dkr.ecr.us-east-1.amazonaws.com/team-a/app:v1.2.0 \
                      111111111111.dkr.ecr.eu-west-1.amazonaws.com/team-a/app

  # every tag into another account, through its replication role; first see what would be copied
  ecr-replicator copy --all-tags --dry-run 111111111111.dkr.ecr.us-east-1.amazonaws.com/team-a/app \
                      222222222222.dkr.ecr.us-east-1.amazonaws.com/mirror/team-a/app \
                      --dest-role-arn arn:aws:iam::222222222222:role/ecr-replicator-destination \
                      --external-id my-external-id
  ecr-replicator copy --all-tags 111111111111.dkr.ecr.us-east-1.amazonaws.com/team-a/app \
                      222222222222.dkr.ecr.us-east-1.amazonaws.com/mirror/team-a/app \
                      --dest-role-arn arn:aws:iam::222222222222:role/ecr-replicator-destination \
                      --external-id my-external-id --output json

  # two accounts, one profile each
  ecr-replicator copy --profile prod --dest-profile dr \
                      111111111111.dkr.ecr.us-east-1.amazonaws.com/team-a/app:v1 \
                      333333333333.dkr.ecr.us-west-2.amazonaws.com/team-a/app`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("copy takes two arguments, SRC and DST (got %d); see 'ecr-replicator copy --help'", len(args))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			a.output = o.output
			return runCopy(c.Context(), a, o, args[0], args[1])
		},
	}
	f := c.Flags()
	f.StringVar(&o.profile, "profile", "", "AWS profile for ECR registries (default: the standard credential chain)")
	f.StringVar(&o.destProfile, "dest-profile", "", "AWS profile for an ECR destination, when it is not --profile's")
	f.StringVar(&o.sourceProfile, "source-profile", "", "AWS profile for an ECR source only")
	// Deprecated, hidden from --help. Not cobra's MarkDeprecated: cobra prints its notice
	// with Command.Print, on stdout when SetOut is set, which would break --output json.
	_ = f.MarkHidden("source-profile")
	f.StringVar(&o.region, "region", "", "region of the AWS calls not tied to a registry (STS); an ECR registry's region is the one in its host name")
	f.StringVar(&o.sourceRole, "source-role-arn", "", "role to assume to read an ECR source (in SRC's account)")
	f.StringVar(&o.destRole, "dest-role-arn", "", "role to assume to write an ECR destination (in DST's account)")
	f.StringVar(&o.externalID, "external-id", "", "external ID for --dest-role-arn, as its trust policy requires")
	f.BoolVar(&o.allTags, "all-tags", false, "copy every tag of the SRC repository")
	f.BoolVar(&o.referrers, "referrers", true, "also copy OCI referrers and cosign sha256-*.sig/.att/.sbom tags")
	f.BoolVar(&o.createRepo, "create-repository", true, "create a missing ECR destination repository, mirroring the source's settings")
	f.BoolVar(&o.dryRun, "dry-run", false, "compare SRC with DST and say what would be copied; change nothing")
	f.BoolVar(&o.detailed, "detailed-exitcode", false, "with --dry-run: exit 0 in sync, 1 on error, 2 when something would be copied")
	f.IntVar(&o.jobs, "jobs", 8, "blobs transferred in parallel (1-256)")
	f.IntVar(&o.concurrency, "concurrency", 8, "images copied in parallel with --all-tags (1-256)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return c
}

func checkOutput(format string) error {
	if format != "text" && format != "json" {
		return usagef("--output must be text or json, not %q", format)
	}
	return nil
}

func checkRange(flag string, v, lo, hi int) error {
	if v < lo || v > hi {
		return usagef("--%s must be between %d and %d (got %d)", flag, lo, hi, v)
	}
	return nil
}

// endpointFor reaches a repository: through ECR (SDK credentials, role, token) when the
// host is an ECR registry, through the Docker keychain otherwise.
type endpointFor struct {
	repo     name.Repository // as the user named it
	endpoint copyengine.Endpoint
	ecr      *ecraccess.Registry
	region   string
}

// resolveSide reaches repo as s says; region (empty: the host's) is where STS is asked.
// externalIDFrom names where s.externalID came from, for messages.
func resolveSide(ctx context.Context, sessions *awsSessions, repo name.Repository, s side, region string, externalIDFrom string) (*endpointFor, error) {
	account, hostRegion, isECR := ecraccess.ParseRegistryHost(repo.RegistryStr())
	if !isECR {
		auth, err := authn.DefaultKeychain.Resolve(repo)
		if err != nil {
			return nil, configProblem(err, "Docker credentials for %s could not be read: %v", repo.RegistryStr(), err)
		}
		return &endpointFor{repo: repo, endpoint: copyengine.Endpoint{Repository: repo, Auth: auth}}, nil
	}
	// The session's region is where STS is asked (--region); the registry's is its host's.
	if region == "" {
		region = hostRegion
	}
	sess, err := sessions.get(ctx, s.profile, region)
	if err != nil {
		return nil, err
	}
	reg, err := sess.assumeRole(ctx, ecraccess.Access{AccountID: account, Region: hostRegion, RoleARN: s.roleARN, ExternalID: s.externalID}, externalIDFrom)
	if err != nil {
		return nil, err
	}
	// The host to talk to comes from ECR's answers, not from the name the user typed.
	host, err := reg.Host(ctx, repo.RepositoryStr())
	if err != nil {
		return nil, awsProblem(err, repo.String())
	}
	real, err := name.NewRepository(host + "/" + repo.RepositoryStr())
	if err != nil {
		return nil, fmt.Errorf("registry host %q from ECR: %w", host, err)
	}
	return &endpointFor{repo: repo, ecr: reg, region: hostRegion, endpoint: copyengine.Endpoint{Repository: real, Auth: reg.Authenticator(), Transport: reg.Transport(nil)}}, nil
}

// checkSideFlags refuses ECR-only flags on another registry, and a role in another
// account than the registry's: the role would act in its own account's registry, not
// in the one the user named.
func checkSideFlags(what string, repo name.Repository, profile, role, roleFlag string) error {
	account, _, isECR := ecraccess.ParseRegistryHost(repo.RegistryStr())
	if !isECR {
		if role != "" || profile != "" {
			flag := roleFlag
			if role == "" {
				flag = "profile"
			}
			return usagef("%s %s is not an ECR registry: --%s applies to ECR registries only (ACCOUNT.dkr.ecr.REGION.amazonaws.com)", what, repo.RegistryStr(), flag)
		}
		return nil
	}
	if role == "" {
		return nil
	}
	roleAccount, err := ecrname.RoleAccount(role)
	if err != nil {
		return usagef("--%s: %v", roleFlag, err)
	}
	if roleAccount != account {
		return usagef("--%s %s is in account %s, but %s %s is in account %s: a role acts in its own account's registry; name the registry of account %s, or a role in account %s",
			roleFlag, role, roleAccount, what, repo.RegistryStr(), account, roleAccount, account)
	}
	return nil
}

// imageResult is one line of copy/sync output.
type imageResult struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Tag         string `json:"tag,omitempty"`
	Digest      string `json:"digest,omitempty"`
	Outcome     string `json:"outcome"`
	Reason      string `json:"reason,omitempty"`
	Code        string `json:"code,omitempty"`
	Message     string `json:"message,omitempty"` // what went wrong and what to do, in one line
	Error       string `json:"error,omitempty"`   // the full error, for a bug report
	BytesCopied int64  `json:"bytesCopied"`
	BlobsCopied int    `json:"blobsCopied"`
	DurationMS  int64  `json:"durationMs"`
}

func (r imageResult) failed() bool {
	return copyengine.Outcome(r.Outcome).Failure()
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

// copyItem is one tag or digest to copy.
type copyItem struct{ tag, digest string }

func runCopy(ctx context.Context, a *app, o copyOptions, srcArg, dstArg string) error {
	args, err := parseCopyArgs(a, o, srcArg, dstArg)
	if err != nil {
		return err
	}
	sessions := newAWSSessions(a.logger(), "ecr-replicator-cli")
	src, err := resolveSide(ctx, sessions, args.srcRef.Context(), args.srcSide, o.region, "no external ID")
	if err != nil {
		return err
	}
	dst, err := resolveSide(ctx, sessions, args.dstRepo, args.dstSide, o.region, "--external-id")
	if err != nil {
		return err
	}
	destMissing, err := prepareDestination(ctx, o, args, src, dst)
	if err != nil {
		return err
	}
	items, unit, err := copyItems(ctx, o, args, src)
	if err != nil {
		return err
	}
	if o.dryRun {
		return dryRunCopy(ctx, a, o, args.srcRef.Context(), src, dst, items, destMissing, unit)
	}
	results := executeCopy(ctx, a, o, args, src, dst, items, unit)
	if ctx.Err() != nil {
		done := 0
		for _, r := range results {
			if r.Outcome != "" && !r.failed() {
				done++
			}
		}
		return interrupted(done, len(items)-done)
	}
	return report(a.stdout, o.output, unit, results)
}

// copyArgs are copy's arguments, checked.
type copyArgs struct {
	srcRef           name.Reference
	srcTag           name.Tag
	isTag            bool
	dstRepo          name.Repository
	srcSide, dstSide side
}

// parseCopyArgs checks copy's flags and arguments before anything is reached: usage
// errors name what was wrong.
func parseCopyArgs(a *app, o copyOptions, srcArg, dstArg string) (copyArgs, error) {
	var c copyArgs
	if err := checkRange("jobs", o.jobs, 1, 256); err != nil {
		return c, err
	}
	if err := checkRange("concurrency", o.concurrency, 1, 256); err != nil {
		return c, err
	}
	if o.detailed && !o.dryRun {
		return c, usagef("--detailed-exitcode goes with --dry-run (it reports drift)")
	}
	srcRef, err := parseReference("SRC", srcArg)
	if err != nil {
		return c, err
	}
	dstRepo, dstTag, err := parseDestination(dstArg)
	if err != nil {
		return c, err
	}
	srcTag, isTag := srcRef.(name.Tag)
	if dstTag != "" && (!isTag || dstTag != srcTag.TagStr()) {
		return c, usagef("DST tag %q must be SRC's tag or omitted: copies keep tags (and digests)", dstTag)
	}
	if o.allTags && strings.ContainsAny(srcArg[len(srcRef.Context().String()):], ":@") {
		return c, usagef("with --all-tags, SRC is a repository without a tag or digest, not %q", srcArg)
	}
	c = copyArgs{srcRef: srcRef, srcTag: srcTag, isTag: isTag, dstRepo: dstRepo,
		srcSide: side{profile: o.profile, roleARN: o.sourceRole},
		dstSide: side{profile: o.profile, roleARN: o.destRole, externalID: o.externalID}}
	if o.sourceProfile != "" {
		fmt.Fprintln(a.stderr, "ecr-replicator: --source-profile is deprecated: use --profile (and --dest-profile for a destination reached with other credentials)")
		// The deprecated flag meant the source only: the destination kept the default chain.
		c.srcSide.profile = o.sourceProfile
		if o.profile == "" {
			c.dstSide.profile = ""
		}
	}
	if o.destProfile != "" {
		c.dstSide.profile = o.destProfile
	}
	if err := checkSideFlags("SRC", srcRef.Context(), c.srcSide.profile, o.sourceRole, "source-role-arn"); err != nil {
		return c, err
	}
	if err := checkSideFlags("DST", dstRepo, o.destProfile, o.destRole, "dest-role-arn"); err != nil {
		return c, err
	}
	if o.externalID != "" && o.destRole == "" {
		return c, usagef("--external-id goes with --dest-role-arn")
	}
	return c, nil
}

// prepareDestination checks the source repository exists (one DescribeRepositories:
// a clear message now rather than one per image later) and makes sure the destination
// repository does (creating it with the source's settings), or, for a dry run, says
// whether it is missing.
func prepareDestination(ctx context.Context, o copyOptions, c copyArgs, src, dst *endpointFor) (destMissing bool, err error) {
	settings := ecraccess.RepositorySettings{}
	if src.ecr != nil {
		if settings, err = src.ecr.ReadSettings(ctx, c.srcRef.Context().RepositoryStr(), false, false); err != nil {
			return false, repositoryProblem(err, "source", c.srcRef.Context(), src.region)
		}
		settings.KMSKey = "" // a source key belongs to its own account and region
	}
	if dst.ecr == nil {
		return false, nil
	}
	if o.dryRun {
		destMissing, err = repositoryMissing(ctx, dst.ecr, c.dstRepo.RepositoryStr())
	} else {
		_, err = dst.ecr.EnsureRepository(ctx, c.dstRepo.RepositoryStr(), settings, o.createRepo)
	}
	if err != nil {
		return false, repositoryProblem(err, "destination", c.dstRepo, dst.region)
	}
	return destMissing, nil
}

// copyItems is what to copy: every tag (--all-tags), the tag, or the digest; and what
// the counts count.
func copyItems(ctx context.Context, o copyOptions, c copyArgs, src *endpointFor) ([]copyItem, string, error) {
	switch {
	case o.allTags:
		tags, err := remote.List(src.endpoint.Repository, lookupOptions(ctx, src.endpoint)...)
		if err != nil {
			return nil, "", registryProblem(err, "listing the tags of", c.srcRef.Context())
		}
		items := make([]copyItem, len(tags))
		for i, t := range tags {
			items[i] = copyItem{tag: t}
		}
		return items, "tags", nil
	case c.isTag:
		return []copyItem{{tag: c.srcTag.TagStr()}}, "tags", nil
	}
	return []copyItem{{digest: c.srcRef.Identifier()}}, "images", nil
}

// executeCopy copies the items, o.concurrency at a time, in one engine run, with a
// progress display; it returns one result per item.
func executeCopy(ctx context.Context, a *app, o copyOptions, c copyArgs, src, dst *endpointFor, items []copyItem, unit string) []imageResult {
	copyOpts := []copyengine.Option{copyengine.WithJobs(o.jobs), copyengine.WithLogger(a.logger())}
	if dst.ecr == nil {
		// Manifest writes are paced for ECR's PutImage quota; other registries publish
		// none, and a 429 is still backed off.
		copyOpts = append(copyOpts, copyengine.WithManifestRate(math.Inf(1), 1))
	}
	prog := newProgress(a, unit, len(items), func(imageResult) bool { return ctx.Err() != nil })
	copyOpts = append(copyOpts, progressOption(prog)...)
	run := copyengine.New(copyOpts...).Start()
	results := make([]imageResult, len(items))
	g := errgroup.Group{}
	g.SetLimit(o.concurrency)
	for i, it := range items {
		g.Go(func() error {
			prog.itemStarted()
			results[i] = copyOne(ctx, run, o, c, src, dst, it)
			prog.itemDone(results[i])
			return nil
		})
	}
	g.Wait()
	prog.finish()
	return results
}

// copyOne copies one item and explains a failure.
func copyOne(ctx context.Context, run *copyengine.Run, o copyOptions, c copyArgs, src, dst *endpointFor, it copyItem) imageResult {
	res := imageResult{Source: c.srcRef.Context().String(), Destination: c.dstRepo.String(), Tag: it.tag, Digest: it.digest}
	start := time.Now()
	// A tag is resolved by the engine: one GET of the manifest by tag.
	r := run.Copy(ctx, copyengine.Request{Source: src.endpoint, Digest: it.digest, Tag: it.tag, Destination: dst.endpoint, Referrers: o.referrers})
	if r.Digest != "" {
		res.Digest = r.Digest
	}
	res.Outcome, res.Reason, res.BytesCopied, res.BlobsCopied = string(r.Outcome), r.Reason, r.BytesCopied, r.BlobsCopied
	res.DurationMS = time.Since(start).Milliseconds()
	if r.Err != nil {
		res.Error = r.Err.Error()
		res.Code, res.Message = explainCopy(copyFailure{err: r.Err, source: c.srcRef.Context().String(), destination: c.dstRepo.String(),
			tag: it.tag, digest: res.Digest, destECR: dst.ecr != nil})
	}
	return res
}

func lookupOptions(ctx context.Context, e copyengine.Endpoint) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(e.Auth)}
	if e.Transport != nil {
		opts = append(opts, remote.WithTransport(e.Transport))
	}
	return opts
}

// repositoryMissing asks ECR whether a repository exists, without creating it.
func repositoryMissing(ctx context.Context, reg *ecraccess.Registry, repo string) (bool, error) {
	_, err := reg.API().DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{repo}})
	var nf *ecrtypes.RepositoryNotFoundException
	if errors.As(err, &nf) {
		return true, nil
	}
	return false, err
}

// repositoryProblem explains a failed repository call on one side of a copy.
func repositoryProblem(err error, which string, repo name.Repository, region string) error {
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
	switch {
	case code == string(transport.NameUnknownErrorCode) || (code == "" && status == http.StatusNotFound):
		p.exit = ExitUsage
		p.msg = fmt.Sprintf("repository %s not found (%s): check the name (repository names are lowercase)", repo, orStatus(code, status))
	case code == string(transport.UnauthorizedErrorCode) || code == string(transport.DeniedErrorCode) || status == http.StatusUnauthorized || status == http.StatusForbidden:
		p.exit = ExitUsage
		p.msg = fmt.Sprintf("%s refused %s %s (%s): log in to it first (docker login %s), or check the identity's permissions", repo.RegistryStr(), doing, repo, orStatus(code, status), repo.RegistryStr())
	case ctxCanceled(err):
		return err
	default:
		p.msg = fmt.Sprintf("%s %s failed (%s): %s", doing, repo, orStatus(code, status), apiMessage(err))
	}
	return p
}

func ctxCanceled(err error) bool { return errors.Is(err, context.Canceled) }

func orStatus(code string, status int) string {
	if code != "" {
		return code
	}
	if status != 0 {
		return fmt.Sprintf("HTTP %d", status)
	}
	return "no answer"
}

// parseDestination accepts a repository or a tagged reference.
func parseDestination(arg string) (name.Repository, string, error) {
	if strings.Contains(arg, "@") {
		return name.Repository{}, "", usagef("DST %q names a digest: a destination is a repository (the digest is the source's)", arg)
	}
	if ref, err := name.NewTag(arg); err == nil && strings.HasSuffix(arg, ":"+ref.TagStr()) {
		return ref.Context(), ref.TagStr(), nil
	}
	repo, err := parseRepository("DST", arg)
	if err != nil {
		return name.Repository{}, "", err
	}
	return repo, "", nil
}

// report prints the results and returns exitError{ExitFailed} when any failed.
func report(w io.Writer, format, unit string, results []imageResult) error {
	failed := 0
	counts := map[string]int{}
	var bytes int64
	for _, r := range results {
		counts[r.Outcome]++
		bytes += r.BytesCopied
		if r.failed() {
			failed++
		}
	}
	if format == "json" {
		out := map[string]any{"counted": unit, "results": results, "outcomes": counts, "failed": failed, "bytesCopied": bytes}
		if err := writeJSONTo(w, out); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			line := fmt.Sprintf("%-15s %s", r.Outcome, r.ref())
			switch {
			case r.Message != "":
				line += ": " + r.Message
			case r.Reason != "":
				line += " (" + r.Reason + ")"
			}
			fmt.Fprintln(w, line)
		}
		fmt.Fprintf(w, "%s: %s; %s copied\n", plural(len(results), unit), summarize(counts), humanBytes(bytes))
	}
	if failed > 0 {
		return exitError{ExitFailed}
	}
	return nil
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// dryRunRow is what a copy would do with one item.
type dryRunRow struct {
	item   copyItem
	digest string
	state  string // "in sync", "to copy", "failed"
	why    string
}

// dryRunCopy compares SRC's tags (or digest) with DST's and prints what a copy would do.
func dryRunCopy(ctx context.Context, a *app, o copyOptions, srcRepo name.Repository, src, dst *endpointFor, items []copyItem, destMissing bool, unit string) error {
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
	if err := writeDryRun(a, o, srcRepo, dst, rows, counts, destMissing, unit); err != nil {
		return err
	}
	switch {
	case counts["failed"] > 0:
		return exitError{ExitFailed}
	case o.detailed && counts["to copy"] > 0:
		return exitError{ExitDrift}
	}
	return nil
}

// lookupDryRun resolves one item at the source and looks for it at the destination.
func lookupDryRun(ctx context.Context, srcRepo name.Repository, src, dst *endpointFor, it copyItem, destMissing bool) dryRunRow {
	r := dryRunRow{item: it, digest: it.digest}
	if it.tag != "" {
		desc, err := remote.Head(src.endpoint.Repository.Tag(it.tag), lookupOptions(ctx, src.endpoint)...)
		if err != nil {
			r.state, r.why = "failed", registryLookupMessage(err, it.tag, srcRepo)
			return r
		}
		r.digest = desc.Digest.String()
	}
	switch {
	case destMissing:
		r.state, r.why = "to copy", "repository missing"
	case it.tag != "":
		desc, err := remote.Head(dst.endpoint.Repository.Tag(it.tag), lookupOptions(ctx, dst.endpoint)...)
		switch {
		case err != nil && isNotFound(err):
			r.state, r.why = "to copy", "tag missing"
		case err != nil:
			r.state, r.why = "failed", registryLookupMessage(err, it.tag, dst.repo)
		case desc.Digest.String() != r.digest:
			r.state, r.why = "to copy", "tag points to "+shortDigest(desc.Digest.String())
		default:
			r.state = "in sync"
		}
	default:
		_, err := remote.Head(dst.endpoint.Repository.Digest(it.digest), lookupOptions(ctx, dst.endpoint)...)
		switch {
		case err != nil && isNotFound(err):
			r.state, r.why = "to copy", "digest missing"
		case err != nil:
			r.state, r.why = "failed", registryLookupMessage(err, "", dst.repo)
		default:
			r.state = "in sync"
		}
	}
	return r
}

// writeDryRun prints the dry run's rows and totals, as JSON with -o json.
func writeDryRun(a *app, o copyOptions, srcRepo name.Repository, dst *endpointFor, rows []dryRunRow, counts map[string]int, destMissing bool, unit string) error {
	if o.output == "json" {
		type jsonRow struct {
			Source      string `json:"source"`
			Destination string `json:"destination"`
			Tag         string `json:"tag,omitempty"`
			Digest      string `json:"digest,omitempty"`
			State       string `json:"state"`
			Reason      string `json:"reason,omitempty"`
		}
		out := struct {
			DryRun           bool      `json:"dryRun"`
			Counted          string    `json:"counted"`
			InSync           int       `json:"inSync"`
			ToCopy           int       `json:"toCopy"`
			Failed           int       `json:"failed"`
			CreateRepository bool      `json:"createRepository,omitempty"`
			Items            []jsonRow `json:"items"`
		}{DryRun: true, Counted: unit, InSync: counts["in sync"], ToCopy: counts["to copy"], Failed: counts["failed"], CreateRepository: destMissing}
		for _, r := range rows {
			out.Items = append(out.Items, jsonRow{srcRepo.String(), dst.repo.String(), r.item.tag, r.digest, r.state, r.why})
		}
		return writeJSONTo(a.stdout, out)
	}
	for _, r := range rows {
		line := fmt.Sprintf("%-8s %s", r.state, dst.repo.String())
		if r.item.tag != "" {
			line += ":" + r.item.tag
		}
		if r.digest != "" {
			line += "@" + shortDigest(r.digest)
		}
		if r.why != "" {
			line += " (" + r.why + ")"
		}
		fmt.Fprintln(a.stdout, line)
	}
	summary := fmt.Sprintf("%s: %d in sync, %d to copy", plural(len(rows), unit), counts["in sync"], counts["to copy"])
	if counts["failed"] > 0 {
		summary += fmt.Sprintf(", %d could not be looked up", counts["failed"])
	}
	if destMissing {
		summary += fmt.Sprintf("; repository %s would be created", dst.repo.RepositoryStr())
	}
	fmt.Fprintln(a.stdout, summary+" (dry run: nothing was copied)")
	return nil
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

// registryLookupMessage explains a failed manifest HEAD of a dry run.
func registryLookupMessage(err error, tag string, repo name.Repository) string {
	if isNotFound(err) && tag != "" {
		return fmt.Sprintf("tag %s not found in %s", tag, repo)
	}
	var p *problem
	if errors.As(registryProblem(err, "reading", repo), &p) {
		return p.msg
	}
	return apiMessage(err)
}
