package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestCLIPlanSaysWhatBlobMountingSaves: three repositories whose images share a base
// layer, planned into one destination registry. While the registry has blob mounting off,
// the plan says what enabling it would save (the base, for each repository after the
// first) and how to enable it; once on, that those bytes are mounted; and sync then
// mounts them.
func TestCLIPlanSaysWhatBlobMountingSaves(t *testing.T) {
	w := sandboxtest.Start(t)
	base := strings.Repeat("a shared base layer ", 1000)
	repos := []string{"team-a/one", "team-a/two", "team-a/three"}
	for _, r := range repos {
		w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(r)})
		img, err := mutate.AppendLayers(fixedImage(t, base), static.NewLayer([]byte(r), types.DockerLayer))
		if err != nil {
			t.Fatal(err)
		}
		w.Source.Push(t, r, "v1", img)
	}
	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID))
	saves := int64(len(repos)-1) * int64(len(base))

	r := runCLI(t, w.Ctx, nil, "plan", "--rules", rules)
	off := "blob mounting in 222222222222/us-east-1 is off: enabling it would save uploading at least " + humanBytes(saves) +
		" of layers shared between its repositories (aws ecr put-account-setting --name BLOB_MOUNTING --value ENABLED --region us-east-1, in account 222222222222)\n"
	if r.code != ExitOK || !strings.Contains(r.stdout, off) {
		t.Fatalf("plan with blob mounting off:\n%s\nwant the line\n%s", r, off)
	}
	r = runCLI(t, w.Ctx, nil, "plan", "--rules", rules, "-o", "json")
	var doc struct {
		Mounting []mountingJSON `json:"mounting"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != ExitOK {
		t.Fatalf("plan -o json: %v\n%s", err, r)
	}
	want := mountingJSON{Registry: dstECR, BlobMounting: "DISABLED", BytesMountable: saves, ImagesRead: len(repos)}
	if len(doc.Mounting) != 1 || doc.Mounting[0] != want {
		t.Errorf("plan -o json: mounting %+v, want [%+v]", doc.Mounting, want)
	}
	var all map[string]any
	json.Unmarshal([]byte(r.stdout), &all)
	fields := map[string]bool{}
	collectFields(all, "", fields)
	spec, err := os.ReadFile(filepath.Join("..", "..", "docs", "CLI-JSON.md"))
	if err != nil {
		t.Fatal(err)
	}
	for f := range fields {
		if strings.HasPrefix(f, "mounting") && !regexp.MustCompile("(?m)^\\| `"+regexp.QuoteMeta(f)+"`").Match(spec) {
			t.Errorf("field %s is not in docs/CLI-JSON.md's tables", f)
		}
	}

	if _, err := ecr.NewFromConfig(w.Dest.Config).PutAccountSetting(w.Ctx, &ecr.PutAccountSettingInput{Name: aws.String("BLOB_MOUNTING"), Value: aws.String("ENABLED")}); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, w.Ctx, nil, "plan", "--rules", rules)
	on := "blob mounting in 222222222222/us-east-1 is on: at least " + humanBytes(saves) + " of layers shared between its repositories are mounted, not uploaded\n"
	if r.code != ExitOK || !strings.Contains(r.stdout, on) {
		t.Fatalf("plan with blob mounting on:\n%s\nwant the line\n%s", r, on)
	}
	mark := w.SB.AccessLogMark()
	if r = runCLI(t, w.Ctx, nil, "sync", "--rules", rules); r.code != ExitOK {
		t.Fatalf("sync: %s", r)
	}
	mounts := 0
	for _, e := range w.SB.AccessLogSince(mark) {
		if e.Account == sandbox.DestinationAccount && e.Mounted {
			mounts++
		}
		if e.Operation == "BatchGetImage" {
			t.Errorf("sync read manifests through the ECR API to estimate mounting, as only a plan does")
		}
	}
	if mounts != len(repos)-1 {
		t.Errorf("sync mounted %d blobs, want the base into the %d repositories after the first", mounts, len(repos)-1)
	}
}
