// Package sandboxtest starts the two-account sandbox for a test and gives it logged-in
// clients: the environment the SDK reads, an SDK config per account user, and registry
// access to push and inspect images.
package sandboxtest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// World is a running sandbox with admin access to both accounts' registries.
type World struct {
	SB         *sandbox.Sandbox
	Ctx        context.Context
	ExternalID string
	Env        map[string]string // what `ecr-replicator sandbox` prints
	Source     Side
	Dest       Side
}

// Side is one account's registry, reached as that account's admin.
type Side struct {
	Account string
	Config  aws.Config
	Host    string
	Auth    authn.Authenticator
}

// ExternalID is the external ID the destination role requires.
const ExternalID = "sandboxtest-external-id"

// Start starts a sandbox for t, sets the SDK environment (endpoints, the source
// replicator user's keys, region) with t.Setenv, and logs in to both registries.
func Start(t testing.TB, cfg ...func(*sandbox.Config)) *World {
	t.Helper()
	const extID = ExternalID
	c := sandbox.TwoAccounts(extID)
	for _, f := range cfg {
		f(&c)
	}
	sb, err := sandbox.New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	env, err := sandbox.ClientEnv(sb, sandbox.DefaultRegion, extID)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	// Bounded by the test binary's -timeout (none for a soak run with -timeout 0).
	ctx, cancel := context.WithCancel(context.Background())
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, set := d.Deadline(); set {
			ctx, cancel = context.WithDeadline(context.Background(), deadline)
		}
	}
	t.Cleanup(cancel)
	w := &World{SB: sb, Ctx: ctx, ExternalID: extID, Env: env}
	w.Source = w.side(t, sandbox.SourceAccount)
	w.Dest = w.side(t, sandbox.DestinationAccount)
	return w
}

func (w *World) side(t testing.TB, account string) Side {
	t.Helper()
	cfg := w.Config(t, account, sandbox.AdminUser)
	host, auth := Login(t, w.Ctx, cfg)
	return Side{Account: account, Config: cfg, Host: host, Auth: auth}
}

// Config returns an SDK config acting as an account's user.
func (w *World) Config(t testing.TB, account, user string) aws.Config {
	t.Helper()
	key, secret, err := w.SB.Credentials(account, user)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadDefaultConfig(w.Ctx, config.WithRegion(sandbox.DefaultRegion),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(key, secret, "")))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// DestinationRoleARN is the role the replicator assumes in the destination account.
func (w *World) DestinationRoleARN() string {
	return sandbox.RoleARN(sandbox.DestinationAccount, sandbox.DestinationRole)
}

// Login is what every ECR client does — GetAuthorizationToken, then Basic auth to
// proxyEndpoint — done the product's way (internal/ecraccess). It returns the registry
// host and the credentials.
func Login(t testing.TB, ctx context.Context, cfg aws.Config) (string, *authn.Basic) {
	t.Helper()
	reg, err := ecraccess.NewResolver(cfg).Client(ctx, ecraccess.Access{Region: cfg.Region})
	if err != nil {
		t.Fatal(err)
	}
	host, err := reg.Host(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	ac, err := authn.Authorization(ctx, reg.Authenticator())
	if err != nil {
		t.Fatal(err)
	}
	return host, &authn.Basic{Username: ac.Username, Password: ac.Password}
}

// Owned are the resource tags that make a destination repository the replicator's (as
// if it had created it, or an administrator had adopted it) when the replicator runs in
// the source account: ecr-replicator:owner=<source account> (docs/SECURITY.md).
func Owned() []ecrtypes.Tag {
	return []ecrtypes.Tag{{Key: aws.String(ecraccess.OwnerTag), Value: aws.String(sandbox.SourceAccount)}}
}

// CreateRepository creates a repository on this side.
func (s Side) CreateRepository(t testing.TB, ctx context.Context, in *ecr.CreateRepositoryInput) {
	t.Helper()
	if _, err := ecr.NewFromConfig(s.Config).CreateRepository(ctx, in); err != nil {
		t.Fatal(err)
	}
}

// Ref returns a reference on this side's registry; tagOrDigest may be either.
func (s Side) Ref(t testing.TB, repo, tagOrDigest string) name.Reference {
	t.Helper()
	sep := ":"
	if strings.HasPrefix(tagOrDigest, "sha256:") {
		sep = "@"
	}
	r, err := name.ParseReference(s.Host + "/" + repo + sep + tagOrDigest)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// EnsureRepository creates a repository on this side unless it exists.
func (s Side) EnsureRepository(t testing.TB, ctx context.Context, repo string) {
	t.Helper()
	api := ecr.NewFromConfig(s.Config)
	if _, err := api.DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{repo}}); err == nil {
		return
	}
	s.CreateRepository(t, ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
}

// Push writes an image (v1.Image) or index (v1.ImageIndex) under a tag or its digest.
func (s Side) Push(t testing.TB, repo, tagOrDigest string, img remote.Taggable) v1.Hash {
	t.Helper()
	var err error
	var d v1.Hash
	switch x := img.(type) {
	case v1.ImageIndex:
		d, _ = x.Digest()
		if tagOrDigest == "" {
			tagOrDigest = d.String()
		}
		err = remote.WriteIndex(s.Ref(t, repo, tagOrDigest), x, remote.WithAuth(s.Auth))
	case v1.Image:
		d, _ = x.Digest()
		if tagOrDigest == "" {
			tagOrDigest = d.String()
		}
		err = remote.Write(s.Ref(t, repo, tagOrDigest), x, remote.WithAuth(s.Auth))
	default:
		t.Fatalf("cannot push %T", img)
	}
	if err != nil {
		t.Fatalf("push %s:%s: %v", repo, tagOrDigest, err)
	}
	return d
}

// Digest is what this side answers for a tag or digest, or "" when it has none.
func (s Side) Digest(t testing.TB, repo, tagOrDigest string) string {
	t.Helper()
	d, err := remote.Head(s.Ref(t, repo, tagOrDigest), remote.WithAuth(s.Auth))
	if err != nil {
		return ""
	}
	return d.Digest.String()
}

// Tags lists this side's tags of a repository with their digests.
func (s Side) Tags(t testing.TB, ctx context.Context, repo string) map[string]string {
	t.Helper()
	out := map[string]string{}
	p := ecr.NewListImagesPaginator(ecr.NewFromConfig(s.Config), &ecr.ListImagesInput{RepositoryName: aws.String(repo)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		var nf *ecrtypes.RepositoryNotFoundException
		if errors.As(err, &nf) {
			return out // a repository that does not exist has no tags
		}
		if err != nil {
			t.Fatalf("listing %s: %v", repo, err)
		}
		for _, id := range page.ImageIds {
			if id.ImageTag != nil {
				out[aws.ToString(id.ImageTag)] = aws.ToString(id.ImageDigest)
			}
		}
	}
	return out
}

// LogBuffer is a goroutine-safe buffer, for capturing what handlers log.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
