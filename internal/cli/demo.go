package cli

import (
	"github.com/spf13/cobra"

	"github.com/ecr-replicator/ecr-replicator/internal/demo"
)

func newDemoCmd() *cobra.Command {
	var bin string
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run the end-to-end demo locally (use `make demo`, which builds what it needs)",
		Long: `Start the sandbox, push a multi-platform image and a few tags into the source account,
run the replicate function's bootstrap under the Lambda Runtime Interface Emulator on the
push events, backfill what was pushed before, print a before/after table of digests per
tag, and stop everything. No AWS account, no Docker.

` + "`make demo`" + ` builds the two bootstraps for this machine and the emulator into --bin first.`,
		Example: `  make demo
  ecr-replicator demo --bin .demo/bin`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			bins := demo.BinariesIn(bin)
			if err := bins.Check(); err != nil {
				return configProblem(err, "%v", err)
			}
			rows, err := demo.Run(c.Context(), bins, c.OutOrStdout())
			if err != nil {
				return err
			}
			failed := 0
			for _, r := range rows {
				if !r.OK() {
					failed++
				}
			}
			if failed > 0 {
				return exitError{ExitFailed}
			}
			return nil
		},
	}
	c.Flags().StringVar(&bin, "bin", ".demo/bin", "directory holding replicate-bootstrap, backfill-bootstrap and aws-lambda-rie")
	return c
}
