package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/replication"
)

// side is how one end of a copy is reached.
type side struct {
	profile    string
	roleARN    string
	externalID string
}

type copyOptions struct {
	src, dst   side
	allTags    bool
	referrers  bool
	createRepo bool
	jobs       int
	parallel   int
	output     string
}

func newCopyCmd() *cobra.Command {
	o := copyOptions{}
	c := &cobra.Command{
		Use:   "copy SRC DST",
		Short: "Copy an image (or every tag of a repository) registry-to-registry, by digest",
		Long: `Copy SRC to DST registry-to-registry: the destination gets the same digest, multi-platform
indexes with every platform, and (by default) signatures and other referrers. Nothing already
in the destination is uploaded again; nothing goes through a Docker daemon or local disk.

SRC is an image reference (a tag or @digest; with --all-tags, a repository). DST is a
repository, or a reference with the same tag. ECR registries
(ACCOUNT.dkr.ecr.REGION.amazonaws.com, and China, FIPS and dual-stack hosts) are reached
through the AWS SDK: credentials from the environment or --source-profile/--dest-profile,
the region from the host, and --dest-role-arn/--external-id to act in another account.
Missing ECR destination repositories are created with the source's settings. Other
registries use your Docker credentials (~/.docker/config.json and credential helpers).

Exit codes: 0 copied or already present, 1 some images failed (listed), 2 usage error.`,
		Example: `  # one tag, same account, another region
  ecr-replicator copy 111111111111.dkr.ecr.us-east-1.amazonaws.com/team-a/app:v1.2.0 \
                      111111111111.dkr.ecr.eu-west-1.amazonaws.com/team-a/app

  # every tag into another account, through its replication role
  ecr-replicator copy --all-tags 111111111111.dkr.ecr.us-east-1.amazonaws.com/team-a/app \
                      222222222222.dkr.ecr.us-east-1.amazonaws.com/mirror/team-a/app \
                      --dest-role-arn arn:aws:iam::222222222222:role/ecr-replicator-destination \
                      --external-id my-external-id --output json`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("copy takes exactly two arguments, SRC and DST (got %d)\nRun 'ecr-replicator copy --help' for usage.", len(args))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			if o.output != "text" && o.output != "json" {
				return usagef("--output must be text or json, not %q", o.output)
			}
			return runCopy(c.Context(), o, args[0], args[1], c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	f := c.Flags()
	f.StringVar(&o.src.profile, "source-profile", "", "AWS profile for an ECR source (default: the standard credential chain)")
	f.StringVar(&o.src.roleARN, "source-role-arn", "", "role to assume to read an ECR source")
	f.StringVar(&o.dst.profile, "dest-profile", "", "AWS profile for an ECR destination")
	f.StringVar(&o.dst.roleARN, "dest-role-arn", "", "role to assume in the destination account")
	f.StringVar(&o.dst.externalID, "external-id", "", "external ID for --dest-role-arn")
	f.BoolVar(&o.allTags, "all-tags", false, "copy every tag of the SRC repository")
	f.BoolVar(&o.referrers, "referrers", true, "also copy OCI referrers and cosign sha256-*.sig/.att/.sbom tags")
	f.BoolVar(&o.createRepo, "create-repository", true, "create a missing ECR destination repository, mirroring the source's settings")
	f.IntVar(&o.jobs, "jobs", 8, "blobs transferred in parallel")
	f.IntVar(&o.parallel, "concurrency", 8, "images copied in parallel (with --all-tags)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return c
}

// endpointFor reaches a repository: through ECR (SDK credentials, role, token) when the
// host is an ECR registry, through the Docker keychain otherwise.
type endpointFor struct {
	repo     name.Repository
	endpoint replication.Endpoint
	ecr      *ecraccess.Registry
}

func resolveSide(ctx context.Context, repo name.Repository, s side, actor string, log *slog.Logger) (*endpointFor, error) {
	account, region, isECR := ecraccess.ParseRegistryHost(repo.RegistryStr())
	if !isECR {
		if s.roleARN != "" || s.profile != "" {
			return nil, usagef("%s is not an ECR registry: --*-profile and --*-role-arn only apply to ECR", repo.RegistryStr())
		}
		auth, err := authn.DefaultKeychain.Resolve(repo)
		if err != nil {
			return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
		}
		return &endpointFor{repo: repo, endpoint: replication.Endpoint{Repository: repo, Auth: auth}}, nil
	}
	var opts []func(*config.LoadOptions) error
	if s.profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(s.profile))
	}
	opts = append(opts, config.WithRegion(region))
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, usagef("AWS configuration for %s: %v", repo.RegistryStr(), err)
	}
	resolver := ecraccess.NewResolver(cfg, ecraccess.WithSessionName("ecr-replicator-"+actor), ecraccess.WithLogger(log))
	reg, err := resolver.Registry(ctx, ecraccess.Access{AccountID: account, Region: region, RoleARN: s.roleARN, ExternalID: s.externalID})
	if err != nil {
		return nil, err
	}
	// The host to talk to comes from ECR's answers, not from the name the user typed.
	host, err := reg.Host(ctx, repo.RepositoryStr())
	if err != nil {
		return nil, err
	}
	real, err := name.NewRepository(host + "/" + repo.RepositoryStr())
	if err != nil {
		return nil, err
	}
	return &endpointFor{repo: repo, ecr: reg, endpoint: replication.Endpoint{Repository: real, Auth: reg.Authenticator(), Transport: reg.Transport(nil)}}, nil
}

