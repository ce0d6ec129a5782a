package cli

import (
	"context"
	"encoding/json"
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
)

// syncWorld is a source with team-a/api (3 tags and a tagged 3-platform index: 7 images,
// 7 copies), team-a/web (3 tags) and team-b/db (outside the rules).
func syncWorld(t *testing.T) (*sandboxtest.World, map[string]map[string]string) {
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
	return w, want
}

// rulesFile writes a rules document with one rule for team-a/* and the destinations
// given as YAML list items.
func rulesFile(t *testing.T, destinations ...string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "rules.yaml")
	doc := "rules:\n  - name: team-a\n    repositories: [\"team-a/*\"]\n    destinations:\n" + strings.Join(destinations, "")
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func destination(w *sandboxtest.World, prefix, externalID string) string {
	return fmt.Sprintf("      - accountId: \"%s\"\n        region: %s\n        roleArn: %s\n        externalId: %s\n        repositoryPrefix: %s\n",
		sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), externalID, prefix)
}

const counted = "(one per tag, or untagged image, and destination)"

// toUpload is what a plan counts to upload for a source repository none of whose images
// the destination has: every image's imageSizeInBytes but the index's, whose platforms
// are images of their own.
func toUpload(t *testing.T, w *sandboxtest.World, repo string, want map[string]map[string]string) int64 {
	var n int64
	for d, size := range sourceSizes(t, w, repo) {
		if d != want[repo]["multi"] {
			n += size
		}
	}
	return n
}

func TestSyncAndPlan(t *testing.T) {
	w, want := syncWorld(t)
	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID))

	code, out, errOut := run(t, w.Ctx, "plan", "--rules", rules)
	api, web := toUpload(t, w, "team-a/api", want), toUpload(t, w, "team-a/web", want)
	wantPlan := fmt.Sprintf(`REPOSITORY  DESTINATION                               IN SYNC  TO COPY  TO UPLOAD
team-a/api  222222222222/us-east-1/mirror/team-a/api        0        7  %9s  repository to create
team-a/web  222222222222/us-east-1/mirror/team-a/web        0        3  %9s  repository to create
2 repositories, 10 images; 10 copies `+counted+`: 0 in sync, 10 to copy
to copy: %s of layers and 10 manifest writes: about 1s (%[3]s at an assumed 100 MiB/s: under a second; 10 writes at ECR's default 10 PutImage/s: about 1s)
`, humanBytes(api), humanBytes(web), humanBytes(api+web))
	if code != ExitOK || out != wantPlan || errOut != "" {
		t.Fatalf("plan: exit %d\n%s\nwant\n%s%s", code, out, wantPlan, errOut)
	}
	if code, _, _ := run(t, w.Ctx, "plan", "--rules", rules, "--detailed-exitcode"); code != ExitDrift {
		t.Errorf("plan --detailed-exitcode with drift: exit %d, want %d", code, ExitDrift)
	}
	if code, _, _ := run(t, w.Ctx, "sync", "--dry-run", "--detailed-exitcode", "--rules", rules); code != ExitDrift {
		t.Errorf("sync --dry-run --detailed-exitcode with drift: exit %d, want %d", code, ExitDrift)
	}

	mark := w.SB.AccessLogMark()
	code, out, errOut = run(t, w.Ctx, "sync", "--rules", rules, "--output", "json")
	if code != ExitOK {
		t.Fatalf("sync: exit %d\n%s%s", code, out, errOut)
	}
	var resp struct {
		Totals  struct{ Copied, Failed, InSync int }
		Items   []struct{ State string }
		Counted string
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Totals.Copied != 10 || resp.Totals.Failed != 0 || resp.Counted == "" || len(resp.Items) != 10 {
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
	code, out, _ = run(t, w.Ctx, "sync", "--rules", rules)
	if code != ExitOK || !strings.HasPrefix(out, "2 repositories, 10 images; 10 copies "+counted+": 10 already in sync, 0 copied, 0 failed; 0 B sent in ") {
		t.Fatalf("second sync: exit %d %s", code, out)
	}
	if n := len(sandbox.Filter(w.SB.AccessLogSince(mark), func(e sandbox.Entry) bool { return e.Service == "registry" })); n != 0 {
		t.Errorf("an in-sync scope cost %d registry requests", n)
	}
	// And the fewest API calls: the credentials checked once (the resolver is told the
	// account), one role assumed, one repository listing, one image listing per side.
	calls := map[string]int{}
	for _, e := range w.SB.AccessLogSince(mark) {
		calls[e.Service+":"+e.Operation]++
	}
	if want := map[string]int{"sts:GetCallerIdentity": 1, "sts:AssumeRole": 1, "ecr:DescribeRepositories": 1, "ecr:DescribeImages": 4}; fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("an in-sync scope made API calls %v, want %v", calls, want)
	}
	if code, out, _ := run(t, w.Ctx, "plan", "--rules", rules, "--detailed-exitcode"); code != ExitOK || !strings.Contains(out, ": 10 in sync, 0 to copy\n") {
		t.Errorf("plan --detailed-exitcode in sync: exit %d\n%s", code, out)
	}
	// Narrowing flags.
	code, out, _ = run(t, w.Ctx, "plan", "--rules", rules, "--repositories", "team-a/web", "--output", "json")
	if code != ExitOK || !strings.Contains(out, `"repositories": 1,`) || !strings.Contains(out, `"complete": true`) {
		t.Errorf("narrowed plan: exit %d %s", code, out)
	}
}

