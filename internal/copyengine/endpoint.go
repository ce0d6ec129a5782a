package copyengine

import (
	"context"
	"net/http"
	"reflect"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// Endpoint is one side of a copy: a repository on a registry and how to reach it.
type Endpoint struct {
	// Repository is the registry host + repository path. The host comes
	// from the caller (e.g. ECR's proxyEndpoint).
	Repository name.Repository
	// Auth authenticates every request, including the referrers listing the
	// engine performs by hand. nil means anonymous.
	Auth authn.Authenticator
	// Transport is the base RoundTripper (nil: remote.DefaultTransport). The
	// engine wraps it to honour Retry-After; a remote.WithTransport in
	// Options replaces that wrapping.
	Transport http.RoundTripper
	// Options are extra remote options (user agent, platform, ...). They
	// are applied after the engine's own, so they win.
	Options []remote.Option
	// Tags reads and writes this repository's tags of 129-300 characters, which ECR's
	// PutImage accepts and the registry API cannot carry (TagAPI). Without it, a request
	// for such a tag is refused.
	Tags TagAPI
	// Mounting, for a destination: whether blobs other repositories of its registry hold
	// may be mounted instead of uploaded (mount.go). Zero: never.
	Mounting Mounting
}

// endpointKey identifies a reusable endpoint: one authenticated client (one registry
// ping and token) per repository and credentials, for the whole run.
type endpointKey struct {
	dest      bool
	repo      string
	auth      any
	transport any
	tags      any
	mounting  Mounting
}

// endpoint is an Endpoint resolved for the run: its repository, and the authenticated
// clients built on first use (a registry ping and a token each).
type endpoint struct {
	repo     name.Repository
	tags     TagAPI
	mounting Mounting
	auth     authn.Authenticator
	rt       http.RoundTripper // retryTransport over Endpoint.Transport
	scopes   []string
	opts     []remote.Option
	dest     bool
	policy   retry.Policy

	mu      sync.Mutex
	clients *clients
}

// clients are one endpoint's authenticated clients, sharing one transport.
type clients struct {
	http   *http.Client // for the requests written by hand: blob uploads and downloads, referrers pages
	puller *remote.Puller
	pusher *remote.Pusher // destination only
}

// cachedEndpoint returns the run's endpoint for ep, building it once. Endpoints whose
// credentials or transport cannot be compared (and Options, which cannot be) are not
// shared.
func (c *Run) cachedEndpoint(ep Endpoint, dest bool) *endpoint {
	if len(ep.Options) > 0 || !comparable(ep.Auth) || !comparable(ep.Transport) || !comparable(ep.Tags) {
		return c.endpoint(ep, dest)
	}
	k := endpointKey{dest: dest, repo: ep.Repository.String(), auth: ep.Auth, transport: ep.Transport, tags: ep.Tags, mounting: ep.Mounting}
	c.runMu.Lock()
	defer c.runMu.Unlock()
	if e, ok := c.endpoints[k]; ok {
		return e
	}
	e := c.endpoint(ep, dest)
	c.endpoints[k] = e
	return e
}

func comparable(v any) bool { return v == nil || reflect.TypeOf(v).Comparable() }

func (c *Engine) endpoint(ep Endpoint, dest bool) *endpoint {
	base := ep.Transport
	if base == nil {
		base = remote.DefaultTransport
	}
	e := &endpoint{
		repo:     ep.Repository,
		tags:     ep.Tags,
		mounting: ep.Mounting,
		auth:     ep.Auth,
		rt:       transport.NewUserAgent(&retryTransport{inner: base, policy: c.policy, timeout: c.timeout, pace: c.pacerFor}, userAgent),
		scopes:   []string{ep.Repository.Scope(transport.PullScope)},
		dest:     dest,
		policy:   c.policy,
		opts: append([]remote.Option{
			remote.WithJobs(c.jobs),
			// The Wrapper transport below makes ggcr skip its retry transport; this turns
			// off its retry of whole manifest PUTs, which retryTransport already retries.
			remote.WithRetryPredicate(func(error) bool { return false }),
			// ggcr would otherwise maintain a sha256-<hex> fallback tag on
			// destinations without the referrers API; we only copy the
			// source's fallback tag when the source uses one.
			remote.WithReferrersTagFallback(false),
		}, ep.Options...),
	}
	if e.auth == nil {
		e.auth = authn.Anonymous
	}
	if dest {
		e.scopes = []string{ep.Repository.Scope(transport.PushScope)} // push,pull
	}
	return e
}

// use returns the endpoint's clients, authenticating on first use. A failed attempt (a
// ping cut short by a cancelled context, a token refused) is not kept: the next caller
// tries again.
func (e *endpoint) use(ctx context.Context) (*clients, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.clients != nil {
		return e.clients, nil
	}
	rt, err := transport.NewWithContext(ctx, e.repo.Registry, e.auth, e.rt, e.scopes)
	if err != nil {
		return nil, err
	}
	opts := append([]remote.Option{remote.WithTransport(rt)}, e.opts...)
	cl := &clients{http: &http.Client{Transport: rt}}
	if cl.puller, err = remote.NewPuller(opts...); err != nil {
		return nil, invalid("endpoint %s: %w", e.repo, err)
	}
	if e.dest {
		if cl.pusher, err = remote.NewPusher(opts...); err != nil {
			return nil, invalid("endpoint %s: %w", e.repo, err)
		}
	}
	e.clients = cl
	return cl, nil
}

// The verbs the engine uses, each authenticating on first use. Reads of a body are
// retried when the body fails (readRetry).

func (e *endpoint) head(ctx context.Context, ref name.Reference) (*v1.Descriptor, error) {
	cl, err := e.use(ctx)
	if err != nil {
		return nil, err
	}
	return cl.puller.Head(ctx, ref)
}

func (e *endpoint) get(ctx context.Context, ref name.Reference) (*remote.Descriptor, error) {
	cl, err := e.use(ctx)
	if err != nil {
		return nil, err
	}
	var d *remote.Descriptor
	err = readRetry(ctx, e.policy, func(ctx context.Context) error {
		d, err = cl.puller.Get(ctx, ref)
		return err
	})
	return d, err
}

func (e *endpoint) list(ctx context.Context) ([]string, error) {
	cl, err := e.use(ctx)
	if err != nil {
		return nil, err
	}
	var tags []string
	err = readRetry(ctx, e.policy, func(ctx context.Context) error {
		tags, err = cl.puller.List(ctx, e.repo)
		return err
	})
	return tags, err
}

func (e *endpoint) put(ctx context.Context, ref name.Reference, t remote.Taggable) error {
	cl, err := e.use(ctx)
	if err != nil {
		return err
	}
	return cl.pusher.Put(ctx, ref, t)
}

func (e *endpoint) key(h v1.Hash) string { return e.repo.String() + "@" + h.String() }
