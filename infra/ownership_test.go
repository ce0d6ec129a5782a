package infra

// Issue 27: the replicator writes only where it owns. Each test is an attack a source
// user can make (or a request the replicator's own role could make), run against the
// sandbox with the policies both templates render; each must change nothing in the
// destination and be reported.

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// ownershipParams deploy one destination with delete mirroring and repository creation
// on, under prefix (the source stack's DestinationRepositoryPrefix, and the destination
// role's RepositoryPrefix).
func ownershipParams(prefix string) map[string]any {
	return map[string]any{
		"DestinationAccountId": sandbox.DestinationAccount, "DestinationRegion": sandbox.DefaultRegion,
		"ExternalId": sandboxtest.ExternalID, "DestinationRepositoryPrefix": prefix, "CreateRepositories": "true",
		"MirrorDeletes": "true",
	}
}

// deployedReplicator is the replicate function as deployed with params: as the function
// role, with the environment template.yaml gives it (its rules document built from the
// parameters).
func deployedReplicator(t *testing.T, w *sandboxtest.World, params map[string]any) *eventhandler.Handler {
	t.Helper()
	for k, v := range w.FunctionEnv(t) {
		t.Setenv(k, v)
	}
	vars := render(t, sourceTemplate, params).function("ReplicateFunction").Environment.Variables
	for _, k := range []string{"REPLICATION_RULES", "DESTINATION_ROLE_ARNS"} {
		t.Setenv(k, scalarString(vars[k]))
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	deps, err := wiring.Load(w.Ctx, "replicate", log, os.Getenv)
	if err != nil || deps.RulesErr != nil {
		t.Fatal(err, deps.RulesErr)
	}
	return sandboxtest.ReplicateHandler(deps, eventhandler.Config{Log: log, EMF: io.Discard, Namespace: "test"})
}

// handle gives the handler one image event and returns its summary.
func handle(t *testing.T, w *sandboxtest.World, h *eventhandler.Handler, id, action, repo, digest, tag string) eventhandler.Summary {
	t.Helper()
	out, err := h.Handle(w.Ctx, json.RawMessage(sandboxtest.ImageEvent(id, action, repo, digest, tag)))
	if err != nil {
		t.Fatalf("%s %s %s:%s: %v", id, action, repo, tag, err)
	}
	b, _ := json.Marshal(out)
	var s eventhandler.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("summary %s: %v", b, err)
	}
	return s
}

// replicatorSession is the destination registry as the replicate function reaches it:
// the function role's session of the destination role, asked for the way the product
// asks for it (destinations.DestinationAccess).
func replicatorSession(t *testing.T, w *sandboxtest.World) *ecraccess.Client {
	t.Helper()
	return destinationSession(t, w, sandboxtest.FunctionRole, sandbox.DefaultRegion)
}

// destinationSession is a write session of the destination role in region, asked for as
// a source role (FunctionRole, ReconcilerRole) would ask the product for it.
func destinationSession(t *testing.T, w *sandboxtest.World, role, region string) *ecraccess.Client {
	t.Helper()
	cr, err := sandboxtest.RoleSession(w.Ctx, w.SB, role, "ecr-replicator-"+role)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadDefaultConfig(w.Ctx, config.WithRegion(region),
		config.WithCredentialsProvider(credentials.StaticCredentialsProvider{Value: cr}))
	if err != nil {
		t.Fatal(err)
	}
	d := rules.Destination{AccountID: sandbox.DestinationAccount, Region: region,
		RoleARN: w.DestinationRoleARN(), ExternalID: sandboxtest.ExternalID}
	reg, err := ecraccess.NewResolver(cfg).Client(w.Ctx, destinations.DestinationAccess(d))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// registryDenied: the registry refused a request for want of permission (403 DENIED).
func registryDenied(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusForbidden
}

func image(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// otherSource is a source account that mirrors into the same destination account.
const otherSource = "333333333333"

// destinationOwnRepositories gives the destination account its own prod/payments:latest
// (untagged: no replicator's) and another source account's mirror team-b/app:latest
// (tagged ecr-replicator:owner=333333333333), and returns their digests.
func destinationOwnRepositories(t *testing.T, w *sandboxtest.World) (payments, teamB string) {
	t.Helper()
	w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("prod/payments")})
	payments = w.Dest.Push(t, "prod/payments", "latest", image(t)).String()
	w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-b/app"),
		Tags: []ecrtypes.Tag{{Key: aws.String("ecr-replicator:owner"), Value: aws.String(otherSource)}}})
	teamB = w.Dest.Push(t, "team-b/app", "latest", image(t)).String()
	return payments, teamB
}

