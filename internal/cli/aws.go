package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/ssocreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
)

// awsSession is one AWS identity (a profile, or the default credential chain) in one
// region, checked before any work: the credentials exist and AWS accepts them.
type awsSession struct {
	cfg       aws.Config
	profile   string
	callerARN string
	account   string
	resolver  *ecraccess.Resolver
}

// awsSessions opens sessions once per profile and region.
type awsSessions struct {
	log         *slog.Logger
	sessionName string
	mu          sync.Mutex
	open        map[string]*awsSession
}

func newAWSSessions(log *slog.Logger, sessionName string) *awsSessions {
	return &awsSessions{log: log, sessionName: sessionName, open: map[string]*awsSession{}}
}

// get loads the configuration of profile (empty: the default chain) for region (empty:
// the configured one) and checks the credentials with sts:GetCallerIdentity, which
// every identity may call (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html).
func (s *awsSessions) get(ctx context.Context, profile, region string) (*awsSession, error) {
	key := profile + "|" + region
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.open[key]; ok {
		return sess, nil
	}
	var opts []func(*config.LoadOptions) error
	if profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(profile))
	}
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		var nf config.SharedConfigProfileNotExistError
		if errors.As(err, &nf) {
			return nil, configProblem(err, "AWS profile %q not found in ~/.aws/config or ~/.aws/credentials (or the files AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE name): check --profile (or AWS_PROFILE), or create it with `aws configure --profile %s`", nf.Profile, nf.Profile)
		}
		return nil, configProblem(err, "AWS configuration could not be loaded: %s", apiMessage(err))
	}
	if cfg.Region == "" {
		return nil, &problem{code: "MissingRegion", exit: ExitUsage, msg: "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or pass --region"}
	}
	if err := checkCredentials(ctx, cfg, profile); err != nil {
		return nil, err
	}
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return nil, awsProblem(err, "")
	}
	sess := &awsSession{
		cfg: cfg, profile: profile, callerARN: aws.ToString(out.Arn), account: aws.ToString(out.Account),
		resolver: ecraccess.NewResolver(cfg, ecraccess.WithSessionName(s.sessionName), ecraccess.WithLogger(s.log),
			ecraccess.WithCallerAccount(aws.ToString(out.Account))),
	}
	s.open[key] = sess
	return sess, nil
}

// checkCredentials retrieves the credentials, so that "there are none" is told apart
// from "AWS refused them".
func checkCredentials(ctx context.Context, cfg aws.Config, profile string) error {
	if cfg.Credentials == nil {
		return noCredentials(nil)
	}
	_, err := cfg.Credentials.Retrieve(ctx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	// The SDK falls back to the EC2 instance role when nothing else is configured
	// (https://docs.aws.amazon.com/sdkref/latest/guide/standardized-credentials.html):
	// failing there means no credentials were found anywhere.
	if aws.IsCredentialsProvider(cfg.Credentials, (*ec2rolecreds.Provider)(nil)) {
		return noCredentials(err)
	}
	var sso *ssocreds.InvalidTokenError
	if errors.As(err, &sso) {
		login := "aws sso login"
		if profile != "" {
			login += " --profile " + profile
		}
		return &problem{code: "ExpiredToken", exit: ExitUsage, err: err, msg: fmt.Sprintf("the AWS SSO session has expired or is missing: run `%s` and rerun", login)}
	}
	if p := awsProblem(err, ""); p.code != "" {
		return p
	}
	where := "the default credential chain"
	if profile != "" {
		where = "profile " + profile
	}
	return &problem{code: codeNoCredentials, exit: ExitUsage, err: err, msg: fmt.Sprintf("could not get AWS credentials from %s: %s", where, apiMessage(err))}
}

func noCredentials(err error) *problem {
	return &problem{code: codeNoCredentials, exit: ExitUsage, err: err,
		msg: "no AWS credentials found: set AWS_PROFILE (or --profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws configure` or `aws sso login`"}
}

// assumeRole opens a's registry and, when a names a role, assumes it now, so that a
// denied role is reported once, before any work, and in words that say what to check.
// externalIDFrom names where the external ID came from (a flag, a rules field).
func (s *awsSession) assumeRole(ctx context.Context, a ecraccess.Access, externalIDFrom string) (*ecraccess.Client, error) {
	reg, err := s.resolver.Client(ctx, a)
	if err != nil {
		return nil, awsProblem(err, "")
	}
	if a.RoleARN == "" {
		return reg, nil
	}
	if creds := reg.API().Options().Credentials; creds != nil {
		if _, err := creds.Retrieve(ctx); err != nil {
			return nil, roleProblem(err, a, externalIDFrom, s.callerARN)
		}
	}
	return reg, nil
}

// roleProblem explains a failed sts:AssumeRole.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_common-scenarios_third-party.html
func roleProblem(err error, a ecraccess.Access, externalIDFrom, caller string) *problem {
	p := awsProblem(err, "")
	if !deniedCodes[p.code] {
		return p
	}
	check := fmt.Sprintf("the external ID (%s) matches the sts:ExternalId condition of the role's trust policy", externalIDFrom)
	if a.ExternalID == "" {
		check = fmt.Sprintf("the role's trust policy does not require an external ID (sts:ExternalId); if it does, set %s", externalIDFrom)
	}
	allows := "to assume it"
	if a.Write && !a.ListOnly {
		// A write session carries a session tag (ecraccess.Access.Write).
		allows = "to assume it and to tag the session (sts:TagSession, which the identity's own policy must allow too)"
	}
	p.op = "sts:AssumeRole"
	p.exit = ExitUsage
	p.msg = fmt.Sprintf("cannot assume %s (%s): check that %s, and that the trust policy allows %s %s", a.RoleARN, p.code, check, caller, allows)
	return p
}
