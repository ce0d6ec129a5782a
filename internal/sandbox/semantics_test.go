package sandbox_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/sandbox"
)

// TestLongTags: the ECR API's PutImage takes tags of up to 300 characters (API_PutImage,
// imageTag); the registry API, whose tag grammar is the OCI distribution spec's, at most
// 128. A longer tag is written and read through the ECR API only.
func TestLongTags(t *testing.T) {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	client := ecr.NewFromConfig(src)
	createRepo(t, e.ctx, src, "team-a/long", "")
	host, auth := registryAuth(t, e.ctx, src)
	img, _ := random.Image(256, 1)
	d, _ := img.Digest()
	if err := remote.Write(ref(t, host, "team-a/long", d.String()), img, remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	put := func(tag string) error {
		_, err := client.PutImage(e.ctx, &ecr.PutImageInput{RepositoryName: aws.String("team-a/long"), ImageManifest: aws.String(string(raw)),
			ImageManifestMediaType: aws.String(string(mt)), ImageTag: aws.String(tag)})
		return err
	}
	t300 := "t" + strings.Repeat("x", 299)
	if err := put(t300); err != nil {
		t.Fatalf("PutImage with a 300-character tag: %v", err)
	}
	if err := put(t300 + "x"); errorCode(err) != "InvalidParameterException" {
		t.Fatalf("PutImage with a 301-character tag: %v", err)
	}
	bg, err := client.BatchGetImage(e.ctx, &ecr.BatchGetImageInput{RepositoryName: aws.String("team-a/long"), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String(t300)}}})
	if err != nil || len(bg.Images) != 1 || aws.ToString(bg.Images[0].ImageId.ImageDigest) != d.String() {
		t.Fatalf("BatchGetImage by the long tag: %+v %v", bg, err)
	}
	// The registry API: 128 is fine, 129 is not (GET, HEAD or PUT).
	t128 := "t" + strings.Repeat("y", 127)
	if err := remote.Write(ref(t, host, "team-a/long", t128), img, remote.WithAuth(auth)); err != nil {
		t.Fatalf("a 128-character tag through the registry: %v", err)
	}
	t129 := t128 + "y"
	basic := auth.(*authn.Basic)
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPut} {
		req, _ := http.NewRequest(method, "http://"+host+"/v2/team-a/long/manifests/"+t129, strings.NewReader(string(raw)))
		req.Header.Set("Content-Type", string(mt))
		req.SetBasicAuth(basic.Username, basic.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s of a 129-character tag through the registry: HTTP %d, want 400", method, resp.StatusCode)
		}
	}
}
