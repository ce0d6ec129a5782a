package infra

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestOwnershipReconcilerCannotAskForAWriteSession: the reconciler's role asking for a
// write session (the session tag) is refused at AssumeRole: only ReplicatorRoleArn may
// tag its session of the destination role.
func TestOwnershipReconcilerCannotAskForAWriteSession(t *testing.T) {
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, ownershipParams("mirror/")))
	reg := destinationSession(t, w, sandboxtest.ReconcilerRole, sandbox.DefaultRegion)
	if !reg.Access().Write {
		t.Fatal("destinations.DestinationAccess does not ask for a write session")
	}
	_, err := reg.API().CreateRepository(w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/by-reconciler"), Tags: sandboxtest.Owned()})
	if !ecraccess.IsAccessDenied(ecraccess.ErrorCode(err)) {
		t.Errorf("the reconciler's write session: CreateRepository answered %v; want AccessDenied (at sts:AssumeRole)", err)
	}
	// The replicator's own write session may create it, with the owner tag only.
	api := replicatorSession(t, w).API()
	if _, err := api.CreateRepository(w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/by-replicator"), Tags: sandboxtest.Owned()}); err != nil {
		t.Errorf("the replicator's write session may create an owned repository: %v", err)
	}
	for what, tags := range map[string][]ecrtypes.Tag{
		"without the owner tag": nil,
		"owned by another":      {{Key: aws.String(ecraccess.OwnerTag), Value: aws.String(otherSource)}},
		"with another tag key":  append(sandboxtest.Owned(), ecrtypes.Tag{Key: aws.String("team"), Value: aws.String("payments")}),
	} {
		_, err := api.CreateRepository(w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/refused"), Tags: tags})
		if !ecraccess.IsAccessDenied(ecraccess.ErrorCode(err)) {
			t.Errorf("CreateRepository %s answered %v; want AccessDenied", what, err)
		}
	}
}

// TestOwnershipPinnedToRegions: the destination role acts only in the regions it names
// (default: the region its stack is deployed in), whatever the rules say.
func TestOwnershipPinnedToRegions(t *testing.T) {
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, ownershipParams("mirror/")))
	api := destinationSession(t, w, sandboxtest.FunctionRole, "eu-west-1").API()
	_, err := api.CreateRepository(w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/app"), Tags: sandboxtest.Owned()})
	if !ecraccess.IsAccessDenied(ecraccess.ErrorCode(err)) {
		t.Errorf("CreateRepository in eu-west-1 (the role names us-east-1) answered %v; want AccessDenied", err)
	}
	if _, err := api.GetAuthorizationToken(w.Ctx, &ecr.GetAuthorizationTokenInput{}); !ecraccess.IsAccessDenied(ecraccess.ErrorCode(err)) {
		t.Errorf("GetAuthorizationToken in eu-west-1 answered %v; want AccessDenied", err)
	}
	w = sandboxtest.Start(t, sandboxtest.Deployed(t, ownershipParams("mirror/"), map[string]any{"Regions": "us-east-1,eu-west-1"}))
	api = destinationSession(t, w, sandboxtest.FunctionRole, "eu-west-1").API()
	if _, err := api.CreateRepository(w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/app"), Tags: sandboxtest.Owned()}); err != nil {
		t.Errorf("CreateRepository in eu-west-1 with Regions naming it: %v", err)
	}
}

// TestOwnershipAdoptedRepository: once the destination's administrator tags an existing
// repository ecr-replicator:owner=<source account> (README, "Deploy"), the deployed
// replicator writes to it.
func TestOwnershipAdoptedRepository(t *testing.T) {
	params := ownershipParams("")
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, params))
	destinationOwnRepositories(t, w)
	h := deployedReplicator(t, w, params)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("prod/payments")})
	d := w.Source.Push(t, "prod/payments", "latest", image(t)).String()
	if s := handle(t, w, h, "before", "PUSH", "prod/payments", d, "latest"); len(s.Results) != 1 || s.Results[0].Code != destinations.CodeRepositoryNotOwned {
		t.Fatalf("before adoption: %+v", s.Results)
	}
	arn := "arn:aws:ecr:" + sandbox.DefaultRegion + ":" + sandbox.DestinationAccount + ":repository/prod/payments"
	if _, err := ecr.NewFromConfig(w.Dest.Config).TagResource(w.Ctx, &ecr.TagResourceInput{ResourceArn: aws.String(arn), Tags: sandboxtest.Owned()}); err != nil {
		t.Fatal(err)
	}
	mark := w.SB.AccessLogMark()
	if s := handle(t, w, h, "after", "PUSH", "prod/payments", d, "latest"); s.Failed != 0 {
		t.Fatalf("after adoption: %+v", s.Results)
	}
	if got := w.Dest.Digest(t, "prod/payments", "latest"); got != d {
		t.Errorf("prod/payments:latest = %q after adoption, want %s", got, d)
	}
	for _, e := range sandboxtest.Denials(w.SB, mark) {
		t.Errorf("denied under the deployed policies: %s %s by %s: %s", e.Action, e.Repository, e.Principal, e.ErrorCode)
	}
}

// TestOwnershipRememberedUntilRefused: the warm function remembers the repositories it
// found owned (no DescribeRepositories or ListTagsForResource for the next copies), and
// the role still refuses what the memory would allow: a mirror the destination's
// administrator deleted and re-created as their own (no owner tag) is refused to the next
// copy, which looks at it again at once and reports RepositoryNotOwned (permanent) — the
// administrator's image untouched.
func TestOwnershipRememberedUntilRefused(t *testing.T) {
	params := ownershipParams("mirror/")
	w := sandboxtest.Start(t, sandboxtest.Deployed(t, params))
	h := deployedReplicator(t, w, params)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	for _, tag := range []string{"v1", "v2"} {
		d := w.Source.Push(t, "team-a/app", tag, image(t)).String()
		mark := w.SB.AccessLogMark()
		if s := handle(t, w, h, "push-"+tag, "PUSH", "team-a/app", d, tag); s.Failed != 0 {
			t.Fatalf("push of %s: %+v", tag, s.Results)
		}
		for _, e := range w.SB.AccessLogSince(mark) {
			if tag == "v2" && e.Account == sandbox.DestinationAccount && (e.Operation == "DescribeRepositories" || e.Operation == "ListTagsForResource") {
				t.Errorf("the warm function's second copy into its own mirror asked %s", e.Operation)
			}
		}
	}
	dst := ecr.NewFromConfig(w.Dest.Config)
	if _, err := dst.DeleteRepository(w.Ctx, &ecr.DeleteRepositoryInput{RepositoryName: aws.String("mirror/team-a/app"), Force: true}); err != nil {
		t.Fatal(err)
	}
	w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/team-a/app")})
	theirs := w.Dest.Push(t, "mirror/team-a/app", "v3", image(t)).String()
	d := w.Source.Push(t, "team-a/app", "v3", image(t)).String()
	s := handle(t, w, h, "push-v3", "PUSH", "team-a/app", d, "v3")
	if len(s.Results) != 1 || s.Results[0].Code != destinations.CodeRepositoryNotOwned || s.Results[0].Retryable {
		t.Errorf("a copy into the re-created repository: %+v, want one permanent %s", s.Results, destinations.CodeRepositoryNotOwned)
	}
	if got := w.Dest.Digest(t, "mirror/team-a/app", "v3"); got != theirs {
		t.Errorf("the administrator's mirror/team-a/app:v3 = %q, want %s", got, theirs)
	}
}
