package backfill_test

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
)

// TestPlanCountsWhatTheCopiesMount: repositories synchronized on one base get a release
// that adds a shared layer to it. The plan counts that layer, for each repository after
// the first — not the base, which every destination repository holds — and the copies
// then mount at least that much.
func TestPlanCountsWhatTheCopiesMount(t *testing.T) {
	e := start(t, "")
	e.enableBlobMounting(t)
	repos := repoNames("rebased", 3)
	old, _ := random.Image(32<<10, 2)
	for _, repo := range repos {
		e.review26Push(t, repo, "v1", old, true)
	}
	if resp, err := e.backfill().Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline}); err != nil || resp.Failed != 0 || resp.Copied != len(repos) {
		t.Fatalf("first sync: %+v %v", resp, err)
	}
	added, _ := random.Layer(64<<10, types.OCILayer)
	base, _ := mutate.AppendLayers(old, added)
	for _, repo := range repos {
		e.review26Push(t, repo, "v2", base, false)
	}
	m := e.planMounting(t)
	size, _ := added.Size()
	want := int64(len(repos)-1) * size
	if m.BlobMounting != "ENABLED" || m.BytesMountable != want || m.ImagesRead != len(repos) || m.Partial {
		t.Errorf("plan: %+v; want ENABLED, the added layer for the %d repositories after the first (%d bytes), %d images read", m, len(repos)-1, want, len(repos))
	}
	resp, err := e.backfill().Invoke(e.ctx, backfill.Request{Mode: backfill.ModeInline})
	if err != nil || resp.Failed != 0 || resp.Copied != len(repos) {
		t.Fatalf("second sync: %+v %v", resp, err)
	}
	e.assertMirrored(t, repos)
	if resp.BytesMounted < m.BytesMountable {
		t.Errorf("the copies mounted %d bytes; the plan said at least %d", resp.BytesMounted, m.BytesMountable)
	}
}
