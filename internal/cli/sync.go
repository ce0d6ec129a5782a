package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/spf13/cobra"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/gate"
	"github.com/ecr-replicator/ecr-replicator/internal/gate/verify"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

type syncOptions struct {
	command      string // "sync" or "plan"
	rulesFile    string
	dryRun       bool
	detailed     bool
	concurrency  int
	jobs         int
	repositories []string
	tags         []string
	since        string
	profile      string
	region       string
	output       string
	detail       bool // plan: a line per copy
	quiet        bool
	noProgress   bool
}

// countedHelp says what the numbers count, in every command's help and output.
const countedHelp = `What is counted: a copy is one tag (or one untagged image, when the rule replicates
them) at one destination repository; an image with two tags going to two destinations is
four copies. "Images" are the source's images (digests) the rules looked at.`

const syncLong = `Copy whatever the destinations lack, as the rules document says: list the source
repositories and images the rules select (ecr:DescribeRepositories, ecr:DescribeImages), list
each destination (ecr:DescribeImages, through the destination's role), and copy exactly what
differs — tags missing or pointing elsewhere, digests missing, repositories to create —
registry-to-registry, digests preserved, multi-platform indexes and referrers included.

This is the migration a "docker pull / tag / push" script does, without a daemon or disk,
and safe to rerun: an interrupted sync resumes where it stopped, and a finished one finds
nothing to do (an in-sync scope costs list calls only). Run 'ecr-replicator plan' first to
see what it will copy.

The rules document is the Lambda functions' (README "Configuration"); --repositories and
--tags only narrow it, never widen it. A rule that selects no image is named in a warning,
and so is a --repositories or --tags that selects nothing.
Credentials: --profile (or the default chain) for the source account; each destination
through the role the rules name.

Output: one line per copy on stdout as it finishes, wherever stdout goes, then the
summary; a progress bar on stderr only when it is a terminal (not with --quiet,
--no-progress or TERM=dumb). --output json prints one document (docs/CLI-JSON.md).

` + countedHelp + `

` + exitCodesHelp + `
A destination that could not be listed counts as failed (exit 1), with the reason.`

const planLong = `Show what 'sync' would copy, without copying anything: list the source repositories and
images the rules select (ecr:DescribeRepositories, ecr:DescribeImages) and each destination
(ecr:DescribeImages, through the destination's role), and print a table per source
repository and destination repository: copies in sync, copies to make, bytes to upload,
repositories to create. Nothing is written, and no layer is read: besides list calls, only
the manifests of image indexes to copy are read (ecr:BatchGetImage), for their platforms,
and a destination repository's tag mutability where a tag is to move
(ecr:DescribeRepositories); where the copies upload into two or more repositories of one
destination registry, the manifests of the images to copy are read (ecr:BatchGetImage, 100
at a time, at most 1,000 images) to count the layers they share, which ECR blob mounting
moves once: the plan says what that saves, or would save if the registry enabled it, and
how to enable it. --detail adds a line per copy to make: which tag (or untagged digest),
its size, where, and why. --output json always has them (docs/CLI-JSON.md).

Bytes to upload are ECR's imageSizeInBytes of each image the destination lacks: the
compressed layers of one manifest, once per digest and destination repository. A layer two
images share is counted for each (the copy uploads it once), and a layer the destination
already has is counted too, so single images are over-counted. An index counts its
platforms that the rules do not copy to that destination as images of their own (those
are counted there), read from the index; an index that cannot be read counts its largest
platform only (ECR's size of an index), so it is under-counted, and a warning says so.
The estimate is the larger of the bytes at an assumed 100 MiB/s and the manifest writes
at ECR's default 10 PutImage/s per destination registry.

A destination that cannot be listed — its role cannot be assumed, listing is denied — is
reported with the reason and what to check, and the plan exits 1: a plan that could not
look is incomplete, never "in sync". A rule that selects no image (a typo in its globs,
most often; cosign signature tags do not count) is named in a warning, and so is a
--repositories or --tags that selects nothing; a rule that matched only repositories with
no image yet, or one that could not be listed (reported), is not a typo and is not counted
as one.

The rules document is the Lambda functions' (README "Configuration"); --repositories and
--tags only narrow it. Credentials: --profile (or the default chain) for the source
account; each destination through the role the rules name.

` + countedHelp + `

Copies that would fail whatever is rerun — a tag an immutable destination repository has
on another image, a missing repository its rule does not create — are listed as such, not
as copies to make.

Exit codes: 0 the plan is complete; 1 some destination or repository could not be listed
(the plan is incomplete), or some copies cannot be made; 2 usage, configuration or
credentials error; 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
With --detailed-exitcode, for CI (as terraform plan -detailed-exitcode): 0 complete and in
sync, 1 error of any kind (usage, credentials, copies that cannot be made, a rule or a
--repositories/--tags narrowing that selects nothing), 2 complete with copies to make.`

