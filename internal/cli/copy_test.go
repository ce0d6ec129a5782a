package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

const (
	srcECR = sandbox.SourceAccount + ".dkr.ecr." + sandbox.DefaultRegion + ".amazonaws.com"
	dstECR = sandbox.DestinationAccount + ".dkr.ecr." + sandbox.DefaultRegion + ".amazonaws.com"
)

func run(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut strings.Builder
	code := Run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestCopyBetweenAccounts names registries by their ECR host names, as a user would; the
// hosts actually used come from ECR's answers (the sandbox's loopback registries).
func TestCopyBetweenAccounts(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app"), ImageTagMutability: ecrtypes.ImageTagMutabilityImmutable})
	idx, _ := random.Index(1024, 2, 3)
	idxDigest := w.Source.Push(t, "team-a/app", "v1", idx)
	var digests []string
	for i := 0; i < 4; i++ {
		img, _ := random.Image(512, 1)
		digests = append(digests, w.Source.Push(t, "team-a/app", fmt.Sprintf("t%d", i), img).String())
	}
	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}

	code, out, errOut := run(t, w.Ctx, append([]string{"copy", srcECR + "/team-a/app:v1", dstECR + "/mirror/team-a/app", "--output", "json"}, role...)...)
	if code != ExitOK {
		t.Fatalf("copy exit %d: %s %s", code, out, errOut)
	}
	var rep struct {
		Counted string
		Items   []struct{ State, Digest, Tag, Destination string }
		Totals  struct{ Copied, Failed int }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("JSON output: %v\n%s", err, out)
	}
	if len(rep.Items) != 1 || rep.Items[0].State != "copied" || rep.Items[0].Digest != idxDigest.String() || rep.Items[0].Destination != dstECR+"/mirror/team-a/app" ||
		rep.Totals.Copied != 1 || rep.Counted != "copies: one per tag, to the destination repository" {
		t.Fatalf("results: %+v", rep)
	}
	if errOut != "" {
		t.Errorf("JSON output off a terminal: stderr should be quiet, got %q", errOut)
	}
	if got := w.Dest.Digest(t, "mirror/team-a/app", "v1"); got != idxDigest.String() {
		t.Fatalf("destination v1 = %q, want %s", got, idxDigest)
	}
	// The created repository mirrors the source's immutability.
	repos, err := ecr.NewFromConfig(w.Dest.Config).DescribeRepositories(w.Ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"mirror/team-a/app"}})
	if err != nil || repos.Repositories[0].ImageTagMutability != ecrtypes.ImageTagMutabilityImmutable {
		t.Fatalf("destination repository: %+v %v", repos, err)
	}

	// A dry run says what --all-tags would copy, and copies nothing.
	code, out, _ = run(t, w.Ctx, append([]string{"copy", "--all-tags", "--dry-run", "--detailed-exitcode", srcECR + "/team-a/app", dstECR + "/mirror/team-a/app"}, role...)...)
	if code != ExitDrift || !strings.Contains(out, "5 tags: 1 in sync, 4 to copy (dry run: nothing was copied)\n") ||
		!strings.Contains(out, "in-sync         "+dstECR+"/mirror/team-a/app:v1@"+shortDigest(idxDigest.String())+"\n") ||
		!strings.Contains(out, "to-copy         "+dstECR+"/mirror/team-a/app:t0@"+shortDigest(digests[0])+" (tag missing)\n") {
		t.Errorf("dry run: exit %d\n%s", code, out)
	}
	if got := w.Dest.Digest(t, "mirror/team-a/app", "t0"); got != "" {
		t.Errorf("the dry run copied t0")
	}

	// --all-tags copies the rest; v1 is already there (and immutable: looked at, not rewritten).
	code, out, errOut = run(t, w.Ctx, append([]string{"copy", "--all-tags", srcECR + "/team-a/app", dstECR + "/mirror/team-a/app"}, role...)...)
	if code != ExitOK {
		t.Fatalf("copy --all-tags exit %d: %s %s", code, out, errOut)
	}
	if !strings.Contains(out, "5 tags: 1 already-present, 4 copied") {
		t.Errorf("summary: %s", out)
	}
	for i, d := range digests {
		if got := w.Dest.Digest(t, "mirror/team-a/app", fmt.Sprintf("t%d", i)); got != d {
			t.Errorf("t%d = %q, want %s", i, got, d)
		}
	}
	// Off a terminal, one line per tag on stdout, and no progress on stderr.
	lineRE := regexp.MustCompile(`^(copied|already-present) +` + regexp.QuoteMeta(dstECR+"/mirror/team-a/app:") + `(v1|t[0-3])@sha256:[0-9a-f]{12}$`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || errOut != "" {
		t.Errorf("output: %d lines, want 5 and the summary: %q; stderr %q", len(lines), out, errOut)
	}
	for _, l := range lines[:len(lines)-1] {
		if !lineRE.MatchString(l) {
			t.Errorf("result line %q", l)
		}
	}

	// A conflicting immutable tag fails that image: exit 1, listed.
	other, _ := random.Image(256, 1)
	w.Dest.Push(t, "mirror/team-a/app", "t9", other)
	img, _ := random.Image(256, 1)
	w.Source.Push(t, "team-a/app", "t9", img)
	code, out, _ = run(t, w.Ctx, append([]string{"copy", srcECR + "/team-a/app:t9", dstECR + "/mirror/team-a/app"}, role...)...)
	if code != ExitFailed || !strings.HasPrefix(out, "conflict") || !strings.Contains(out, "1 tag: 1 conflict") {
		t.Errorf("immutable conflict: exit %d, output %q", code, out)
	}
}

