package cli

import (
	"github.com/spf13/cobra"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/demo"
)

func newDemoCmd() *cobra.Command {
	var bin string
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run the end-to-end demo locally: the sandbox, the functions under the Lambda emulator, no AWS",
		Long: `Start the sandbox, push a multi-platform image and a few tags into the source account,
run the replicate function's bootstrap under the Lambda Runtime Interface Emulator on the
push events, backfill what was pushed before, print a before/after table of digests per
tag, and stop everything. No AWS account, no Docker.

` + "`make demo`" + ` builds the two bootstraps for this machine and the emulator into --bin first.
Anywhere else this program runs as both functions' bootstrap, and the emulator is
aws-lambda-rie from PATH or, with Go installed, built once into the user cache directory.`,
		Example: `  make demo
  ecr-replicator demo --bin .demo/bin`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			bins, err := demo.Locate(c.Context(), bin, c.Flags().Changed("bin"), c.ErrOrStderr())
			if err != nil {
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
	c.Flags().StringVar(&bin, "bin", ".demo/bin", "directory holding replicate-bootstrap, backfill-bootstrap and aws-lambda-rie (make demo builds them); by default used only if they are there")
	return c
}
