package infra

// Review of issue 27 ("the replicator writes only where it owns, and trusts no message
// it did not make"): each test is a way the change still lets someone in or drops work,
// under the policies the templates render (the sandbox enforcing them).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventpattern"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/cfn"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// TestReview27CentralAccountReceivesNoEvent: a replicator deployed in a central account
// reads its source through source.roleArn (docs/OPERATIONS.md: "central-account
// setups"; docs/SECURITY.md: "with a central account (source.roleArn) the owner is the
// central account"). The function now accepts events of source.roleArn's account only
// (ForeignSource), while the rule now forwards events of the stack's own account only
// (`account: [AWS::AccountId]`): an ECR event of the source account, forwarded to the
// central bus, is dropped by the rule; one of the central account passes the rule and is
// refused by the function. No push is replicated any more, nothing says so (the event
// never reaches a function), and only a reconcile — off by default — copies anything.
// Fixed by SourceAccountIds, which a central-account stack sets (README, "Deploy").
func TestReview27CentralAccountReceivesNoEvent(t *testing.T) {
	const sourceAccount = "444444444444" // where images are pushed; the stack runs in testAccountID
	sourceRole := "arn:aws:iam::" + sourceAccount + ":role/ecr-replicator-source-reader"
	r := render(t, sourceTemplate, map[string]any{"RulesParameterName": "/ecr-replicator/rules",
		"DestinationRoleArns": "arn:aws:iam::222222222222:role/ecr-replicator-destination," + sourceRole, "MirrorDeletes": "true",
		// A central account names its sources: by default the rule forwards this
		// account's events only (the safe default, issue 27).
		"SourceAccountIds": sourceAccount})
	rule, err := r.typed().GetEventsRuleWithName("ImageActionRule")
	if err != nil {
		t.Fatal(err)
	}
	pattern, err := eventpattern.New(rule.EventPattern)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := rules.Parse([]byte(fmt.Sprintf(`{"source":{"roleArn":%q},"rules":[{"name":"all","destinations":[{"accountId":"222222222222","region":"us-east-1","roleArn":"arn:aws:iam::222222222222:role/ecr-replicator-destination","repositoryPrefix":"mirror/"}]}]}`, sourceRole)))
	if err != nil {
		t.Fatal(err)
	}
	// What the functions take for their own source (wiring: destinations.SourceAccount).
	own, err := destinations.SourceAccount(context.Background(), nil, doc.SourceRoleARN())
	if err != nil {
		t.Fatal(err)
	}
	push, err := os.ReadFile(filepath.Join("..", "events", "push.json"))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, acct := range []string{testAccountID, sourceAccount} {
		ev := bytes.Replace(push, []byte(`"`+testAccountID+`"`), []byte(`"`+acct+`"`), 1)
		forwarded, err := pattern.Match(ev)
		if err != nil {
			t.Fatal(err)
		}
		accepted := acct == own
		paths = append(paths, fmt.Sprintf("a push of account %s: forwarded by the rule %t, accepted by the function %t", acct, forwarded, accepted))
		if forwarded && accepted {
			return
		}
	}
	t.Errorf("a central-account stack (%s) reading %s through source.roleArn replicates no push event:\n  %s",
		testAccountID, sourceAccount, strings.Join(paths, "\n  "))
}

// sourceB is a second source account replicating into the same destination account.
const sourceB = "333333333333"

// secondSource adds source account sourceB, its replicator role (unrestricted: only the
// destination role's conditions matter here), and, in the destination account, the
// destination role its stack deploys (destination-role.yaml rendered for sourceB's
// replicator, named ecr-replicator-destination-b, with RepositoryPrefix prefix).
func secondSource(t *testing.T, prefix string) func(*sandbox.Config) {
	t.Helper()
	dst, err := cfn.RenderFile("destination-role.yaml", cfn.Options{
		Parameters: map[string]any{"ReplicatorRoleArn": sandbox.RoleARN(sourceB, sandboxtest.FunctionRole), "ExternalId": sandboxtest.ExternalID,
			"RoleName": "ecr-replicator-destination-b", "RepositoryPrefix": prefix},
		Region: sandbox.DefaultRegion, AccountID: sandbox.DestinationAccount, StackName: "ecr-replicator-destination-b",
	})
	if err != nil {
		t.Fatal(err)
	}
	policies, err := dst.RolePolicies("DestinationRole")
	if err != nil {
		t.Fatal(err)
	}
	trust, err := dst.TrustPolicy("DestinationRole")
	if err != nil {
		t.Fatal(err)
	}
	return func(c *sandbox.Config) {
		c.Accounts = append(c.Accounts, sandbox.AccountConfig{ID: sourceB, Users: []sandbox.UserConfig{{Name: sandbox.AdminUser}},
			Roles: []sandbox.RoleConfig{{Name: sandboxtest.FunctionRole, Trusted: []string{sourceB}}}})
		for i := range c.Accounts {
			if c.Accounts[i].ID == sandbox.DestinationAccount {
				c.Accounts[i].Roles = append(c.Accounts[i].Roles, sandbox.RoleConfig{Name: "ecr-replicator-destination-b", Policies: policies, TrustPolicy: trust})
			}
		}
	}
}