// imageResult is one line of copy/sync output.
type imageResult struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Tag         string `json:"tag,omitempty"`
	Digest      string `json:"digest"`
	Outcome     string `json:"outcome"`
	Reason      string `json:"reason,omitempty"`
	Code        string `json:"code,omitempty"`
	Error       string `json:"error,omitempty"`
	BytesCopied int64  `json:"bytesCopied"`
	BlobsCopied int    `json:"blobsCopied"`
	DurationMS  int64  `json:"durationMs"`
}

func (r imageResult) failed() bool {
	return r.Outcome == string(replication.Failed) || r.Outcome == string(replication.Conflict)
}

func runCopy(ctx context.Context, o copyOptions, srcArg, dstArg string, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srcRef, err := name.ParseReference(srcArg)
	if err != nil {
		return usagef("SRC %q: %v", srcArg, err)
	}
	dstRepo, dstTag, err := parseDestination(dstArg)
	if err != nil {
		return err
	}
	srcTag, isTag := srcRef.(name.Tag)
	if dstTag != "" && (!isTag || dstTag != srcTag.TagStr()) {
		return usagef("DST tag %q must be the SRC tag or omitted: copies keep tags (digests never change)", dstTag)
	}
	if o.allTags && strings.ContainsAny(srcArg[len(srcRef.Context().String()):], ":@") {
		return usagef("with --all-tags, SRC is a repository, not %q", srcArg)
	}
	src, err := resolveSide(ctx, srcRef.Context(), o.src, "cli", log)
	if err != nil {
		return err
	}
	dst, err := resolveSide(ctx, dstRepo, o.dst, "cli", log)
	if err != nil {
		return err
	}
	if dst.ecr != nil {
		settings := ecraccess.RepositorySettings{}
		if src.ecr != nil && o.createRepo {
			if settings, err = src.ecr.ReadSettings(ctx, srcRef.Context().RepositoryStr(), false, false); err != nil {
				return fmt.Errorf("reading source repository settings: %w", err)
			}
			settings.KMSKey = "" // a source key belongs to its own account and region
		}
		if _, err := dst.ecr.EnsureRepository(ctx, dstRepo.RepositoryStr(), settings, o.createRepo); err != nil {
			return err
		}
	}

	type item struct{ tag, digest string }
	var items []item
	lookup := []remote.Option{remote.WithContext(ctx), remote.WithAuth(src.endpoint.Auth)}
	if src.endpoint.Transport != nil {
		lookup = append(lookup, remote.WithTransport(src.endpoint.Transport))
	}
	switch {
	case o.allTags:
		tags, err := remote.List(src.endpoint.Repository, lookup...)
		if err != nil {
			return fmt.Errorf("listing tags of %s: %w", srcRef.Context(), err)
		}
		for _, t := range tags {
			items = append(items, item{tag: t})
		}
	case isTag:
		items = append(items, item{tag: srcTag.TagStr()})
	default:
		items = append(items, item{digest: srcRef.Identifier()})
	}

	copyOpts := []replication.Option{replication.WithJobs(o.jobs)}
	if dst.ecr == nil {
		// Manifest writes are paced for ECR's PutImage quota; other registries publish
		// none, and a 429 is still backed off.
		copyOpts = append(copyOpts, replication.WithManifestRate(math.Inf(1), 1))
	}
	copier := replication.New(copyOpts...)
	prog := newProgress(stderr, len(items), o.output == "json")
	results := make([]imageResult, len(items))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(o.parallel, 1))
	var mu sync.Mutex
	for i, it := range items {
		g.Go(func() error {
			res := imageResult{Source: srcRef.Context().String(), Destination: dstRepo.String(), Tag: it.tag, Digest: it.digest}
			start := time.Now()
			// A tag is resolved by the engine: one GET of the manifest by tag.
			r := copier.Copy(gctx, replication.Request{Source: src.endpoint, Digest: it.digest, Tag: it.tag, Destination: dst.endpoint, Referrers: o.referrers})
			res.Digest = r.Digest
			res.Outcome, res.Reason, res.BytesCopied, res.BlobsCopied = string(r.Outcome), r.Reason, r.BytesCopied, r.BlobsCopied
			res.DurationMS = time.Since(start).Milliseconds()
			if r.Err != nil {
				res.Error = r.Err.Error()
				var re *replication.Error
				if errors.As(r.Err, &re) {
					res.Code = re.Code
				}
			}
			mu.Lock()
			results[i] = res
			mu.Unlock()
			prog.done(res)
			return nil
		})
	}
	g.Wait()
	prog.finish()
	return report(stdout, o.output, results)
}

