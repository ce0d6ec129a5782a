// Package cli implements the ecr-replicator command line: argument parsing, output and
// exit codes. Commands call the same packages the Lambda functions use.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes, documented in every command's help.
const (
	ExitOK     = 0 // everything replicated
	ExitFailed = 1 // some images failed (listed)
	ExitUsage  = 2 // usage or configuration error
)

// Version is set at build time with -ldflags "-X …/internal/cli.Version=…".
var Version = "dev"

// usageError marks errors that exit with ExitUsage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// failedError marks a run that completed with failures (ExitFailed); the details were
// already printed.
type failedError struct{ n int }

func (e failedError) Error() string { return fmt.Sprintf("%d failed", e.n) }

// Run executes the command line args and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var fe failedError
	if errors.As(err, &fe) {
		return ExitFailed
	}
	fmt.Fprintln(stderr, "ecr-replicator:", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return ExitUsage
	}
	return ExitFailed
}

// isCobraUsage recognises cobra's own command and argument-count errors, which it
// returns as plain errors.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "requires at most", "invalid argument"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "ecr-replicator",
		Short: "Replicate container images between ECR registries, across accounts and regions",
		Long: `ecr-replicator copies container images registry-to-registry, by digest: multi-platform
indexes, signatures and other referrers included, skipping what the destination already
has, without a Docker daemon or local disk.

Exit codes: 0 everything replicated, 1 some images failed (listed), 2 usage or
configuration error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w\nRun '%s --help' for usage.", err, c.CommandPath())}
	})
	root.AddCommand(newCopyCmd(), newSyncCmd(), newPlanCmd(), newSandboxCmd(), newDemoCmd(), newVersionCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			fmt.Fprintln(c.OutOrStdout(), "ecr-replicator", Version)
			return nil
		},
	}
}
