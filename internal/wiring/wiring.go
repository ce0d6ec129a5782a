// Package wiring builds, from the environment main reads (a getenv: wiring reads no
// variable of its own; the AWS SDK reads its standard ones, AWS_REGION,
// AWS_ENDPOINT_URL_<SERVICE> and the credentials, as it does everywhere), the dependencies the Lambda functions' main.go share: logger, AWS
// configuration, the rules document (internal/rulesource), the replicator (registry
// access + copy engine), the backfill and the reconcile, and serves invocations with the
// rules document kept current (Serve). Entry points stay thin.
package wiring

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

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
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/rulesource"
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
	// RulesErr is set when there is no usable rules document (cold start); the functions
	// then fail every invocation with this one message.
	RulesErr error
	// Source keeps the rules document current (Serve reads it before each invocation).
	Source *rulesource.Loader
	// Verify compiles the promotion gates' signers for the replicate function's handler
	// (nil: a document whose gates require signatures is refused).
	Verify VerifyFunc

	engine *copyengine.Engine
}

// Load reads the AWS configuration (the SDK's standard environment, including
// AWS_ENDPOINT_URL_<SERVICE>) and builds the dependencies from the environment getenv
// reads (New): main hands it the process's (os.Getenv), which nothing here reads
// directly. actor names who acts in RoleSessionName ("replicate", "backfill",
// "reconcile", "cli"); engine are extra copy-engine options (tests shorten waits with
// them).
func Load(ctx context.Context, actor string, log *slog.Logger, getenv func(string) string, engine ...copyengine.Option) (*Deps, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	return New(ctx, cfg, actor, log, getenv, engine...), nil
}

// New builds the dependencies from an AWS configuration and an environment: the rules
// document (internal/rulesource: REPLICATION_RULES_PARAMETER, REPLICATION_RULES or
// REPLICATION_RULES_FILE) and the replicator.
func New(ctx context.Context, cfg aws.Config, actor string, log *slog.Logger, getenv func(string) string, engine ...copyengine.Option) *Deps {
	d := &Deps{AWS: cfg, Log: log}
	opts := []rulesource.Option{rulesource.WithLogger(log)}
	if getenv(rulesource.EnvParameter) != "" {
		opts = append(opts, rulesource.WithParameterReader(ssm.NewFromConfig(cfg)))
	}
	d.Source = rulesource.New(getenv, os.ReadFile, opts...)
	d.Resolver = ecraccess.NewResolver(cfg, ecraccess.WithSessionName("ecr-replicator-"+actor), ecraccess.WithLogger(log))
	base := []copyengine.Option{copyengine.WithLogger(log)}
	if r, err := strconv.ParseFloat(getenv(EnvPutImageRate), 64); err == nil && r > 0 {
		base = append(base, copyengine.WithManifestRate(r, max(1, int(r))))
	}
	if n, err := strconv.Atoi(getenv(EnvWriters)); err == nil && n > 0 {
		base = append(base, copyengine.WithWriters(n))
	}
	d.engine = copyengine.New(append(base, engine...)...)
	doc, err := d.Source.Current(ctx)
	if err != nil {
		d.RulesErr = err
	} else {
		d.use(doc)
	}
	return d
}

// use makes doc the rules the functions work with. The replicator (and its engine, with
// its pacing and caches) is kept unless the document reads the source through another
// role.
func (d *Deps) use(doc *rules.Document) {
	if d.Replicator == nil || d.Rules == nil || d.Rules.SourceRoleARN() != doc.SourceRoleARN() {
		opts := []destinations.Option{destinations.WithLogger(d.Log)}
		if arn := doc.SourceRoleARN(); arn != "" {
			opts = append(opts, destinations.WithSourceRole(arn))
		}
		d.Replicator = destinations.New(d.Resolver, d.engine, opts...)
	}
	d.Rules, d.RulesErr = doc, nil
}

// HandlerFunc is a function's invocation handler, as lambda.Start takes it.
type HandlerFunc func(ctx context.Context, payload json.RawMessage) (any, error)

