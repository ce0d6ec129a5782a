// Package cli implements the ecr-replicator command line: argument parsing, output and
// exit codes. Commands call the same packages the Lambda functions use.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Exit codes, documented in every command's help.
const (
	ExitOK     = 0 // everything replicated (or already present); a plan that could look everywhere
	ExitFailed = 1 // some images failed (listed), or a plan could not look at some destination
	ExitUsage  = 2 // usage, configuration or credentials: nothing was attempted
	// ExitInterrupted is what a shell reports for a command ended by Ctrl-C (128 + SIGINT);
	// a run whose context was cancelled with ErrTerminated ends with ExitTerminated.
	ExitInterrupted = 130
	ExitTerminated  = 143 // 128 + SIGTERM
)

// ErrTerminated is the cause to cancel Run's context with on SIGTERM
// (context.WithCancelCause): the run then reports the interruption with ExitTerminated,
// in its JSON document as in its exit code.
var ErrTerminated = errors.New("terminated (SIGTERM)")

// With --detailed-exitcode (plan, sync --dry-run, copy --dry-run) the codes are those
// of `terraform plan -detailed-exitcode`: 0 in sync, 1 (ExitFailed) error of any kind,
// 2 drift.
const ExitDrift = 2

const exitCodesHelp = `Exit codes: 0 everything replicated or already present; 1 some images failed (each is
listed); 2 usage, configuration or credentials error (nothing was attempted); 130
interrupted (Ctrl-C), 143 terminated (SIGTERM): rerun to resume.`

// Version is set at build time with -ldflags "-X …/internal/cli.Version=…".
var Version = "dev"

// app is what every command shares: where output goes, the output format and the
// progress flags once a command parsed them, --debug, and the warnings said so far.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	debug          bool
	output         string // "text" or "json", set by commands that have --output
	quiet          bool   // --quiet: failures and the summary only, no progress
	noProgress     bool   // --no-progress
	command        string // "copy", "plan" or "sync", for the JSON document
	detailedExit   bool   // --detailed-exitcode, set by commands that have it
	args           []string
	warnings       []string // said on stderr (text) or in the JSON document
}

// warn says something the user should know that does not stop the command: on stderr
// at once, or in the JSON document's warnings.
func (a *app) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if a.json() {
		a.warnings = append(a.warnings, msg)
		return
	}
	fmt.Fprintln(a.stderr, "ecr-replicator: warning: "+msg)
}

// logger is the engine's logger: silent, or debug lines on stderr with --debug.
func (a *app) logger() *slog.Logger {
	if !a.debug {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(redactingHandler{slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelDebug})})
}

// showProgress reports whether a progress bar is drawn: only where a person watches — on
// a terminal that can redraw a line (not TERM=dumb) — and not with --quiet or
// --no-progress.
func (a *app) showProgress() bool {
	return !a.quiet && !a.noProgress && a.getenv("TERM") != "dumb" && isTerminal(a.stderr)
}

// colour reports whether result lines are coloured: on a terminal, unless NO_COLOR is
// set to anything (https://no-color.org) or TERM=dumb.
func (a *app) colour() bool {
	return !a.json() && a.getenv("NO_COLOR") == "" && a.getenv("TERM") != "dumb" && isTerminal(a.stdout)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// json reports whether the command's output is JSON: --output json, or, when the
// command failed before its flags were parsed, the arguments say so.
func (a *app) json() bool {
	if a.output != "" {
		return a.output == "json"
	}
	for i, arg := range a.args {
		switch {
		case arg == "--output=json", arg == "-ojson", arg == "-o=json":
			return true
		case (arg == "--output" || arg == "-o") && i+1 < len(a.args) && a.args[i+1] == "json":
			return true
		}
	}
	return false
}

// detailed reports whether the exit codes are --detailed-exitcode's, which apply to dry
// runs only (without --dry-run the flag is a usage error): the flags, or, when the command
// failed before its flags were parsed, the arguments say so.
func (a *app) detailed() bool {
	if a.command != "" && a.output != "" { // the flags were parsed
		return a.detailedExit
	}
	flag, dry := false, false
	for _, arg := range a.args {
		switch arg {
		case "--detailed-exitcode", "--detailed-exitcode=true":
			flag = true
		case "--dry-run", "--dry-run=true", "plan":
			dry = true
		}
	}
	return flag && dry
}

// exitError ends a command whose results were already printed, with an exit code.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// Run executes the command line args and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, args: args, getenv: os.Getenv}
	root := newRoot(a)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if a.command == "" {
		if c, _, ferr := root.Find(args); ferr == nil && c != root {
			a.command = c.Name()
		}
	}
	return a.finish(ctx, err)
}

