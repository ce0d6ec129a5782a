package cli

// Review of issue 27 ("the replicator writes only where it owns"): the command line
// against the sandbox, as a user would run it.

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestReview27PlanPromisesCopiesIntoAnUnownedRepository: the destination already has
// mirror/team-a/app, without the replicator's owner tag (a repository from before issue
// 27 not adopted yet, or the destination's own). `plan` — "what sync would copy" — says
// 1 to copy and nothing that cannot be copied (review 24 made it report the copies that
// would fail: immutable conflicts, creation off), then `sync` refuses the very copy with
// RepositoryNotOwned. The plan is green in CI and the sync is red: the check that exists
// (ownership, one ListTagsForResource) is not asked by the plan.
func TestReview27PlanPromisesCopiesIntoAnUnownedRepository(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	img, _ := random.Image(256, 1)
	w.Source.Push(t, "team-a/app", "v1", img)
	w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/team-a/app")}) // no owner tag
	rules := writeRules(t, "rules:\n  - name: team-a\n    repositories: [\"team-a/*\"]\n    destinations:\n"+destination(w, "mirror/", w.ExternalID))

	p := runCLI(t, w.Ctx, nil, "plan", "--rules", rules, "-o", "json")
	var plan struct {
		Totals struct{ ToCopy, CannotCopy, Failed int }
	}
	if err := json.Unmarshal([]byte(p.stdout), &plan); err != nil {
		t.Fatalf("plan: %v\n%s", err, p)
	}
	s := runCLI(t, w.Ctx, nil, "sync", "--rules", rules, "-o", "json")
	if !strings.Contains(s.stdout, destinations.CodeRepositoryNotOwned) {
		t.Fatalf("sync did not refuse the unowned repository (the scenario no longer holds):\n%s", s)
	}
	if plan.Totals.ToCopy != 0 || plan.Totals.CannotCopy == 0 {
		t.Errorf("plan (exit %d) says %d to copy and %d that cannot be copied; sync (exit %d) then refuses that copy with %s",
			p.code, plan.Totals.ToCopy, plan.Totals.CannotCopy, s.code, destinations.CodeRepositoryNotOwned)
	}
}

// TestReview27CopyWithDestProfileCreatesARepositoryNoReplicatorOwns: an operator seeds a
// mirror by hand before (or beside) the deployed replicator, with the destination
// account's own credentials (`copy --dest-profile`, docs/CLI.md). The repository the CLI
// creates is tagged ecr-replicator:owner=<the destination account> — "the account of the
// identity acting" — an owner no replicator of this layout is: the replicator of the
// source account then refuses every later image of that repository for good
// (RepositoryNotOwned, "another replicator's"), and the destination role's IAM
// conditions deny it too. The hand copy poisons the mirror it meant to start.
func TestReview27CopyWithDestProfileCreatesARepositoryNoReplicatorOwns(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	img, _ := random.Image(256, 1)
	w.Source.Push(t, "team-a/app", "v1", img)

	key, secret, err := w.SB.Credentials(sandbox.DestinationAccount, sandbox.AdminUser)
	if err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(creds, []byte(fmt.Sprintf("[dest]\naws_access_key_id = %s\naws_secret_access_key = %s\n", key, secret)), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"AWS_SHARED_CREDENTIALS_FILE=" + creds}
	r := runCLI(t, w.Ctx, env, "copy", srcECR+"/team-a/app:v1", dstECR+"/mirror/team-a/app", "--dest-profile", "dest")
	if r.code != ExitOK {
		t.Fatalf("copy --dest-profile:\n%s", r)
	}

	// The replicator of the source account (as deployed: it runs in the source account and
	// writes through the destination role) takes over with the next push.
	img2, _ := random.Image(256, 1)
	d2 := w.Source.Push(t, "team-a/app", "v2", img2).String()
	resolver := ecraccess.NewResolver(w.Config(t, sandbox.SourceAccount, sandbox.SourceUser), ecraccess.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	tg := rules.Target{Rule: "team-a", Repository: "mirror/team-a/app", Destination: rules.Destination{AccountID: sandbox.DestinationAccount,
		Region: sandbox.DefaultRegion, RoleARN: w.DestinationRoleARN(), ExternalID: w.ExternalID, RepositoryPrefix: "mirror/", CreateRepository: true}}
	src := destinations.Image{Repo: ecrname.Repo{Registry: ecrname.Registry{AccountID: sandbox.SourceAccount, Region: sandbox.DefaultRegion}, Name: "team-a/app"},
		Digest: d2, Tag: "v2"}
	res := destinations.New(resolver, copyengine.New()).Start().Replicate(w.Ctx, src, []rules.Target{tg})
	if len(res) != 1 || res[0].Err != nil {
		t.Errorf("after `copy --dest-profile` created mirror/team-a/app, the source account's replicator cannot write to it: %s %v", res[0].Code, res[0].Err)
	}
}