// TestPlanFailingDestination: a destination whose role cannot be assumed is named with
// the reason and what to check; the plan is incomplete (exit 1), never "in sync".
func TestPlanFailingDestination(t *testing.T) {
	w, want := syncWorld(t)
	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID), destination(w, "backup/", "wrong-id"))
	denied := "destination 222222222222/us-east-1 (2 repositories not listed): cannot assume arn:aws:iam::222222222222:role/ecr-replicator-destination (AccessDenied): check that the external ID (externalId of rules[0].destinations[1]) matches the sts:ExternalId condition of the role's trust policy, and that the trust policy allows arn:aws:iam::111111111111:user/replicator to assume it and to tag the session (sts:TagSession, which the identity's own policy must allow too)\n"

	code, out, errOut := run(t, w.Ctx, "plan", "--rules", rules)
	api, web := toUpload(t, w, "team-a/api", want), toUpload(t, w, "team-a/web", want)
	wantPlan := fmt.Sprintf(`REPOSITORY  DESTINATION                               IN SYNC  TO COPY  TO UPLOAD
team-a/api  222222222222/us-east-1/backup/team-a/api        -        -          -  NOT LISTED (see below)
team-a/api  222222222222/us-east-1/mirror/team-a/api        0        7  %9s  repository to create
team-a/web  222222222222/us-east-1/backup/team-a/web        -        -          -  NOT LISTED (see below)
team-a/web  222222222222/us-east-1/mirror/team-a/web        0        3  %9s  repository to create
2 repositories, 10 images; 20 copies `+counted+`: 0 in sync, 10 to copy, 10 not planned (destination not listed)
to copy: %s of layers and 10 manifest writes: about 1s (%[3]s at an assumed 100 MiB/s: under a second; 10 writes at ECR's default 10 PutImage/s: about 1s)
`, humanBytes(api), humanBytes(web), humanBytes(api+web)) + denied + `plan incomplete: 1 of 2 destinations could not be listed; fix the above and rerun
`
	if code != ExitFailed || out != wantPlan || errOut != "" {
		t.Errorf("plan: exit %d\n%s\nwant\n%s%s", code, out, wantPlan, errOut)
	}
	for _, args := range [][]string{{"--detailed-exitcode"}, {"--output", "json"}} {
		if code, _, _ := run(t, w.Ctx, append([]string{"plan", "--rules", rules}, args...)...); code != ExitFailed {
			t.Errorf("plan %v: exit %d, want %d", args, code, ExitFailed)
		}
	}
	_, out, _ = run(t, w.Ctx, "plan", "--rules", rules, "-o", "json")
	var plan struct {
		Totals       struct{ NotPlanned int }
		Complete     bool
		Destinations []struct {
			Account, Region string
			Listed          bool
			Error           struct{ Code, Message, Operation string }
		}
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil || plan.Complete || plan.Totals.NotPlanned != 10 || len(plan.Destinations) != 2 {
		t.Fatalf("JSON plan %v: %s", err, out)
	}
	var bad int
	for _, d := range plan.Destinations {
		if !d.Listed {
			bad++
			if d.Error.Code != "AccessDenied" || d.Error.Operation != "sts:AssumeRole" || "destination "+d.Account+"/"+d.Region+" (2 repositories not listed): "+d.Error.Message+"\n" != denied {
				t.Errorf("JSON destination: %+v", d)
			}
		}
	}
	if bad != 1 {
		t.Errorf("%d destinations not listed, want 1: %s", bad, out)
	}

	// sync copies to the destination it can reach and reports the other: exit 1.
	code, out, _ = run(t, w.Ctx, "sync", "--rules", rules)
	if code != ExitFailed || !strings.Contains(out, "\n2 repositories, 10 images; 20 copies "+counted+": 0 already in sync, 10 copied, 0 failed, 10 not attempted (destination not listed); ") ||
		len(strings.Split(out, "\n")) != 13 ||
		!strings.HasSuffix(out, denied) {
		t.Errorf("sync: exit %d\n%s", code, out)
	}
	if got := w.Dest.Tags(t, w.Ctx, "mirror/team-a/web"); got["v1"] != want["team-a/web"]["v1"] {
		t.Errorf("the reachable destination was not synced: %v", got)
	}
}