// replicateAsB pushes an image to source B's team-b/app:latest and has B's replicator (its
// function role, through its destination role) copy it under prefix; it returns the
// digest and the result.
func replicateAsB(t *testing.T, w *sandboxtest.World, prefix string) (string, destinations.Result) {
	t.Helper()
	bCfg := w.Config(t, sourceB, sandbox.AdminUser)
	bHost, bAuth := sandboxtest.Login(t, w.Ctx, bCfg)
	b := sandboxtest.Side{Account: sourceB, Config: bCfg, Host: bHost, Auth: bAuth}
	b.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-b/app")})
	mine := b.Push(t, "team-b/app", "latest", image(t)).String()
	out, err := sts.NewFromConfig(bCfg).AssumeRole(w.Ctx, &sts.AssumeRoleInput{RoleArn: aws.String(sandbox.RoleARN(sourceB, sandboxtest.FunctionRole)),
		RoleSessionName: aws.String("ecr-replicator-replicate")})
	if err != nil {
		t.Fatal(err)
	}
	c := out.Credentials
	fnCfg, err := config.LoadDefaultConfig(w.Ctx, config.WithRegion(sandbox.DefaultRegion), config.WithCredentialsProvider(
		credentials.NewStaticCredentialsProvider(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))))
	if err != nil {
		t.Fatal(err)
	}
	resolver := ecraccess.NewResolver(fnCfg, ecraccess.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	tg := rules.Target{Rule: "default", Repository: prefix + "team-b/app", Destination: rules.Destination{AccountID: sandbox.DestinationAccount,
		Region: sandbox.DefaultRegion, RoleARN: sandbox.RoleARN(sandbox.DestinationAccount, "ecr-replicator-destination-b"),
		ExternalID: sandboxtest.ExternalID, RepositoryPrefix: prefix, CreateRepository: true}}
	src := destinations.Image{Repo: ecrname.Repo{Registry: ecrname.Registry{AccountID: sourceB, Region: sandbox.DefaultRegion}, Name: "team-b/app"}, Digest: mine, Tag: "latest"}
	res := destinations.New(resolver, copyengine.New()).Start().Replicate(w.Ctx, src, []rules.Target{tg})
	if len(res) != 1 {
		t.Fatalf("%d results", len(res))
	}
	return mine, res[0]
}

