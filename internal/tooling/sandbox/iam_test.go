package sandbox_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

func TestIAMEnforcement(t *testing.T) {
	const pullOnly = `{"Version":"2012-10-17","Statement":[
	  {"Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"},
	  {"Effect":"Allow","Action":["ecr:Describe*","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer","ecr:BatchCheckLayerAvailability"],"Resource":"arn:aws:ecr:*:111111111111:repository/team-a/*"},
	  {"Effect":"Allow","Action":"sts:AssumeRole","Resource":"arn:aws:iam::222222222222:role/pusher"},
	  {"Effect":"Deny","Action":"ecr:*","Resource":"arn:aws:ecr:*:*:repository/team-a/secret"}]}`
	const push = `{"Version":"2012-10-17","Statement":[
	  {"Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"},
	  {"Effect":"Allow","Action":["ecr:CreateRepository","ecr:DescribeRepositories","ecr:BatchCheckLayerAvailability","ecr:InitiateLayerUpload","ecr:UploadLayerPart","ecr:CompleteLayerUpload","ecr:PutImage","ecr:BatchGetImage"],"Resource":"arn:aws:ecr:*:222222222222:repository/mirror/*"}]}`
	const trust = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:user/reader"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"xyz"}}}]}`
	cfg := sandbox.Config{Accounts: []sandbox.AccountConfig{
		{ID: sandbox.SourceAccount, Users: []sandbox.UserConfig{{Name: "reader", Policies: []string{pullOnly}}, {Name: sandbox.AdminUser}}},
		{ID: sandbox.DestinationAccount, Users: []sandbox.UserConfig{{Name: sandbox.AdminUser}}, Roles: []sandbox.RoleConfig{{Name: "pusher", Policies: []string{push}, TrustPolicy: trust}}},
	}}
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	e := &env{sb: sb}
	e.ctx = t.Context()
	t.Setenv("AWS_ENDPOINT_URL_ECR", sb.APIURL())
	t.Setenv("AWS_ENDPOINT_URL_STS", sb.APIURL())
	admin := e.userConfig(t, sandbox.SourceAccount, sandbox.AdminUser)
	for _, repo := range []string{"team-a/app", "team-a/secret", "team-b/app"} {
		createRepo(t, e.ctx, admin, repo, "")
	}
	reader := e.userConfig(t, sandbox.SourceAccount, "reader")
	client := ecr.NewFromConfig(reader)
	if _, err := client.DescribeRepositories(e.ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"team-a/app"}}); err != nil {
		t.Errorf("allowed DescribeRepositories: %v", err)
	}
	for name, call := range map[string]func() error{
		"CreateRepository outside the policy": func() error {
			_, err := client.CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/new")})
			return err
		},
		"another repository prefix": func() error {
			_, err := client.DescribeRepositories(e.ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"team-b/app"}})
			return err
		},
		"explicit deny wins": func() error {
			_, err := client.DescribeRepositories(e.ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"team-a/secret"}})
			return err
		},
	} {
		if code := errorCode(call()); code != "AccessDeniedException" {
			t.Errorf("%s: %q, want AccessDeniedException", name, code)
		}
	}
	// Registry requests are checked too: the reader may pull but not push.
	host, auth := registryAuth(t, e.ctx, reader)
	img, _ := random.Image(256, 1)
	err = remote.Write(ref(t, host, "team-a/app", "v1"), img, remote.WithAuth(auth), remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusForbidden {
		t.Errorf("push without permission: %v, want 403", err)
	}

	// The trust policy admits the reader only with the external ID; the session is
	// bound by the role's policies.
	assume := func(ext string) aws.Config {
		c := reader.Copy()
		c.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(reader), sandbox.RoleARN(sandbox.DestinationAccount, "pusher"), func(o *stscreds.AssumeRoleOptions) {
			if ext != "" {
				o.ExternalID = aws.String(ext)
			}
		}))
		return c
	}
	if _, err := ecr.NewFromConfig(assume("wrong")).DescribeRepositories(e.ctx, &ecr.DescribeRepositoriesInput{}); err == nil {
		t.Error("assumed the role with the wrong external ID")
	}
	pusher := ecr.NewFromConfig(assume("xyz"))
	if _, err := pusher.CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/app")}); err != nil {
		t.Errorf("allowed CreateRepository: %v", err)
	}
	if _, err := pusher.CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("elsewhere")}); errorCode(err) != "AccessDeniedException" {
		t.Errorf("CreateRepository outside mirror/: %v", err)
	}
	// A session policy narrows the session to what both it and the role allow: API calls
	// and registry requests alike.
	readOnly := reader.Copy()
	readOnly.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(reader), sandbox.RoleARN(sandbox.DestinationAccount, "pusher"), func(o *stscreds.AssumeRoleOptions) {
		o.ExternalID = aws.String("xyz")
		o.Policy = aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:DescribeRepositories","ecr:GetAuthorizationToken","ecr:CreateRepository"],"Resource":"*"}]}`)
	}))
	narrowed := ecr.NewFromConfig(readOnly)
	if _, err := narrowed.DescribeRepositories(e.ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"mirror/app"}}); err != nil {
		t.Errorf("DescribeRepositories allowed by both: %v", err)
	}
	if _, err := narrowed.CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("elsewhere")}); errorCode(err) != "AccessDeniedException" {
		t.Errorf("CreateRepository the role does not allow, the session policy does: %v", err)
	}
	if _, err := narrowed.PutImage(e.ctx, &ecr.PutImageInput{RepositoryName: aws.String("mirror/app"), ImageManifest: aws.String("{}"), ImageTag: aws.String("x")}); errorCode(err) != "AccessDeniedException" {
		t.Errorf("PutImage the role allows, the session policy does not: %v", err)
	}
	dhost, dauth := registryAuth(t, e.ctx, readOnly)
	err = remote.Write(ref(t, dhost, "mirror/app", "v1"), img, remote.WithAuth(dauth), remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusForbidden {
		t.Errorf("registry push outside the session policy: %v, want 403", err)
	}

	// An identity policy without sts:AssumeRole on a role refuses it before the trust policy.
	_, err = sts.NewFromConfig(reader).AssumeRole(e.ctx, &sts.AssumeRoleInput{RoleArn: aws.String(sandbox.RoleARN(sandbox.DestinationAccount, "other")), RoleSessionName: aws.String("x1")})
	if errorCode(err) != "AccessDenied" {
		t.Errorf("AssumeRole of an unlisted role: %v", err)
	}
}
