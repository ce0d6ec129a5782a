package cli

// Review of issue 24 ("the command line answers what, how big, and why not"): each test
// here runs the built binary against the sandbox, as a user would, and shows the command
// line giving a wrong or misleading answer.

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// writeRules writes a rules document and returns its path.
func writeRules(t *testing.T, doc string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// planJSON is the part of plan's document these tests read.
type planJSON struct {
	Complete bool
	Totals   struct{ ToCopy, InSync, Failed int }
	Estimate struct {
		BytesToUpload  int64
		ManifestWrites int
	}
	Repositories []struct {
		Destination      string
		CreateRepository bool
	}
	Items []struct {
		Tag, Digest, State string
		SizeBytes          *int64
	}
	Warnings []string
	Error    map[string]any
}

func decodePlan(t *testing.T, r cliResult) planJSON {
	t.Helper()
	var doc planJSON
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, r)
	}
	return doc
}

// TestReview24PlanBytesIndexWithTaggedPlatforms: a multi-platform image built the
// common `docker manifest create` way — each platform pushed under its own tag
// (v1-amd64, v1-arm64), then the index as v1 — and a rule that selects v1 only (untagged
// images copied, the default). The copy of v1 uploads both platforms' layers, but plan
// counts the index as 0 ("its platforms are listed as untagged images of their own") and
// the platforms are tagged, not untagged, and not selected: "0 B of layers" for the
// whole multi-platform image.
func TestReview24PlanBytesIndexWithTaggedPlatforms(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	amd := w.Source.Push(t, "team-a/app", "v1-amd64", fixedImage(t, "multi-amd64")).String()
	arm := w.Source.Push(t, "team-a/app", "v1-arm64", fixedImage(t, "multi-arm64")).String()
	w.Source.Push(t, "team-a/app", "v1", fixedIndex(t, "multi", "amd64", "arm64"))
	sizes := sourceSizes(t, w, "team-a/app")
	platforms := sizes[amd] + sizes[arm]
	if sizes[amd] == 0 || sizes[arm] == 0 || len(sizes) != 3 {
		t.Fatalf("the index's platforms are not the tagged images: %v", sizes)
	}
	rules := writeRules(t, "rules:\n  - name: releases\n    repositories: [\"team-a/*\"]\n    tags: [\"v1\"]\n    destinations:\n"+destination(w, "mirror/", w.ExternalID))

	r := runCLI(t, w.Ctx, nil, "plan", "--rules", rules, "-o", "json")
	doc := decodePlan(t, r)
	if r.code != ExitOK || doc.Totals.ToCopy != 1 {
		t.Fatalf("plan:\n%s", r)
	}
	// What sync then uploads for that one copy.
	s := runCLI(t, w.Ctx, nil, "sync", "--rules", rules, "-o", "json")
	var synced struct{ Totals struct{ BytesCopied int64 } }
	if err := json.Unmarshal([]byte(s.stdout), &synced); err != nil || s.code != ExitOK {
		t.Fatalf("sync: %v\n%s", err, s)
	}
	if doc.Estimate.BytesToUpload < platforms {
		t.Errorf("plan says %d bytes to upload (%s) for v1; its two platforms' imageSizeInBytes are %d, and sync then uploaded %d bytes:\n%s",
			doc.Estimate.BytesToUpload, humanBytes(doc.Estimate.BytesToUpload), platforms, synced.Totals.BytesCopied, r.stdout)
	}
}

// TestReview24EmptyRepositoryIsNotADeadRule: a rule whose repository glob matches an
// existing (new, still empty) repository has no typo. plan warns that it "selected
// nothing: no source image matched repositories [...]" — the words of a typo — and
// `plan --detailed-exitcode` exits 1 ("error of any kind") on a scope that is complete
// and in sync: CI fails because a team created a repository before its first push.
func TestReview24EmptyRepositoryIsNotADeadRule(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-c/new-service")})
	rules := writeRules(t, "rules:\n  - name: team-c\n    repositories: [\"team-c/*\"]\n    destinations:\n"+destination(w, "mirror/", w.ExternalID))

	r := runCLI(t, w.Ctx, nil, "plan", "--rules", rules, "--detailed-exitcode")
	if r.code != ExitOK || strings.Contains(r.stderr, "selected nothing") {
		t.Errorf("plan --detailed-exitcode of an in-sync scope whose only repository is empty: want exit 0 and no typo warning\n%s", r)
	}
}