// TestCopyUsageErrors: exit 2 before any work, with one line saying what is wrong.
func TestCopyUsageErrors(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	img, _ := random.Image(256, 1)
	w.Source.Push(t, "team-a/app", "v1", img)
	src := srcECR + "/team-a/app:v1"
	mark := w.SB.AccessLogMark()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"copy", src}, "copy takes two arguments, SRC and DST (got 1); see 'ecr-replicator copy --help'"},
		{[]string{"copy", src, dstECR + "/x:other"}, `DST tag "other" must be SRC's tag or omitted: copies keep tags (and digests)`},
		{[]string{"copy", src, dstECR + "/x@sha256:" + strings.Repeat("a", 64)}, `DST "` + dstECR + `/x@sha256:` + strings.Repeat("a", 64) + `" names a digest: a destination is a repository (the digest is the source's)`},
		{[]string{"copy", "--output", "yaml", src, dstECR + "/x"}, `--output must be text or json, not "yaml"`},
		{[]string{"copy", "--all-tags", src, dstECR + "/x"}, `with --all-tags, SRC is a repository without a tag or digest, not "` + src + `"`},
		{[]string{"copy", "--concurrency", "0", src, dstECR + "/x"}, "--concurrency must be between 1 and 256 (got 0)"},
		{[]string{"copy", "--jobs", "-1", src, dstECR + "/x"}, "--jobs must be between 1 and 256 (got -1)"},
		{[]string{"copy", "--detailed-exitcode", src, dstECR + "/x"}, "--detailed-exitcode goes with --dry-run (it reports drift)"},
		{[]string{"copy", srcECR + "/Team-A/app:v1", dstECR + "/x"}, `SRC "` + srcECR + `/Team-A/app:v1" is not an image reference: repository "Team-A/app" has uppercase letters; repository names are lowercase`},
		// On an ECR registry a tag may have up to 300 characters (API_PutImage imageTag).
		{[]string{"copy", srcECR + "/team-a/app:-v1", dstECR + "/x"}, `SRC "` + srcECR + `/team-a/app:-v1" is not an image reference: tag "-v1" is invalid: at most 300 letters, digits, '_', '.' and '-' on an ECR registry, not starting with '.' or '-'`},
		{[]string{"copy", srcECR + "/team-a/app:" + strings.Repeat("x", 301), dstECR + "/x"}, `SRC "` + srcECR + `/team-a/app:` + strings.Repeat("x", 301) + `" is not an image reference: tag "` + strings.Repeat("x", 301) + `" is invalid: at most 300 letters, digits, '_', '.' and '-' on an ECR registry, not starting with '.' or '-'`},
		{[]string{"copy", "127.0.0.1:1/team-a/app:" + strings.Repeat("x", 129), dstECR + "/x"}, `SRC "127.0.0.1:1/team-a/app:` + strings.Repeat("x", 129) + `" is not an image reference: tag "` + strings.Repeat("x", 129) + `" is invalid: at most 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'`},
		{[]string{"copy", srcECR + "/team-a/app:" + strings.Repeat("x", 129), "127.0.0.1:1/x"}, `SRC's tag has 129 characters: only an ECR registry holds a tag over 128 (through the ECR API), and DST 127.0.0.1:1 is not one`},
		{[]string{"copy", "https://" + src, dstECR + "/x"}, `SRC "https://` + src + `" is not an image reference: drop the scheme (https://); a reference starts with the registry host`},
		{[]string{"copy", srcECR + "/team-a//app:v1", dstECR + "/x"}, `SRC "` + srcECR + `/team-a//app:v1" is not an image reference: repository "team-a//app" has an empty path component (a doubled or trailing '/')`},
		// The role is in the destination account; the host names the source's: the
		// image would land in 222… while the output said 111….
		{[]string{"copy", src, srcECR + "/mirror/app", "--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID},
			"--dest-role-arn " + w.DestinationRoleARN() + " is in account 222222222222, but DST " + srcECR + " is in account 111111111111: a role acts in its own account's registry; name the registry of account 222222222222, or a role in account 111111111111"},
		{[]string{"copy", src, "127.0.0.1:1/x", "--dest-role-arn", w.DestinationRoleARN()}, "DST 127.0.0.1:1 is not an ECR registry: --dest-role-arn applies to ECR registries only (ACCOUNT.dkr.ecr.REGION.amazonaws.com)"},
		{[]string{"copy", src, dstECR + "/x", "--external-id", "x"}, "--external-id goes with --dest-role-arn"},
		{[]string{"copy", "--no-such-flag", src, dstECR + "/x"}, "unknown flag: --no-such-flag (see 'ecr-replicator copy --help')"},
	} {
		code, out, errOut := run(t, w.Ctx, tc.args...)
		if code != ExitUsage || out != "" || errOut != "ecr-replicator: "+tc.want+"\n" {
			t.Errorf("%v:\n exit %d, stdout %q\n stderr %q\n want  %q", tc.args, code, out, errOut, "ecr-replicator: "+tc.want+"\n")
		}
	}
	if n := len(sandbox.Filter(w.SB.AccessLogSince(mark), func(e sandbox.Entry) bool { return e.Service == "registry" || e.Operation == "AssumeRole" })); n != 0 {
		t.Errorf("usage errors made %d registry or AssumeRole requests", n)
	}
}