// TestReview27OneSourceClaimsAnotherSourcesMirror: two source accounts replicate into
// one destination account. Ownership stops them overwriting each other's mirrors — and,
// under one shared prefix, makes the first to push a name its owner: a user of source A
// who can create a repository creates team-b/app (source B's repository, say one B has
// not pushed yet), pushes an image of their choosing, and A's replicator creates
// mirror/team-b/app, owned by A; B's replicator is refused for good.
//
// The coordinator's decision (review 27, finding 1): several source accounts into one
// destination account use distinct prefixes — one destination role stack per source,
// each with its RepositoryPrefix (README "Deploy", docs/SECURITY.md) — and then A's
// role cannot reach B's namespace at all (IAM: its grants are under its own prefix);
// under a shared prefix the refusal B gets names the owner found, so the conflict is
// diagnosable.
func TestReview27OneSourceClaimsAnotherSourcesMirror(t *testing.T) {
	t.Run("distinct prefixes", func(t *testing.T) {
		params := ownershipParams("mirror/a/")
		w := sandboxtest.Start(t, sandboxtest.Deployed(t, params), secondSource(t, "mirror/b/"))
		h := deployedReplicator(t, w, params)
		// Source A's user takes the name: it lands in A's namespace.
		w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-b/app")})
		claimed := w.Source.Push(t, "team-b/app", "latest", image(t)).String()
		if s := handle(t, w, h, "push-a", "PUSH", "team-b/app", claimed, "latest"); len(s.Results) != 1 || s.Results[0].Error != "" ||
			s.Results[0].Destination != sandbox.DestinationAccount+"/"+sandbox.DefaultRegion+"/mirror/a/team-b/app" {
			t.Fatalf("source A's push: %+v", s.Results)
		}
		mine, res := replicateAsB(t, w, "mirror/b/")
		if got := w.Dest.Digest(t, "mirror/b/team-b/app", "latest"); res.Err != nil || got != mine {
			t.Errorf("source B's team-b/app:latest (%s): %s %v, mirror/b/team-b/app:latest = %q", mine[:19], res.Code, res.Err, got)
		}
		// A's replicator, whatever it is asked, cannot write or create in B's namespace:
		// the role's grants are under mirror/a/.
		reg := replicatorSession(t, w)
		_, err := reg.API().CreateRepository(w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/b/team-c/app"), Tags: sandboxtest.Owned()})
		var ae smithy.APIError
		if !errors.As(err, &ae) || !ecraccess.IsAccessDenied(ae.ErrorCode()) {
			t.Errorf("A's replicator creating mirror/b/team-c/app: %v, want AccessDenied", err)
		}
		_, err = reg.API().PutImage(w.Ctx, &ecr.PutImageInput{RepositoryName: aws.String("mirror/b/team-b/app"), ImageTag: aws.String("latest"),
			ImageManifest: aws.String(`{"schemaVersion":2}`)})
		if !errors.As(err, &ae) || !ecraccess.IsAccessDenied(ae.ErrorCode()) {
			t.Errorf("A's replicator writing mirror/b/team-b/app: %v, want AccessDenied", err)
		}
		if got := w.Dest.Digest(t, "mirror/b/team-b/app", "latest"); got != mine {
			t.Errorf("B's mirror/b/team-b/app:latest = %q, want %s", got, mine)
		}
	})
	t.Run("shared prefix", func(t *testing.T) {
		params := ownershipParams("mirror/")
		w := sandboxtest.Start(t, sandboxtest.Deployed(t, params), secondSource(t, "mirror/"))
		h := deployedReplicator(t, w, params)
		w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-b/app")})
		claimed := w.Source.Push(t, "team-b/app", "latest", image(t)).String()
		if s := handle(t, w, h, "push-a", "PUSH", "team-b/app", claimed, "latest"); len(s.Results) != 1 || s.Results[0].Error != "" {
			t.Fatalf("source A's push: %+v", s.Results)
		}
		_, res := replicateAsB(t, w, "mirror/")
		msg := fmt.Sprint(res.Err)
		if res.Code != destinations.CodeRepositoryNotOwned || res.Retryable || !strings.Contains(msg, "owned by source account "+sandbox.SourceAccount) ||
			!strings.Contains(msg, "distinct prefixes") {
			t.Errorf("source B's copy into A's mirror/team-b/app: %s %v, want a permanent %s naming the owner (source account %s) and the remedy",
				res.Code, res.Err, destinations.CodeRepositoryNotOwned, sandbox.SourceAccount)
		}
		if got := w.Dest.Digest(t, "mirror/team-b/app", "latest"); got != claimed {
			t.Errorf("mirror/team-b/app:latest = %q, want A's %s untouched", got, claimed)
		}
	})
}

// TestReview27MirroredTagOutsideTheListBlocksTheRepository: the README's way to mirror
// repository tags — mirrorRepositoryTags in the rules, "list the mirrored keys in
// MirroredTagKeys" in the destination role. The code mirrors every tag of the source
// repository; the role allows only the listed keys (aws:TagKeys ForAllValues). A source
// repository carrying one tag more than the list — any tag a source user, or the
// account's tag policy, adds — is then never created in the destination: every image of
// it fails with AccessDenied, for good. Mirroring the listed keys only would replicate it.
func TestReview27MirroredTagOutsideTheListBlocksTheRepository(t *testing.T) {
	params := ownershipParams("mirror/")
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, params, map[string]any{"MirroredTagKeys": "team"}))
	for k, v := range w.FunctionEnv(t) {
		t.Setenv(k, v)
	}
	t.Setenv("REPLICATION_RULES", fmt.Sprintf(`{"rules":[{"name":"all","destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/","mirrorRepositoryTags":true}]}]}`,
		sandbox.DestinationAccount, sandbox.DefaultRegion, w.DestinationRoleARN(), sandboxtest.ExternalID))
	t.Setenv("DESTINATION_ROLE_ARNS", w.DestinationRoleARN())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	deps, err := wiring.Load(w.Ctx, "replicate", log, os.Getenv)
	if err != nil || deps.RulesErr != nil {
		t.Fatal(err, deps.RulesErr)
	}
	h := sandboxtest.ReplicateHandler(deps, eventhandler.Config{Log: log, EMF: io.Discard, Namespace: "test"})

	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app"),
		Tags: []ecrtypes.Tag{{Key: aws.String("team"), Value: aws.String("a")}, {Key: aws.String("cost-center"), Value: aws.String("1234")}}})
	d := w.Source.Push(t, "team-a/app", "v1", image(t)).String()
	raw, err := h.Handle(w.Ctx, json.RawMessage(sandboxtest.ImageEvent("push-1", "PUSH", "team-a/app", d, "v1")))
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Dest.Digest(t, "mirror/team-a/app", "v1"); got != d {
		b, _ := json.Marshal(raw)
		t.Errorf("team-a/app (tags team, cost-center; MirroredTagKeys=team) is not replicated: mirror/team-a/app:v1 = %q; the result: %s", got, b)
	}
}

