// Package demo runs the whole product on one machine, with no AWS account and no Docker:
// a sandbox with a source and a destination account, images pushed into the source, the
// replicate function's real bootstrap under the Lambda Runtime Interface Emulator fed
// with the push events, the backfill function for what was pushed before, and a
// before/after table of digests per tag.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrevent"
	"github.com/ecr-replicator/ecr-replicator/internal/lambdarun"
	"github.com/ecr-replicator/ecr-replicator/internal/sandbox"
)

// Binaries are what the demo runs: the two functions' bootstraps (built for this host)
// and the Runtime Interface Emulator.
type Binaries struct {
	Replicate, Backfill, RIE string
}

// BinariesIn names the binaries `make demo` builds into dir.
func BinariesIn(dir string) Binaries {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs // the emulator runs in another working directory
	}
	return Binaries{
		Replicate: filepath.Join(dir, "replicate-bootstrap"),
		Backfill:  filepath.Join(dir, "backfill-bootstrap"),
		RIE:       filepath.Join(dir, "aws-lambda-rie"),
	}
}

// Check reports the first missing binary.
func (b Binaries) Check() error {
	for _, p := range []string{b.Replicate, b.Backfill, b.RIE} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s is missing (run `make demo`, which builds it): %w", p, err)
		}
	}
	return nil
}

// Row is one tag of the before/after table.
type Row struct {
	Repository, Tag, Source, Before, After, Via string
}

// OK says the destination ended with the source's digest.
func (r Row) OK() bool { return r.After == r.Source }

