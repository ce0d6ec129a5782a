package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// mountPOST sends POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<from> and returns
// the status and Location.
func mountPOST(t *testing.T, host string, auth authn.Authenticator, repo, from string, digest v1.Hash) (int, string) {
	t.Helper()
	u := fmt.Sprintf("http://%s/v2/%s/blobs/uploads/?mount=%s&from=%s", host, repo, digest, from)
	req, _ := http.NewRequest(http.MethodPost, u, nil)
	req.SetBasicAuth("AWS", auth.(*authn.Basic).Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

func setBlobMounting(t *testing.T, ctx context.Context, client *ecr.Client, value string) {
	t.Helper()
	if _, err := client.PutAccountSetting(ctx, &ecr.PutAccountSettingInput{Name: aws.String("BLOB_MOUNTING"), Value: aws.String(value)}); err != nil {
		t.Fatal(err)
	}
}

// TestBlobMounting: ECR mounts a blob from another repository of the same registry only
// when the registry's BLOB_MOUNTING setting is ENABLED, the repositories' encryption is
// the same (blob-mounting.html), and a manifest in the from repository references the
// blob (aws/containers-roadmap#2860); otherwise the POST starts a normal upload (202).
func TestBlobMounting(t *testing.T) {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	client := ecr.NewFromConfig(src)
	for _, r := range []string{"team/a", "team/b", "team/loose"} {
		createRepo(t, e.ctx, src, r, "")
	}
	if _, err := client.CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team/kms"),
		EncryptionConfiguration: &ecrtypes.EncryptionConfiguration{EncryptionType: ecrtypes.EncryptionTypeKms}}); err != nil {
		t.Fatal(err)
	}
	host, auth := registryAuth(t, e.ctx, src)
	img, _ := random.Image(2048, 1)
	if err := remote.Write(ref(t, host, "team/a", "v1"), img, remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	layer, _ := layers[0].Digest()
	// The same layer pushed to team/loose, with no manifest referencing it there.
	if err := remote.WriteLayer(ref(t, host, "team/loose", "x").Context(), layers[0], remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}

	got, err := client.GetAccountSetting(e.ctx, &ecr.GetAccountSettingInput{Name: aws.String("BLOB_MOUNTING")})
	if err != nil || aws.ToString(got.Value) != "DISABLED" {
		t.Fatalf("BLOB_MOUNTING before it is set: %+v %v, want DISABLED", got, err)
	}
	if status, loc := mountPOST(t, host, auth, "team/b", "team/a", layer); status != http.StatusAccepted || loc == "" {
		t.Fatalf("mount with BLOB_MOUNTING disabled: %d %q, want 202 and an upload Location", status, loc)
	}
	setBlobMounting(t, e.ctx, client, "ENABLED")
	if got, _ := client.GetAccountSetting(e.ctx, &ecr.GetAccountSettingInput{Name: aws.String("BLOB_MOUNTING")}); aws.ToString(got.Value) != "ENABLED" {
		t.Fatalf("BLOB_MOUNTING after PutAccountSetting ENABLED: %q", aws.ToString(got.Value))
	}
	if _, err := client.PutAccountSetting(e.ctx, &ecr.PutAccountSettingInput{Name: aws.String("BLOB_MOUNTING"), Value: aws.String("ON")}); errorCode(err) != "InvalidParameterException" {
		t.Fatalf("PutAccountSetting BLOB_MOUNTING=ON: %v, want InvalidParameterException", err)
	}
	// The other registries (account, region) keep their own setting.
	dst := ecr.NewFromConfig(e.userConfig(t, sandbox.DestinationAccount, sandbox.AdminUser))
	if got, _ := dst.GetAccountSetting(e.ctx, &ecr.GetAccountSettingInput{Name: aws.String("BLOB_MOUNTING")}); aws.ToString(got.Value) != "DISABLED" {
		t.Fatalf("another account's BLOB_MOUNTING: %q, want DISABLED", aws.ToString(got.Value))
	}

	for _, c := range []struct {
		name, repo, from string
		want             int
	}{
		{"unreferenced in from (#2860)", "team/b", "team/loose", http.StatusAccepted},
		{"other encryption", "team/kms", "team/a", http.StatusAccepted},
		{"from does not exist", "team/b", "team/gone", http.StatusAccepted},
		{"referenced in from", "team/b", "team/a", http.StatusCreated},
	} {
		status, loc := mountPOST(t, host, auth, c.repo, c.from, layer)
		if status != c.want || loc == "" {
			t.Errorf("%s: %d %q, want %d with a Location", c.name, status, loc, c.want)
		}
	}
	// Mounted: the blob is in team/b, and a manifest referencing it can be pushed there
	// once the config is uploaded too.
	req, _ := http.NewRequest(http.MethodHead, fmt.Sprintf("http://%s/v2/team/b/blobs/%s", host, layer), nil)
	req.SetBasicAuth("AWS", auth.(*authn.Basic).Password)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD of the mounted blob in team/b: %v %v", resp, err)
	}
	if err := remote.Write(ref(t, host, "team/b", "v1"), img, remote.WithAuth(auth)); err != nil {
		t.Fatalf("pushing the image after the mount: %v", err)
	}
	var mounts int
	for _, en := range e.sb.AccessLogSince(0) {
		if en.Mounted {
			mounts++
			if en.MountFrom != "team/a" || en.Repository != "team/b" || en.Action != "ecr:InitiateLayerUpload" {
				t.Errorf("the mount's access log entry: %+v", en)
			}
		}
	}
	if mounts != 1 {
		t.Errorf("%d mounts in the access log, want 1", mounts)
	}
	// Disabling keeps what was mounted and stops new mounts.
	setBlobMounting(t, e.ctx, client, "DISABLED")
	if status, _ := mountPOST(t, host, auth, "team/loose", "team/a", layer); status != http.StatusAccepted {
		t.Fatalf("mount after disabling: %d, want 202", status)
	}
}

