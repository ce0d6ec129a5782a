package cli

import (
	"fmt"
	"os"
	"sort"

	"github.com/spf13/cobra"

	"github.com/ecr-replicator/ecr-replicator/internal/sandbox"
)

func newSandboxCmd() *cobra.Command {
	var (
		apiAddr, externalID, region, accessLog string
	)
	c := &cobra.Command{
		Use:   "sandbox",
		Short: "Run a local emulation of two AWS accounts (ECR, STS) on 127.0.0.1",
		Long: `Start the sandbox: a source account (` + sandbox.SourceAccount + `) and a destination account
(` + sandbox.DestinationAccount + `), each with an ECR registry per region, the ECR API and STS, SigV4
checked on every call. It prints 'export KEY=VALUE' lines for a shell to eval, then runs
until interrupted (Ctrl-C). No AWS account or Docker needed.

The printed credentials are the source account's "replicator" user; the destination
role trusts the source account and requires the printed external ID.`,
		Example: `  # in one shell
  ecr-replicator sandbox > /tmp/sandbox.env
  # in another
  eval "$(cat /tmp/sandbox.env)"
  aws ecr create-repository --repository-name team-a/app   # the AWS CLI works too`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if externalID == "" {
				externalID = "sandbox-" + randomSuffix()
			}
			cfg := sandbox.TwoAccounts(externalID)
			cfg.APIAddr = apiAddr
			if accessLog != "" {
				f, err := os.Create(accessLog)
				if err != nil {
					return usagef("--access-log: %v", err)
				}
				defer f.Close()
				cfg.AccessLog = f
			}
			sb, err := sandbox.New(cfg)
			if err != nil {
				return usageError{err}
			}
			defer sb.Close()
			env, err := sandbox.ClientEnv(sb, region, externalID)
			if err != nil {
				return usageError{err}
			}
			keys := make([]string, 0, len(env))
			for k := range env {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			out := c.OutOrStdout()
			fmt.Fprintln(out, "unset AWS_PROFILE AWS_SESSION_TOKEN")
			for _, k := range keys {
				fmt.Fprintf(out, "export %s=%s\n", k, shellQuote(env[k]))
			}
			fmt.Fprintln(c.ErrOrStderr(), "# sandbox running; interrupt (Ctrl-C) to stop")
			<-c.Context().Done()
			fmt.Fprintln(c.ErrOrStderr(), "# sandbox stopped")
			return nil
		},
	}
	c.Flags().StringVar(&apiAddr, "api-addr", "127.0.0.1:0", "listen address of the AWS API endpoint (loopback only)")
	c.Flags().StringVar(&externalID, "external-id", "", "external ID the destination role requires (default: random)")
	c.Flags().StringVar(&region, "region", sandbox.DefaultRegion, "region printed as AWS_REGION")
	c.Flags().StringVar(&accessLog, "access-log", "", "also write the access log to this file, one JSON line per request")
	return c
}