// TestReview24UnlistedRepositoryIsNotADeadRule: when a source repository could not be
// listed (DescribeImages denied on it), the rule that selects it is also named as one
// that "selected nothing: no source image matched repositories [...]" — a typo is
// suggested where the cause is the denial reported beside it.
func TestReview24UnlistedRepositoryIsNotADeadRule(t *testing.T) {
	w, _ := syncWorld(t)
	dest := destination(w, "mirror/", w.ExternalID)
	rules := writeRules(t, "rules:\n  - name: team-a\n    repositories: [\"team-a/*\"]\n    destinations:\n"+dest+
		"  - name: team-b\n    repositories: [\"team-b/*\"]\n    destinations:\n"+dest)
	if err := w.SB.InjectAPIFault(sandbox.APIFault{Service: "ecr", Operation: "DescribeImages", Count: -1, Code: "AccessDeniedException",
		Resource: "arn:aws:ecr:" + sandbox.DefaultRegion + ":" + sandbox.SourceAccount + ":repository/team-b/db"}); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, w.Ctx, nil, "plan", "--rules", rules)
	if !strings.Contains(r.stdout, "team-b/db") {
		t.Fatalf("the denied listing of team-b/db is not reported:\n%s", r)
	}
	if strings.Contains(r.stderr, `("team-b") selected nothing`) {
		t.Errorf("a rule whose repository could not be listed is warned about as selecting nothing (a typo):\n%s", r)
	}
}

// TestReview24DetailedExitcodeErrorIsNotDrift: with --detailed-exitcode the help
// promises "0 complete and in sync, 1 error of any kind, 2 complete with copies to make"
// (terraform's meaning), and the help's own CI example reads 2 as drift. But a
// configuration or credentials error keeps its usage exit code, 2: a CI job reports
// "drift" for a missing rules file, rejected credentials, or a denied destination.
func TestReview24DetailedExitcodeErrorIsNotDrift(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Source.Push(t, "team-a/app", "v1", fixedImage(t, "detailed"))
	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID))
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"missing rules file", nil, []string{"plan", "--detailed-exitcode", "--rules", filepath.Join(t.TempDir(), "nosuch.yaml")}},
		{"credentials rejected", []string{"AWS_SECRET_ACCESS_KEY=wrong"}, []string{"plan", "--detailed-exitcode", "--rules", rules}},
		{"sync --dry-run, credentials rejected", []string{"AWS_SECRET_ACCESS_KEY=wrong"}, []string{"sync", "--dry-run", "--detailed-exitcode", "--rules", rules}},
		{"copy --dry-run into another account without a role", nil, []string{"copy", "--dry-run", "--detailed-exitcode", srcECR + "/team-a/app:v1", dstECR + "/mirror/app"}},
	} {
		r := runCLI(t, w.Ctx, tc.env, tc.args...)
		if r.code != ExitFailed {
			t.Errorf("%s: exit %d with --detailed-exitcode (2 means drift), want %d (error)\n%s", tc.name, r.code, ExitFailed, r)
		}
	}
}