// Serve returns the function's handler: before each invocation the rules document is
// brought up to date (a new version of a rules parameter is picked up within the check
// interval) and, when it changed, the handler is built again by build, from deps holding
// the new document. Without a usable document — invalid, naming a role the function may
// not assume or a rule the stack's events cannot feed, or a parameter Systems Manager
// refuses — the invocation fails with the reason, logged and counted in the
// ConfigurationErrors metric (EMF, to emf), which template.yaml alarms on. A parameter
// not read yet for a transient failure (rulesource.Unavailable) fails the invocation too,
// to be retried (Lambda's Errors count it), but is no configuration error.
func (d *Deps) Serve(getenv func(string) string, emf io.Writer, build func(*Deps) HandlerFunc) HandlerFunc {
	var (
		mu    sync.Mutex
		h     HandlerFunc
		built *rules.Document
	)
	return func(ctx context.Context, payload json.RawMessage) (any, error) {
		mu.Lock()
		doc, err := d.Source.Current(ctx)
		if err != nil && rulesource.Unavailable(err) {
			mu.Unlock() // Parameter Store throttled or failed, nothing read yet: retried, not a configuration error
			d.Log.Warn("rules parameter not read yet; the invocation fails and is retried", "error", err.Error())
			return nil, err
		}
		if err != nil {
			mu.Unlock()
			return nil, d.configurationError(getenv, emf, "no usable rules document", err)
		}
		if h == nil || doc != built {
			d.use(doc)
			h, built = build(d), doc
		}
		serve := h
		mu.Unlock()
		return serve(ctx, payload)
	}
}

// configurationError logs and counts (ConfigurationErrors, EMF to emf) an invocation
// refused for want of a usable configuration (what), and returns its error.
func (d *Deps) configurationError(getenv func(string) string, emf io.Writer, what string, err error) error {
	d.Log.Error("configuration error: "+what+"; every invocation fails until it is fixed", "error", err.Error())
	mr := metrics.New(emf, metrics.Namespace(getenv))
	mr.Add(MetricConfigurationErrors, metrics.Count, 1)
	if ferr := mr.Flush(); ferr != nil {
		d.Log.Warn("writing metrics", "error", ferr.Error())
	}
	return fmt.Errorf("configuration error: %w", err)
}

// MetricConfigurationErrors counts invocations refused for want of a usable rules
// document (or of its promotion gates' signers).
const MetricConfigurationErrors = "ConfigurationErrors"

// functions build the handlers the bootstraps serve, by function name, from the
// environment getenv reads; EMF metrics go to emf.
var functions = map[string]func(d *Deps, getenv func(string) string, emf io.Writer) HandlerFunc{
	"replicate": (*Deps).Replicate,
	"backfill": func(d *Deps, getenv func(string) string, emf io.Writer) HandlerFunc {
		b := d.Backfill(getenv, emf)
		return func(ctx context.Context, payload json.RawMessage) (any, error) { return b.Handle(ctx, payload) }
	},
	"reconcile": func(d *Deps, getenv func(string) string, emf io.Writer) HandlerFunc {
		return d.Reconciler(getenv, emf).Handle
	},
}

// EnvServe, in the CLI's environment, names the function the CLI binary runs as instead
// of a command: the demo runs the binary as the functions' bootstraps wherever it is,
// without the repository to build them from.
const EnvServe = "ECR_REPLICATOR_SERVE"

// Start runs the named function ("replicate", "backfill", "reconcile") in a Lambda execution
// environment, as its bootstrap (functions/<name>) does, configured by the environment
// getenv reads (main's os.Getenv); logs and EMF metrics go to standard output, where
// Lambda sends them to CloudWatch. An unknown name exits 2. verify, when given, compiles
// the promotion gates' signers (the replicate function's).
func Start(name string, getenv func(string) string, verify ...VerifyFunc) {
	log := Logger(os.Stdout, getenv)
	build, ok := functions[name]
	if !ok {
		log.Error("no such function (replicate, backfill, reconcile)", "function", name)
		os.Exit(2)
	}
	deps, err := Load(context.Background(), name, log, getenv)
	if err != nil {
		lambda.Start(ColdStartFailed(log, err))
		return
	}
	for _, v := range verify {
		deps.Verify = v
	}
	lambda.Start(deps.Serve(getenv, os.Stdout, func(d *Deps) HandlerFunc { return build(d, getenv, os.Stdout) }))
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
		b.Start = func() backfill.Copier { return d.Replicator.Start() }
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
	g, err := d.promotionGate(getenv)
	return d.handler(getenv, emf, g, err, adjust...)
}