// TestCopyErrorMessages: failures are one line naming what was wrong and what to do
// (--debug adds the cause), a JSON object on stdout with --output json, and exit 2 for
// credentials and configuration, 1 for images that failed.
func TestCopyErrorMessages(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	img, _ := random.Image(256, 1)
	w.Source.Push(t, "team-a/app", "v1", img)
	src := srcECR + "/team-a/app:v1"
	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
	denied := "cannot assume arn:aws:iam::222222222222:role/ecr-replicator-destination (AccessDenied): check that the external ID (--external-id) matches the sts:ExternalId condition of the role's trust policy, and that the trust policy allows arn:aws:iam::111111111111:user/replicator to assume it and to tag the session (sts:TagSession, which the identity's own policy must allow too)"

	for _, tc := range []struct {
		name string
		args []string
		exit int
		want string // stderr, or stdout for a failed image
	}{
		{"missing tag", append([]string{"copy", srcECR + "/team-a/app:nosuchtag", dstECR + "/mirror/app"}, role...), ExitFailed,
			"failed          " + dstECR + "/mirror/app:nosuchtag: tag nosuchtag not found in " + srcECR + "/team-a/app (MANIFEST_UNKNOWN)\n1 tag: 1 failed; 0 B copied\n"},
		{"missing source repository", append([]string{"copy", srcECR + "/team-a/nosuch:v1", dstECR + "/mirror/app"}, role...), ExitUsage,
			"ecr-replicator: source repository " + srcECR + "/team-a/nosuch not found (RepositoryNotFoundException): check the name and the region in the host name; `aws ecr describe-repositories --region us-east-1` lists them\n"},
		{"role denied", []string{"copy", src, dstECR + "/mirror/app", "--dest-role-arn", w.DestinationRoleARN(), "--external-id", "wrong-id"}, ExitUsage,
			"ecr-replicator: " + denied + "\n"},
		{"role without external ID", []string{"copy", src, dstECR + "/mirror/app", "--dest-role-arn", w.DestinationRoleARN()}, ExitUsage,
			"ecr-replicator: cannot assume arn:aws:iam::222222222222:role/ecr-replicator-destination (AccessDenied): check that the role's trust policy does not require an external ID (sts:ExternalId); if it does, set --external-id, and that the trust policy allows arn:aws:iam::111111111111:user/replicator to assume it and to tag the session (sts:TagSession, which the identity's own policy must allow too)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, w.Ctx, tc.args...)
			got := errOut
			if tc.exit == ExitFailed {
				got = out
			}
			if code != tc.exit || got != tc.want {
				t.Errorf("exit %d (want %d)\n got  %q\n want %q\n(stdout %q, stderr %q)", code, tc.exit, got, tc.want, out, errOut)
			}
		})
	}

	// --output json: the error is a JSON object on stdout, stderr stays empty.
	code, out, errOut := run(t, w.Ctx, "copy", src, dstECR+"/mirror/app", "--dest-role-arn", w.DestinationRoleARN(), "--external-id", "wrong-id", "-o", "json")
	var obj struct {
		SchemaVersion int
		Command       string
		Error         map[string]any
	}
	if code != ExitUsage || errOut != "" || json.Unmarshal([]byte(out), &obj) != nil || obj.SchemaVersion != 1 || obj.Command != "copy" {
		t.Fatalf("JSON error: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if e := obj.Error; e["code"] != "AccessDenied" || e["message"] != denied || e["exitCode"] != float64(ExitUsage) || e["operation"] != "sts:AssumeRole" || len(e) != 4 {
		t.Errorf("JSON error object: %v", e)
	}
	// A usage error found while parsing flags is JSON too when -o json was asked for.
	code, out, _ = run(t, w.Ctx, "copy", "-o", "json", "--jobs", "0", src, dstECR+"/x")
	if code != ExitUsage || !strings.Contains(out, `"message": "--jobs must be between 1 and 256 (got 0)"`) || !strings.Contains(out, `"code": "USAGE"`) {
		t.Errorf("JSON usage error: exit %d %q", code, out)
	}

	// --debug adds the cause on a second line.
	// (The engine's debug log comes first.)
	code, _, errOut = run(t, w.Ctx, "--debug", "copy", src, dstECR+"/mirror/app", "--dest-role-arn", w.DestinationRoleARN(), "--external-id", "wrong-id")
	if lines := strings.Split(strings.TrimSpace(errOut), "\n"); code != ExitUsage || len(lines) < 2 || lines[len(lines)-2] != "ecr-replicator: "+denied ||
		!strings.HasPrefix(lines[len(lines)-1], "ecr-replicator: debug: ") || !strings.Contains(lines[len(lines)-1], "operation error STS: AssumeRole") {
		t.Errorf("--debug: exit %d\n%s", code, errOut)
	}

	// No credentials anywhere.
	t.Run("no credentials", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		code, _, errOut := run(t, w.Ctx, "copy", src, dstECR+"/mirror/app")
		want := "ecr-replicator: no AWS credentials found: set AWS_PROFILE (or --profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws configure` or `aws sso login`\n"
		if code != ExitUsage || errOut != want {
			t.Errorf("exit %d %q", code, errOut)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
		code, _, errOut := run(t, w.Ctx, "copy", src, dstECR+"/mirror/app")
		want := "ecr-replicator: AWS did not accept the credentials (SignatureDoesNotMatch in sts:GetCallerIdentity): the access key is unknown or its secret does not match; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or --profile\n"
		if code != ExitUsage || errOut != want {
			t.Errorf("exit %d %q", code, errOut)
		}
	})
	t.Run("unknown profile", func(t *testing.T) {
		code, _, errOut := run(t, w.Ctx, "copy", "--profile", "nosuch", src, dstECR+"/mirror/app")
		want := "ecr-replicator: AWS profile \"nosuch\" not found in ~/.aws/config or ~/.aws/credentials (or the files AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE name): check --profile (or AWS_PROFILE), or create it with `aws configure --profile nosuch`\n"
		if code != ExitUsage || errOut != want {
			t.Errorf("exit %d %q", code, errOut)
		}
	})
	t.Run("deprecated --source-profile", func(t *testing.T) {
		// Still works (same meaning: the source's profile), with a notice.
		code, _, errOut := run(t, w.Ctx, "copy", "--source-profile", "nosuch", src, dstECR+"/mirror/app")
		if code != ExitUsage || !strings.HasPrefix(errOut, "ecr-replicator: warning: --source-profile is deprecated: use --profile (and --dest-profile for a destination reached with other credentials)\n") ||
			!strings.Contains(errOut, "ecr-replicator: AWS profile \"nosuch\" not found") {
			t.Errorf("exit %d %q", code, errOut)
		}
	})
	t.Run("expired session", func(t *testing.T) {
		// Run with the temporary credentials of an assumed role, then let them expire.
		out, err := sts.NewFromConfig(w.Config(t, sandbox.SourceAccount, sandbox.SourceUser)).AssumeRole(w.Ctx, &sts.AssumeRoleInput{
			RoleArn: aws.String(w.DestinationRoleARN()), RoleSessionName: aws.String("cli-test"), ExternalId: aws.String(w.ExternalID)})
		if err != nil {
			t.Fatal(err)
		}
		c := out.Credentials
		t.Setenv("AWS_ACCESS_KEY_ID", aws.ToString(c.AccessKeyId))
		t.Setenv("AWS_SECRET_ACCESS_KEY", aws.ToString(c.SecretAccessKey))
		t.Setenv("AWS_SESSION_TOKEN", aws.ToString(c.SessionToken))
		w.SB.ExpireSessions(sandbox.DestinationAccount)
		code, _, errOut := run(t, w.Ctx, "copy", dstECR+"/mirror/app:v1", dstECR+"/other")
		want := "ecr-replicator: the AWS credentials have expired (ExpiredToken in sts:GetCallerIdentity): get fresh ones (for example `aws sso login`, or a new session token) and rerun\n"
		if code != ExitUsage || errOut != want {
			t.Errorf("exit %d %q", code, errOut)
		}
	})
}

