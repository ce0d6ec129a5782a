// Package ecraccess turns AWS identities into access to ECR registries: the role to
// assume in a destination (or source) account through STS, the registry host taken from
// ECR's own answers, registry credentials from GetAuthorizationToken (cached until
// shortly before they expire, refreshed once when the registry refuses them), and the
// repository calls the replicator needs (create with mirrored settings, read settings).
//
// A Resolver lives as long as the process — a warm Lambda keeps it across invocations —
// so assumed-role credentials and registry tokens are reused until they near expiry.
package ecraccess

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// Access names a registry and the identity to reach it with.
type Access struct {
	AccountID string // the registry's account
	Region    string
	// RoleARN, when set, is assumed (with ExternalID) to act in the account; empty means
	// the resolver's own credentials (same account, or a cross-account repository policy).
	RoleARN    string
	ExternalID string
	// ListOnly asks STS for a session that may only list (DescribeImages,
	// DescribeRepositories): the role's permissions narrowed by a session policy, for a
	// caller that must never write with the role (the reconcile).
	ListOnly bool
	// Write asks STS for a write session: one carrying the session tag AccessTag=AccessWrite,
	// which a destination role requires of every write (infra/destination-role.yaml).
	// Passing it needs sts:TagSession in the caller's policy and in the role's trust
	// policy (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html).
	// ListOnly wins: a list-only session is never tagged.
	Write bool
}

// SourceAccess is how the replicator reads a source registry: through the rules' source
// role (source.roleArn: a replicator in a third, central account), or as the caller's
// own identity when roleARN is empty. Every reader of the source goes through it.
func SourceAccess(reg ecrname.Registry, roleARN string) Access {
	return Access{AccountID: reg.AccountID, Region: reg.Region, RoleARN: roleARN}
}

func (a Access) key() string {
	return fmt.Sprintf("%s|%s|%s|%s|%t|%t", a.AccountID, a.Region, a.RoleARN, a.ExternalID, a.ListOnly, a.Write)
}

// session is what a role session is asked for with.
type session struct {
	roleARN, externalID string
	listOnly, write     bool
}

// listOnlyPolicy is the session policy of a ListOnly session. A session's permissions are
// what both the role's policies and this allow ("Session policies",
// https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session).
const listOnlyPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:DescribeImages","ecr:DescribeRepositories"],"Resource":"*"}]}`

// sessionDuration is DurationSeconds of assumed-role sessions: 1 hour, the most role
// chaining allows.
const sessionDuration = time.Hour

// tokenRefreshSkew is how long before its expiresAt a registry token, or an assumed-role
// session, is renewed.
const tokenRefreshSkew = 5 * time.Minute

// Resolver hands out Registries, caching them and their credentials.
type Resolver struct {
	base        aws.Config
	sessionName string
	log         *slog.Logger

	mu         sync.Mutex
	registries map[string]*Client
	roles      map[string]aws.CredentialsProvider

	callerMu   sync.Mutex // held across GetCallerIdentity: concurrent callers wait for one call
	callerAcct string
}

// Option configures a Resolver.
type Option func(*Resolver)

// WithSessionName sets the RoleSessionName prefix, e.g. "ecr-replicator-replicate"; a
// short random suffix is added so each process shows separately in CloudTrail.
func WithSessionName(prefix string) Option { return func(r *Resolver) { r.sessionName = prefix } }

// WithCallerAccount tells the Resolver the account of its own credentials, when the
// caller has already asked STS (the CLI checks the credentials first): CallerAccount
// then answers without a second sts:GetCallerIdentity round trip.
func WithCallerAccount(account string) Option { return func(r *Resolver) { r.callerAcct = account } }

// WithLogger sets the logger (default: discard; never given secrets).
func WithLogger(l *slog.Logger) Option { return func(r *Resolver) { r.log = l } }

// NewResolver returns a Resolver acting with base's credentials.
func NewResolver(base aws.Config, opts ...Option) *Resolver {
	r := &Resolver{
		base:        base,
		sessionName: "ecr-replicator",
		log:         slog.New(slog.DiscardHandler),
		registries:  map[string]*Client{},
		roles:       map[string]aws.CredentialsProvider{},
	}
	for _, o := range opts {
		o(r)
	}
	r.sessionName = sessionName(r.sessionName)
	return r
}

// sessionName appends a short unique suffix within STS's 64-character limit
// ([\w+=,.@-]{2,64}, API_AssumeRole).
func sessionName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	suffix := "-" + hex.EncodeToString(b)
	if len(prefix)+len(suffix) > 64 {
		prefix = prefix[:64-len(suffix)]
	}
	return prefix + suffix
}