// TestOwnershipSameNamedSourceRepository: with no destination prefix (what existing
// deployments keep), a source user creates repositories named like the destination
// account's own and like another source's mirror, pushes, and deletes an image they know
// the bytes of. The destination's images survive, and each attempt is reported.
func TestOwnershipSameNamedSourceRepository(t *testing.T) {
	params := ownershipParams("")
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, params))
	payments, teamB := destinationOwnRepositories(t, w)
	h := deployedReplicator(t, w, params)

	for _, repo := range []string{"prod/payments", "team-b/app"} {
		w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
		d := w.Source.Push(t, repo, "latest", image(t)).String()
		s := handle(t, w, h, "push-"+repo, "PUSH", repo, d, "latest")
		if len(s.Results) != 1 || s.Results[0].Code != destinations.CodeRepositoryNotOwned || s.Results[0].Retryable ||
			!strings.Contains(s.Results[0].Error, "aws ecr tag-resource") {
			t.Errorf("push of %s:latest: results %+v, want one permanent %s failure saying how to adopt the repository", repo, s.Results, destinations.CodeRepositoryNotOwned)
		}
	}
	// The source user has the bytes of the destination's own image (a public base image,
	// say): pushes them by digest, deletes them, and the delete is mirrored.
	img, err := remote.Image(w.Dest.Ref(t, "prod/payments", payments), remote.WithAuth(w.Dest.Auth))
	if err != nil {
		t.Fatal(err)
	}
	w.Source.Push(t, "prod/payments", "", img)
	if _, err := ecr.NewFromConfig(w.Source.Config).BatchDeleteImage(w.Ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String("prod/payments"),
		ImageIds: []ecrtypes.ImageIdentifier{{ImageDigest: aws.String(payments)}}}); err != nil {
		t.Fatal(err)
	}
	s := handle(t, w, h, "delete-payments", "DELETE", "prod/payments", payments, "")
	if len(s.Results) != 1 || s.Results[0].Code != destinations.CodeRepositoryNotOwned {
		t.Errorf("digest delete in prod/payments: results %+v, want one %s failure", s.Results, destinations.CodeRepositoryNotOwned)
	}

	if got := w.Dest.Digest(t, "prod/payments", "latest"); got != payments {
		t.Errorf("the destination's own prod/payments:latest is %q, want %s (the source user replaced or deleted it)", got, payments)
	}
	if got := w.Dest.Digest(t, "team-b/app", "latest"); got != teamB {
		t.Errorf("another source's team-b/app:latest is %q, want %s", got, teamB)
	}
}

// expireEverything is a lifecycle policy that deletes every image of a repository.
const expireEverything = `{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}`

// TestOwnershipRoleRefusesWritesToUnownedRepositories: the destination role itself, not
// only the code, refuses the replicator's session every write to a repository it does
// not own — the destination's own, another source's — and every tag it could use to
// reach one: IAM conditions on the repository's tags.
func TestOwnershipRoleRefusesWritesToUnownedRepositories(t *testing.T) {
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, ownershipParams("")))
	payments, teamB := destinationOwnRepositories(t, w)
	reg := replicatorSession(t, w)
	api := reg.API()
	for repo, digest := range map[string]string{"prod/payments": payments, "team-b/app": teamB} {
		manifest, err := remote.Get(w.Dest.Ref(t, repo, digest), remote.WithAuth(w.Dest.Auth))
		if err != nil {
			t.Fatal(err)
		}
		arn := "arn:aws:ecr:" + sandbox.DefaultRegion + ":" + sandbox.DestinationAccount + ":repository/" + repo
		attempts := map[string]func() error{
			"PutImage": func() error {
				_, err := api.PutImage(w.Ctx, &ecr.PutImageInput{RepositoryName: aws.String(repo), ImageManifest: aws.String(string(manifest.Manifest)),
					ImageManifestMediaType: aws.String(string(manifest.MediaType)), ImageTag: aws.String("hijacked")})
				return err
			},
			"blob upload (registry)": func() error {
				host, err := reg.Host(w.Ctx, repo)
				if err != nil {
					return err
				}
				dst, err := name.NewRepository(host + "/" + repo)
				if err != nil {
					return err
				}
				layer, _ := random.Layer(64, types.OCILayer)
				err = remote.WriteLayer(dst, layer, remote.WithAuth(reg.Authenticator()), remote.WithTransport(reg.Transport(nil)))
				if registryDenied(err) {
					return &smithy.GenericAPIError{Code: ecraccess.CodeAccessDeniedException, Message: err.Error()}
				}
				return err
			},
			"BatchDeleteImage": func() error {
				out, err := api.BatchDeleteImage(w.Ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String(repo),
					ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("latest")}}})
				if err == nil && len(out.Failures) > 0 {
					return nil // refused per image, not by IAM: still a finding below
				}
				return err
			},
			"TagResource(ecr-replicator:owner)": func() error {
				_, err := api.TagResource(w.Ctx, &ecr.TagResourceInput{ResourceArn: aws.String(arn),
					Tags: []ecrtypes.Tag{{Key: aws.String("ecr-replicator:owner"), Value: aws.String(sandbox.SourceAccount)}}})
				return err
			},
			"TagResource(team)": func() error {
				_, err := api.TagResource(w.Ctx, &ecr.TagResourceInput{ResourceArn: aws.String(arn),
					Tags: []ecrtypes.Tag{{Key: aws.String("team"), Value: aws.String("payments")}}})
				return err
			},
		}
		for what, attempt := range attempts {
			if repo == "prod/payments" && what == "TagResource(ecr-replicator:owner)" {
				// IAM cannot tell tagging at creation from tagging an untagged repository
				// (docs/SECURITY.md, "Ownership (27A)"): the code never tags an existing one.
				continue
			}
			if err := attempt(); !ecraccess.IsAccessDenied(ecraccess.ErrorCode(err)) {
				t.Errorf("%s on %s as the replicator's session answered %v; want AccessDenied", what, repo, err)
			}
		}
	}
	if got := w.Dest.Digest(t, "prod/payments", "latest"); got != payments {
		t.Errorf("prod/payments:latest is %q, want %s", got, payments)
	}
	if got := w.Dest.Digest(t, "team-b/app", "latest"); got != teamB {
		t.Errorf("team-b/app:latest is %q, want %s", got, teamB)
	}
}