// finish prints err (one line, or a JSON object on stdout with --output json; the cause
// too with --debug) and returns the exit code.
func (a *app) finish(ctx context.Context, err error) int {
	if err == nil {
		return ExitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		return a.exitCode(ctx, ee.code, ee.code == ExitDrift)
	}
	p := explain(ctx, err)
	p.exit, p.msg = a.exitCode(ctx, p.exit, false), redactFields(p.msg)
	if p.code == codeInterrupted {
		// docs/CLI-JSON.md lists both for INTERRUPTED; left is null when the run was
		// interrupted before it knew how many copies it had to make.
		p.extra = withDefaults(p.extra, map[string]any{"done": 0, "left": nil})
	}
	if a.json() {
		_ = writeJSONTo(a.stdout, errorDocument{SchemaVersion: schemaVersion, Command: a.command, Error: p.jsonObject(a.debug), Warnings: a.warnings})
	} else {
		fmt.Fprintln(a.stderr, "ecr-replicator: "+p.msg)
	}
	if a.debug && p.err != nil && !a.json() {
		fmt.Fprintln(a.stderr, "ecr-replicator: debug: "+detail(p.err))
	}
	return p.exit
}

// exitCode is the process's exit code for a command that ended with code: 143 for an
// interruption that SIGTERM caused; with --detailed-exitcode (terraform's meaning: 2 is
// drift), 1 for an error of any kind. drift says code 2 is the plan's drift, not a usage
// error.
func (a *app) exitCode(ctx context.Context, code int, drift bool) int {
	switch {
	case code == ExitInterrupted && errors.Is(context.Cause(ctx), ErrTerminated):
		return ExitTerminated
	case code == ExitOK, code == ExitInterrupted, code == ExitTerminated:
		return code
	case a.detailed() && !drift:
		return ExitFailed
	}
	return code
}

// withDefaults is m with the keys of defaults it lacks.
func withDefaults(m, defaults map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// isCobraUsage recognises cobra's own command and argument-count errors, which it
// returns as plain errors with no type to test.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "requires at most", "invalid argument", "unknown flag", "unknown shorthand flag", "flag needs an argument"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func newRoot(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "ecr-replicator",
		Short: "Replicate container images between ECR registries, across accounts and regions",
		Long: `ecr-replicator copies container images registry-to-registry, by digest: multi-platform
indexes, signatures and other referrers included, skipping what the destination already
has, without a Docker daemon or local disk.

  copy SRC DST        one image, or every tag of a repository (--all-tags)
  plan --rules FILE   what sync would copy, per repository and destination
  sync --rules FILE   copy whatever the destinations lack (a migration, or a repair)
  sandbox             a local two-account AWS emulation to try all of this safely

` + exitCodesHelp,
		Version:       Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("ecr-replicator {{.Version}}\n")
	root.PersistentPreRun = func(c *cobra.Command, _ []string) { a.command = c.Name() }
	root.PersistentFlags().BoolVar(&a.debug, "debug", false, "print the full cause of an error, and the engine's debug log on stderr")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageProblem(fmt.Sprintf("%v (see '%s --help')", err, c.CommandPath()))
	})
	root.AddCommand(newCopyCmd(a), newSyncCmd(a), newPlanCmd(a), newSandboxCmd(a), newDemoCmd(), newVersionCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version (same as --version)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			fmt.Fprintln(c.OutOrStdout(), "ecr-replicator", Version)
			return nil
		},
	}
}
