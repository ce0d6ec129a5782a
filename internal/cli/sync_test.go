package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/sandbox/sandboxtest"
)

func TestSyncAndPlan(t *testing.T) {
	w := sandboxtest.Start(t)
	want := map[string]map[string]string{}
	for _, repo := range []string{"team-a/api", "team-a/web", "team-b/db"} {
		w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
		want[repo] = map[string]string{}
		for i := 0; i < 3; i++ {
			img, _ := random.Image(512, 2)
			tag := fmt.Sprintf("v%d", i)
			want[repo][tag] = w.Source.Push(t, repo, tag, img).String()
		}
	}
	idx, _ := random.Index(256, 1, 3)
	want["team-a/api"]["multi"] = w.Source.Push(t, "team-a/api", "multi", idx).String()
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	os.WriteFile(rulesFile, []byte(fmt.Sprintf(`
rules:
  - name: team-a
    repositories: ["team-a/*"]
    destinations:
      - accountId: "%s"
        region: %s
        roleArn: %s
        externalId: %s
        repositoryPrefix: mirror/
`, sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), w.ExternalID)), 0o600)

	code, out, errOut := run(t, w.Ctx, "plan", "--rules", rulesFile)
	if code != ExitOK || !strings.Contains(out, "2 repositories, 10 images: 0 in sync, 10 to copy") {
		t.Fatalf("plan: exit %d\n%s%s", code, out, errOut)
	}
	mark := w.SB.AccessLogMark()
	code, out, errOut = run(t, w.Ctx, "sync", "--rules", rulesFile, "--output", "json")
	if code != ExitOK {
		t.Fatalf("sync: exit %d\n%s%s", code, out, errOut)
	}
	var resp struct{ Copied, Failed, InSync int }
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Copied != 10 || resp.Failed != 0 {
		t.Fatalf("sync output %v: %s", err, out)
	}
	for _, repo := range []string{"team-a/api", "team-a/web"} {
		got := w.Dest.Tags(t, w.Ctx, "mirror/"+repo)
		for tag, d := range want[repo] {
			if got[tag] != d {
				t.Errorf("%s:%s = %q, want %s", repo, tag, got[tag], d)
			}
		}
	}
	if n := len(sandbox.Filter(w.SB.AccessLogSince(mark), func(e sandbox.Entry) bool { return strings.Contains(e.Repository, "team-b") })); n != 0 {
		t.Errorf("team-b (outside the rules) was touched %d times", n)
	}
	// In sync now: a second sync copies nothing and makes no registry request.
	mark = w.SB.AccessLogMark()
	code, out, _ = run(t, w.Ctx, "sync", "--rules", rulesFile)
	if code != ExitOK || !strings.Contains(out, "10 in sync, 0 copied, 0 failed") {
		t.Fatalf("second sync: exit %d %s", code, out)
	}
	if n := len(sandbox.Filter(w.SB.AccessLogSince(mark), func(e sandbox.Entry) bool { return e.Service == "registry" })); n != 0 {
		t.Errorf("an in-sync scope cost %d registry requests", n)
	}
	// Narrowing flags and bad input.
	code, out, _ = run(t, w.Ctx, "plan", "--rules", rulesFile, "--repositories", "team-a/web", "--output", "json")
	if code != ExitOK || !strings.Contains(out, `"repositoriesScanned": 1`) {
		t.Errorf("narrowed plan: exit %d %s", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("rules:\n  - destinations:\n      - accountId: \"12\"\n        region: us-east-1\n"), 0o600)
	for _, args := range [][]string{
		{"sync"},
		{"sync", "--rules", bad},
		{"sync", "--rules", rulesFile, "--since", "yesterday"},
		{"plan", "--rules", filepath.Join(t.TempDir(), "missing.yaml")},
	} {
		if code, _, errOut := run(t, w.Ctx, args...); code != ExitUsage || errOut == "" {
			t.Errorf("%v: exit %d, want 2 with a message (%q)", args, code, errOut)
		}
	}
}