// Replicate is the replicate function's handler as Serve builds it for each rules
// document: Handler's, or, when the promotion gates' signers do not compile, one that
// refuses every invocation as an unusable document is (logged, ConfigurationErrors).
func (d *Deps) Replicate(getenv func(string) string, emf io.Writer) HandlerFunc {
	g, err := d.promotionGate(getenv)
	if err != nil {
		return func(context.Context, json.RawMessage) (any, error) {
			return nil, d.configurationError(getenv, emf, "the promotion gates' signers", err)
		}
	}
	return d.handler(getenv, emf, g, nil).Handle
}

// handler is Handler with the promotion gate g (gateErr: the signers did not compile,
// and every invocation fails with it).
func (d *Deps) handler(getenv func(string) string, emf io.Writer, g eventhandler.Gate, gateErr error, adjust ...func(*eventhandler.Config)) *eventhandler.Handler {
	c := eventhandler.Config{Rules: d.Rules, RulesErr: cmp.Or(d.RulesErr, gateErr), Gate: g, Log: d.Log, EMF: emf, Namespace: metrics.Namespace(getenv)}
	if d.Rules != nil {
		c.Source = d.sourceRegistry(d.Rules)
	}
	if d.Replicator != nil {
		c.Start = func() eventhandler.Copier { return d.Replicator.Start() }
	}
	if bus := getenv(eventhandler.EnvResultEventBus); bus != "" {
		c.Events, c.EventBus = eventbridge.NewFromConfig(d.AWS), bus
	}
	// Held copies are re-checked through the copy queue (its policy lets this role send;
	// the push queue takes only the event rules').
	if u := getenv(EnvCopyQueueURL); u != "" {
		c.Holds = &eventhandler.HoldQueue{Sender: sqssend.New(sqs.NewFromConfig(d.AWS)), URL: u}
	}
	for _, a := range adjust {
		a(&c)
	}
	return eventhandler.New(c)
}

// VerifyFunc compiles the signers of a rules document into the promotion gates'
// signature verifiers (internal/gate/verify's ForLambda): given to Start by the functions
// that verify, so that only they link the signature libraries. getenv reads the
// function's environment (where its code directory is).
type VerifyFunc func(doc *rules.Document, cfg aws.Config, getenv func(string) string) (gate.Verifiers, error)

// promotionGate is the promotion gate of d.Rules (docs/PROMOTION.md; nil without rules),
// its signers compiled by d.Verify in the environment getenv reads. A signer that does
// not compile, or signers in a function built without Verify, are an error: the function
// refuses every invocation.
func (d *Deps) promotionGate(getenv func(string) string) (eventhandler.Gate, error) {
	if d.Rules == nil {
		return nil, nil
	}
	var vs gate.Verifiers
	var err error
	switch {
	case d.Verify != nil:
		vs, err = d.Verify(d.Rules, d.AWS, getenv)
	case d.Rules.HasSigners():
		err = errors.New("a rule's promotion gate requires signatures, and this function was built without signature verification")
	}
	if err != nil {
		return nil, err
	}
	return gate.New(gate.Config{Resolver: d.Resolver, SourceRole: d.Rules.SourceRoleARN(), Verifiers: vs, Log: d.Log}), nil
}

// sourceRegistry answers the registry the functions replicate from, for doc: in the
// function's region, source.roleArn's account or the caller's (asked of STS once per
// Resolver).
func (d *Deps) sourceRegistry(doc *rules.Document) func(context.Context) (ecrname.Registry, error) {
	return func(ctx context.Context) (ecrname.Registry, error) {
		acct, err := destinations.SourceAccount(ctx, d.Resolver, doc.SourceRoleARN())
		if err != nil {
			return ecrname.Registry{}, err
		}
		return ecrname.Registry{AccountID: acct, Region: d.AWS.Region}, nil
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
