package cli

import (
	"strings"
	"testing"
)

// TestCLICreatedEmptyWarningByFailureClass: a copy that created its destination
// repository and then failed for good (the destination role may not ecr:PutImage) says
// the repository stays empty until the failure is fixed — not "rerun to fill it", which
// would fail the same way.
func TestCLICreatedEmptyWarningByFailureClass(t *testing.T) {
	w := denyPutWorld(t)
	r := runCLI(t, w.Ctx, nil, "copy", srcECR+"/team-a/app:v1", dstECR+"/fresh/app", "--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID)
	if r.code != ExitFailed || !strings.Contains(r.stdout, "(DENIED)") {
		t.Fatalf("copy with PutImage denied:\n%s", r)
	}
	if !strings.Contains(r.stderr, "was created and is still empty: its copies failed in a way a rerun does not change") || strings.Contains(r.stderr, "rerun to fill it") {
		t.Errorf("the warning does not say a rerun will not fill the repository:\n%s", r)
	}
}