// TestReview24SIGTERMJSONExitCode: docs/CLI-JSON.md says error.exitCode is "the
// process's exit code". SIGTERM ends the process with 143, but the JSON document says
// 130.
func TestReview24SIGTERMJSONExitCode(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Source.Push(t, "team-a/app", "v1", fixedImage(t, "sigterm-json"))
	const repo = "mirror/term/app"
	reached, release := make(chan struct{}, 16), make(chan struct{})
	remove, err := w.SB.HoldRequests(sandbox.Hold{Account: sandbox.DestinationAccount, Step: sandbox.StepUploadPUT, Repository: repo, Count: -1,
		Reached: func(sandbox.Entry) { reached <- struct{}{}; <-release }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { remove(); close(release) })
	cmd := cliCommand(t, w.Ctx, nil, "copy", srcECR+"/team-a/app:v1", dstECR+"/"+repo, "-o", "json",
		"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the copy never reached the held upload")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	code := exitCode(t, cmd.Wait())
	var doc struct {
		Error struct {
			Code     string
			ExitCode int
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatalf("exit %d, not one JSON document: %v\n%s\n%s", code, err, &stdout, &stderr)
	}
	if code != ExitTerminated || doc.Error.Code != "INTERRUPTED" || doc.Error.ExitCode != code {
		t.Errorf("SIGTERM: the process exits %d, its JSON says exitCode %d (want both %d)\n%s", code, doc.Error.ExitCode, ExitTerminated, &stdout)
	}
}

// TestReview24DryRunSaysCreatedWhenItWillNot: `copy --dry-run --create-repository=false`
// into a missing ECR repository says "repository … would be created" (JSON
// createRepository: true, "the destination repository does not exist and would be
// created"), and --detailed-exitcode says 2 (drift); the same copy without --dry-run
// fails, creating nothing. plan says the same ("repository to create") of a rules
// destination with createRepository: false, whose sync then fails each copy.
func TestReview24DryRunSaysCreatedWhenItWillNot(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Source.Push(t, "team-a/app", "v1", fixedImage(t, "nocreate"))
	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
	args := append([]string{"copy", "--create-repository=false", srcECR + "/team-a/app:v1", dstECR + "/absent/app"}, role...)

	dry := runCLI(t, w.Ctx, nil, append(args, "--dry-run")...)
	real := runCLI(t, w.Ctx, nil, args...)
	if real.code == ExitOK {
		t.Fatalf("the copy itself succeeded:\n%s", real)
	}
	if strings.Contains(dry.stdout, "would be created") || dry.code == ExitOK {
		t.Errorf("copy --dry-run --create-repository=false says the repository would be created (exit %d); the copy then fails (exit %d):\n--- dry run\n%s\n--- copy\n%s",
			dry.code, real.code, dry, real)
	}
	js := runCLI(t, w.Ctx, nil, append(args, "--dry-run", "-o", "json")...)
	if doc := decodePlan(t, js); len(doc.Repositories) == 1 && doc.Repositories[0].CreateRepository {
		t.Errorf("copy --dry-run --create-repository=false -o json: createRepository true\n%s", js.stdout)
	}

	rules := writeRules(t, "rules:\n  - name: team-a\n    repositories: [\"team-a/*\"]\n    destinations:\n"+
		destination(w, "absent/", w.ExternalID)+"        createRepository: false\n")
	plan := runCLI(t, w.Ctx, nil, "plan", "--rules", rules)
	sync := runCLI(t, w.Ctx, nil, "sync", "--rules", rules)
	if sync.code == ExitOK {
		t.Fatalf("sync into a missing repository with createRepository: false succeeded:\n%s", sync)
	}
	if strings.Contains(plan.stdout, "repository to create") {
		t.Errorf("plan says \"repository to create\" of a destination with createRepository: false; sync then fails:\n--- plan\n%s\n--- sync\n%s", plan, sync)
	}
}

// TestReview24DryRunQuiet: --quiet is "print only failures and the summary", but
// `copy --all-tags --dry-run --quiet` prints a line per tag, in sync or not.
func TestReview24DryRunQuiet(t *testing.T) {
	w, _ := outputWorld(t)
	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
	dst := dstECR + "/mirror/team-a/app"
	if r := runCLI(t, w.Ctx, nil, append([]string{"copy", "--all-tags", srcECR + "/team-a/app", dst}, role...)...); r.code != ExitOK {
		t.Fatalf("copy:\n%s", r)
	}
	r := runCLI(t, w.Ctx, nil, append([]string{"copy", "--all-tags", "--dry-run", "--quiet", srcECR + "/team-a/app", dst}, role...)...)
	if r.code != ExitOK || len(lines(r.stdout)) != 1 {
		t.Errorf("copy --dry-run --quiet, all 3 tags in sync: want the summary only\n%s", r)
	}
}

// TestReview24InterruptedPlanningJSON: docs/CLI-JSON.md lists error.done and error.left
// for INTERRUPTED ("copies not made: rerun to resume"); a plan (or sync) interrupted
// while listing has no "left", and a copy interrupted while its sides are resolved has
// neither.
func TestReview24InterruptedPlanningJSON(t *testing.T) {
	w, _ := syncWorld(t)
	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID))
	w.SB.SetLatency(700 * time.Millisecond)
	for _, args := range [][]string{
		{"plan", "--rules", rules, "-o", "json"},
		{"copy", srcECR + "/team-a/api:v1", dstECR + "/mirror/app", "-o", "json", "--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID},
	} {
		cmd := cliCommand(t, w.Ctx, nil, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // inside the first AWS calls
		cmd.Process.Signal(syscall.SIGINT)
		code := exitCode(t, cmd.Wait())
		var doc struct{ Error map[string]any }
		if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil || code != ExitInterrupted {
			t.Fatalf("%s: exit %d, %v\n%s\n%s", args[0], code, err, &stdout, &stderr)
		}
		_, done := doc.Error["done"]
		_, left := doc.Error["left"]
		if doc.Error["code"] != "INTERRUPTED" || !done || !left {
			t.Errorf("%s interrupted: the error lacks done or left, which docs/CLI-JSON.md lists for INTERRUPTED:\n%s", args[0], &stdout)
		}
	}
}

// TestReview24SyncDropsCopiesAfterARetryableFailure: an image with two tags is two
// copies. When the first one's manifest write fails retryably (the registry answers 503
// until the engine's retries are spent), the backfill stops that digest's group and
// leaves the rest "for the continuation" — which the command line never runs nor
// mentions. The second tag is neither copied, nor failed, nor listed: the text summary
// says "2 copies: 0 already in sync, 0 copied, 1 failed", and the JSON has one item for
// two copies to make (docs/CLI-JSON.md: toCopy are "then copied, failed, or found done").
// The exit code is 1, but the user cannot tell that tag b was never attempted.
func TestReview24SyncDropsCopiesAfterARetryableFailure(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	img := fixedImage(t, "two-tags")
	w.Source.Push(t, "team-a/app", "a", img)
	w.Source.Push(t, "team-a/app", "b", img)
	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID))
	if err := w.SB.InjectRegistryFault(sandbox.RegistryFault{Account: sandbox.DestinationAccount, Repository: "mirror/team-a/app",
		Step: sandbox.StepManifestPUT, Fault: sandbox.Fault503, Count: -1}); err != nil {
		t.Fatal(err)
	}
	// One run (the engine's retries take seconds); the text summary says the same:
	// "2 copies …: 0 already in sync, 0 copied, 1 failed".
	r := runCLI(t, w.Ctx, nil, "sync", "--rules", rules, "-o", "json")
	var doc struct {
		Totals struct{ ToCopy, Copied, Failed, InSync int }
		Items  []struct{ Tag, State string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("%v\n%s", err, r)
	}
	if doc.Totals.ToCopy != 2 || len(doc.Items) != 2 || doc.Totals.Copied+doc.Totals.Failed != 2 {
		t.Errorf("sync: %d copies to make, %d copied, %d failed, %d items (want every copy to make accounted for):\n%s",
			doc.Totals.ToCopy, doc.Totals.Copied, doc.Totals.Failed, len(doc.Items), r.stdout)
	}
}

// TestReview24SyncFailureNamesTheRegistry: sync explains a failed copy with the
// repository names alone (no host), so the "registry" in its message is the first path
// segment of the repository: "mirror refused to let this identity push to
// mirror/team-a/app (DENIED)". copy names the registry host for the same failure.
func TestReview24SyncFailureNamesTheRegistry(t *testing.T) {
	w := denyPutWorld(t)
	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID))

	r := runCLI(t, w.Ctx, nil, "sync", "--rules", rules)
	if r.code != ExitFailed || !strings.Contains(r.stdout, "(DENIED)") {
		t.Fatalf("sync with PutImage denied:\n%s", r)
	}
	if strings.Contains(r.stdout, ": mirror refused") || !strings.Contains(r.stdout, dstECR+" refused") {
		t.Errorf("sync names the registry that refused by the repository's first path segment, not its host %s:\n%s", dstECR, r)
	}
}