// Client returns the registry a names, reached with the identity a names.
func (r *Resolver) Client(ctx context.Context, a Access) (*Client, error) {
	if a.Region == "" {
		a.Region = r.base.Region
	}
	if a.Region == "" {
		return nil, &Error{Op: "resolve registry", Code: "MissingRegion", Err: errors.New("no region given and none configured (set AWS_REGION)")}
	}
	r.mu.Lock()
	reg, ok := r.registries[a.key()]
	r.mu.Unlock()
	if ok {
		return reg, nil
	}
	// Without a role, the registry may belong to another account than the caller's: then
	// its host comes from that account's repositoryUri, not our own proxyEndpoint. (Asked
	// outside r.mu, so resolving other registries does not wait for STS.)
	foreign := false
	if a.RoleARN == "" && a.AccountID != "" {
		caller, err := r.CallerAccount(ctx)
		if err != nil {
			return nil, err
		}
		foreign = caller != a.AccountID
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if reg, ok := r.registries[a.key()]; ok {
		return reg, nil
	}
	cfg := r.base.Copy()
	cfg.Region = a.Region
	if a.RoleARN != "" {
		cfg.Credentials = r.roleCredentials(session{roleARN: a.RoleARN, externalID: a.ExternalID, listOnly: a.ListOnly, write: a.Write && !a.ListOnly})
	}
	reg = &Client{
		access:   a,
		resolver: r,
		api:      ecr.NewFromConfig(cfg),
		foreign:  foreign,
	}
	r.registries[a.key()] = reg
	return reg, nil
}

// Warm resolves a's registry and fetches its credentials (the AssumeRole, for a role)
// ahead of need, so that a caller about to list the source can have the destination's
// session ready when it gets there. Errors are left for the real call to report.
func (r *Resolver) Warm(ctx context.Context, a Access) {
	reg, err := r.Client(ctx, a)
	if err != nil || a.RoleARN == "" {
		return
	}
	if creds := reg.api.Options().Credentials; creds != nil {
		_, _ = creds.Retrieve(ctx)
	}
}

// roleCredentials returns a cached credentials provider for an assumed role. The cache
// refreshes the session before it expires (aws.CredentialsCache).
func (r *Resolver) roleCredentials(s session) aws.CredentialsProvider {
	k := fmt.Sprintf("%s|%s|%t|%t", s.roleARN, s.externalID, s.listOnly, s.write)
	if p, ok := r.roles[k]; ok {
		return p
	}
	provider := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(r.base), s.roleARN, func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = r.sessionName
		o.Duration = sessionDuration
		if s.externalID != "" {
			o.ExternalID = aws.String(s.externalID)
		}
		if s.listOnly {
			o.Policy = aws.String(listOnlyPolicy)
		}
		if s.write {
			o.Tags = []ststypes.Tag{{Key: aws.String(AccessTag), Value: aws.String(AccessWrite)}}
		}
	})
	p := aws.NewCredentialsCache(provider, func(o *aws.CredentialsCacheOptions) {
		o.ExpiryWindow = tokenRefreshSkew
	})
	r.roles[k] = p
	return p
}

// CallerAccount is the account of the resolver's own credentials (sts:GetCallerIdentity,
// asked once per Resolver).
func (r *Resolver) CallerAccount(ctx context.Context) (string, error) {
	r.callerMu.Lock()
	defer r.callerMu.Unlock()
	if r.callerAcct != "" {
		return r.callerAcct, nil
	}
	out, err := sts.NewFromConfig(r.base).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", WrapAWS("sts:GetCallerIdentity", err)
	}
	if aws.ToString(out.Account) == "" {
		return "", &Error{Op: "sts:GetCallerIdentity", Code: "NoAccount", Err: errors.New("the answer names no account")}
	}
	r.callerAcct = aws.ToString(out.Account)
	return r.callerAcct, nil
}

// Client is one ECR registry (account and region) as one identity sees it.
type Client struct {
	access   Access
	resolver *Resolver
	api      *ecr.Client
	foreign  bool // another account's registry, reached without a role

	fetchMu sync.Mutex // held across GetAuthorizationToken: one fetch at a time
	mu      sync.Mutex // guards the fields below; never held across a call
	host    string
	user    string
	secret  string
	expires time.Time

	transports sync.Map // base http.RoundTripper → *refreshTransport

	mounting blobMounting // the BLOB_MOUNTING account setting, as last asked (mounting.go)
}

// Access returns what the registry was resolved from.
func (g *Client) Access() Access { return g.access }

// API is the ECR API client acting with this registry's identity.
func (g *Client) API() *ecr.Client { return g.api }

