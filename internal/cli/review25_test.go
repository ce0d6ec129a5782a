package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/signing"
)

// TestReview25SyncGatesEachTag: sync copies inline in groups — every tag of one digest
// to one destination — and decides the promotion gate of the group's first item only,
// applying that verdict to all of them. When two tags of one image reach one destination
// by different rules (rc-* scanned only, v* signed and scanned; or an ungated dev-* rule
// next to a gated v* one), the v1 tag is written on the strength of another rule's
// gate: an unsigned image is tagged v1 in the gated destination. plan decides each item
// and says v1 is held; the replicate function decides the v1 push on its own and holds it
// too; only sync copies it.
func TestReview25SyncGatesEachTag(t *testing.T) {
	for _, c := range []struct {
		name, otherTag, otherRule string
	}{
		{"another gate", "rc-1", "    require:\n      scan: {severity: HIGH}\n"},
		{"no gate", "dev-1", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := sandboxtest.Start(t)
			key := signing.NewKey(t)
			w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
			img, _ := random.Image(256, 1)
			d := w.Source.Push(t, "team-a/app", c.otherTag, img).String()
			w.Source.Push(t, "team-a/app", "v1", img)
			if err := w.SB.SetImageScan(sandbox.SourceAccount, sandbox.DefaultRegion, "team-a/app", d, sandbox.ScanResult{}); err != nil {
				t.Fatal(err)
			}
			prefix := strings.SplitN(c.otherTag, "-", 2)[0]
			doc := fmt.Sprintf("rules:\n  - name: %s\n    repositories: [\"team-a/*\"]\n    tags: [\"%s-*\"]\n%s    destinations:\n%s"+
				"  - name: release\n    repositories: [\"team-a/*\"]\n    tags: [\"v*\"]\n    require:\n      signatures:\n        signers: [{name: release, publicKey: %q}]\n      scan: {severity: HIGH}\n    destinations:\n%s",
				prefix, prefix, c.otherRule, destination(w, "mirror/", w.ExternalID), key.PublicPEM(t), destination(w, "mirror/", w.ExternalID))
			rules := filepath.Join(t.TempDir(), "rules.yaml")
			if err := os.WriteFile(rules, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			plan := runCLI(t, w.Ctx, nil, "plan", "--rules", rules)
			if !strings.Contains(plan.stdout, "held team-a/app:v1@") {
				t.Fatalf("plan does not hold the unsigned v1:\n%s", plan)
			}
			res := runCLI(t, w.Ctx, nil, "sync", "--rules", rules)
			tags := w.Dest.Tags(t, w.Ctx, "mirror/team-a/app")
			if tags["v1"] != "" {
				t.Fatalf("sync tagged the unsigned %s v1 in the gated destination (plan held it): %v\n%s", d, tags, res)
			}
		})
	}
}
