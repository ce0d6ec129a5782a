// Package copyengine is the engine core of ecr-replicator: it copies one image (by
// digest, byte for byte) from a source repository to a destination repository
// registry-to-registry, with its blobs streamed from one registry into the other and
// never through a daemon or local disk.
//
// It is built on go-containerregistry's remote package and reads like it: an Engine
// configured with functional options, Endpoints carrying auth and transport, and errors
// that carry the registry's error code (retry.Classified).
//
// An Engine is long-lived (a warm Lambda keeps it): options, the retry policy, the
// manifest-write pacing per registry host and the bound on blob transfers. A Run is one
// unit of work (one invocation, one CLI command): it remembers, per destination
// repository, which blobs and manifests it has seen present, so each blob is HEAD-checked
// and uploaded at most once per run however many tags, platforms or concurrent Copy calls
// share it — and forgets it all when the run ends, so a cache never outlives what a
// registry may have changed since.
//
// The engine does not create repositories and does not do registry auth: callers do
// both with the ECR API and hand in an authn.Authenticator.
package copyengine

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

const userAgent = "ecr-replicator"

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

// Request asks for one digest to be copied (and optionally tagged).
type Request struct {
	Source Endpoint
	// Digest is what to copy (sha256:...). Empty with a Tag: copy whatever the
	// source tag points at now (one GET of the manifest by tag resolves it).
	Digest string
	// Tag is an optional source tag that pointed at Digest when the push
	// happened. The destination tag only follows it if the source tag still
	// points at Digest (events arrive late, twice and out of order).
	Tag         string
	Destination Endpoint
	// Referrers also copies OCI 1.1 referrers (subject) and cosign-style
	// sha256-<hex>.sig/.att/.sbom tags, recursively to a bounded depth.
	Referrers bool
	// Pinned sets the destination tag to Digest only: a source tag that moved on is not
	// followed (a gated copy tags only the digest its promotion gate decided; the tag's
	// new image has a decision of its own, docs/PROMOTION.md).
	Pinned bool
	// ArtifactReferrersOnly copies only the referrers (and cosign tags) that are
	// artifacts — signatures, attestations, SBOMs — and leaves out, logged, those a
	// runtime could run (images, indexes): a gated copy brings nothing its gate did not
	// decide (artifacts.go).
	ArtifactReferrersOnly bool
}

// Outcome summarises what a Copy did.
type Outcome string

const (
	Copied         Outcome = "copied"          // blobs and/or manifests were written
	AlreadyPresent Outcome = "already-present" // nothing to do
	TagUpdated     Outcome = "tag-updated"     // content was there, only the tag moved
	Skipped        Outcome = "skipped"         // stale event: the source tag moved on, nothing written
	Conflict       Outcome = "conflict"        // the destination refused the tag (immutable), permanent
	// TooLarge: a layer cannot be uploaded within one run of a function with a deadline
	// (CodeTooLarge); permanent, copy it with the CLI.
	TooLarge Outcome = "too-large-for-function"
	Failed   Outcome = "failed" // see Result.Err and IsRetryable
)

// Failure reports whether the outcome is a failure: Result.Err says why, and whether
// it is worth another delivery.
func (o Outcome) Failure() bool { return o == Failed || o == Conflict || o == TooLarge }

// Result reports one Copy. Counters are exact: a blob or manifest counts once
// per Copy, as copied when this call wrote it, as skipped otherwise.
type Result struct {
	Outcome Outcome
	Digest  string
	Tag     string
	Reason  string

	BytesCopied, BytesSkipped int64
	BlobsCopied, BlobsSkipped int
	// BlobsMounted and BytesMounted: blobs mounted from another repository of the
	// destination registry instead of uploaded (not in BytesCopied, which is what was
	// uploaded).
	BlobsMounted int
	BytesMounted int64
	// BytesMountable: of BytesCopied, what another repository of the destination registry
	// (with the same encryption) was known to hold: mounted instead, had the registry
	// blob mounting enabled.
	BytesMountable   int64
	ManifestsWritten int
	ManifestsSkipped int
	ReferrersCopied  int
	// ReferrersRefused: referrers an ArtifactReferrersOnly copy left out (runnable).
	ReferrersRefused int
	// ManifestsThrottled counts the manifest writes the destination refused with 429
	// (ECR's PutImage quota) and that were sent again: pressure on the quota, whether or
	// not the copy then succeeded.
	ManifestsThrottled int

	// SourceTagMissing: the source no longer has Tag — deleted after the destination tag
	// was written, or already before (with a Tag-only request, that is also the error:
	// nothing to copy). The destination tag is left as it was: whether deletes are
	// mirrored is the caller's decision.
	SourceTagMissing bool
	// TagDigest is where this copy last saw or put the destination tag (empty: unknown).
	TagDigest string

	Duration time.Duration
	Err      error // *Error when classified
}

