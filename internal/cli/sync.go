package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
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
--tags only narrow it, never widen it. Credentials: --profile (or the default chain) for
the source account; each destination through the role the rules name.

` + countedHelp + `

` + exitCodesHelp + `
A destination that could not be listed counts as failed (exit 1), with the reason.`

const planLong = `Show what 'sync' would copy, without copying anything: list the source repositories and
images the rules select (ecr:DescribeRepositories, ecr:DescribeImages) and each destination
(ecr:DescribeImages, through the destination's role), and print a table per source
repository and destination repository: copies in sync, copies to make, repositories to
create. Only list calls are made; no image is read and nothing is written.

A destination that cannot be listed — its role cannot be assumed, listing is denied — is
reported with the reason and what to check, and the plan exits 1: a plan that could not
look is incomplete, never "in sync".

The rules document is the Lambda functions' (README "Configuration"); --repositories and
--tags only narrow it. Credentials: --profile (or the default chain) for the source
account; each destination through the role the rules name.

` + countedHelp + `

Exit codes: 0 the plan is complete; 1 some destination or repository could not be listed
(the plan is incomplete); 2 usage, configuration or credentials error; 130 interrupted.
With --detailed-exitcode, for CI (as terraform plan -detailed-exitcode): 0 complete and in
sync, 1 error of any kind, 2 complete with copies to make.`

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
			a.output = o.output
			return runSync(c.Context(), a, o)
		},
	}
	addSyncFlags(c, &o)
	f := c.Flags()
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
		Short: "Show what sync would copy, per repository and destination (list calls only)",
		Long:  planLong,
		Example: `  ecr-replicator plan --rules rules.yaml
  ecr-replicator plan --rules rules.yaml --repositories 'team-a/**' --tags 'v*' --output json

  # CI: fail on drift, and on a plan that could not look everywhere
  ecr-replicator plan --rules rules.yaml --detailed-exitcode
  case $? in 0) echo in sync ;; 2) echo drift ;; *) echo error ;; esac`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			a.output = o.output
			return runSync(c.Context(), a, o)
		},
	}
	addSyncFlags(c, &o)
	c.Flags().BoolVar(&o.detailed, "detailed-exitcode", false, "exit 0 in sync, 1 on error, 2 when there are copies to make")
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
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
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
	var explained sync.Map // failure key → one-line explanation of a failed copy
	b := syncBackfill(o, log, doc, sess, srcAccount, &prog, &explained)
	plan, err := b.Run(ctx, req)
	checks := <-checked
	if ctx.Err() != nil {
		return interruptedPlanning()
	}
	if err != nil {
		return awsProblem(err, "listing the source")
	}
	dests := destinationStatuses(narrowed, checks, plan.Failures)
	if o.dryRun {
		return reportPlan(a.stdout, o, plan, dests)
	}
	if plan.Drift == 0 {
		// In sync: the plan's list calls were all it took; report it as the sync it was.
		in := *plan
		in.Mode, in.Plan, in.WorkItems = backfill.ModeInline, nil, nil
		return reportSync(a.stdout, o, &in, dests, &explained)
	}
	prog = newProgress(a, "copies", plan.Drift, func(imageResult) bool { return ctx.Err() != nil })
	// The copies the plan found, without listing again.
	resp := b.Execute(ctx, plan)
	prog.finish()
	if ctx.Err() != nil {
		return interrupted(resp.Copied, max(plan.Drift-resp.Copied, 0))
	}
	return reportSync(a.stdout, o, resp, destinationStatuses(narrowed, checks, resp.Failures), &explained)
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
		if _, err := sess.assumeRole(ctx, ecraccess.Access{AccountID: srcAccount, Region: sess.cfg.Region, RoleARN: arn}, "none: a source role takes none"); err != nil {
			return nil, "", err
		}
	}
	return sess, srcAccount, nil
}

// syncBackfill is the backfill sync runs: one engine for the command, reporting to the
// progress display *prog (made once the plan says how much there is to copy).
func syncBackfill(o syncOptions, log *slog.Logger, doc *rules.Document, sess *awsSession, srcAccount string, prog **progress, explained *sync.Map) *backfill.Backfill {
	mopts := []destinations.Option{destinations.WithLogger(log)}
	if doc.SourceRoleARN() != "" {
		mopts = append(mopts, destinations.WithSourceRole(doc.SourceRoleARN()))
	}
	engine := copyengine.New(copyengine.WithJobs(o.jobs), copyengine.WithLogger(log),
		copyengine.WithProgress(func(p copyengine.Progress) { progressTo(*prog, p) }))
	replicator := destinations.New(sess.resolver, engine, mopts...)
	return &backfill.Backfill{
		Rules: doc, Resolver: sess.resolver, SourceAccountID: srcAccount, SourceRegion: sess.cfg.Region,
		Concurrency: o.concurrency, Log: log,
		Start: func() backfill.Run {
			return &progressRun{run: replicator.Start(), prog: *prog, explained: explained}
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
	seen := map[ecraccess.Access]bool{}
	for i, r := range doc.Rules {
		for j, d := range r.Destinations {
			acc := d.Access()
			if seen[acc] {
				continue
			}
			seen[acc] = true
			checks = append(checks, &destinationCheck{access: acc, path: fmt.Sprintf("rules[%d].destinations[%d]", i, j)})
		}
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

// destinationStatus is one destination (account, region, and the role reaching it) in
// a plan or sync report.
type destinationStatus struct {
	Destination  string         `json:"destination"` // accountId/region
	RoleARN      string         `json:"roleArn,omitempty"`
	Rules        string         `json:"rules,omitempty"` // where the rules name it first: rules[i].destinations[j]
	Listed       bool           `json:"listed"`
	Repositories int            `json:"repositoriesNotListed,omitempty"`
	Error        map[string]any `json:"error,omitempty"`
	msg          string
	roleFailed   bool // msg is about the role itself, and names it
	access       ecraccess.Access
}

// destinationStatuses combines the checks made before planning with the listing
// failures of the plan (mapped to their destination through the rules), one status per
// destination.
func destinationStatuses(doc *rules.Document, checks []*destinationCheck, failures []backfill.Failure) []*destinationStatus {
	byAccess := map[ecraccess.Access]*destinationStatus{}
	var out []*destinationStatus
	status := func(a ecraccess.Access) *destinationStatus {
		s := byAccess[a]
		if s == nil {
			s = &destinationStatus{Destination: a.AccountID + "/" + a.Region, RoleARN: a.RoleARN, Listed: true, access: a}
			byAccess[a] = s
			out = append(out, s)
		}
		return s
	}
	for _, c := range checks {
		s := status(c.access)
		s.Rules = c.path
		if c.prob != nil {
			s.Listed, s.msg, s.roleFailed = false, c.prob.msg, true
			s.Error = map[string]any{"code": c.prob.code, "message": c.prob.msg, "operation": c.prob.op}
		}
	}
	for _, f := range failures {
		if f.Destination == "" || f.Digest != "" {
			continue // a source listing failure, or a failed copy
		}
		var a ecraccess.Access
		for _, t := range doc.RepositoryTargets(f.Repository) {
			if t.Repo().String() == f.Destination {
				a = t.Destination.Access()
				break
			}
		}
		if a.AccountID == "" {
			acct, rest, _ := strings.Cut(f.Destination, "/")
			region, _, _ := strings.Cut(rest, "/")
			a = ecraccess.Access{AccountID: acct, Region: region}
		}
		s := status(a)
		s.Repositories++
		if s.Listed {
			s.Listed = false
			s.msg = listingMessage(f)
			s.Error = map[string]any{"code": f.Code, "message": s.msg}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Destination < out[j].Destination })
	return out
}

// listingMessage explains a destination listing that failed although its role (if any)
// was assumed: by its AWS code when there is one.
func listingMessage(f backfill.Failure) string {
	switch {
	case deniedCodes[f.Code]:
		return fmt.Sprintf("listing %s was denied (%s): the identity needs ecr:DescribeImages and ecr:DescribeRepositories there", f.Destination, f.Code)
	case expiredCodes[f.Code]:
		return fmt.Sprintf("the credentials expired while listing %s (%s): get fresh ones and rerun", f.Destination, f.Code)
	case f.Code != "":
		return fmt.Sprintf("listing %s failed (%s)", f.Destination, f.Code)
	}
	return "listing " + f.Destination + " failed: " + f.Reason
}

func unlisted(dests []*destinationStatus) int {
	n := 0
	for _, d := range dests {
		if !d.Listed {
			n++
		}
	}
	return n
}

// counts is the line every report shares: what was looked at and what the copies are.
func counts(r *backfill.Response) string {
	return fmt.Sprintf("%s, %s; %s (one per tag, or untagged image, and destination)",
		plural(r.RepositoriesScanned, "repositories"), plural(r.ImagesSeen, "images"),
		plural(r.InSync+r.Drift+r.Unplanned, "copies"))
}

// planReport is the JSON plan: the backfill's dry-run response, and per destination
// whether it could be listed.
type planReport struct {
	*backfill.Response
	Counted      string               `json:"counted"`
	Complete     bool                 `json:"complete"`
	Destinations []*destinationStatus `json:"destinations"`
}

const countedJSON = "copies: one per tag, or untagged image, and destination repository"

func reportPlan(w io.Writer, o syncOptions, plan *backfill.Response, dests []*destinationStatus) error {
	bad := unlisted(dests)
	complete := bad == 0 && plan.Failed == 0
	if o.output == "json" {
		if err := writeJSONTo(w, planReport{Response: plan, Counted: countedJSON, Complete: complete, Destinations: dests}); err != nil {
			return err
		}
	} else {
		type row struct{ repo, dest, inSync, work, note string }
		var rows []row
		for _, p := range plan.Plan {
			note := ""
			if p.CreateRepository {
				note = "repository to create"
			}
			rows = append(rows, row{p.Repository, p.Destination, fmt.Sprint(p.InSync), fmt.Sprint(p.Work), note})
		}
		for _, f := range plan.Failures {
			if f.Destination != "" && f.Digest == "" {
				rows = append(rows, row{f.Repository, f.Destination, "-", "-", "NOT LISTED (see below)"})
			}
		}
		sort.SliceStable(rows, func(i, j int) bool {
			if rows[i].repo != rows[j].repo {
				return rows[i].repo < rows[j].repo
			}
			return rows[i].dest < rows[j].dest
		})
		wr, wd := len("REPOSITORY"), len("DESTINATION")
		for _, r := range rows {
			wr, wd = max(wr, len(r.repo)), max(wd, len(r.dest))
		}
		// Names left-aligned, counts right-aligned.
		fmt.Fprintf(w, "%-*s  %-*s  %7s  %7s\n", wr, "REPOSITORY", wd, "DESTINATION", "IN SYNC", "TO COPY")
		for _, r := range rows {
			fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%-*s  %-*s  %7s  %7s  %s", wr, r.repo, wd, r.dest, r.inSync, r.work, r.note), " "))
		}
		line := fmt.Sprintf("%s: %d in sync, %d to copy", counts(plan), plan.InSync, plan.Drift)
		if plan.Unplanned > 0 {
			line += fmt.Sprintf(", %d not planned (destination not listed)", plan.Unplanned)
		}
		if plan.Drift > 0 {
			est := "under a second"
			if d := time.Duration(plan.EstimatedSecondsAtQuota * float64(time.Second)).Round(time.Second); d >= time.Second {
				est = "about " + d.String()
			}
			line += "; " + est + " at ECR's default 10 PutImage/s"
		}
		fmt.Fprintln(w, line)
		printProblems(w, plan, dests)
		if !complete {
			fmt.Fprintf(w, "plan incomplete: %s; fix the above and rerun\n", incompleteWhy(plan, dests))
		}
	}
	switch {
	case !complete:
		return exitError{ExitFailed}
	case o.detailed && plan.Drift > 0:
		return exitError{ExitDrift}
	}
	return nil
}

func incompleteWhy(r *backfill.Response, dests []*destinationStatus) string {
	var parts []string
	if bad := unlisted(dests); bad > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d destinations could not be listed", bad, len(dests)))
	}
	src := 0
	for _, f := range r.Failures {
		if f.Destination == "" {
			src++
		}
	}
	if src > 0 {
		parts = append(parts, plural(src, "source problems"))
	}
	if len(parts) == 0 {
		parts = append(parts, plural(r.Failed, "failures"))
	}
	return strings.Join(parts, ", ")
}

// printProblems prints one line per destination that could not be listed and per source
// repository that could not be read.
func printProblems(w io.Writer, r *backfill.Response, dests []*destinationStatus) {
	for _, d := range dests {
		if d.Listed {
			continue
		}
		what := "destination " + d.Destination
		if d.RoleARN != "" && !d.roleFailed {
			what += " via " + d.RoleARN
		}
		if d.Repositories > 0 {
			what += fmt.Sprintf(" (%s not listed)", plural(d.Repositories, "repositories"))
		}
		fmt.Fprintf(w, "%s: %s\n", what, d.msg)
	}
	for _, f := range r.Failures {
		if f.Destination == "" {
			if f.Repository != "" {
				fmt.Fprintf(w, "source %s: %s\n", f.Repository, f.Reason)
			} else {
				fmt.Fprintf(w, "source: %s\n", f.Reason)
			}
		}
	}
}

func reportSync(w io.Writer, o syncOptions, resp *backfill.Response, dests []*destinationStatus, explained *sync.Map) error {
	bad := unlisted(dests)
	failedCopies := 0
	for _, f := range resp.Failures {
		if f.Digest != "" {
			failedCopies++
		}
	}
	if o.output == "json" {
		out := struct {
			*backfill.Response
			Counted      string               `json:"counted"`
			Destinations []*destinationStatus `json:"destinations"`
		}{resp, countedJSON, dests}
		for i, f := range out.Failures {
			if m, ok := explained.Load(failureKey(f.Destination, f.Digest, f.Tag)); ok {
				out.Failures[i].Reason = m.(string)
			}
		}
		if err := writeJSONTo(w, out); err != nil {
			return err
		}
	} else {
		line := fmt.Sprintf("%s: %d already in sync, %d copied, %d failed", counts(resp), resp.InSync, resp.Copied, failedCopies)
		if resp.Unplanned > 0 {
			line += fmt.Sprintf(", %d not attempted (destination not listed)", resp.Unplanned)
		}
		fmt.Fprintf(w, "%s; %s sent in %s\n", line, humanBytes(resp.BytesCopied), (time.Duration(resp.DurationMs) * time.Millisecond).Round(time.Millisecond))
		for _, f := range resp.Failures {
			if f.Digest == "" {
				continue
			}
			reason := f.Reason
			if m, ok := explained.Load(failureKey(f.Destination, f.Digest, f.Tag)); ok {
				reason = m.(string)
			}
			ref := f.Destination
			if f.Tag != "" {
				ref += ":" + f.Tag
			}
			fmt.Fprintf(w, "failed  %s@%s: %s\n", ref, shortDigest(f.Digest), reason)
		}
		printProblems(w, resp, dests)
	}
	if resp.Failed > 0 || bad > 0 {
		return exitError{ExitFailed}
	}
	return nil
}

func failureKey(dest, digest, tag string) string { return dest + "|" + digest + "|" + tag }

// progressRun reports each copy of a run to the progress display, and explains failures.
type progressRun struct {
	run       *destinations.Run
	prog      *progress
	explained *sync.Map
}

func (p *progressRun) Replicate(ctx context.Context, src destinations.Source, targets []rules.Target) []destinations.Result {
	if p.prog != nil {
		p.prog.itemStarted()
	}
	results := p.run.Replicate(ctx, src, targets)
	for _, r := range results {
		res := imageResult{Source: src.Repo.Name, Destination: r.Destination.String(), Tag: r.Tag, Digest: r.Digest, Outcome: string(r.Outcome), BytesCopied: r.BytesCopied, Code: r.Code}
		if r.Err != nil {
			res.Code, res.Message = explainCopy(copyFailure{err: r.Err, source: src.Repo.Name, destination: r.Destination.Name, tag: r.Tag, digest: r.Digest, destECR: true})
			p.explained.Store(failureKey(r.Destination.String(), r.Digest, r.Tag), res.Message)
		}
		if p.prog != nil {
			p.prog.itemDone(res)
		}
	}
	return results
}