func newSyncCmd(a *app) *cobra.Command {
	o := syncOptions{command: "sync"}
	c := &cobra.Command{
		Use:   "sync --rules FILE",
		Short: "Copy whatever the destinations lack, planned by diffing source and destination listings",
		Long:  syncLong,
		Example: `  ecr-replicator plan --rules rules.yaml          # first, what would be copied
  ecr-replicator sync --rules rules.yaml
  ecr-replicator sync --rules rules.yaml --repositories 'team-a/*' --tags 'v*' --concurrency 16
  ecr-replicator sync --rules rules.yaml --since 2024-01-01T00:00:00Z --output json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			a.output, a.quiet, a.noProgress, a.detailedExit = o.output, o.quiet, o.noProgress, o.detailed && o.dryRun
			return runSync(c.Context(), a, o)
		},
	}
	addSyncFlags(c, &o)
	f := c.Flags()
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print only failures and the summary, and no progress")
	f.BoolVar(&o.noProgress, "no-progress", false, "never draw the progress bar (drawn only when stderr is a terminal)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the plan and copy nothing (same as 'plan')")
	f.BoolVar(&o.detailed, "detailed-exitcode", false, "with --dry-run: exit 0 in sync, 1 on error, 2 when there are copies to make")
	f.IntVar(&o.concurrency, "concurrency", 8, "copies made in parallel (1-256)")
	f.IntVar(&o.jobs, "jobs", 8, "blobs transferred in parallel (1-256)")
	return c
}

func newPlanCmd(a *app) *cobra.Command {
	o := syncOptions{command: "plan", dryRun: true, concurrency: 1, jobs: 1}
	c := &cobra.Command{
		Use:   "plan --rules FILE",
		Short: "Show what sync would copy, per repository and destination (from the listings; nothing is written)",
		Long:  planLong,
		Example: `  ecr-replicator plan --rules rules.yaml
  ecr-replicator plan --rules rules.yaml --detail    # which tags, how big, why
  ecr-replicator plan --rules rules.yaml --repositories 'team-a/**' --tags 'v*' --output json

  # CI: fail on drift, and on a plan that could not look everywhere
  ecr-replicator plan --rules rules.yaml --detailed-exitcode
  case $? in 0) echo in sync ;; 2) echo drift ;; *) echo error ;; esac`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			a.output, a.detailedExit = o.output, o.detailed
			return runSync(c.Context(), a, o)
		},
	}
	addSyncFlags(c, &o)
	c.Flags().BoolVar(&o.detailed, "detailed-exitcode", false, "exit 0 in sync, 1 on error, 2 when there are copies to make")
	c.Flags().BoolVar(&o.detail, "detail", false, "a line per copy to make: tag or digest, size, destination, why (always in --output json)")
	return c
}

func addSyncFlags(c *cobra.Command, o *syncOptions) {
	f := c.Flags()
	f.StringVar(&o.rulesFile, "rules", "", "rules document, YAML or JSON (required)")
	f.StringSliceVar(&o.repositories, "repositories", nil, "only source repositories matching these globs (comma-separated or repeated; '!' excludes)")
	f.StringSliceVar(&o.tags, "tags", nil, "only tags matching these globs")
	f.StringVar(&o.since, "since", "", "only images pushed at or after this RFC 3339 time (2024-01-01T00:00:00Z)")
	f.StringVar(&o.profile, "profile", "", "AWS profile for the source account (default: the standard credential chain)")
	f.StringVar(&o.region, "region", "", "source region (default: AWS_REGION, AWS_DEFAULT_REGION or the profile's)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json (one document, docs/CLI-JSON.md)")
}

// destinationCheck is one destination (account, region, role) of the rules, and what
// happened when it was reached.
type destinationCheck struct {
	access ecraccess.Access
	path   string // rules[i].destinations[j], for messages
	prob   *problem
}

func runSync(ctx context.Context, a *app, o syncOptions) error {
	doc, narrowed, req, err := loadSyncRules(o)
	if err != nil {
		return err
	}
	log := a.logger()
	sess, srcAccount, err := syncSession(ctx, o, log, narrowed)
	if err != nil {
		return err
	}
	// The destinations' roles are assumed while the source is listed: the plan waits
	// for the same cached credentials, and the checks' explanations are only needed
	// for the report.
	checked := make(chan []*destinationCheck, 1)
	go func() { checked <- checkDestinations(ctx, sess, narrowed) }()
	var prog *progress
	copies := &syncCopies{}
	b := syncBackfill(a, o, log, doc, sess, srcAccount, &prog, copies)
	selection, indexes := newRuleSelection(narrowed), newIndexListings()
	b.Listed = func(repo string, images []backfill.Image) {
		selection.listedImages(repo, images)
		if o.dryRun {
			indexes.listed(repo, images)
		}
	}
	plan, err := b.Invoke(ctx, req)
	checks := <-checked
	if ctx.Err() != nil {
		return interruptedPlanning()
	}
	if err != nil {
		return awsProblem(err, "listing the source")
	}
	r := &syncReport{a: a, o: o, doc: narrowed, source: ecrname.Registry{AccountID: srcAccount, Region: sess.cfg.Region}}
	selection.notListed(plan.Failures)
	r.deadRules = selection.report(a, o)
	dests := destinationStatuses(narrowed, sess.account, checks, plan.Failures)
	if o.dryRun {
		return r.dryRun(ctx, sess, log, plan, dests, indexes, req.Since)
	}
	if plan.Drift == 0 {
		// In sync: the plan's list calls were all it took; report it as the sync it was.
		in := *plan
		in.Mode, in.Plan, in.WorkItems = backfill.ModeInline, nil, nil
		return r.sync(&in, dests, copies, nil)
	}
	prog = newProgress(a, "copies", plan.Drift)
	// The copies the plan found, without listing again.
	resp := b.Execute(ctx, plan)
	prog.finish()
	if ctx.Err() != nil {
		return interrupted(resp.Copied, max(plan.Drift-resp.Copied, 0))
	}
	missed := copies.notAttempted(r.source, plan.Work)
	return r.sync(resp, destinationStatuses(narrowed, sess.account, checks, resp.Failures), copies, missed)
}

// loadSyncRules checks sync's and plan's flags, reads the rules document and narrows it
// to the request (a dry run, planned whole).
func loadSyncRules(o syncOptions) (doc, narrowed *rules.Document, req backfill.Request, err error) {
	if err := checkOutput(o.output); err != nil {
		return nil, nil, req, err
	}
	if o.rulesFile == "" {
		return nil, nil, req, usagef("--rules FILE is required: the rules document that says what goes where (README \"Configuration\"); see 'ecr-replicator %s --help'", o.command)
	}
	if err := checkRange("concurrency", o.concurrency, 1, 256); err != nil {
		return nil, nil, req, err
	}
	if err := checkRange("jobs", o.jobs, 1, 256); err != nil {
		return nil, nil, req, err
	}
	if err := checkRegion(o.region); err != nil {
		return nil, nil, req, err
	}
	if o.detailed && !o.dryRun {
		return nil, nil, req, usagef("--detailed-exitcode goes with --dry-run (or use 'ecr-replicator plan')")
	}
	data, err := os.ReadFile(o.rulesFile)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, nil, req, configProblem(err, "--rules %s: %v", o.rulesFile, pe.Err)
		}
		return nil, nil, req, configProblem(err, "--rules %s: %v", o.rulesFile, err)
	}
	if doc, err = rules.Parse(data); err != nil {
		return nil, nil, req, configProblem(err, "%s: %v", o.rulesFile, err)
	}
	// The promotion gates' signers, checked now (keys, trusted roots, trust stores; their
	// files relative to the rules document).
	if _, err := verify.Compile(doc, verify.Options{Dir: filepath.Dir(o.rulesFile)}); err != nil {
		return nil, nil, req, configProblem(err, "%s: %v", o.rulesFile, err)
	}
	req = backfill.Request{Repositories: o.repositories, Tags: o.tags, DryRun: true, Mode: backfill.ModeInline}
	if o.since != "" {
		if req.Since, err = time.Parse(time.RFC3339, o.since); err != nil {
			return nil, nil, req, usagef("--since %q is not an RFC 3339 time (like 2024-01-01T00:00:00Z)", o.since)
		}
	}
	if narrowed, err = doc.Narrow(o.repositories, o.tags); err != nil {
		return nil, nil, req, usagef("%v", err)
	}
	return doc, narrowed, req, nil
}

// syncSession opens the AWS session sync works with and names the source account (the
// caller's, or source.roleArn's, whose role is assumed now to explain a failure early).
func syncSession(ctx context.Context, o syncOptions, log *slog.Logger, narrowed *rules.Document) (*awsSession, string, error) {
	sess, err := newAWSSessions(log, "ecr-replicator-cli").get(ctx, o.profile, o.region)
	if err != nil {
		return nil, "", err
	}
	srcAccount := sess.account
	if arn := narrowed.SourceRoleARN(); arn != "" {
		if srcAccount, err = ecrname.RoleAccount(arn); err != nil {
			return nil, "", configProblem(err, "%s: source.roleArn: %v", o.rulesFile, err)
		}
		if _, err := sess.assumeRole(ctx, ecraccess.SourceAccess(ecrname.Registry{AccountID: srcAccount, Region: sess.cfg.Region}, arn), "none: a source role takes none"); err != nil {
			return nil, "", err
		}
	}
	return sess, srcAccount, nil
}

// syncBackfill is the backfill sync runs: one engine for the command, reporting to the
// progress display *prog (made once the plan says how much there is to copy) and
// recording each copy in copies.
func syncBackfill(a *app, o syncOptions, log *slog.Logger, doc *rules.Document, sess *awsSession, srcAccount string, prog **progress, copies *syncCopies) *backfill.Backfill {
	engine := destinations.NewEngine(destinations.EngineOptions{Jobs: o.jobs, Log: log,
		Progress: func(p destinations.Progress) { progressTo(*prog, p) }})
	replicator := destinations.New(sess.resolver, engine, destinations.WithLogger(log), destinations.WithSourceRole(doc.SourceRoleARN()))
	// Checked when the rules were read: no error here.
	vs, _ := verify.Compile(doc, verify.Options{KMS: kms.NewFromConfig(sess.cfg), Dir: filepath.Dir(o.rulesFile)})
	return &backfill.Backfill{
		Rules: doc, Resolver: sess.resolver, SourceAccountID: srcAccount, SourceRegion: sess.cfg.Region,
		Concurrency: o.concurrency, Log: log, NoMountingEstimate: !o.dryRun,
		Gate:        gate.New(gate.Config{Resolver: sess.resolver, SourceRole: doc.SourceRoleARN(), Verifiers: vs, Log: log}),
		GateSettled: copies.gateSettled(ecrname.Registry{AccountID: srcAccount, Region: sess.cfg.Region}),
		Start: func() backfill.Copier {
			return &progressRun{a: a, run: replicator.Start(), prog: *prog, copies: copies}
		},
	}
}

func interruptedPlanning() *problem {
	return &problem{code: codeInterrupted, exit: ExitInterrupted, msg: "interrupted while planning: nothing was copied; rerun to start again",
		extra: map[string]any{"done": 0}}
}

// checkDestinations reaches every destination of the rules before planning, each
// through its role, so that one that cannot be reached is explained once (what to check)
// instead of as a listing failure per repository. The role's credentials are cached by
// the resolver for the plan and the copies.
func checkDestinations(ctx context.Context, sess *awsSession, doc *rules.Document) []*destinationCheck {
	var checks []*destinationCheck
	for _, a := range destinations.DestinationAccesses(doc) {
		checks = append(checks, &destinationCheck{access: a.Access, path: fmt.Sprintf("rules[%d].destinations[%d]", a.Rule, a.Destination)})
	}
	var wg sync.WaitGroup
	for _, c := range checks {
		wg.Go(func() {
			if _, err := sess.assumeRole(ctx, c.access, "externalId of "+c.path); err != nil {
				c.prob = explain(ctx, err)
			}
		})
	}
	wg.Wait()
	return checks
}
