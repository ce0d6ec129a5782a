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
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

const userAgent = "ecr-replicator"

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
		index:         blobIndex{max: mountIndexBlobs},
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
