// Package signin signs in to the sandbox's accounts as their admin user, the way a
// user of the account would: an AWS SDK configuration for the sandbox's APIs, and the
// registry's host and login from ECR's GetAuthorizationToken. The demo, the stack
// helper and the benchmarks share it.
package signin

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// Config is account's admin configuration in the sandbox's default region, every AWS
// API pointed at the sandbox.
func Config(ctx context.Context, sb *sandbox.Sandbox, account string) (aws.Config, error) {
	key, secret, err := sb.Credentials(account, sandbox.AdminUser)
	if err != nil {
		return aws.Config{}, err
	}
	return config.LoadDefaultConfig(ctx, config.WithRegion(sandbox.DefaultRegion),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(key, secret, "")),
		config.WithBaseEndpoint(sb.APIURL()))
}

// Registry is one account's registry as its admin sees it.
type Registry struct {
	API  *ecr.Client
	Host string // the registry's host, from proxyEndpoint
	Auth authn.Authenticator
}

// Login signs in to account's registry as the replicator does (ecraccess: the host
// from proxyEndpoint, a cached token that is renewed before it expires).
func Login(ctx context.Context, sb *sandbox.Sandbox, account string) (*Registry, error) {
	cfg, err := Config(ctx, sb, account)
	if err != nil {
		return nil, err
	}
	reg, err := ecraccess.NewResolver(cfg).Client(ctx, ecraccess.Access{Region: cfg.Region})
	if err != nil {
		return nil, err
	}
	host, err := reg.Host(ctx, "")
	if err != nil {
		return nil, err
	}
	return &Registry{API: reg.API(), Host: host, Auth: reg.Authenticator()}, nil
}