// TestCopyInterrupted: Ctrl-C ends a copy with one line and exit 130; a rerun resumes.
func TestCopyInterrupted(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	for i := 0; i < 5; i++ {
		img, _ := random.Image(512, 1)
		w.Source.Push(t, "team-a/app", fmt.Sprintf("t%d", i), img)
	}
	args := []string{"copy", "--all-tags", "--concurrency", "1", srcECR + "/team-a/app", dstECR + "/mirror/team-a/app",
		"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
	ctx, cancel := context.WithCancel(w.Ctx)
	defer cancel()
	// Ctrl-C as the first tag is reported done: the next tag starts interrupted.
	stdout := &onWrite{match: "copied ", fn: cancel}
	var stderr strings.Builder
	code := Run(ctx, args, stdout, &stderr)
	if code != ExitInterrupted || len(strings.Split(strings.TrimSpace(stdout.String()), "\n")) != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	if stderr.String() != "ecr-replicator: interrupted: 1 done, 4 left, rerun to resume\n" {
		t.Errorf("stderr: %q", stderr.String())
	}
	code, out, _ := run(t, w.Ctx, args...)
	if code != ExitOK || !strings.Contains(out, "5 tags: 1 already-present, 4 copied") {
		t.Errorf("rerun: exit %d %s", code, out)
	}
}

// onWrite is a writer that calls fn once, when what was written contains match.
type onWrite struct {
	mu    sync.Mutex
	b     strings.Builder
	match string
	fn    func()
	fired bool
}

func (w *onWrite) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if !w.fired && strings.Contains(w.b.String(), w.match) {
		w.fired = true
		w.fn()
	}
	return len(p), nil
}

