package copyengine

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// TestReview26bWriteRefusalForgetsGoodMountSources: the destination identity may read a
// repository but not write it — as the destination role has it for a repository under its
// prefix that this replicator does not own (infra/destination-role.yaml: ReadWithinPrefix
// on the prefix, WriteOwnedRepositories only with the ecr-replicator:owner tag; reached by
// a copy when destinations remembers the repository as owned and it was un-adopted since).
// A copy into it asks to mount the base from mirror/a; ECR refuses the POST with 403
// because of the *destination* (ecr:InitiateLayerUpload), not the source. tryMount takes
// any non-202 4xx as the source's refusal and forgets mirror/a as the source of every
// blob asked (mount.go, the `code >= 400 && code < 500` case): the next copy into a
// repository it may write (mirror/c) uploads the whole base instead of mounting it —
// and every redelivery of the failing copy wipes the index again.
func TestReview26bWriteRefusalForgetsGoodMountSources(t *testing.T) {
	cfg := sandbox.TwoAccounts("")
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:GetAccountSetting"],"Resource":"*"},
		{"Effect":"Allow","Action":["ecr:InitiateLayerUpload","ecr:UploadLayerPart","ecr:CompleteLayerUpload","ecr:PutImage",
			"ecr:BatchCheckLayerAvailability","ecr:BatchGetImage","ecr:DescribeImages","ecr:DescribeRepositories","ecr:GetDownloadUrlForLayer","ecr:ListImages"],
		 "Resource":"arn:aws:ecr:*:%[1]s:repository/mirror/*"},
		{"Effect":"Deny","Action":["ecr:InitiateLayerUpload","ecr:UploadLayerPart","ecr:CompleteLayerUpload","ecr:PutImage"],
		 "Resource":"arn:aws:ecr:*:%[1]s:repository/mirror/b"}]}`, sandbox.DestinationAccount)
	cfg.Accounts[1].Users = append(cfg.Accounts[1].Users, sandbox.UserConfig{Name: "replicator", Policies: []string{policy}})
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	src, admin := sandboxSide(t, sb, sandbox.SourceAccount), sandboxSide(t, sb, sandbox.DestinationAccount)
	if _, err := admin.api.PutAccountSetting(context.Background(), &ecr.PutAccountSettingInput{Name: aws.String("BLOB_MOUNTING"), Value: aws.String("ENABLED")}); err != nil {
		t.Fatal(err)
	}
	rep := review26User(t, sb, sandbox.DestinationAccount, "replicator")
	// One image, replicated into three repositories (one source, several destination
	// repositories): every blob of the copy into mirror/b can be mounted from mirror/a, so
	// every POST into mirror/b is a mount, and the first is refused (403) for mirror/b's sake.
	img := must[v1.Image](t)(mutate.AppendLayers(must[v1.Image](t)(random.Image(64<<10, 2)), must[v1.Layer](t)(random.Layer(512, types.DockerLayer))))
	s := src.repo(t, "team/app", true)
	if err := remote.Write(s.Tag("v1"), img, remote.WithAuth(src.auth)); err != nil {
		t.Fatal(err)
	}
	blobs := 1 + len(must[[]v1.Layer](t)(img.Layers()))
	request := func(name string) Request {
		admin.repo(t, "mirror/"+name, true)
		return Request{Source: Endpoint{Repository: s, Auth: src.auth},
			Destination: Endpoint{Repository: rep.repo(t, "mirror/"+name, false), Auth: rep.auth, Mounting: Mounting{Enabled: true, Encryption: "AES256"}},
			Digest:      digestOf(t, img).String(), Tag: "v1"}
	}
	a, b, c := request("a"), request("b"), request("c")
	run := fastCopier()
	if r := run.Copy(context.Background(), a); r.Err != nil {
		t.Fatal(r.Err)
	}
	// The copy into mirror/b fails (as it should), and is delivered again, as SQS does.
	for range 2 {
		if r := run.Copy(context.Background(), b); r.Err == nil {
			t.Fatalf("a copy into a repository the identity may not write: %s, want failed", r.Outcome)
		}
	}
	var refused int
	for _, e := range sb.AccessLogSince(0) {
		if e.Repository == "mirror/b" && e.Operation == "POST upload" && e.Status == 403 {
			refused++
		}
	}
	res := run.Copy(context.Background(), c)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	t.Logf("upload POSTs into mirror/b (mounts first) refused with 403 (its own write denial): %d; mirror/c then uploaded %d bytes, mounted %d blobs", refused, res.BytesCopied, res.BlobsMounted)
	if res.BlobsMounted != blobs || res.BytesCopied != 0 {
		t.Errorf("after copies into a repository that refuses writes, the copy of the same image into mirror/c uploaded %d bytes and mounted %d blobs, want all %d blobs mounted from mirror/a: the destination's refusal made the engine forget a good source",
			res.BytesCopied, res.BlobsMounted, blobs)
	}
}
