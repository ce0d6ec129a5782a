package sandbox_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// TestPutImageQuota: with a PutImage quota, manifest writes over it are refused as ECR
// throttles — ThrottlingException through the API, 429 TOOMANYREQUESTS from the
// registry — and a write waits its turn under it.
func TestPutImageQuota(t *testing.T) {
	cfg := sandbox.TwoAccounts(extID)
	cfg.PutImageRate = 5
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	t.Setenv("AWS_ENDPOINT_URL_ECR", sb.APIURL())
	t.Setenv("AWS_ENDPOINT_URL_STS", sb.APIURL())
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := &env{sb: sb, ctx: ctx}
	admin := e.userConfig(t, sandbox.SourceAccount, sandbox.AdminUser, config.WithRetryMaxAttempts(1))
	createRepo(t, ctx, admin, "q/app", ecrtypes.ImageTagMutabilityMutable)
	host, auth := registryAuth(t, ctx, admin)
	img, _ := random.Image(64, 1)
	if err := remote.Write(ref(t, host, "q/app", "base"), img, remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	api := ecr.NewFromConfig(admin)
	throttled := 0
	for i := range 12 { // more than one second's bucket, at once
		_, err := api.PutImage(ctx, &ecr.PutImageInput{RepositoryName: aws.String("q/app"), ImageManifest: aws.String(string(raw)),
			ImageManifestMediaType: aws.String(string(mt)), ImageTag: aws.String("t" + string(rune('a'+i)))})
		if errorCode(err) == "ThrottlingException" {
			throttled++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if throttled == 0 {
		t.Fatal("12 PutImage calls at once under a 5/s quota: none throttled")
	}
	// The registry's manifest PUT shares the bucket: at once, it is throttled too.
	saw429 := false
	for i := range 12 {
		err := remote.Put(ref(t, host, "q/app", "r"+string(rune('a'+i))), img, remote.WithAuth(auth), remote.WithContext(ctx),
			remote.WithRetryPredicate(func(error) bool { return false }))
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusTooManyRequests && len(te.Errors) > 0 && te.Errors[0].Code == transport.TooManyRequestsErrorCode {
			saw429 = true
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if !saw429 {
		t.Fatal("12 manifest PUTs at once under a 5/s quota: none throttled")
	}
	if n := sb.FaultsFired()["quota:PutImage"]; n < throttled {
		t.Fatalf("quota refusals counted %d, want at least %d", n, throttled)
	}
}