// Host returns the registry host (host[:port]) from ECR's answers: proxyEndpoint for the
// caller's registry, a repository's repositoryUri for another account's. Never a
// hostname template, so China, GovCloud, FIPS and dual-stack endpoints work.
func (g *Client) Host(ctx context.Context, repository string) (string, error) {
	if !g.foreign {
		if _, err := g.token(ctx, ""); err != nil {
			return "", err
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.host, nil
	}
	g.mu.Lock()
	host := g.host
	g.mu.Unlock()
	if host != "" {
		return host, nil
	}
	out, err := g.api.DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{
		RegistryId:      aws.String(g.access.AccountID),
		RepositoryNames: []string{repository},
	})
	if err != nil {
		return "", WrapAWS("ecr:DescribeRepositories", err)
	}
	if len(out.Repositories) == 0 {
		return "", &Error{Op: "ecr:DescribeRepositories", Code: CodeRepositoryNotFound, Err: fmt.Errorf("repository %s not found in %s", repository, g.access.AccountID)}
	}
	uri := aws.ToString(out.Repositories[0].RepositoryUri)
	host, _, _ = strings.Cut(uri, "/")
	g.mu.Lock()
	g.host = host
	g.mu.Unlock()
	return host, nil
}

// token returns the registry password, fetching a new one when none is cached, it is
// within the refresh skew of expiresAt, or it is refused (the password a registry
// refused). One GetAuthorizationToken runs at a time (fetchMu) and the others wait for
// its answer; the fields' lock (mu) is never held across the call, so readers of the
// cached host and user do not wait on the network.
func (g *Client) token(ctx context.Context, refused string) (string, error) {
	usable := func() (string, bool) {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.secret != "" && g.secret != refused && time.Until(g.expires) > tokenRefreshSkew {
			return g.secret, true
		}
		return "", false
	}
	if s, ok := usable(); ok {
		return s, nil
	}
	g.fetchMu.Lock()
	defer g.fetchMu.Unlock()
	if s, ok := usable(); ok {
		return s, nil // another caller fetched it meanwhile
	}
	// registryIds is deprecated: the token covers every registry the principal may reach.
	// https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_GetAuthorizationToken.html
	out, err := g.api.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		return "", WrapAWS("ecr:GetAuthorizationToken", err)
	}
	if len(out.AuthorizationData) == 0 {
		return "", &Error{Op: "ecr:GetAuthorizationToken", Code: "EmptyAuthorizationData", Err: errors.New("no authorization data returned")}
	}
	d := out.AuthorizationData[0]
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(d.AuthorizationToken))
	if err != nil {
		return "", &Error{Op: "ecr:GetAuthorizationToken", Code: "MalformedToken", Err: errors.New("authorization token is not base64")}
	}
	user, secret, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", &Error{Op: "ecr:GetAuthorizationToken", Code: "MalformedToken", Err: errors.New("authorization token is not user:password")}
	}
	var host string
	if !g.foreign {
		u, err := url.Parse(aws.ToString(d.ProxyEndpoint))
		if err != nil || u.Host == "" {
			return "", &Error{Op: "ecr:GetAuthorizationToken", Code: "MalformedProxyEndpoint", Err: fmt.Errorf("proxyEndpoint %q is not a URL", aws.ToString(d.ProxyEndpoint))}
		}
		host = u.Host
	}
	expires := aws.ToTime(d.ExpiresAt)
	if expires.IsZero() {
		expires = time.Now().Add(time.Hour)
	}
	g.mu.Lock()
	if host != "" {
		g.host = host
	}
	g.user, g.secret, g.expires = user, secret, expires
	g.mu.Unlock()
	g.resolver.log.Debug("registry token issued", "account", g.access.AccountID, "region", g.access.Region, "expires", expires)
	return secret, nil
}

// refresh replaces a refused token, unless another request already did (then the
// current one is returned), so a burst of refusals costs one GetAuthorizationToken.
func (g *Client) refresh(ctx context.Context, refused string) (string, error) {
	return g.token(ctx, refused)
}

// Error is an AWS API error seen while resolving access, with its code.
type Error struct {
	Op   string
	Code string
	Err  error
}

func (e *Error) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// registryHostPattern matches ECR registry host names — standard, FIPS and dual-stack, in
// every partition — as documented on https://docs.aws.amazon.com/general/latest/gr/ecr.html.
var registryHostPattern = regexp.MustCompile(`^(\d{12})\.dkr[.-]ecr(?:-fips)?\.([a-z]{2}(?:-[a-z]+)+-\d+)\.(?:amazonaws\.com(?:\.cn)?|on\.aws|api\.aws|c2s\.ic\.gov|sc2s\.sgov\.gov)$`)

// ParseRegistryHost recognises an ECR registry host and returns its account and region.
// The host a client then talks to still comes from ECR's own answers (proxyEndpoint).
func ParseRegistryHost(host string) (account, region string, ok bool) {
	m := registryHostPattern.FindStringSubmatch(strings.ToLower(host))
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}
