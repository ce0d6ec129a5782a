package infra

// Review of issue 21 (independent reviewer): failing tests.

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestReview21ReconcilerRoleCannotWriteDestinations: issue 21 asks for a reconcile "with
// least privilege of its own (list and send, no registry writes)". The list-only session
// is something the reconcile code chooses to ask for (a session policy at AssumeRole);
// nothing in either template makes it so. infra/destination-role.yaml trusts
// ReconcilerRoleArn exactly as it trusts ReplicatorRoleArn, on the one role that writes,
// so ReconcilerRole — the deployed policies, nothing else — assumes the destination role
// without a session policy and deletes, creates and pushes in the destination account.
// A bug or a compromise of the reconcile function (which consumes a queue any principal
// of the account with sqs:SendMessage can write to) is a write path into every
// destination.
func TestReview21ReconcilerRoleCannotWriteDestinations(t *testing.T) {
	params := map[string]any{
		"DestinationAccountId": sandbox.DestinationAccount, "DestinationRegion": sandbox.DefaultRegion,
		"ExternalId": sandboxtest.ExternalID, "DestinationRepositoryPrefix": "mirror/", "CreateRepositories": "true",
		"MirrorDeletes": "true",
	}
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, params))
	ctx := w.Ctx
	img, _ := random.Image(128, 1)
	w.Dest.CreateRepository(t, ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/team-a/app")})
	w.Dest.Push(t, "mirror/team-a/app", "v1", img)

	cr, err := sandboxtest.RoleSession(ctx, w.SB, sandboxtest.ReconcilerRole, "ecr-replicator-reconciler")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(sandbox.DefaultRegion),
		config.WithCredentialsProvider(credentials.StaticCredentialsProvider{Value: cr}))
	if err != nil {
		t.Fatal(err)
	}
	// The same resolver the reconcile uses, asked for a full session instead of ListOnly.
	full, err := ecraccess.NewResolver(cfg).Client(ctx, ecraccess.Access{AccountID: sandbox.DestinationAccount,
		Region: sandbox.DefaultRegion, RoleARN: w.DestinationRoleARN(), ExternalID: sandboxtest.ExternalID})
	if err != nil {
		t.Fatal(err)
	}
	_, err = full.API().BatchDeleteImage(ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String("mirror/team-a/app"),
		ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("v1")}}})
	if code := ecraccess.ErrorCode(err); !ecraccess.IsAccessDenied(code) {
		t.Errorf("ReconcilerRole deleted mirror/team-a/app:v1 in the destination (BatchDeleteImage answered %v); want AccessDenied", err)
	}
	_, err = full.API().CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/created-by-reconciler")})
	if code := ecraccess.ErrorCode(err); !ecraccess.IsAccessDenied(code) {
		t.Errorf("ReconcilerRole created a destination repository (CreateRepository answered %v); want AccessDenied", err)
	}
	if got := w.Dest.Digest(t, "mirror/team-a/app", "v1"); got == "" {
		t.Errorf("mirror/team-a/app:v1 is gone from the destination")
	}
}