func TestSyncUsageErrors(t *testing.T) {
	w, _ := syncWorld(t)
	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID))
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(doc), 0o600)
		return p
	}
	badAccount := write("bad.yaml", "rules:\n  - destinations:\n      - accountId: \"12\"\n        region: us-east-1\n")
	// The key on line 3 is indented like the list it should be inside.
	misindented := write("misindented.yaml", "rules:\n  - name: prod\n  destinations:\n      - accountId: \"222222222222\"\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sync"}, `--rules FILE is required: the rules document that says what goes where (README "Configuration"); see 'ecr-replicator sync --help'`},
		{[]string{"plan"}, `--rules FILE is required: the rules document that says what goes where (README "Configuration"); see 'ecr-replicator plan --help'`},
		{[]string{"sync", "--rules", badAccount}, badAccount + `: rules[0].destinations[0].accountId: "12" is not a 12-digit AWS account ID`},
		{[]string{"plan", "--rules", misindented}, misindented + ": rules document: line 3: did not find expected '-' indicator"},
		{[]string{"sync", "--rules", rules, "--since", "yesterday"}, `--since "yesterday" is not an RFC 3339 time (like 2024-01-01T00:00:00Z)`},
		{[]string{"plan", "--rules", filepath.Join(dir, "missing.yaml")}, "--rules " + filepath.Join(dir, "missing.yaml") + ": no such file or directory"},
		{[]string{"sync", "--rules", rules, "--concurrency", "0"}, "--concurrency must be between 1 and 256 (got 0)"},
		{[]string{"sync", "--rules", rules, "--jobs", "-1"}, "--jobs must be between 1 and 256 (got -1)"},
		{[]string{"sync", "--rules", rules, "--detailed-exitcode"}, "--detailed-exitcode goes with --dry-run (or use 'ecr-replicator plan')"},
		// plan has no copy flags: they would do nothing.
		{[]string{"plan", "--rules", rules, "--concurrency", "4"}, "unknown flag: --concurrency (see 'ecr-replicator plan --help')"},
	} {
		code, out, errOut := run(t, w.Ctx, tc.args...)
		if code != ExitUsage || out != "" || errOut != "ecr-replicator: "+tc.want+"\n" {
			t.Errorf("%v:\n exit %d, stdout %q\n stderr %q\n want  %q", tc.args, code, out, errOut, "ecr-replicator: "+tc.want+"\n")
		}
	}
}

// TestSyncInterrupted: Ctrl-C ends a sync with one line and exit 130, not one line per
// cancelled copy; a rerun copies what is left.
func TestSyncInterrupted(t *testing.T) {
	w, _ := syncWorld(t)
	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID))
	ctx, cancel := context.WithCancel(w.Ctx)
	defer cancel()
	stdout := &onWrite{match: "copied ", fn: cancel}
	var stderr strings.Builder
	code := Run(ctx, []string{"sync", "--rules", rules, "--concurrency", "1"}, stdout, &stderr)
	if code != ExitInterrupted || len(strings.Split(strings.TrimSpace(stdout.String()), "\n")) != 1 || stderr.String() != "ecr-replicator: interrupted: 1 done, 9 left, rerun to resume\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	code, out, _ := run(t, w.Ctx, "sync", "--rules", rules)
	if code != ExitOK || !strings.Contains(out, ": 1 already in sync, 9 copied, 0 failed") {
		t.Errorf("rerun: exit %d %s", code, out)
	}
}

func TestPlanHelp(t *testing.T) {
	code, out, _ := run(t, context.Background(), "plan", "--help")
	if code != ExitOK || !strings.Contains(out, "Show what 'sync' would copy") || !strings.Contains(out, "What is counted: a copy is one tag") ||
		!strings.Contains(out, "--detailed-exitcode") {
		t.Errorf("plan --help:\n%s", out)
	}
	for _, flag := range []string{"--concurrency", "--jobs", "--dry-run"} {
		if strings.Contains(out, flag) {
			t.Errorf("plan --help names %s, which does nothing for a plan", flag)
		}
	}
}