// Engine copies images. It is long-lived and safe for concurrent use; its runs (Start)
// hold the caches.
type Engine struct {
	jobs          int
	rate          rate.Limit
	burst         int
	writers       int
	policy        retry.Policy
	timeout       time.Duration
	log           *slog.Logger
	progress      func(Progress)
	tagRounds     int
	referrerDepth int

	sem chan struct{} // bounds concurrent blob transfers across all runs
	// uploads joins overlapping runs' uploads of one blob to one destination repository
	// (key as Run.blobs); each run still remembers its own.
	uploads onceMap

	// index remembers which destination repositories hold each blob, and flights the image
	// copies in progress, for mounting (mount.go).
	index   blobIndex
	flights flightTable

	mu       sync.Mutex
	pacers   map[string]*pacer   // manifest writes, per destination registry host
	link     links               // what uploads move together, per destination host (budget.go)
	tagLocks map[string]*tagLock // per destination repo:tag, while held or awaited
}

// Run is one unit of work of an Engine: its Copy calls share what they learn about
// the registries (see the package doc). Safe for concurrent use; dropped when done.
type Run struct {
	*Engine
	// started is when the run began: with a context deadline, the time a whole run has
	// (an invocation's), against which uploads are weighed (budget.go).
	started time.Time

	blobs     onceMap // key: destination repo + blob digest
	manifests onceMap // key: destination repo + manifest digest

	runMu     sync.Mutex
	endpoints map[endpointKey]*endpoint
	// noReferrersAPI marks source registries that answered the referrers API with "not
	// supported" in this run, so later subjects go straight to the tag schema.
	noReferrersAPI map[string]bool
	// sourceTags and destTags answer "may the repository have this tag?" from one
	// listing once a run has asked often enough (cosign tags at the source, tags about
	// to be written at the destination).
	sourceTags, destTags tagIndex
}

