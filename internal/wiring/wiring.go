// Package wiring builds, from the environment, the dependencies the Lambda functions'
// main.go share: logger, AWS configuration, the rules document, the replicator (registry
// access + copy engine), the backfill and the reconcile. Entry points stay thin.
package wiring

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/gate"
	"github.com/ecr-replicator/ecr-replicator/internal/metrics"
	"github.com/ecr-replicator/ecr-replicator/internal/reconcile"
	"github.com/ecr-replicator/ecr-replicator/internal/sqssend"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// Logger returns a JSON logger at the level named by LOG_LEVEL (debug, info, warn,
// error; default info).
func Logger(w io.Writer, getenv func(string) string) *slog.Logger {
	level := slog.LevelInfo
	switch strings.ToLower(getenv("LOG_LEVEL")) {
	case "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// Deps is what a replicating entry point needs. Everything in it is long-lived: a warm
// Lambda keeps credentials, registry tokens, the engine's pacing and its retry state
// across invocations; each invocation starts its own run (Replicator.Start).
type Deps struct {
	AWS      aws.Config
	Rules    *rules.Document
	Resolver *ecraccess.Resolver
	// Replicator copies images to their destinations (nil when the rules are invalid).
	Replicator *destinations.Replicator
	Log        *slog.Logger
	// RulesErr is set when the rules document is invalid; the functions then fail every
	// invocation with this one message.
	RulesErr error
}

// Load reads the AWS configuration (standard SDK environment, including
// AWS_ENDPOINT_URL_<SERVICE>) and builds the dependencies from the process's
// environment (New). actor names who acts in RoleSessionName ("replicate", "backfill",
// "reconcile", "cli"); engine are extra copy-engine options (tests shorten waits with
// them).
func Load(ctx context.Context, actor string, log *slog.Logger, engine ...copyengine.Option) (*Deps, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	return New(cfg, actor, log, os.Getenv, engine...), nil
}

// New builds the dependencies from an AWS configuration and an environment: the rules
// document (REPLICATION_RULES or REPLICATION_RULES_FILE) and the replicator.
func New(cfg aws.Config, actor string, log *slog.Logger, getenv func(string) string, engine ...copyengine.Option) *Deps {
	d := &Deps{AWS: cfg, Log: log}
	d.Rules, d.RulesErr = rules.Load(getenv, os.ReadFile)
	d.Resolver = ecraccess.NewResolver(cfg, ecraccess.WithSessionName("ecr-replicator-"+actor), ecraccess.WithLogger(log))
	if d.RulesErr == nil {
		opts := []destinations.Option{destinations.WithLogger(log)}
		if arn := d.Rules.SourceRoleARN(); arn != "" {
			opts = append(opts, destinations.WithSourceRole(arn))
		}
		base := []copyengine.Option{copyengine.WithLogger(log)}
		if r, err := strconv.ParseFloat(getenv(EnvPutImageRate), 64); err == nil && r > 0 {
			base = append(base, copyengine.WithManifestRate(r, max(1, int(r))))
		}
		if n, err := strconv.Atoi(getenv(EnvWriters)); err == nil && n > 0 {
			base = append(base, copyengine.WithWriters(n))
		}
		e := copyengine.New(append(base, engine...)...)
		d.Replicator = destinations.New(d.Resolver, e, opts...)
	}
	return d
}

// ColdStartFailed is the handler a function starts with when its cold start failed (no
// AWS configuration): every invocation logs and answers the error, which Lambda reports
// as a function error (retried, then alarmed), rather than an init crash loop that says
// nothing. Both functions use it.
func ColdStartFailed(log *slog.Logger, err error) func(context.Context, json.RawMessage) (any, error) {
	return func(context.Context, json.RawMessage) (any, error) {
		log.Error("cold start failed", "error", err.Error())
		return nil, fmt.Errorf("cold start failed: %w", err)
	}
}

// Environment the backfill and the reconcile read.
const (
	EnvQueueURL          = "REPLICATION_QUEUE_URL"
	EnvCopyQueueURL      = "COPY_QUEUE_URL"
	EnvReconcileQueueURL = "RECONCILE_QUEUE_URL"
	EnvConcurrency       = "BACKFILL_CONCURRENCY" // inline copies in flight (default 8)
	// EnvPutImageRate is the manifest writes per second a destination accepts (ECR's
	// PutImage quota; default 10).
	EnvPutImageRate = "PUT_IMAGE_RATE"
	// EnvWriters is how many execution environments may write to a destination at once
	// (the copy queue's maximum concurrency): each starts at its share of the rate.
	EnvWriters = "PUT_IMAGE_WRITERS"
)

// Backfill builds the backfill from deps and the environment; EMF metrics go to emf.
func (d *Deps) Backfill(getenv func(string) string, emf io.Writer) *backfill.Backfill {
	b := &backfill.Backfill{
		Rules: d.Rules, RulesErr: d.RulesErr, Resolver: d.Resolver, SourceRegion: d.AWS.Region, Log: d.Log,
		QueueURL: getenv(EnvQueueURL), CopyQueueURL: getenv(EnvCopyQueueURL),
		EMF: emf, Namespace: metrics.Namespace(getenv),
	}
	if d.Replicator != nil {
		b.Start = func() backfill.Run { return d.Replicator.Start() }
	}
	if b.QueueURL != "" || b.CopyQueueURL != "" {
		b.Sender = sqssend.New(sqs.NewFromConfig(d.AWS))
	}
	if n, err := strconv.Atoi(getenv(EnvConcurrency)); err == nil && n > 0 {
		b.Concurrency = n
	}
	return b
}

// Handler builds the replicate function's handler from deps and the environment
// (result events, the reconcile queue's items); EMF metrics go to emf. Tests adjust the
// configuration with adjust.
func (d *Deps) Handler(getenv func(string) string, emf io.Writer, adjust ...func(*eventhandler.Config)) *eventhandler.Handler {
	c := eventhandler.Config{Rules: d.Rules, RulesErr: d.RulesErr, Log: d.Log, EMF: emf, Namespace: metrics.Namespace(getenv)}
	if d.Replicator != nil {
		c.Start = func() eventhandler.Run { return d.Replicator.Start() }
	}
	if bus := getenv(eventhandler.EnvResultEventBus); bus != "" {
		c.Events, c.EventBus = eventbridge.NewFromConfig(d.AWS), bus
	}
	// Held copies are re-checked through the copy queue (the push queue without one).
	if u := cmp.Or(getenv(EnvCopyQueueURL), getenv(EnvQueueURL)); u != "" {
		c.Holds = &eventhandler.HoldQueue{Sender: sqssend.New(sqs.NewFromConfig(d.AWS)), URL: u}
	}
	for _, a := range adjust {
		a(&c)
	}
	return eventhandler.New(c)
}

// EnvPromotionGates is the template's PromotionGates parameter, in the replicate
// function's environment: "false" with a rule that has `require` is a configuration
// error (the stack neither sends scan events nor lets held copies re-check themselves).
const EnvPromotionGates = "PROMOTION_GATES"

// Gated gives a handler the promotion gate (docs/PROMOTION.md) built with the rules'
// signers' verifiers, as internal/gate/verify compiles them (only the functions that
// verify link it). A signer that did not compile (err), or gates in a stack deployed
// without them, fail every invocation, as an invalid rules document does.
func (d *Deps) Gated(getenv func(string) string, v gate.Verifiers, err error) func(*eventhandler.Config) {
	if err == nil && d.Rules != nil && d.Rules.HasGates() && getenv(EnvPromotionGates) == "false" {
		err = fmt.Errorf("a rule has `require` (a promotion gate), but the stack was deployed with PromotionGates=false: " +
			"deploy it with PromotionGates=true, which sends scan events to the function and lets held copies be re-checked")
	}
	return func(c *eventhandler.Config) {
		switch {
		case d.Rules == nil: // an invalid document: the handler fails every invocation with its error
			return
		case err != nil:
			if c.RulesErr == nil {
				c.RulesErr = err
			}
			return
		}
		c.Gate = gate.New(gate.Config{Resolver: d.Resolver, SourceRole: d.Rules.SourceRoleARN(), Verifiers: v, Log: d.Log})
	}
}

// Reconciler builds the reconcile function from deps and the environment (the reconcile
// and copy queues); EMF metrics go to emf. Tests adjust the configuration with adjust.
func (d *Deps) Reconciler(getenv func(string) string, emf io.Writer, adjust ...func(*reconcile.Config)) *reconcile.Reconciler {
	q := sqs.NewFromConfig(d.AWS)
	c := reconcile.Config{
		Rules: d.Rules, RulesErr: d.RulesErr, Resolver: d.Resolver, SourceRegion: d.AWS.Region,
		Sender: sqssend.New(q), Queues: q,
		ReconcileQueueURL: getenv(EnvReconcileQueueURL), CopyQueueURL: getenv(EnvCopyQueueURL),
		Log: d.Log, EMF: emf, Namespace: metrics.Namespace(getenv),
	}
	for _, a := range adjust {
		a(&c)
	}
	return reconcile.New(c)
}
