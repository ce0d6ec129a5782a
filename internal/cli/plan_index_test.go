package cli

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestCLIPlanIndexBytes: with untagged: false a rule copies an index's untagged
// platforms with the index, not as copies of their own, so the index counts both
// platforms (not ECR's size of an index, its largest platform only); an index whose
// manifest cannot be read (ecr:BatchGetImage denied) falls back to that size, and a
// warning says the bytes are under-counted.
func TestCLIPlanIndexBytes(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	idx := w.Source.Push(t, "team-a/app", "v1", fixedIndex(t, "untagged-false", "amd64", "arm64")).String()
	sizes := sourceSizes(t, w, "team-a/app")
	var platforms int64
	for d, s := range sizes {
		if d != idx {
			platforms += s
		}
	}
	if len(sizes) != 3 || sizes[idx] >= platforms {
		t.Fatalf("the index's size is not its largest platform's: %v", sizes)
	}
	rules := writeRules(t, "rules:\n  - name: releases\n    repositories: [\"team-a/*\"]\n    untagged: false\n    destinations:\n"+destination(w, "mirror/", w.ExternalID))

	doc := decodePlan(t, runCLI(t, w.Ctx, nil, "plan", "--rules", rules, "-o", "json"))
	if doc.Estimate.BytesToUpload != platforms || len(doc.Warnings) != 0 {
		t.Errorf("plan of an index with untagged: false: %d bytes (want its platforms' %d), warnings %v", doc.Estimate.BytesToUpload, platforms, doc.Warnings)
	}
	if err := w.SB.InjectAPIFault(sandbox.APIFault{Service: "ecr", Operation: "BatchGetImage", Count: -1, Code: "AccessDeniedException"}); err != nil {
		t.Fatal(err)
	}
	doc = decodePlan(t, runCLI(t, w.Ctx, nil, "plan", "--rules", rules, "-o", "json"))
	if doc.Estimate.BytesToUpload != sizes[idx] || len(doc.Warnings) != 1 || !strings.Contains(doc.Warnings[0], "1 image index could not be read (AccessDeniedException)") {
		t.Errorf("plan with the index unreadable: %d bytes (want ECR's size of the index, %d), warnings %v", doc.Estimate.BytesToUpload, sizes[idx], doc.Warnings)
	}
}
