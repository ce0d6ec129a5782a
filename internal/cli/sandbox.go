package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// sandboxLong is the sandbox command's help.
const sandboxLong = `Start the sandbox: a source account (` + sandbox.SourceAccount + `) and a destination account
(` + sandbox.DestinationAccount + `), each with an ECR registry per region, the ECR API, STS and SQS, SigV4
checked on every call, IAM policies enforced. No AWS account or Docker needed; it runs
until interrupted (Ctrl-C).

It prints the environment a client needs as 'export KEY=VALUE' lines — or, with
--env-file FILE, writes them to FILE once the sandbox is ready (atomically: the file
appears complete or not at all, and is removed when the sandbox stops), so a script can
wait for the file and source it without racing the start-up.

The environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY of the source account's
"replicator" user; AWS_REGION and AWS_DEFAULT_REGION (AWS CLI v1 reads only the latter);
AWS_ENDPOINT_URL_ECR, _STS, _SQS, _EVENTBRIDGE and _SSM, which the AWS SDKs and the AWS CLI
v2.13.0+ and v1.29.0+ honour (older CLIs need --endpoint-url "$AWS_ENDPOINT_URL_ECR" on
every command); and SANDBOX_* variables: each account's ID and loopback registry host,
the destination role's ARN and the external ID its trust policy requires.

Registries are plain http on 127.0.0.1. Tools that name an ECR registry by its host name
(ecr-replicator: ACCOUNT.dkr.ecr.REGION.amazonaws.com) reach it through the ECR API, which
answers with the loopback host; registry clients (crane, docker, skopeo) use the
SANDBOX_*_REGISTRY hosts directly.`

const sandboxExample = `  # start it in the background and wait for the environment (race-free)
  rm -f /tmp/sandbox.env
  ecr-replicator sandbox --env-file /tmp/sandbox.env &
  until [ -f /tmp/sandbox.env ]; do sleep 0.2; done
  . /tmp/sandbox.env
  aws ecr create-repository --repository-name team-a/app

  # or in one shell, printing the environment for another
  ecr-replicator sandbox --external-id my-id`

// sandboxOptions are the sandbox command's flags.
type sandboxOptions struct {
	apiAddr, externalID, region, accessLog, envFile string
}

func newSandboxCmd(a *app) *cobra.Command {
	var o sandboxOptions
	c := &cobra.Command{
		Use:     "sandbox",
		Short:   "Run a local emulation of two AWS accounts (ECR, STS, SQS) on 127.0.0.1",
		Long:    sandboxLong,
		Example: sandboxExample,
		Args:    cobra.NoArgs,
		RunE:    func(c *cobra.Command, _ []string) error { return o.run(c) },
	}
	c.Flags().StringVar(&o.envFile, "env-file", "", "write the environment to this file once ready (atomically), instead of printing it; removed on exit")
	c.Flags().StringVar(&o.apiAddr, "api-addr", "127.0.0.1:0", "listen address of the AWS API endpoint (loopback only)")
	c.Flags().StringVar(&o.externalID, "external-id", "", "external ID the destination role requires (default: random)")
	c.Flags().StringVar(&o.region, "region", sandbox.DefaultRegion, "region printed as AWS_REGION and AWS_DEFAULT_REGION")
	c.Flags().StringVar(&o.accessLog, "access-log", "", "also write the access log to this file, one JSON line per request")
	return c
}

// run starts the sandbox, hands out its environment and waits for the interrupt.
func (o *sandboxOptions) run(c *cobra.Command) error {
	if o.externalID == "" {
		o.externalID = "sandbox-" + randomSuffix()
	}
	if o.envFile != "" {
		// A file left by a sandbox that did not stop cleanly must not be taken
		// for this one's.
		if err := os.Remove(o.envFile); err != nil && !os.IsNotExist(err) {
			return configProblem(err, "--env-file %s: %v", o.envFile, err)
		}
	}
	cfg := sandbox.TwoAccounts(o.externalID)
	cfg.APIAddr = o.apiAddr
	if o.accessLog != "" {
		f, err := os.Create(o.accessLog)
		if err != nil {
			return configProblem(err, "--access-log: %v", err)
		}
		defer f.Close()
		cfg.AccessLog = f
	}
	sb, err := sandbox.New(cfg)
	if err != nil {
		return usageProblem(err.Error())
	}
	defer sb.Close()
	env, err := sandbox.ClientEnv(sb, o.region, o.externalID)
	if err != nil {
		return usageProblem(err.Error())
	}
	script := exportScript(env)
	out := c.OutOrStdout()
	if o.envFile != "" {
		if err := writeFileAtomic(o.envFile, []byte(script)); err != nil {
			return configProblem(err, "--env-file %s: %v", o.envFile, err)
		}
		defer os.Remove(o.envFile)
		fmt.Fprintf(c.ErrOrStderr(), "# sandbox ready: source account %s (registry %s), destination account %s (registry %s)\n# environment in %s: . %s\n",
			env["SANDBOX_SOURCE_ACCOUNT_ID"], env["SANDBOX_SOURCE_REGISTRY"], env["SANDBOX_DESTINATION_ACCOUNT_ID"], env["SANDBOX_DESTINATION_REGISTRY"], o.envFile, o.envFile)
	} else {
		fmt.Fprint(out, script)
	}
	fmt.Fprintln(c.ErrOrStderr(), "# sandbox running; interrupt (Ctrl-C) to stop")
	<-c.Context().Done()
	fmt.Fprintln(c.ErrOrStderr(), "# sandbox stopped")
	return nil
}

// exportScript is the environment as POSIX shell lines, sorted.
func exportScript(env map[string]string) string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("unset AWS_PROFILE AWS_SESSION_TOKEN\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(env[k]))
	}
	return b.String()
}

// writeFileAtomic writes data to a temporary file next to path and renames it into
// place: a reader sees no file or the whole file (rename(2) is atomic on one file system).
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
