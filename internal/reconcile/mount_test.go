package reconcile_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// TestReconciledCopiesMountSharedLayers: the copies a reconcile sends for repositories
// whose images share a base, made by the replicate function into a destination registry
// with blob mounting on, move the base once and mount it into the other repositories —
// across the function's invocations (one SQS batch each), since a warm function keeps
// where it put each layer.
func TestReconciledCopiesMountSharedLayers(t *testing.T) {
	f := newFixture(t, "")
	if _, err := ecr.NewFromConfig(f.w.Dest.Config).PutAccountSetting(f.w.Ctx, &ecr.PutAccountSettingInput{Name: aws.String("BLOB_MOUNTING"), Value: aws.String("ENABLED")}); err != nil {
		t.Fatal(err)
	}
	base, _ := random.Image(64<<10, 2)
	var baseSize int64
	layers, _ := base.Layers()
	for _, l := range layers {
		n, _ := l.Size()
		baseSize += n
	}
	var items []string
	for i := range 4 {
		repo := fmt.Sprintf("team/svc%d", i)
		f.w.Source.CreateRepository(t, f.w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
		own, _ := random.Layer(512, types.DockerLayer)
		img, _ := mutate.AppendLayers(base, own)
		f.w.Source.Push(t, repo, "v1", img)
		it := scanItem("")
		it.Scan, it.Repository = nil, repo
		items = append(items, marshal(t, it))
	}
	if failed := f.deliver(t, items...); len(failed) > 0 {
		t.Fatal(failed)
	}
	copies := f.take(t, "copy")
	if len(copies) != 4 {
		t.Fatalf("the reconcile sent %d copies, want 4", len(copies))
	}

	deps, err := wiring.Load(f.w.Ctx, "replicate", slog.New(slog.DiscardHandler), os.Getenv)
	if err != nil || deps.RulesErr != nil {
		t.Fatal(err, deps.RulesErr)
	}
	var emf bytes.Buffer
	handler := sandboxtest.ReplicateHandler(deps, eventhandler.Config{EMF: &emf})
	mark := f.w.SB.AccessLogMark()
	for i, body := range copies { // one invocation per copy
		out, err := handler.Handle(f.w.Ctx, sandboxtest.SQSBatch(1, sandboxtest.SQSMessage{ID: fmt.Sprint(i), Body: body}))
		if b, _ := json.Marshal(out); err != nil || !strings.Contains(string(b), `"batchItemFailures":[]`) {
			t.Fatalf("copy %d: %s %v", i, b, err)
		}
	}
	var uploaded int64
	mounts := 0
	for _, e := range f.w.SB.AccessLogSince(mark) {
		if e.Account != sandbox.DestinationAccount {
			continue
		}
		if e.Operation == "PUT upload" {
			uploaded += e.Bytes
		}
		if e.Mounted {
			mounts++
		}
	}
	t.Logf("4 reconciled copies sharing a %d-byte base: %d bytes uploaded, %d blobs mounted", baseSize, uploaded, mounts)
	if uploaded > baseSize+baseSize/2 || mounts != 6 {
		t.Errorf("%d bytes uploaded and %d blobs mounted, want the base uploaded once (%d bytes) and mounted into 3 repositories (6 blobs)", uploaded, mounts, baseSize)
	}
	// BytesMounted by Destination, as BytesMountable is: what mounting saved in each
	// destination registry.
	var byDestination float64
	for _, line := range strings.Split(strings.TrimSpace(emf.String()), "\n") {
		var doc map[string]any
		if json.Unmarshal([]byte(line), &doc) != nil || doc["Destination"] != sandbox.DestinationAccount+"/"+sandbox.DefaultRegion {
			continue
		}
		switch v := doc["BytesMounted"].(type) {
		case float64:
			byDestination += v
		case []any:
			for _, x := range v {
				byDestination += x.(float64)
			}
		}
	}
	if want := float64(3 * baseSize); byDestination != want {
		t.Errorf("BytesMounted by Destination: %v, want the base mounted into 3 repositories (%v)", byDestination, want)
	}
	for i := range 4 {
		repo := fmt.Sprintf("team/svc%d", i)
		if got, want := f.w.Dest.Digest(t, "mirror/"+repo, "v1"), f.w.Source.Digest(t, repo, "v1"); got != want {
			t.Errorf("mirror/%s:v1 = %q, want %s", repo, got, want)
		}
	}
}