// parseDestination accepts a repository or a tagged reference.
func parseDestination(arg string) (name.Repository, string, error) {
	if strings.Contains(arg, "@") {
		return name.Repository{}, "", usagef("DST %q: a destination cannot name a digest (the digest is the source's)", arg)
	}
	if ref, err := name.NewTag(arg); err == nil && strings.HasSuffix(arg, ":"+ref.TagStr()) {
		return ref.Context(), ref.TagStr(), nil
	}
	repo, err := name.NewRepository(arg)
	if err != nil {
		return name.Repository{}, "", usagef("DST %q: %v", arg, err)
	}
	return repo, "", nil
}

// report prints the results and returns failedError when any failed.
func report(w io.Writer, format string, results []imageResult) error {
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
		out := map[string]any{"results": results, "outcomes": counts, "failed": failed, "bytesCopied": bytes}
		if err := writeJSONTo(w, out); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			line := fmt.Sprintf("%-15s %s:%s@%s", r.Outcome, r.Destination, r.Tag, shortDigest(r.Digest))
			if r.Tag == "" {
				line = fmt.Sprintf("%-15s %s@%s", r.Outcome, r.Destination, shortDigest(r.Digest))
			}
			if r.Reason != "" {
				line += " (" + r.Reason + ")"
			}
			if r.Error != "" {
				line += ": " + r.Error
			}
			fmt.Fprintln(w, line)
		}
		fmt.Fprintf(w, "%d images: %s; %s copied\n", len(results), summarize(counts), humanBytes(bytes))
	}
	if failed > 0 {
		return failedError{failed}
	}
	return nil
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}