// TestBlobMountingPermissions: a mount needs ecr:GetDownloadUrlForLayer on the from
// repository (blob-mounting.html) — without it the POST starts a normal upload (a guess),
// logged as a denial — and the upload's own ecr:InitiateLayerUpload on the repository
// mounted into, like any upload.
func TestBlobMountingPermissions(t *testing.T) {
	cfg := sandbox.TwoAccounts(extID)
	cfg.Accounts[0].Users = append(cfg.Accounts[0].Users, sandbox.UserConfig{Name: "pusher", Policies: []string{`{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:GetAccountSetting"],"Resource":"*"},
		{"Effect":"Allow","Action":["ecr:InitiateLayerUpload","ecr:UploadLayerPart","ecr:CompleteLayerUpload","ecr:BatchCheckLayerAvailability"],"Resource":"arn:aws:ecr:*:111111111111:repository/own/*"},
		{"Effect":"Allow","Action":"ecr:GetDownloadUrlForLayer","Resource":"arn:aws:ecr:*:111111111111:repository/readable/*"}]}`}})
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	e := &env{sb: sb, ctx: context.Background()}
	t.Setenv("AWS_ENDPOINT_URL_ECR", sb.APIURL())
	t.Setenv("AWS_ENDPOINT_URL_STS", sb.APIURL())
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	admin := e.userConfig(t, sandbox.SourceAccount, sandbox.AdminUser)
	for _, r := range []string{"readable/a", "secret/a", "own/b", "other/b"} {
		createRepo(t, e.ctx, admin, r, "")
	}
	setBlobMounting(t, e.ctx, ecr.NewFromConfig(admin), "ENABLED")
	adminHost, adminAuth := registryAuth(t, e.ctx, admin)
	img, _ := random.Image(1024, 1)
	for _, r := range []string{"readable/a", "secret/a"} {
		if err := remote.Write(ref(t, adminHost, r, "v1"), img, remote.WithAuth(adminAuth)); err != nil {
			t.Fatal(err)
		}
	}
	layers, _ := img.Layers()
	layer, _ := layers[0].Digest()
	host, auth := registryAuth(t, e.ctx, e.userConfig(t, sandbox.SourceAccount, "pusher"))
	mark := sb.AccessLogMark()
	if status, _ := mountPOST(t, host, auth, "own/b", "secret/a", layer); status != http.StatusAccepted {
		t.Errorf("mount from a repository the caller may not read: %d, want 202 (a normal upload)", status)
	}
	if status, _ := mountPOST(t, host, auth, "other/b", "readable/a", layer); status != http.StatusForbidden {
		t.Errorf("mount into a repository the caller may not write: %d, want 403", status)
	}
	if status, _ := mountPOST(t, host, auth, "own/b", "readable/a", layer); status != http.StatusCreated {
		t.Errorf("mount from a readable repository into a writable one: %d, want 201", status)
	}
	var denied, used []string
	for _, en := range sb.AccessLogSince(mark) {
		if en.DeniedAction != "" {
			denied = append(denied, en.DeniedAction+" "+en.MountFrom)
		}
		if en.Mounted {
			used = append(used, en.AlsoAuthorized...)
		}
	}
	if len(denied) != 1 || denied[0] != "ecr:GetDownloadUrlForLayer secret/a" {
		t.Errorf("denials logged: %v, want the GetDownloadUrlForLayer on secret/a", denied)
	}
	if !bytes.Contains([]byte(fmt.Sprint(used)), []byte("ecr:GetDownloadUrlForLayer")) {
		t.Errorf("the mount's entry does not list ecr:GetDownloadUrlForLayer as authorized: %v", used)
	}
}