// Run runs the demo, printing what happens to w, and returns the final table.
func Run(ctx context.Context, bins Binaries, w io.Writer) ([]Row, error) {
	if err := bins.Check(); err != nil {
		return nil, err
	}
	start := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(w, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	const extID = "demo-external-id"
	sb, err := sandbox.New(sandbox.TwoAccounts(extID))
	if err != nil {
		return nil, err
	}
	defer sb.Close()
	env, err := sandbox.ClientEnv(sb, sandbox.DefaultRegion, extID)
	if err != nil {
		return nil, err
	}
	for k, v := range env {
		os.Setenv(k, v)
	}
	step("sandbox up: source account %s, destination account %s (role %s), AWS APIs at %s",
		sandbox.SourceAccount, sandbox.DestinationAccount, sandbox.DestinationRole, sb.APIURL())

	src, err := newSide(ctx, sb, sandbox.SourceAccount)
	if err != nil {
		return nil, err
	}
	dst, err := newSide(ctx, sb, sandbox.DestinationAccount)
	if err != nil {
		return nil, err
	}

	// Images that exist before replication is configured: only a backfill copies them.
	for _, repo := range []string{"team-a/app", "team-a/worker"} {
		if _, err := src.api.CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)}); err != nil {
			return nil, err
		}
	}
	old := map[string]map[string]v1.Hash{"team-a/app": {}, "team-a/worker": {}}
	for _, p := range []struct{ repo, tag string }{{"team-a/app", "v0.9.0"}, {"team-a/worker", "v1"}, {"team-a/worker", "v2"}} {
		img, _ := random.Image(64<<10, 3)
		d, err := src.push(p.repo, p.tag, img)
		if err != nil {
			return nil, err
		}
		old[p.repo][p.tag] = d
	}
	step("pushed 3 older images into the source (team-a/app:v0.9.0, team-a/worker:v1, v2)")

	rules := fmt.Sprintf(`{"rules":[{"name":"demo","repositories":["team-a/**"],"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}]}]}`,
		sandbox.DestinationAccount, sandbox.DefaultRegion, sandbox.RoleARN(sandbox.DestinationAccount, sandbox.DestinationRole), extID)
	fnEnv := map[string]string{"REPLICATION_RULES": rules, "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull}
	for k, v := range env {
		fnEnv[k] = v
	}
	dir, err := os.MkdirTemp("", "ecr-replicator-demo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	os.MkdirAll(filepath.Join(dir, "replicate"), 0o755)
	os.MkdirAll(filepath.Join(dir, "backfill"), 0o755)
	replicate, err := lambdarun.Start(bins.RIE, bins.Replicate, filepath.Join(dir, "replicate"), "ecr-replicator-replicate", fnEnv)
	if err != nil {
		return nil, err
	}
	defer replicate.Stop()
	backfill, err := lambdarun.Start(bins.RIE, bins.Backfill, filepath.Join(dir, "backfill"), "ecr-replicator-backfill", fnEnv)
	if err != nil {
		return nil, err
	}
	defer backfill.Stop()
	step("replicate and backfill functions running under the Lambda Runtime Interface Emulator")

	before, err := dst.snapshot(ctx, []string{"mirror/team-a/app", "mirror/team-a/worker"})
	if err != nil {
		return nil, err
	}

	// A multi-platform push, as buildx makes it: child manifests by digest, then the
	// tagged index; ECR sends one push event per manifest.
	idx, platforms, err := multiPlatformIndex()
	if err != nil {
		return nil, err
	}
	var events []string
	children, _ := idx.IndexManifest()
	for _, c := range children.Manifests {
		img, _ := idx.Image(c.Digest)
		if _, err := src.push("team-a/app", "", img); err != nil {
			return nil, err
		}
		events = append(events, pushEvent("team-a/app", c.Digest.String(), "", string(c.MediaType)))
	}
	idxDigest, err := src.push("team-a/app", "v1.0.0", idx)
	if err != nil {
		return nil, err
	}
	if _, err := src.push("team-a/app", "latest", idx); err != nil {
		return nil, err
	}
	events = append(events, pushEvent("team-a/app", idxDigest.String(), "v1.0.0", string(types.OCIImageIndex)),
		pushEvent("team-a/app", idxDigest.String(), "latest", string(types.OCIImageIndex)))
	step("pushed team-a/app:v1.0.0 and :latest, a %d-platform index (%s); %d push events", len(platforms), strings.Join(platforms, ", "), len(events))

	out, err := replicate.Invoke(ctx, sqsBatch(events))
	if err != nil {
		return nil, fmt.Errorf("replicate function: %w", err)
	}
	step("replicate function (SQS batch of %d) answered %s", len(events), compact(out))

	out, err = backfill.Invoke(ctx, []byte(`{"mode":"inline"}`))
	if err != nil {
		return nil, fmt.Errorf("backfill function: %w", err)
	}
	step("backfill (inline) answered %s", summarizeBackfill(out, false))
	out, err = backfill.Invoke(ctx, []byte(`{"dryRun":true}`))
	if err != nil {
		return nil, fmt.Errorf("backfill function: %w", err)
	}
	step("backfill again (dry run): %s", summarizeBackfill(out, true))

	after, err := dst.snapshot(ctx, []string{"mirror/team-a/app", "mirror/team-a/worker"})
	if err != nil {
		return nil, err
	}
	srcTags, err := src.snapshot(ctx, []string{"team-a/app", "team-a/worker"})
	if err != nil {
		return nil, err
	}
	var rows []Row
	for key, d := range srcTags {
		repo, tag, _ := strings.Cut(key, ":")
		via := "replicate (push events)"
		if _, ok := old[repo][tag]; ok {
			via = "backfill"
		}
		rows = append(rows, Row{Repository: repo, Tag: tag, Source: d, Before: before["mirror/"+key], After: after["mirror/"+key], Via: via})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Repository+":"+rows[i].Tag < rows[j].Repository+":"+rows[j].Tag })
	fmt.Fprintln(w)
	PrintTable(w, rows)
	step("done; stopping the functions and the sandbox")
	return rows, nil
}

// PrintTable prints the before/after table.
func PrintTable(w io.Writer, rows []Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE IMAGE\tSOURCE DIGEST\tDESTINATION BEFORE\tDESTINATION AFTER\tCOPIED BY\tMATCH")
	short := func(d string) string {
		if d == "" {
			return "-"
		}
		return d[:19]
	}
	for _, r := range rows {
		ok := "yes"
		if !r.OK() {
			ok = "NO"
		}
		fmt.Fprintf(tw, "%s:%s\t%s\t%s\t%s\t%s\t%s\n", r.Repository, r.Tag, short(r.Source), short(r.Before), short(r.After), r.Via, ok)
	}
	tw.Flush()
}

// side is one account's registry as its admin sees it.
type side struct {
	api  *ecr.Client
	host string
	auth authn.Authenticator
}