// TestOwnershipLifecyclePolicyOnlyOnCreatedRepositories: an "expire everything" lifecycle
// policy is a mass delete, even with MirrorDeletes off. The replicator's session cannot
// set one on a repository within its prefix that the destination's administrator made.
func TestOwnershipLifecyclePolicyOnlyOnCreatedRepositories(t *testing.T) {
	params := ownershipParams("mirror/")
	params["MirrorDeletes"] = "false"
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, params))
	w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/legacy")})
	w.Dest.Push(t, "mirror/legacy", "v1", image(t))

	_, err := replicatorSession(t, w).API().PutLifecyclePolicy(w.Ctx, &ecr.PutLifecyclePolicyInput{
		RepositoryName: aws.String("mirror/legacy"), LifecyclePolicyText: aws.String(expireEverything)})
	if !ecraccess.IsAccessDenied(ecraccess.ErrorCode(err)) {
		t.Errorf("PutLifecyclePolicy on mirror/legacy (not created by the replicator) answered %v; want AccessDenied", err)
	}
	if _, err := ecr.NewFromConfig(w.Dest.Config).GetLifecyclePolicy(w.Ctx, &ecr.GetLifecyclePolicyInput{RepositoryName: aws.String("mirror/legacy")}); err == nil {
		t.Error("mirror/legacy has a lifecycle policy")
	}
}

// TestOwnershipImmutableTagSurvivesDeleteAndRepush: the source deletes v1 and pushes
// another image as v1, with delete mirroring on. The destination repository (created by
// the replicator, IMMUTABLE like its source) keeps v1 on the first image: the delete is
// reported kept-immutable, the new push as a conflict.
func TestOwnershipImmutableTagSurvivesDeleteAndRepush(t *testing.T) {
	params := ownershipParams("mirror/")
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, params))
	h := deployedReplicator(t, w, params)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app"),
		ImageTagMutability: ecrtypes.ImageTagMutabilityImmutable})
	first := w.Source.Push(t, "team-a/app", "v1", image(t)).String()
	if s := handle(t, w, h, "push-1", "PUSH", "team-a/app", first, "v1"); s.Failed != 0 {
		t.Fatalf("first push: %+v", s.Results)
	}
	if got := w.Dest.Digest(t, "mirror/team-a/app", "v1"); got != first {
		t.Fatalf("mirror/team-a/app:v1 = %q, want %s", got, first)
	}

	if _, err := ecr.NewFromConfig(w.Source.Config).BatchDeleteImage(w.Ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String("team-a/app"),
		ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("v1")}}}); err != nil {
		t.Fatal(err)
	}
	del := handle(t, w, h, "delete-1", "DELETE", "team-a/app", first, "v1")
	second := w.Source.Push(t, "team-a/app", "v1", image(t)).String()
	push := handle(t, w, h, "push-2", "PUSH", "team-a/app", second, "v1")

	if got := w.Dest.Digest(t, "mirror/team-a/app", "v1"); got != first {
		t.Errorf("the IMMUTABLE destination tag v1 moved: %q, want %s", got, first)
	}
	if len(del.Results) != 1 || del.Results[0].Outcome != "kept-immutable" {
		t.Errorf("the delete of v1: results %+v, want outcome kept-immutable", del.Results)
	}
	if len(push.Results) != 1 || push.Results[0].Outcome != "conflict" || push.Results[0].Retryable {
		t.Errorf("the new push of v1: results %+v, want a permanent conflict, reported", push.Results)
	}
}
