package sandbox_test

// Review of issue 25: the sandbox's KMS against AWS KMS.

import (
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// TestReview25KMSKeysAreRegional: KMS keys are regional — a key lives in the Region of
// its ARN, and a request to another Region's endpoint naming it fails with
// NotFoundException ("Invalid arn us-west-2": the AWS answer reported in
// pulumi/pulumi#17022 and kubernetes-retired/kube-aws#1041; getsops/sops#149 fixed it
// with one client per key Region). The sandbox answers any key ARN of the caller's
// account whatever the Region it is asked in, so a product that asks the wrong Region's
// KMS (the replicate function asks its own Region for every kmsKey signer) passes here
// and fails in AWS.
func TestReview25KMSKeysAreRegional(t *testing.T) {
	e := start(t)
	t.Setenv("AWS_ENDPOINT_URL_KMS", e.sb.APIURL())
	img, _ := random.Image(64, 1) // any DER will do: the sandbox does not parse it
	der, _ := img.RawConfigFile()
	arn := e.sb.PutKMSPublicKey(sandbox.SourceAccount, "us-west-2", "1234abcd-12ab-34cd-56ef-1234567890ab", "ECC_NIST_P256", der)

	west := kms.NewFromConfig(e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser, config.WithRegion("us-west-2")))
	if _, err := west.GetPublicKey(e.ctx, &kms.GetPublicKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatalf("GetPublicKey in the key's own Region: %v", err)
	}
	east := kms.NewFromConfig(e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser, config.WithRegion("us-east-1")))
	_, err := east.GetPublicKey(e.ctx, &kms.GetPublicKeyInput{KeyId: aws.String(arn)})
	var nf *kmstypes.NotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("GetPublicKey of %s asked in us-east-1: %v, want NotFoundException (KMS keys are regional)", arn, err)
	}
}
