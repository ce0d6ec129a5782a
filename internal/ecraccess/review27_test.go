package ecraccess

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// TestReview27OwnedTagsFitECRTagLimits: a repository the replicator creates is tagged
// ecr-replicator:source=<the source repository's ARN>. ECR tag values are at most 256
// characters ("Tag keys can have a maximum character length of 128 characters, and tag
// values can have a maximum length of 256 characters", API_Tag and
// InvalidTagParameterException, https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_Tag.html),
// while a repository name may have 256 (API_CreateRepository). A source repository whose
// name is longer than about 209 characters has an ARN over 256: the CreateRepository that
// carries it fails with InvalidTagParameterException, for every image of that repository,
// although its destination name (mirror/ + the name) is a valid repository name. (The
// sandbox does not check tag lengths, hence a test of the tags the code asks for.)
func TestReview27OwnedTagsFitECRTagLimits(t *testing.T) {
	// A valid repository name of 230 characters; "mirror/" + it is 237, within 256.
	name := "team-a/" + strings.Repeat("a", 223)
	if len("mirror/"+name) > 256 {
		t.Fatalf("bad fixture: %d", len("mirror/"+name))
	}
	sourceARN := "arn:aws:ecr:us-east-1:111111111111:repository/" + name
	for _, tg := range OwnedTags("111111111111", sourceARN, nil) {
		k, v := aws.ToString(tg.Key), aws.ToString(tg.Value)
		if len(k) > 128 || len(v) > 256 {
			t.Errorf("the created repository's tag %s has a %d-character value (ECR's limit: 256): CreateRepository fails with "+
				"InvalidTagParameterException, and the source repository %s (%d characters, a valid name) is never replicated", k, len(v), name[:20]+"…", len(name))
		}
	}
}
