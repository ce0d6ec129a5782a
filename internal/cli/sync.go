package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/spf13/cobra"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/mirror"
	"github.com/ecr-replicator/ecr-replicator/internal/replication"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

type syncOptions struct {
	rulesFile    string
	dryRun       bool
	concurrency  int
	jobs         int
	repositories []string
	tags         []string
	since        string
	profile      string
	region       string
	output       string
}

const syncLong = `Run the backfill engine locally over a rules document: list the source repositories and
images the rules select (DescribeRepositories, DescribeImages), list each destination
(DescribeImages), and copy exactly what differs — digests missing, tags missing or
pointing elsewhere, repositories to create — registry-to-registry, digests preserved,
multi-platform indexes and referrers included. An already synchronized scope costs list
calls only. This is the migration a "docker pull / tag / push" script does, without a
daemon or disk, and safe to run again: a second run finds nothing to do.

The rules document is the one the Lambda functions use (see README "Configuration").
Credentials come from the standard AWS chain (or --profile); destination roles from the
rules. --repositories and --tags only narrow the rules, never widen them.

Exit codes: 0 everything in sync, 1 some copies failed (listed), 2 usage or
configuration error.`

func newSyncCmd() *cobra.Command {
	o := syncOptions{}
	c := &cobra.Command{
		Use:   "sync --rules FILE",
		Short: "Copy whatever the destinations lack, planned by diffing source and destination listings",
		Long:  syncLong,
		Example: `  ecr-replicator sync --rules rules.yaml --dry-run
  ecr-replicator sync --rules rules.yaml --repositories 'team-a/*' --tags 'v*' --concurrency 16
  ecr-replicator sync --rules rules.yaml --since 2024-01-01T00:00:00Z --output json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runSync(c.Context(), o, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	addSyncFlags(c, &o)
	c.Flags().BoolVar(&o.dryRun, "dry-run", false, "print the plan; copy nothing (same as 'plan')")
	return c
}

func newPlanCmd() *cobra.Command {
	o := syncOptions{dryRun: true}
	c := &cobra.Command{
		Use:   "plan --rules FILE",
		Short: "Show what sync would copy (sync --dry-run)",
		Long:  strings.Replace(syncLong, "Run the backfill engine locally", "Plan, without copying anything,", 1),
		Example: `  ecr-replicator plan --rules rules.yaml
  ecr-replicator plan --rules rules.yaml --repositories 'team-a/**' --output json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runSync(c.Context(), o, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	addSyncFlags(c, &o)
	return c
}

func addSyncFlags(c *cobra.Command, o *syncOptions) {
	f := c.Flags()
	f.StringVar(&o.rulesFile, "rules", "", "rules document (YAML or JSON) (required)")
	f.IntVar(&o.concurrency, "concurrency", 8, "images copied in parallel")
	f.IntVar(&o.jobs, "jobs", 8, "blobs transferred in parallel")
	f.StringSliceVar(&o.repositories, "repositories", nil, "only repositories matching these globs (comma-separated or repeated)")
	f.StringSliceVar(&o.tags, "tags", nil, "only tags matching these globs")
	f.StringVar(&o.since, "since", "", "only images pushed at or after this RFC 3339 time")
	f.StringVar(&o.profile, "profile", "", "AWS profile for the source account (default: the standard credential chain)")
	f.StringVar(&o.region, "region", "", "source region (default: AWS_REGION or the profile's)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
}

func runSync(ctx context.Context, o syncOptions, stdout, stderr io.Writer) error {
	if o.rulesFile == "" {
		return usagef("--rules FILE is required\nRun 'ecr-replicator sync --help' for usage.")
	}
	if o.output != "text" && o.output != "json" {
		return usagef("--output must be text or json, not %q", o.output)
	}
	data, err := os.ReadFile(o.rulesFile)
	if err != nil {
		return usagef("--rules: %v", err)
	}
	doc, err := rules.Parse(data)
	if err != nil {
		return usagef("%s: %v", o.rulesFile, err)
	}
	req := backfill.Request{Repositories: o.repositories, Tags: o.tags, DryRun: true, Mode: backfill.ModeInline}
	if o.since != "" {
		if req.Since, err = time.Parse(time.RFC3339, o.since); err != nil {
			return usagef("--since %q is not an RFC 3339 time (2024-01-01T00:00:00Z)", o.since)
		}
	}
	if _, err := doc.Narrow(o.repositories, o.tags); err != nil {
		return usagef("%v", err)
	}
	var opts []func(*config.LoadOptions) error
	if o.profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(o.profile))
	}
	if o.region != "" {
		opts = append(opts, config.WithRegion(o.region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return usagef("AWS configuration: %v", err)
	}
	if cfg.Region == "" {
		return usagef("no source region: set AWS_REGION or pass --region")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	resolver := ecraccess.NewResolver(cfg, ecraccess.WithSessionName("ecr-replicator-cli"), ecraccess.WithLogger(log))
	var prog *progress
	b := &backfill.Backfill{
		Rules: doc, Resolver: resolver, SourceRegion: cfg.Region,
		Concurrency: o.concurrency, Log: log,
		NewReplicator: func() backfill.Replicator {
			var mopts []mirror.Option
			if doc.SourceRoleARN() != "" {
				mopts = append(mopts, mirror.WithSourceRole(doc.SourceRoleARN()))
			}
			return progressReplicator{mirror.New(resolver, replication.New(replication.WithJobs(o.jobs)), mopts...), &prog}
		},
	}
	plan, err := b.Run(ctx, req)
	if err != nil {
		return err
	}
	if o.dryRun {
		return reportPlan(stdout, o.output, plan)
	}
	resp := plan
	if plan.Drift == 0 && plan.Failed == 0 {
		// In sync: the plan's list calls were all it took; report it as the sync it was.
		in := *plan
		in.Mode, in.Plan, in.WorkItems = backfill.ModeInline, nil, nil
		resp = &in
	} else {
		prog = newProgress(stderr, plan.Drift, o.output == "json")
		req.DryRun = false
		resp, err = b.Run(ctx, req)
		prog.finish()
		if err != nil {
			return err
		}
	}
	if o.output == "json" {
		if err := writeJSONTo(stdout, resp); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "%d repositories, %d images: %d in sync, %d copied, %d failed; %s copied in %s\n",
			resp.RepositoriesScanned, resp.ImagesSeen, resp.InSync, resp.Copied, resp.Failed, humanBytes(resp.BytesCopied), time.Duration(resp.DurationMs)*time.Millisecond)
		for _, f := range resp.Failures {
			fmt.Fprintf(stdout, "failed  %s %s:%s@%s: %s\n", f.Destination, f.Repository, f.Tag, shortDigest(f.Digest), f.Reason)
		}
	}
	if resp.Failed > 0 {
		return failedError{resp.Failed}
	}
	return nil
}

// progressReplicator reports each copy to the progress display.
type progressReplicator struct {
	m    *mirror.Mirror
	prog **progress
}

func (p progressReplicator) Replicate(ctx context.Context, src mirror.Source, targets []rules.Target) []mirror.Result {
	results := p.m.Replicate(ctx, src, targets)
	if *p.prog != nil {
		for _, r := range results {
			(*p.prog).done(imageResult{Destination: r.Destination(), Tag: r.Tag, Digest: r.Digest, Outcome: string(r.Outcome), BytesCopied: r.BytesCopied})
		}
	}
	return results
}

func reportPlan(w io.Writer, format string, plan *backfill.Response) error {
	if format == "json" {
		return writeJSONTo(w, plan)
	}
	fmt.Fprintf(w, "%-40s %-50s %8s %8s %8s\n", "REPOSITORY", "DESTINATION", "IN SYNC", "TO COPY", "CREATE")
	for _, p := range plan.Plan {
		create := ""
		if p.CreateRepository {
			create = "yes"
		}
		fmt.Fprintf(w, "%-40s %-50s %8d %8d %8s\n", p.Repository, p.Destination, p.InSync, p.Work, create)
	}
	fmt.Fprintf(w, "%d repositories, %d images: %d in sync, %d to copy (about %.0fs at ECR's default PutImage quota)\n",
		plan.RepositoriesScanned, plan.ImagesSeen, plan.InSync, plan.Drift, plan.EstimatedSecondsAtQuota)
	return nil
}