func (w *onWrite) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestCopyToMissingRepositoryOnOtherRegistry: a registry that is not ECR (here the
// sandbox's destination registry named by its loopback host, reached with Docker
// credentials) closes the connection on an upload into a repository that does not
// exist, as ECR does. The copy fails at once with NAME_UNKNOWN and says to create the
// repository, instead of retrying EOF.
func TestCopyToMissingRepositoryOnOtherRegistry(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	img, _ := random.Image(1024, 2)
	d := w.Source.Push(t, "team-a/app", "v1", img)
	dir := t.TempDir()
	ac, err := w.Dest.Auth.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte(ac.Username + ":" + ac.Password))
	cfg := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, w.Dest.Host, auth)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)

	mark := w.SB.AccessLogMark()
	dst := w.Dest.Host + "/nosuch/app"
	code, out, _ := run(t, w.Ctx, "copy", srcECR+"/team-a/app:v1", dst)
	want := "failed          " + dst + ":v1@" + shortDigest(d.String()) + ": repository " + dst + " does not exist (NAME_UNKNOWN): create it there first; ecr-replicator creates repositories only on ECR registries\n1 tag: 1 failed; 0 B copied\n"
	if code != ExitFailed || out != want {
		t.Errorf("exit %d\n got  %q\n want %q", code, out, want)
	}
	posts := sandbox.Filter(w.SB.AccessLogSince(mark), func(e sandbox.Entry) bool {
		return e.Service == "registry" && e.Operation == "POST upload"
	})
	// The image has three blobs (two layers, a config), uploaded in parallel: at most
	// one upload POST each, none retried.
	if len(posts) == 0 || len(posts) > 3 {
		t.Errorf("%d upload POSTs into the missing repository, want 1 to 3 (no retry)", len(posts))
	}
}
