package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

type copyOptions struct {
	profile, sourceProfile, destProfile string
	region                              string
	sourceRole, destRole, externalID    string
	owner                               string
	allTags, referrers, createRepo      bool
	dryRun, detailed                    bool
	jobs, concurrency                   int
	output                              string
	quiet, noProgress                   bool
}

const copyLong = `Copy SRC to DST registry-to-registry: the destination gets the same digest, multi-platform
indexes with every platform, and (by default) signatures and other referrers. Nothing already
in the destination is uploaded again; nothing goes through a Docker daemon or local disk.

SRC is an image reference: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:… (no tag
means :latest, as for docker pull); with --all-tags, a repository. DST is a repository, or
the same reference with the same tag (copies keep tags and digests). On ECR registries a tag
may have up to 300 characters: those over 128 are read and written through the ECR API.

ECR registries — ACCOUNT.dkr.ecr.REGION.amazonaws.com, and the China, FIPS and dual-stack
host names — are reached through the AWS SDK: credentials from --profile (or the default
chain: AWS_PROFILE, AWS_ACCESS_KEY_ID…, SSO, instance roles), the region from the host
name, and --dest-role-arn/--external-id to act in another account (the role must be in
DST's account). A missing ECR destination repository is created with the source's
settings (tag mutability, scan on push, encryption), tagged ecr-replicator:owner with the
account of the replicator that keeps the mirror — by default the source registry's (the
replicator runs in the source account), whatever credentials write it (--owner for a
central account) — and ecr-replicator:source. Other registries use your Docker
credentials (~/.docker/config.json and credential helpers), and their repositories must
exist.

--dry-run resolves SRC and compares its tags and digests with DST's, and creates and
copies nothing (referrers are not compared). A copy that would fail — a tag DST's
immutable tags have on another image, a missing repository with --create-repository=false
— is listed as such (exit 1), not as one to copy.

Output: one line per tag on stdout as it finishes, wherever stdout goes, then a summary; a
progress bar on stderr only when it is a terminal (not with --quiet, --no-progress or
TERM=dumb); colour on a terminal unless NO_COLOR is set. --output json prints one document
instead (docs/CLI-JSON.md).

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
			if o.owner != "" {
				if err := ecrname.AccountID(o.owner); err != nil {
					return usagef("--owner: %v", err)
				}
			}
			a.output, a.quiet, a.noProgress, a.detailedExit = o.output, o.quiet, o.noProgress, o.detailed && o.dryRun
			return runCopy(c.Context(), a, o, args[0], args[1])
		},
	}
	copyFlags(c.Flags(), &o)
	return c
}

// copyFlags are copy's flags, into o.
func copyFlags(f *pflag.FlagSet, o *copyOptions) {
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
	f.StringVar(&o.owner, "owner", "", "account tagged ecr-replicator:owner on a destination repository the copy creates: the account of the replicator that keeps the mirror (default: SRC's ECR account; for another registry, your account)")
	f.BoolVar(&o.allTags, "all-tags", false, "copy every tag of the SRC repository")
	f.BoolVar(&o.referrers, "referrers", true, "also copy OCI referrers and cosign sha256-*.sig/.att/.sbom tags")
	f.BoolVar(&o.createRepo, "create-repository", true, "create a missing ECR destination repository, mirroring the source's settings")
	f.BoolVar(&o.dryRun, "dry-run", false, "compare SRC with DST and say what would be copied; change nothing")
	f.BoolVar(&o.detailed, "detailed-exitcode", false, "with --dry-run: exit 0 in sync, 1 on error, 2 when something would be copied")
	f.IntVar(&o.jobs, "jobs", 8, "blobs transferred in parallel (1-256)")
	f.IntVar(&o.concurrency, "concurrency", 8, "images copied in parallel with --all-tags (1-256)")
	addOutputFlags(f, &o.output, &o.quiet, &o.noProgress)
}

// addOutputFlags are the flags of the commands that print results: the format, and how
// much is said while they run.
func addOutputFlags(f *pflag.FlagSet, output *string, quiet, noProgress *bool) {
	f.StringVarP(output, "output", "o", "text", "output format: text or json (one document, docs/CLI-JSON.md)")
	f.BoolVarP(quiet, "quiet", "q", false, "print only failures and the summary, and no progress")
	f.BoolVar(noProgress, "no-progress", false, "never draw the progress bar (drawn only when stderr is a terminal)")
}

// copyItem is one tag or digest to copy.
type copyItem struct{ tag, digest string }

func runCopy(ctx context.Context, a *app, o copyOptions, srcArg, dstArg string) error {
	start := time.Now()
	args, err := parseCopyArgs(a, o, srcArg, dstArg)
	if err != nil {
		return err
	}
	args.warnings(a, srcArg, dstArg)
	sessions := newAWSSessions(a.logger(), "ecr-replicator-cli")
	src, err := resolveSide(ctx, sessions, args.src.repo, args.srcSide, o.region, "no external ID")
	if err != nil {
		return err
	}
	dst, err := resolveSide(ctx, sessions, args.dstRepo, args.dstSide, o.region, "--external-id")
	if err != nil {
		return err
	}
	settings, err := sourceSettings(ctx, args, src)
	if err != nil {
		return err
	}
	items, unit, err := copyItems(ctx, o, args, src)
	if err != nil {
		return err
	}
	if o.dryRun {
		dest, err := readDestination(ctx, o, args, dst)
		if err != nil {
			return err
		}
		return dryRunCopy(ctx, a, o, args.src.repo, src, dst, items, dest, unit)
	}
	// A tag or digest the source does not serve fails here, before the destination
	// repository is created: a failed first copy leaves nothing behind.
	if missing, err := sourceFails(ctx, args, src, dst, items); err != nil {
		return err
	} else if missing != nil {
		if !a.json() {
			fmt.Fprintln(a.stdout, missing.line(a))
		}
		return reportCopy(a, unit, []imageResult{*missing}, start, false)
	}
	created, err := ensureDestination(ctx, o, args, src, dst, settings, len(items) > 0)
	if err != nil {
		return err
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
	return reportCopy(a, unit, results, start, created)
}

// copyArgs are copy's arguments, checked.
type copyArgs struct {
	src              imageRef
	dstRepo          name.Repository
	srcSide, dstSide side
}

// parseCopyArgs checks copy's flags and arguments before anything is reached: usage
// errors name what was wrong.
func parseCopyArgs(a *app, o copyOptions, srcArg, dstArg string) (copyArgs, error) {
	var c copyArgs
	if err := checkCopyFlags(o); err != nil {
		return c, err
	}
	src, err := parseImageRef("SRC", srcArg)
	if err != nil {
		return c, err
	}
	dstRepo, dstTag, err := parseDestination(dstArg)
	if err != nil {
		return c, err
	}
	for _, h := range []struct{ what, host string }{{"SRC", src.repo.RegistryStr()}, {"DST", dstRepo.RegistryStr()}} {
		if err := checkRegistryHost(h.what, h.host); err != nil {
			return c, err
		}
	}
	if dstTag != "" && dstTag != src.tag {
		return c, usagef("DST tag %q must be SRC's tag or omitted: copies keep tags (and digests)", dstTag)
	}
	if len(src.tag) > ecrname.MaxRegistryTagLen && !isECR(dstRepo) {
		return c, usagef("SRC's tag has %d characters: only an ECR registry holds a tag over %d (through the ECR API), and DST %s is not one",
			len(src.tag), ecrname.MaxRegistryTagLen, dstRepo.RegistryStr())
	}
	if _, _, _, _, hasTag := splitReference(srcArg); o.allTags && (hasTag || strings.Contains(srcArg, "@")) {
		return c, usagef("with --all-tags, SRC is a repository without a tag or digest, not %q", srcArg)
	}
	return copySides(a, o, copyArgs{src: src, dstRepo: dstRepo})
}

// checkCopyFlags checks the flags that need no argument to be checked.
func checkCopyFlags(o copyOptions) error {
	if err := checkRange("jobs", o.jobs, 1, 256); err != nil {
		return err
	}
	if err := checkRange("concurrency", o.concurrency, 1, 256); err != nil {
		return err
	}
	if err := checkRegion(o.region); err != nil {
		return err
	}
	if o.detailed && !o.dryRun {
		return usagef("--detailed-exitcode goes with --dry-run (it reports drift)")
	}
	return nil
}

// copySides adds to c how each side is reached (profile, role), from the flags, and
// checks them against the registries c names.
func copySides(a *app, o copyOptions, c copyArgs) (copyArgs, error) {
	src, dstRepo := c.src, c.dstRepo
	c = copyArgs{src: src, dstRepo: dstRepo,
		srcSide: side{which: "source", profile: o.profile, roleARN: o.sourceRole},
		dstSide: side{which: "destination", profile: o.profile, roleARN: o.destRole, externalID: o.externalID}}
	if o.sourceProfile != "" {
		a.warn("--source-profile is deprecated: use --profile (and --dest-profile for a destination reached with other credentials)")
		// The deprecated flag meant the source only: the destination kept the default chain.
		c.srcSide.profile = o.sourceProfile
		if o.profile == "" {
			c.dstSide.profile = ""
		}
	}
	if o.destProfile != "" {
		c.dstSide.profile = o.destProfile
	}
	if err := checkSideFlags("SRC", src.repo, c.srcSide.profile, o.sourceRole, "source-role-arn"); err != nil {
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

// checkRegion refuses a --region that can never exist, in the validator's words (a typo
// would otherwise surface as a failed or unanswered AWS call).
func checkRegion(region string) error {
	if region == "" {
		return nil
	}
	if err := ecrname.Region(region); err != nil {
		return usagef("--region: %v", err)
	}
	return nil
}

// parseDestination accepts a repository or a tagged reference.
func parseDestination(arg string) (name.Repository, string, error) {
	if strings.Contains(arg, "@") {
		return name.Repository{}, "", usagef("DST %q names a digest: a destination is a repository (the digest is the source's)", arg)
	}
	if _, _, _, _, hasTag := splitReference(arg); hasTag {
		ref, err := parseImageRef("DST", arg)
		return ref.repo, ref.tag, err
	}
	repo, err := parseRepository("DST", arg)
	if err != nil {
		return name.Repository{}, "", err
	}
	return repo, "", nil
}