// Start begins a run.
func (e *Engine) Start() *Run {
	return &Run{Engine: e, started: time.Now(), endpoints: map[endpointKey]*endpoint{}, noReferrersAPI: map[string]bool{}}
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

// Option configures an Engine.
type Option func(*Engine)

// WithJobs bounds how many blobs are transferred concurrently (default 8),
// across all runs of the Engine.
func WithJobs(n int) Option {
	return func(c *Engine) {
		if n > 0 {
			c.jobs = n
		}
	}
}

// WithManifestRate sets the ceiling of manifest writes per destination registry host
// (default 10/s, burst 10: ECR's default PutImage quota); the pace adapts below it to
// throttling (see pacer).
func WithManifestRate(perSecond float64, burst int) Option {
	return func(c *Engine) {
		if perSecond > 0 {
			c.rate = rate.Limit(perSecond)
		}
		if burst > 0 {
			c.burst = burst
		}
	}
}

// WithWriters says how many engines may write manifests to one destination at once (a
// fleet of Lambda execution environments): each starts at its share of the manifest
// rate and adapts from there (see pacer). Default 1: start at the full rate.
func WithWriters(n int) Option {
	return func(c *Engine) {
		if n > 0 {
			c.writers = n
		}
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *Engine) {
		if l != nil {
			c.log = l
		}
	}
}

// WithRetry sets how failed registry requests are retried: throttling (429, honouring
// Retry-After up to the policy's Max), 5xx, connection errors and slow answers. Default:
// 5 attempts, 500 ms doubling, ±20 % jitter, waits capped at 20 s. Unset fields take
// these defaults.
func WithRetry(p retry.Policy) Option {
	return func(c *Engine) { c.policy = p }
}

// WithRequestTimeout bounds how long one request waits for the response headers after
// it was sent (default 60 s; the body of a large blob is not counted). A registry that
// does not answer in time is retried like a 503.
func WithRequestTimeout(d time.Duration) Option {
	return func(c *Engine) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// New returns an Engine.
func New(opts ...Option) *Engine {
	c := &Engine{
		jobs:          8,
		rate:          10,
		burst:         10,
		timeout:       60 * time.Second,
		log:           slog.New(slog.DiscardHandler),
		tagRounds:     3,
		referrerDepth: 3,
		pacers:        map[string]*pacer{},
		tagLocks:      map[string]*tagLock{},
		uploads:       onceMap{inFlightOnly: true},
		link:          links{minBytes: minMeasuredBytes, minTime: minMeasuredTime},
		index:         blobIndex{max: DefaultMountIndexBlobs},
	}
	for _, o := range opts {
		o(c)
	}
	log, observe := c.log, c.policy.OnRetry
	c.policy.OnRetry = func(err error, attempt int, wait time.Duration) {
		log.Debug("registry request failed; retrying", "attempt", attempt, "wait", wait, "err", err)
		if observe != nil {
			observe(err, attempt, wait) // the caller's (WithRetry), kept
		}
	}
	c.sem = make(chan struct{}, c.jobs)
	return c
}

func validate(req Request) (v1.Hash, error) {
	if req.Source.Repository.RepositoryStr() == "" || req.Destination.Repository.RepositoryStr() == "" {
		return v1.Hash{}, invalid("source and destination repositories are required")
	}
	if req.Tag != "" {
		if err := ecrname.Tag(req.Tag); err != nil {
			return v1.Hash{}, invalid("%w", err)
		}
		if apiTag(req.Tag) && (req.Source.Tags == nil || req.Destination.Tags == nil) {
			return v1.Hash{}, invalid("a tag of %d characters (over the registry API's %d) is copied through the ECR API: both endpoints need Tags",
				len(req.Tag), ecrname.MaxRegistryTagLen)
		}
	}
	if req.Digest == "" {
		if req.Tag == "" {
			return v1.Hash{}, invalid("a digest or a tag is required")
		}
		return v1.Hash{}, nil // resolved from the source tag by run
	}
	h, err := v1.NewHash(req.Digest)
	if err != nil {
		return v1.Hash{}, invalid("digest %q: %w", req.Digest, err)
	}
	if h.Algorithm != "sha256" {
		return v1.Hash{}, invalid("digest %q: only sha256 is supported", req.Digest)
	}
	return h, nil
}

// Copy copies req.Digest and everything it references from the source to the
// destination, then (if req.Tag is set) converges the destination tag on the
// source tag. It never returns an error directly: Result.Err carries it.
func (c *Run) Copy(ctx context.Context, req Request) Result {
	start := time.Now()
	res := Result{Digest: req.Digest, Tag: req.Tag}
	ctx, throttled := countThrottles(ctx)
	s, digest, err := c.newSession(req)
	if err == nil {
		err = s.run(ctx, digest, &res)
		s.fill(&res)
	}
	res.ManifestsThrottled = int(throttled.Load())
	res.Duration = time.Since(start)
	res.Err = err
	written := res.BlobsCopied > 0 || res.BlobsMounted > 0 || res.ManifestsWritten > 0
	var e *Error
	switch {
	case errors.As(err, &e) && e.Code == string(transport.TagInvalidErrorCode):
		res.Outcome = Conflict
	case errors.As(err, &e) && e.Code == CodeTooLarge:
		res.Outcome = TooLarge
	case err != nil:
		res.Outcome = Failed
	case written:
		res.Outcome = Copied
	case s != nil && s.tagWrites.Load() > 0:
		res.Outcome = TagUpdated
	case res.Reason != "":
		res.Outcome = Skipped
	default:
		res.Outcome = AlreadyPresent
	}
	level := slog.LevelInfo
	if err != nil {
		level = slog.LevelWarn
	}
	c.log.Log(ctx, level, "copy", "src", req.Source.Repository.String(), "dst", req.Destination.Repository.String(),
		"digest", res.Digest, "tag", req.Tag, "outcome", res.Outcome, "reason", res.Reason,
		"blobs_copied", res.BlobsCopied, "blobs_skipped", res.BlobsSkipped, "bytes_copied", res.BytesCopied,
		"blobs_mounted", res.BlobsMounted, "bytes_mounted", res.BytesMounted, "bytes_mountable", res.BytesMountable,
		"manifests_written", res.ManifestsWritten, "manifests_skipped", res.ManifestsSkipped,
		"referrers_copied", res.ReferrersCopied, "duration", res.Duration, "retryable", retry.IsRetryable(err), "err", err)
	return res
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

// session is the state of one Copy call.
type session struct {
	c         *Run
	src, dst  *endpoint
	image     string // the source image as the CLI names it (repository:tag or @digest)
	referrers bool
	pinned    bool // Request.Pinned
	// artifactsOnly: Request.ArtifactReferrersOnly.
	artifactsOnly bool
	log           *slog.Logger

	blobsCopied, blobsSkipped, bytesCopied, bytesSkipped atomic.Int64
	blobsMounted, bytesMounted, bytesMountable           atomic.Int64
	written, skipped, referrersCopied, tagWrites         atomic.Int64
	referrersRefused                                     atomic.Int64

	// rootTag, when set, is the tag the root manifest (rootDigest) is written under: a
	// new tagged image costs one manifest write (PutImage), not a write by digest and
	// another by tag — ECR's 10 PutImage/s quota is what bounds replication.
	rootTag    string
	rootDigest v1.Hash
	rootTagged atomic.Bool // the root was written under rootTag
	// tagChecked: run saw the source tag at the requested digest just before copying.
	// tagPresent: the destination tag already pointed there too, so the root manifest
	// and everything it references are present (registries refuse incomplete manifests).
	tagChecked, tagPresent bool

	counted   sync.Map // "b:"/"m:" + digest → counted once per session
	fetched   sync.Map // digest → *rawManifest fetched during this call
	listed    sync.Map // subjects whose referrers were listed
	verifyErr error
}

func (c *Run) newSession(req Request) (*session, v1.Hash, error) {
	h, err := validate(req)
	if err != nil {
		return nil, h, err
	}
	s := &session{c: c, referrers: req.Referrers, pinned: req.Pinned, artifactsOnly: req.ArtifactReferrersOnly}
	s.image = req.Source.Repository.String() + "@" + req.Digest
	if req.Tag != "" {
		s.image = req.Source.Repository.String() + ":" + req.Tag
	}
	s.src = c.cachedEndpoint(req.Source, false)
	s.dst = c.cachedEndpoint(req.Destination, true)
	s.log = c.log.With("src", req.Source.Repository.String(), "dst", req.Destination.Repository.String())
	if req.Digest != "" {
		s.log = s.log.With("digest", req.Digest)
	}
	return s, h, nil
}

func (s *session) fill(r *Result) {
	r.BlobsCopied = int(s.blobsCopied.Load())
	r.BlobsSkipped = int(s.blobsSkipped.Load())
	r.BytesCopied = s.bytesCopied.Load()
	r.BytesSkipped = s.bytesSkipped.Load()
	r.BlobsMounted = int(s.blobsMounted.Load())
	r.BytesMounted = s.bytesMounted.Load()
	r.BytesMountable = s.bytesMountable.Load()
	r.ManifestsWritten = int(s.written.Load())
	r.ManifestsSkipped = int(s.skipped.Load())
	r.ReferrersCopied = int(s.referrersCopied.Load())
	r.ReferrersRefused = int(s.referrersRefused.Load())
}

// run is Copy's body: content first, tag last. A tag whose source still points at
// the digest is written together with a new root manifest (one PUT by tag, after
// every dependency); otherwise the root goes in by digest and the tag converges after.
// A request without a digest copies what the source tag points at now.
//
// What does not depend on each other runs at once, since each step is a round trip to
// a registry that may be a region away: the source tag and the destination tag are
// read together, and once the content is in, the tag's convergence (the re-check of
// the source) runs alongside the copying of referrers.
func (s *session) run(ctx context.Context, digest v1.Hash, res *Result) error {
	if res.Tag != "" {
		var missing bool
		var err error
		if digest, missing, err = s.readTags(ctx, digest, res); err != nil || missing {
			return err
		}
	}
	_, w, err := s.copyContent(ctx, v1.Descriptor{Digest: digest})
	if err != nil {
		return err
	}
	// Neither cancels the other: a tag that cannot be set (an IMMUTABLE conflict) does
	// not stop the image's signatures from being copied.
	var refErr, tagErr error
	var wg sync.WaitGroup
	wg.Go(func() { refErr = s.copyReferrersOf(ctx, w, 0) })
	if res.Tag != "" && !s.tagPresent {
		wg.Go(func() {
			var tr tagResult
			tr, tagErr = s.converge(ctx, res.Tag, digest)
			if tr.stale != "" {
				res.Reason = "stale tag: " + tr.stale
			}
			res.SourceTagMissing = tr.missing
			if tr.at != (v1.Hash{}) {
				res.TagDigest = tr.at.String()
			}
		})
	}
	wg.Wait()
	if retry.IsRetryable(refErr) {
		return refErr // a retry completes the referrers; the tag will answer the same then
	}
	if tagErr != nil {
		return tagErr
	}
	return refErr
}

// readTags reads the source tag (resolving the digest when the request has none) and
// the destination tag at once, and decides how the root goes in: already there under the
// tag, new under the tag (one PUT), or by digest with the tag converged after. missing:
// a request without a digest whose source tag does not exist (then err says so).
func (s *session) readTags(ctx context.Context, digest v1.Hash, res *Result) (v1.Hash, bool, error) {
	var (
		cur     v1.Hash
		found   bool
		present v1.Hash
		destErr error
		absent  error // the source has no such tag (a request without a digest)
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		present, destErr = s.destTag(gctx, res.Tag)
		return nil
	})
	g.Go(func() error {
		if digest == (v1.Hash{}) {
			m, err := s.resolveTag(gctx, res.Tag)
			if isMissing(err) {
				absent = err
				return nil
			}
			if err != nil {
				return err
			}
			cur, found = m.desc.Digest, true
			return nil
		}
		var err error
		cur, found, err = s.headSourceTag(gctx, res.Tag)
		return err
	})
	if err := g.Wait(); err != nil {
		return digest, false, err
	}
	if digest == (v1.Hash{}) {
		if !found {
			// Nothing to copy: a failure for whoever asked for the tag (the CLI), and
			// the answer a delete mirroring needs (SourceTagMissing).
			res.SourceTagMissing = true
			if destErr == nil {
				res.TagDigest = present.String()
			}
			return digest, true, absent
		}
		digest = cur
		res.Digest = digest.String()
		s.log = s.log.With("digest", res.Digest)
	}
	if found && cur == digest {
		s.tagChecked, s.rootDigest = true, digest
		switch {
		case destErr == nil && present == digest:
			s.tagPresent = true
			res.TagDigest = digest.String()
		case isNotFound(destErr):
			// Absent: a new root goes in under the tag. (A tag pointing elsewhere
			// moves in converge, which also reports an IMMUTABLE conflict.)
			s.rootTag = res.Tag
		}
	}
	return digest, false, nil
}

// resolveTag GETs the source manifest by tag: its digest is what the request copies,
// and its bytes are kept for the copy (one request instead of a HEAD and a GET).
func (s *session) resolveTag(ctx context.Context, tag string) (*rawManifest, error) {
	if apiTag(tag) {
		m, err := s.getAPITag(ctx, tag)
		if errors.Is(err, errNoTag) {
			return nil, &Error{Op: "get source tag " + tag, Code: string(transport.ManifestUnknownErrorCode), Status: http.StatusNotFound, Err: errors.New("no such tag")}
		}
		if err == nil {
			s.fetched.Store(m.desc.Digest, m)
		}
		return m, err
	}
	return s.getSource(ctx, s.src.repo.Tag(tag), "get source tag "+tag)
}

// destTag returns what the destination tag points at, or a not-found error. When the
// run has asked about enough tags of the repository, a tag absent from its listing is
// not-found without a HEAD (see tagIndex).
func (s *session) destTag(ctx context.Context, tag string) (v1.Hash, error) {
	if apiTag(tag) {
		return s.headDestTag(ctx, tag)
	}
	list := s.dst.list
	if !s.c.destTags.mayHave(ctx, s.dst.repo.String(), tag, list) {
		return v1.Hash{}, &transport.Error{StatusCode: http.StatusNotFound}
	}
	d, err := s.dst.head(ctx, s.dst.repo.Tag(tag))
	if err != nil {
		return v1.Hash{}, err
	}
	return d.Digest, nil
}