// TestReview27ReadmeAdoptionTakesAnotherSourcesMirrors: the README's adoption snippet
// ("Updating a deployment from before ownership") tags every repository under the
// prefix ecr-replicator:owner=$SOURCE_ACCOUNT — including those already tagged for
// another source account that replicates into the same destination with the same default
// prefix (mirror/). TagResource overwrites the value: an administrator following the
// README for source A hands source B's mirrors to A. B's replicator is then refused
// (RepositoryNotOwned) and A's users can overwrite B's mirrors — what ownership was for.
// The snippet's loop is run here as written (describe-repositories filtered with
// starts_with(repositoryName, '$PREFIX'), then tag-resource on each), through the SDK.
func TestReview27ReadmeAdoptionTakesAnotherSourcesMirrors(t *testing.T) {
	snippet := block(t, readme(t), "*Adopt the repositories it wrote to before*", "sh")
	if !strings.Contains(snippet, "starts_with(repositoryName, '$PREFIX')") || !strings.Contains(snippet, "aws ecr tag-resource") {
		t.Fatalf("the README's adoption snippet changed; this test runs its old loop:\n%s", snippet)
	}
	if strings.Contains(snippet, "list-tags-for-resource") {
		return // the loop reads each repository's tags (the only way to see an owner) before tagging it
	}
	w := sandboxtest.Start(t)
	api := ecr.NewFromConfig(w.Dest.Config)
	// A's mirror from before issue 27 (no tag), and B's mirror, created by B's replicator.
	w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/team-a/app")})
	w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/team-b/app"),
		Tags: []ecrtypes.Tag{{Key: aws.String(ecraccess.OwnerTag), Value: aws.String(sourceB)}}})

	// PREFIX=mirror/ SOURCE_ACCOUNT=<A>; for arn in $(describe-repositories --query ...); do tag-resource; done
	out, err := api.DescribeRepositories(w.Ctx, &ecr.DescribeRepositoriesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out.Repositories {
		if strings.HasPrefix(aws.ToString(r.RepositoryName), "mirror/") {
			if _, err := api.TagResource(w.Ctx, &ecr.TagResourceInput{ResourceArn: r.RepositoryArn,
				Tags: []ecrtypes.Tag{{Key: aws.String(ecraccess.OwnerTag), Value: aws.String(sandbox.SourceAccount)}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	arn := fmt.Sprintf("arn:aws:ecr:%s:%s:repository/mirror/team-b/app", sandbox.DefaultRegion, sandbox.DestinationAccount)
	tags, err := api.ListTagsForResource(w.Ctx, &ecr.ListTagsForResourceInput{ResourceArn: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range tags.Tags {
		if aws.ToString(tg.Key) == ecraccess.OwnerTag && aws.ToString(tg.Value) != sourceB {
			t.Errorf("after the README's adoption for source %s, source %s's mirror mirror/team-b/app is tagged %s=%s: "+
				"B's replicator is refused from now on, and A's users write to B's mirror", sandbox.SourceAccount, sourceB, ecraccess.OwnerTag, aws.ToString(tg.Value))
		}
	}
}
