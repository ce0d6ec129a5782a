package copyengine

import (
	"context"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// TestManyImagesOneRunListsTagsOnce copies many images of one repository in one run:
// after a few images, cosign tags are found from one tag listing instead of three HEADs
// per image — and a signature of a late image is still copied.
func TestManyImagesOneRunListsTagsOnce(t *testing.T) {
	e := newEnv(t)
	var digests []v1.Hash
	for i := 0; i < 10; i++ {
		digests = append(digests, pushImage(t, e.srcRepo.Tag(fmt.Sprintf("v%d", i)), must[v1.Image](t)(random.Image(64, 1))))
	}
	sig := pushImage(t, e.srcRepo.Tag("sha256-"+digests[9].Hex+".sig"), must[v1.Image](t)(random.Image(64, 1)))
	c := fastCopier()
	e.src.reset()
	for i, d := range digests {
		req := e.req(d, fmt.Sprintf("v%d", i))
		req.Referrers = true
		if res := c.Copy(context.Background(), req); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	wantTag(t, e.dstRepo.Tag("sha256-"+digests[9].Hex+".sig"), sig)
	cosignHeads := e.src.count(func(h hit) bool {
		return h.method == "HEAD" && strings.Contains(h.path, "/manifests/sha256-")
	})
	lists := e.src.count(func(h hit) bool { return strings.HasSuffix(h.path, "/tags/list") })
	// 4 images probed (12 HEADs), then one listing; the signature found in it is HEADed
	// for its digest, then by converge before and after setting its tag.
	if lists != 1 || cosignHeads > probesBeforeListing+3 {
		t.Errorf("%d tag listings and %d cosign-tag HEADs for 10 images; want 1 listing and at most %d HEADs", lists, cosignHeads, probesBeforeListing+3)
	}
	// A ping per ggcr client and scope the run opens (manifest reads, manifest writes,
	// blob uploads), not one per copy.
	pings := e.dst.count(func(h hit) bool { return h.path == "/v2/" })
	if pings > 4 {
		t.Errorf("%d destination pings for 10 copies in one run, want the endpoint reused", pings)
	}
}
