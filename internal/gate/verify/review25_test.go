package verify_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/gate"
	"github.com/ecr-replicator/ecr-replicator/internal/gate/verify"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/sign"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/signing"
)

// regionalKMS is a KMS client of one Region, as AWS KMS answers it: KMS keys are
// regional, and a request to a Region's endpoint naming the key ARN of another Region
// fails with NotFoundException ("Invalid arn <region>": pulumi/pulumi#17022,
// kubernetes-retired/kube-aws#1041; getsops/sops#149 fixed it with a client per key
// Region). The client's Region is its own, unless the call's options set another.
type regionalKMS struct {
	region string
	keys   map[string][]byte // DER public keys by key ARN
	calls  []string          // the Region each call went to
}

func (k *regionalKMS) GetPublicKey(_ context.Context, in *kms.GetPublicKeyInput, optFns ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error) {
	o := kms.Options{Region: k.region}
	for _, f := range optFns {
		f(&o)
	}
	k.calls = append(k.calls, o.Region)
	arn := aws.ToString(in.KeyId)
	if parts := strings.Split(arn, ":"); len(parts) > 3 && parts[3] != o.Region {
		return nil, &kmstypes.NotFoundException{Message: aws.String("Invalid arn " + parts[3])}
	}
	der, ok := k.keys[arn]
	if !ok {
		return nil, &kmstypes.NotFoundException{Message: aws.String(fmt.Sprintf("Key '%s' does not exist", arn))}
	}
	return &kms.GetPublicKeyOutput{KeyId: aws.String(arn), PublicKey: der}, nil
}

// TestReview25KMSKeyOfAnotherRegion: a kmsKey signer names its key by ARN — Region and
// all (cosign sign --key awskms:///arn:aws:kms:us-west-2:…) — and the template grants
// kms:GetPublicKey on that ARN (SigningKeyArns); but the public key is fetched with the
// function's own KMS client, in the function's Region. A release key kept in another
// Region than the source registry (a central signing Region) can never be fetched: every
// decision on an image it signed fails, and nothing it signs is ever promoted. The
// sandbox's KMS hides this: it answers any ARN of the caller's account, whatever the
// Region of the endpoint (internal/tooling/sandbox: TestReview25KMSKeysAreRegional).
func TestReview25KMSKeyOfAnotherRegion(t *testing.T) {
	key := signing.NewKey(t)
	arn := "arn:aws:kms:us-west-2:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	d, err := rules.Parse([]byte(`{"rules":[{"name":"r","require":{"signatures":{"signers":[{"name":"central","kmsKey":"` + arn + `"}]}},
	  "destinations":[{"accountId":"222222222222","region":"us-east-1"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	api := &regionalKMS{region: "us-east-1", keys: map[string][]byte{arn: key.PublicDER(t)}}
	vs, err := verify.Compile(d, verify.Options{KMS: api})
	if err != nil {
		t.Fatal(err)
	}

	repo, _ := name.NewRepository("111111111111.dkr.ecr.us-east-1.amazonaws.com/team-a/app")
	digest := "sha256:" + strings.Repeat("ab", 32)
	subject := v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: 512, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}}
	payload, err := sign.Payload(repo, digest)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := key.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s := &gate.Signature{Repository: repo.Name(), Ref: "sha256-" + strings.Repeat("ab", 32) + ".sig", Format: gate.FormatCosign,
		Layers: []gate.Layer{{Descriptor: v1.Descriptor{MediaType: gate.MediaTypeSimpleSigning,
			Annotations: map[string]string{sign.AnnotationSignature: base64.StdEncoding.EncodeToString(sig)}}, Data: payload}}}
	signer := &d.Rules[0].Require.Signatures.Signers[0]
	if err := vs[signer].Verify(context.Background(), s, subject); err != nil {
		t.Fatalf("a signature by the us-west-2 KMS key %s, verified by a function in us-east-1: %v (GetPublicKey sent to %v)", arn, err, api.calls)
	}
}
