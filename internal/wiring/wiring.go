// Package wiring builds, from the environment, the dependencies every entry point shares
// — the Lambda functions' main.go and the CLI: logger, AWS configuration, the rules
// document, and a Mirror (registry access + replication engine). Entry points stay thin.
package wiring

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

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

// Deps is what a replicating entry point needs.
type Deps struct {
	AWS      aws.Config
	Rules    *rules.Document
	Resolver *ecraccess.Resolver
	Log      *slog.Logger
	// RulesErr is set when the rules document is invalid; the functions then fail every
	// invocation with this one message.
	RulesErr error
	// Engine are extra options for every engine NewMirror builds (retry policy, request
	// timeout, progress), after the defaults.
	Engine []copyengine.Option
}

// Load reads the AWS configuration (standard SDK environment, including
// AWS_ENDPOINT_URL_<SERVICE>) and the rules document (REPLICATION_RULES or
// REPLICATION_RULES_FILE). actor names who acts in RoleSessionName
// ("replicate", "backfill", "cli").
func Load(ctx context.Context, actor string, log *slog.Logger) (*Deps, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	d := &Deps{AWS: cfg, Log: log}
	d.Rules, d.RulesErr = rules.Load(os.Getenv, os.ReadFile)
	d.Resolver = ecraccess.NewResolver(cfg, ecraccess.WithSessionName("ecr-replicator-"+actor), ecraccess.WithLogger(log))
	return d, nil
}

// NewMirror returns a Mirror for one run (one invocation, one CLI command): a fresh
// engine, so its per-run blob cache does not outlive the run, over the long-lived
// resolver, whose credentials and tokens do.
func (d *Deps) NewMirror(jobs int) *destinations.Mirror {
	opts := []copyengine.Option{copyengine.WithLogger(d.Log)}
	if jobs > 0 {
		opts = append(opts, copyengine.WithJobs(jobs))
	}
	opts = append(opts, d.Engine...)
	var mopts []destinations.Option
	mopts = append(mopts, destinations.WithLogger(d.Log))
	if d.Rules != nil && d.Rules.SourceRoleARN() != "" {
		mopts = append(mopts, destinations.WithSourceRole(d.Rules.SourceRoleARN()))
	}
	return destinations.New(d.Resolver, copyengine.New(opts...), mopts...)
}