// denyPutWorld is a sandbox whose destination role may do anything but ecr:PutImage, with
// team-a/app:v1 at the source: a copy uploads the blobs, then its manifest is refused.
func denyPutWorld(t *testing.T) *sandboxtest.World {
	denyPut := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},` +
		`{"Effect":"Deny","Action":"ecr:PutImage","Resource":"*"}]}`
	w := sandboxtest.Start(t, func(c *sandbox.Config) {
		for i := range c.Accounts {
			for j := range c.Accounts[i].Roles {
				if c.Accounts[i].Roles[j].Name == sandbox.DestinationRole {
					c.Accounts[i].Roles[j].Policies = []string{denyPut}
				}
			}
		}
	})
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Source.Push(t, "team-a/app", "v1", fixedImage(t, "denied-put"))
	return w
}

// TestReview24BytesCopiedCopyVersusSync: one JSON schema, but totals.bytesCopied means
// two things. For the same failed copy (blobs uploaded, manifest refused), copy's
// totals.bytesCopied sums every item's bytesCopied; sync's says 0 while its only item
// says otherwise.
func TestReview24BytesCopiedCopyVersusSync(t *testing.T) {
	w := denyPutWorld(t)
	type doc struct {
		Totals struct{ BytesCopied int64 }
		Items  []struct{ BytesCopied int64 }
	}
	decode := func(r cliResult) (d doc, items int64) {
		if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || r.code != ExitFailed {
			t.Fatalf("%v\n%s", err, r)
		}
		for _, it := range d.Items {
			items += it.BytesCopied
		}
		return d, items
	}
	c, cItems := decode(runCLI(t, w.Ctx, nil, "copy", srcECR+"/team-a/app:v1", dstECR+"/mirror/team-a/app", "-o", "json",
		"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID))
	s, sItems := decode(runCLI(t, w.Ctx, nil, "sync", "--rules", rulesFile(t, destination(w, "backup/", w.ExternalID)), "-o", "json"))
	if c.Totals.BytesCopied != cItems || s.Totals.BytesCopied != sItems {
		t.Errorf("totals.bytesCopied vs the sum of items[].bytesCopied: copy %d vs %d, sync %d vs %d", c.Totals.BytesCopied, cItems, s.Totals.BytesCopied, sItems)
	}
}

// TestReview24NoIssuedSecretInDebugOutput: every secret the sandbox handed out (secret
// keys, session tokens, registry passwords, presigned storage URLs' credentials and
// signatures) stays out of what the commands print with --debug, text and JSON, through
// failures that carry URLs: storage GETs cut before their headers, an expired registry
// token, a refused manifest.
func TestReview24NoIssuedSecretInDebugOutput(t *testing.T) {
	w := denyPutWorld(t)
	w.Source.Push(t, "team-a/app", "v2", fixedImage(t, "secret-scan-v2"))
	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
	if err := w.SB.InjectRegistryFault(sandbox.RegistryFault{Account: sandbox.SourceAccount, Step: sandbox.StepStorageGET,
		Fault: sandbox.FaultResetBeforeHeaders, Count: 4}); err != nil {
		t.Fatal(err)
	}
	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID))
	var all strings.Builder
	for _, args := range [][]string{
		append([]string{"--debug", "copy", "--all-tags", srcECR + "/team-a/app", dstECR + "/m1/app"}, role...),
		append([]string{"--debug", "copy", "--all-tags", srcECR + "/team-a/app", dstECR + "/m2/app", "-o", "json"}, role...),
		{"--debug", "plan", "--rules", rules, "-o", "json"},
		{"--debug", "sync", "--rules", rules},
		{"--debug", "sync", "--rules", rules, "-o", "json"},
	} {
		w.SB.ExpireRegistryTokens(sandbox.SourceAccount)
		r := runCLI(t, w.Ctx, nil, args...)
		all.WriteString(r.stdout + r.stderr)
	}
	out := all.String()
	t.Logf("faults fired: %v; redacted URLs in the output: %d", w.SB.FaultsFired(), strings.Count(out, "<redacted>"))
	if !strings.Contains(out, "level=DEBUG") {
		t.Fatalf("no debug log:\n%s", out)
	}
	for _, s := range w.SB.IssuedSecrets() {
		if len(s) >= 8 && strings.Contains(out, s) {
			i := strings.Index(out, s)
			t.Errorf("secret %.6s… is in the output: …%s…", s, out[max(i-200, 0):i])
		}
	}
}

// TestReview24DebugPrintsCredentialProcessOutput: a credential_process whose answer does
// not parse (here an Expiration that is not RFC 3339, a common mistake of hand-written
// helpers) makes the SDK's error carry the helper's whole output — the secret key and the
// session token. The one-line message is clean, but --debug prints the error chain on
// stderr, and -o json --debug puts it in error.detail.
func TestReview24DebugPrintsCredentialProcessOutput(t *testing.T) {
	w := sandboxtest.Start(t)
	key, secret, err := w.SB.Credentials(sandbox.SourceAccount, sandbox.SourceUser)
	if err != nil {
		t.Fatal(err)
	}
	const token = "FwoGZXIvYXdzEXAMPLESESSIONTOKENVALUE"
	dir := t.TempDir()
	helper := filepath.Join(dir, "creds.sh")
	answer := `{"Version": 1, "AccessKeyId": "` + key + `", "SecretAccessKey": "` + secret + `", "SessionToken": "` + token + `", "Expiration": "in one hour"}`
	if err := os.WriteFile(helper, []byte("#!/bin/sh\necho '"+answer+"'\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config")
	if err := os.WriteFile(cfg, []byte("[profile ci]\ncredential_process = "+helper+"\nregion = us-east-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"AWS_CONFIG_FILE=" + cfg, "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY="}
	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID))
	for _, args := range [][]string{
		{"--debug", "plan", "--rules", rules, "--profile", "ci"},
		{"--debug", "plan", "--rules", rules, "--profile", "ci", "-o", "json"},
	} {
		r := runCLI(t, w.Ctx, env, args...)
		if r.code != ExitUsage {
			t.Fatalf("%v: want the credentials error\n%s", args, r)
		}
		if strings.Contains(r.stdout+r.stderr, secret) || strings.Contains(r.stdout+r.stderr, token) {
			t.Errorf("%v: the secret key or session token is in the output:\n%s", args, r)
		}
	}
}

// TestReview24SignedRepositoryHidesADeadRule: in a repository whose images are signed
// with cosign (a sha256-<digest>.sig tag beside each), a rule whose tag glob has a typo
// ("relase-*") is not named: the signature tags, which every rule with referrers
// (the default) accepts whatever its globs, count as "selected". The warning is lost
// exactly where teams sign their images.
func TestReview24SignedRepositoryHidesADeadRule(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	d := w.Source.Push(t, "team-a/app", "release-1", fixedImage(t, "signed"))
	w.Source.Push(t, "team-a/app", "sha256-"+d.Hex+".sig", fixedImage(t, "a signature"))
	dest := destination(w, "mirror/", w.ExternalID)
	rules := writeRules(t, "rules:\n  - name: releases\n    repositories: [\"team-a/app\"]\n    tags: [\"relase-*\"]\n    destinations:\n"+dest)

	r := runCLI(t, w.Ctx, nil, "plan", "--rules", rules, "--detail", "--detailed-exitcode")
	if !strings.Contains(r.stderr, `rules[0] ("releases") selected nothing`) {
		t.Errorf("a rule whose tag glob matches no tag (only cosign signature tags are there besides) is not named:\n%s", r)
	}
}

// TestReview24DryRunTotalsAddUp: docs/CLI-JSON.md defines totals.copies as "inSync +
// toCopy + notPlanned". A copy --dry-run whose lookup failed (a tag the source lacks)
// counts the copy in copies and in neither of the others: 1 ≠ 0 + 0.
func TestReview24DryRunTotalsAddUp(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Source.Push(t, "team-a/app", "v1", fixedImage(t, "totals"))
	r := runCLI(t, w.Ctx, nil, "copy", "--dry-run", srcECR+"/team-a/app:nosuch", dstECR+"/mirror/app", "-o", "json",
		"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID)
	var doc struct {
		Totals struct{ Copies, InSync, ToCopy, NotPlanned, Failed int }
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("%v\n%s", err, r)
	}
	if tt := doc.Totals; tt.Copies != tt.InSync+tt.ToCopy+tt.NotPlanned {
		t.Errorf("totals %+v: copies is not inSync + toCopy + notPlanned\n%s", tt, r.stdout)
	}
}

// TestReview24DryRunMissingTagWouldCreate: the copy of a tag the source lacks, and
// --all-tags of an empty repository, create nothing (issue 24's "a failed first copy
// leaves an empty destination repository" fix, TestCLIFailedFirstCopyCreatesNothing),
// but their dry runs say "repository … would be created".
func TestReview24DryRunMissingTagWouldCreate(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Source.Push(t, "team-a/app", "v1", fixedImage(t, "would-create"))
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/empty")})
	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
	for _, args := range [][]string{
		{"copy", srcECR + "/team-a/app:nosuch", dstECR + "/mirror/app"},
		{"copy", "--all-tags", srcECR + "/team-a/empty", dstECR + "/mirror/empty"},
	} {
		dry := runCLI(t, w.Ctx, nil, append(append(args, "--dry-run"), role...)...)
		if strings.Contains(dry.stdout, "would be created") {
			t.Errorf("%v: the dry run says the repository would be created; the copy creates nothing:\n%s", args, dry)
		}
	}
}

// TestReview24PlanIgnoresImmutableTags: the destination repository's tags are immutable
// and its v1 points to another image. copy --dry-run and plan answer "to-copy (tag points
// to another digest)" (--detailed-exitcode: 2, drift to apply), though the copy can only
// end in a conflict, and sync in a failure, whatever is rerun.
func TestReview24PlanIgnoresImmutableTags(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Source.Push(t, "team-a/app", "v1", fixedImage(t, "immutable-new"))
	w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/team-a/app"), ImageTagMutability: "IMMUTABLE"})
	w.Dest.Push(t, "mirror/team-a/app", "v1", fixedImage(t, "immutable-old"))
	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
	args := append([]string{"copy", srcECR + "/team-a/app:v1", dstECR + "/mirror/team-a/app"}, role...)

	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID))
	plan := runCLI(t, w.Ctx, nil, "plan", "--rules", rules, "--detailed-exitcode")
	dry := runCLI(t, w.Ctx, nil, append(args, "--dry-run", "--detailed-exitcode")...)
	real := runCLI(t, w.Ctx, nil, args...)
	if real.code == ExitOK {
		t.Fatalf("the copy over an immutable tag succeeded:\n%s", real)
	}
	if dry.code == ExitDrift {
		t.Errorf("copy --dry-run --detailed-exitcode says drift to apply (exit 2); the copy can only fail:\n--- dry run\n%s\n--- copy\n%s", dry, real)
	}
	if plan.code == ExitDrift {
		t.Errorf("plan --detailed-exitcode says drift to apply (exit 2) for a tag the destination's immutability refuses:\n%s", plan)
	}
}

// TestReview24RulesTypeErrorHints: the new type-error hints name the key written first
// on the line, whatever the value that is wrong. A list field holding a nested list or a
// mapping is told it "must be a single value" — the opposite of the fix — and a wrong
// field inside a flow-style destination is blamed on "destinations".
func TestReview24RulesTypeErrorHints(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ doc, wrong string }{
		{"rules:\n  - repositories: [\"team-a/*\"]\n    tags: [[\"v*\"]]\n    destinations:\n      - {accountId: \"222222222222\", region: us-east-1}\n",
			"tags must be a single value"},
		{"rules:\n  - repositories: [{name: team-a}]\n    destinations:\n      - {accountId: \"222222222222\", region: us-east-1}\n",
			"repositories must be a single value"},
		{"rules:\n  - repositories: [\"team-a/*\"]\n    destinations: [{accountId: [\"222222222222\"], region: us-east-1}]\n",
			"destinations must be a single value"},
	} {
		f := filepath.Join(dir, "rules.yaml")
		if err := os.WriteFile(f, []byte(tc.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, t.Context(), nil, "plan", "--rules", f)
		if r.code != ExitUsage || strings.Contains(r.stderr, tc.wrong) {
			t.Errorf("%s\n%s\n(the hint says %q: the field is a list)", tc.doc, r, tc.wrong)
		}
	}
}

// TestReview24DeniedSourceCreatesEmptyRepository: issue 24 wants a failed first copy to
// leave no empty destination repository. Only a source that answers "not found" is
// checked first; a source that refuses the pull (the identity lacks ecr:BatchGetImage —
// a permanent failure) still gets the destination repository created, then the copy
// fails and the repository stays, empty.
func TestReview24DeniedSourceCreatesEmptyRepository(t *testing.T) {
	denyPull := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},` +
		`{"Effect":"Deny","Action":"ecr:BatchGetImage","Resource":"*"}]}`
	w := sandboxtest.Start(t, func(c *sandbox.Config) {
		for i := range c.Accounts {
			for j := range c.Accounts[i].Users {
				if c.Accounts[i].ID == sandbox.SourceAccount && c.Accounts[i].Users[j].Name == sandbox.SourceUser {
					c.Accounts[i].Users[j].Policies = []string{denyPull}
				}
			}
		}
	})
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	w.Source.Push(t, "team-a/app", "v1", fixedImage(t, "denied-pull"))
	r := runCLI(t, w.Ctx, nil, "copy", srcECR+"/team-a/app:v1", dstECR+"/new/app", "--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID)
	if r.code == ExitOK {
		t.Fatalf("the copy succeeded:\n%s", r)
	}
	if _, err := ecr.NewFromConfig(w.Dest.Config).DescribeRepositories(w.Ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"new/app"}}); err == nil {
		t.Errorf("the copy whose source refused the pull left repository new/app behind:\n%s", r)
	}
}

// TestReview24NarrowingTypoIsSilent: the dead-rule warning is off whenever --repositories,
// --tags or --since narrow the rules, so a typo in the narrowing itself ("tem-a/*") gives
// "0 repositories … in sync" and `--detailed-exitcode` exits 0 — the silent pass issue 24
// set out to remove, moved from the rules document to the command line.
func TestReview24NarrowingTypoIsSilent(t *testing.T) {
	w, _ := syncWorld(t)
	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID))
	r := runCLI(t, w.Ctx, nil, "plan", "--rules", rules, "--repositories", "tem-a/*", "--detailed-exitcode")
	if r.code == ExitOK && r.stderr == "" {
		t.Errorf("a --repositories glob that matches no source repository passes as in sync (exit 0, no warning):\n%s", r)
	}
}