func newSide(ctx context.Context, sb *sandbox.Sandbox, account string) (*side, error) {
	key, secret, err := sb.Credentials(account, sandbox.AdminUser)
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(sandbox.DefaultRegion),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(key, secret, "")))
	if err != nil {
		return nil, err
	}
	// Log in the way the replicator does: the host from proxyEndpoint, a cached token.
	reg, err := ecraccess.NewResolver(cfg).Registry(ctx, ecraccess.Access{Region: cfg.Region})
	if err != nil {
		return nil, err
	}
	host, err := reg.Host(ctx, "")
	if err != nil {
		return nil, err
	}
	return &side{api: reg.API(), host: host, auth: reg.Authenticator()}, nil
}

func (s *side) push(repo, tag string, t remote.Taggable) (v1.Hash, error) {
	var d v1.Hash
	switch x := t.(type) {
	case v1.ImageIndex:
		d, _ = x.Digest()
	case v1.Image:
		d, _ = x.Digest()
	}
	ref := s.host + "/" + repo + "@" + d.String()
	if tag != "" {
		ref = s.host + "/" + repo + ":" + tag
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return d, err
	}
	return d, remote.Push(r, t, remote.WithAuth(s.auth))
}

// snapshot maps "repo:tag" to digest for the given repositories (missing ones: none).
func (s *side) snapshot(ctx context.Context, repos []string) (map[string]string, error) {
	out := map[string]string{}
	for _, repo := range repos {
		p := ecr.NewListImagesPaginator(s.api, &ecr.ListImagesInput{RepositoryName: aws.String(repo)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				if strings.Contains(err.Error(), "RepositoryNotFoundException") {
					break
				}
				return nil, err
			}
			for _, id := range page.ImageIds {
				if id.ImageTag != nil {
					out[repo+":"+aws.ToString(id.ImageTag)] = aws.ToString(id.ImageDigest)
				}
			}
		}
	}
	return out, nil
}

// multiPlatformIndex builds an OCI index of four platform images.
func multiPlatformIndex() (v1.ImageIndex, []string, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var names []string
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}, {OS: "linux", Architecture: "arm", Variant: "v7"}, {OS: "linux", Architecture: "s390x"}} {
		img, err := random.Image(32<<10, 2)
		if err != nil {
			return nil, nil, err
		}
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		pc := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &pc}})
		names = append(names, strings.TrimSuffix(p.OS+"/"+p.Architecture+"/"+p.Variant, "/"))
	}
	return idx, names, nil
}

// pushEvent is an "ECR Image Action" PUSH event as ECR sends it to EventBridge.
func pushEvent(repo, digest, tag, mediaType string) string {
	return string(ecrevent.ImageAction{
		EventID: fmt.Sprintf("demo-%s-%s", digest[7:19], tag), Account: sandbox.SourceAccount, Region: sandbox.DefaultRegion,
		Time: time.Now(), Repository: repo, Digest: digest, Tag: tag, ActionType: ecrevent.ActionPush, ManifestMediaType: mediaType,
	}.Event())
}

// sqsBatch wraps event bodies as the SQS event Lambda's event source mapping delivers.
func sqsBatch(bodies []string) []byte {
	var recs []map[string]any
	for i, b := range bodies {
		recs = append(recs, map[string]any{
			"messageId": fmt.Sprintf("msg-%d", i), "receiptHandle": fmt.Sprintf("rh-%d", i), "body": b,
			"attributes": map[string]string{"ApproximateReceiveCount": "1"}, "messageAttributes": map[string]any{},
			"eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:" + sandbox.SourceAccount + ":ecr-replicator-queue", "awsRegion": sandbox.DefaultRegion,
		})
	}
	b, _ := json.Marshal(map[string]any{"Records": recs})
	return b
}

func compact(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// summarizeBackfill says what a backfill answered, counting what it counts: images are
// the source's digests it looked at; copies are one per tag (or untagged image) and
// destination, and they are what is in sync, drifted or copied.
func summarizeBackfill(b []byte, dryRun bool) string {
	var r struct {
		RepositoriesScanned, ImagesSeen, InSync, Drift, Copied, Failed, Unplanned int
	}
	if json.Unmarshal(b, &r) != nil {
		return compact(b)
	}
	s := fmt.Sprintf("%d repositories, %d images; %d copies (one per tag, or untagged image, and destination): ",
		r.RepositoriesScanned, r.ImagesSeen, r.InSync+r.Drift+r.Unplanned)
	if dryRun {
		return s + fmt.Sprintf("%d in sync, %d to copy", r.InSync, r.Drift)
	}
	return s + fmt.Sprintf("%d already in sync, %d copied, %d failed", r.InSync, r.Copied, r.Failed)
}