// TestBatchCheckLayerAvailability: the API says which layers a repository holds, as its
// blob HEAD does: its image's layers and config AVAILABLE, a layer of another repository
// missing, a malformed digest invalid; a missing repository is refused.
func TestBatchCheckLayerAvailability(t *testing.T) {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	client := ecr.NewFromConfig(src)
	for _, r := range []string{"team/a", "team/b"} {
		createRepo(t, e.ctx, src, r, "")
	}
	host, auth := registryAuth(t, e.ctx, src)
	img, _ := random.Image(2048, 1)
	other, _ := random.Image(2048, 1)
	for r, i := range map[string]v1.Image{"team/a": img, "team/b": other} {
		if err := remote.Write(ref(t, host, r, "v1"), i, remote.WithAuth(auth)); err != nil {
			t.Fatal(err)
		}
	}
	layers, _ := img.Layers()
	layer, _ := layers[0].Digest()
	config, _ := img.ConfigName()
	otherLayers, _ := other.Layers()
	foreign, _ := otherLayers[0].Digest()
	out, err := client.BatchCheckLayerAvailability(e.ctx, &ecr.BatchCheckLayerAvailabilityInput{RepositoryName: aws.String("team/a"),
		LayerDigests: []string{layer.String(), config.String(), foreign.String(), "sha256:nope"}})
	if err != nil {
		t.Fatal(err)
	}
	available := map[string]bool{}
	for _, l := range out.Layers {
		available[aws.ToString(l.LayerDigest)] = l.LayerAvailability == ecrtypes.LayerAvailabilityAvailable
	}
	failed := map[string]ecrtypes.LayerFailureCode{}
	for _, f := range out.Failures {
		failed[aws.ToString(f.LayerDigest)] = f.FailureCode
	}
	if !available[layer.String()] || !available[config.String()] || len(out.Layers) != 2 ||
		failed[foreign.String()] != ecrtypes.LayerFailureCodeMissingLayerDigest || failed["sha256:nope"] != ecrtypes.LayerFailureCodeInvalidLayerDigest {
		t.Errorf("layers %+v, failures %+v; want the image's layer and config available, another repository's layer missing, the bad digest invalid", available, failed)
	}
	_, err = client.BatchCheckLayerAvailability(e.ctx, &ecr.BatchCheckLayerAvailabilityInput{RepositoryName: aws.String("team/none"), LayerDigests: []string{layer.String()}})
	var nf *ecrtypes.RepositoryNotFoundException
	if !errors.As(err, &nf) {
		t.Errorf("a missing repository: %v, want RepositoryNotFoundException", err)
	}
}
