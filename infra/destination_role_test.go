package infra

import (
	"reflect"
	"strings"
	"testing"
)

const replicatorRoleArn = "arn:aws:iam::111111111111:role/ecr-replicator-ReplicatorRole-ABC123"

func TestDestinationRoleStructure(t *testing.T) {
	r := render(t, destinationTemplate, map[string]any{"ReplicatorRoleArn": replicatorRoleArn})
	checkReferences(t, r)
	checkCreatedReferences(t, r)
	tmpl := r.typed()
	if len(tmpl.Resources) != 1 {
		t.Errorf("resources = %v, want only DestinationRole", keys(tmpl.Resources))
	}
	if p := tmpl.Parameters["ReplicatorRoleArn"]; p.Default != nil {
		t.Errorf("ReplicatorRoleArn has a default (%v); it must be given", p.Default)
	}
	for name, want := range map[string]string{"MirrorDeletes": "false", "CreateRepositories": "true", "ExternalId": "", "RepositoryPrefix": "mirror/",
		"Regions": "", "MirroredTagKeys": ""} {
		if got := tmpl.Parameters[name].Default; got != want {
			t.Errorf("%s default = %v, want %q", name, got, want)
		}
	}
	if o := tmpl.Outputs["RoleArn"]; o.Value != "getatt:DestinationRole.Arn" {
		t.Errorf("output RoleArn = %v", o.Value)
	}

	// The source stack derives the destination role ARN from this default name.
	role, err := tmpl.GetIAMRoleWithName("DestinationRole")
	if err != nil {
		t.Fatal(err)
	}
	src := render(t, sourceTemplate, destination(nil))
	rules, _ := src.function("ReplicateFunction").Environment.Variables["REPLICATION_RULES"].(string)
	want := "arn:aws:iam::222222222222:role/" + *role.RoleName
	if !strings.Contains(rules, `"roleArn":"`+want+`"`) {
		t.Errorf("source stack's derived role ARN does not name %s: %s", want, rules)
	}
}

// TestDestinationRoleTrust: ReplicatorRoleArn may assume the role and tag its session
// (the write tag); ReconcilerRoleArn may only assume it, so its sessions never write.
func TestDestinationRoleTrust(t *testing.T) {
	const reconcilerRoleArn = "arn:aws:iam::111111111111:role/ecr-replicator-ReconcilerRole-DEF456"
	for _, ext := range []string{"", "s3cr3t-id"} {
		for _, reconciler := range []string{"", reconcilerRoleArn} {
			role, err := render(t, destinationTemplate, map[string]any{
				"ReplicatorRoleArn": replicatorRoleArn, "ReconcilerRoleArn": reconciler, "ExternalId": ext,
			}).typed().GetIAMRoleWithName("DestinationRole")
			if err != nil {
				t.Fatal(err)
			}
			var cond any
			if ext != "" {
				cond = map[string]any{"StringEquals": map[string]any{"sts:ExternalId": ext}}
			}
			want := []statement{{Sid: "ReplicatorWrites", Effect: "Allow", Principal: map[string]any{"AWS": replicatorRoleArn},
				Action: []string{"sts:AssumeRole", "sts:TagSession"}, Condition: cond}}
			if reconciler != "" {
				want = append(want, statement{Sid: "ReconcilerLists", Effect: "Allow", Principal: map[string]any{"AWS": reconciler},
					Action: []string{"sts:AssumeRole"}, Condition: cond})
			}
			if got := statements(t, role.AssumeRolePolicyDocument); !reflect.DeepEqual(got, want) {
				t.Errorf("ExternalId=%q ReconcilerRoleArn=%q: trust = %+v\nwant %+v", ext, reconciler, got, want)
			}
		}
	}
}

// ownedBy is the condition of the statements that write: the repository is the
// replicator's, and the session is a write session.
func ownedBy(account string) map[string]any {
	return map[string]any{"StringEquals": map[string]any{
		"aws:ResourceTag/ecr-replicator:owner": account, "aws:PrincipalTag/ecr-replicator:access": "write",
	}}
}

// wantDestinationStatements is what the role's policy must be for its parameters: reads
// within the prefix, writes within it only to owned repositories, creation only with the
// owner tag, all pinned to the regions.
func wantDestinationStatements(prefix, createRepos, mirrorDeletes string, regions, tagKeys []any) []statement {
	repos := []string{"arn:aws:ecr:*:111111111111:repository/" + prefix + "*"}
	const owner = "111111111111" // ReplicatorRoleArn's account
	want := []statement{
		{Sid: "OnlyTheseRegions", Effect: "Deny", Action: []string{"ecr:*"}, Resource: []string{"*"},
			Condition: map[string]any{"StringNotEquals": map[string]any{"aws:RequestedRegion": regions}}},
		{Sid: "RegistryToken", Effect: "Allow", Action: []string{"ecr:GetAuthorizationToken"}, Resource: []string{"*"}},
		{Sid: "BlobMountingSetting", Effect: "Allow", Action: []string{"ecr:GetAccountSetting"}, Resource: []string{"*"}},
		{Sid: "ReadWithinPrefix", Effect: "Allow", Resource: repos, Action: []string{"ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
			"ecr:DescribeImages", "ecr:DescribeRepositories", "ecr:GetDownloadUrlForLayer", "ecr:ListImages", "ecr:ListTagsForResource"}},
		{Sid: "WriteOwnedRepositories", Effect: "Allow", Resource: repos, Condition: ownedBy(owner),
			Action: []string{"ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"}},
	}
	if createRepos == "true" {
		want = append(want, statement{Sid: "CreateOwnedRepositories", Effect: "Allow", Resource: repos,
			Action: []string{"ecr:CreateRepository", "ecr:TagResource"},
			Condition: map[string]any{
				"StringEquals":              map[string]any{"aws:RequestTag/ecr-replicator:owner": owner, "aws:PrincipalTag/ecr-replicator:access": "write"},
				"StringEqualsIfExists":      map[string]any{"aws:ResourceTag/ecr-replicator:owner": owner},
				"ForAllValues:StringEquals": map[string]any{"aws:TagKeys": tagKeys},
			}},
			statement{Sid: "LifecycleOfOwnedRepositories", Effect: "Allow", Resource: repos, Condition: ownedBy(owner),
				Action: []string{"ecr:GetLifecyclePolicy", "ecr:PutLifecyclePolicy"}})
	}
	if mirrorDeletes == "true" {
		want = append(want, statement{Sid: "MirrorDeletes", Effect: "Allow", Resource: repos, Condition: ownedBy(owner),
			Action: []string{"ecr:BatchDeleteImage"}})
	}
	return want
}

func TestDestinationRolePermissions(t *testing.T) {
	for _, prefix := range []string{"", "mirror/"} {
		for _, createRepos := range []string{"true", "false"} {
			for _, mirrorDeletes := range []string{"true", "false"} {
				role, err := render(t, destinationTemplate, map[string]any{
					"ReplicatorRoleArn": replicatorRoleArn, "RepositoryPrefix": prefix,
					"CreateRepositories": createRepos, "MirrorDeletes": mirrorDeletes,
				}).typed().GetIAMRoleWithName("DestinationRole")
				if err != nil {
					t.Fatal(err)
				}
				if len(role.ManagedPolicyArns) != 0 || len(role.Policies) != 1 {
					t.Fatalf("ManagedPolicyArns = %v, %d inline policies; want none and one", role.ManagedPolicyArns, len(role.Policies))
				}
				got := statements(t, role.Policies[0].PolicyDocument)
				want := wantDestinationStatements(prefix, createRepos, mirrorDeletes, []any{"us-east-1"},
					[]any{"ecr-replicator:owner", "ecr-replicator:source"})
				if !reflect.DeepEqual(got, want) {
					t.Errorf("prefix=%s CreateRepositories=%s MirrorDeletes=%s: statements\n%+v\nwant\n%+v", prefix, createRepos, mirrorDeletes, got, want)
				}
			}
		}
	}
}

// TestDestinationRoleRegionsAndTagKeys: Regions replaces the stack's region in the
// region pin; MirroredTagKeys extends the tag keys a created repository may carry.
func TestDestinationRoleRegionsAndTagKeys(t *testing.T) {
	role, err := render(t, destinationTemplate, map[string]any{
		"ReplicatorRoleArn": replicatorRoleArn, "Regions": "eu-west-1,us-west-2", "MirroredTagKeys": "team,cost-center",
	}).typed().GetIAMRoleWithName("DestinationRole")
	if err != nil {
		t.Fatal(err)
	}
	got := statements(t, role.Policies[0].PolicyDocument)
	want := wantDestinationStatements("mirror/", "true", "false", []any{"eu-west-1", "us-west-2"},
		[]any{"ecr-replicator:owner", "ecr-replicator:source", "team", "cost-center"})
	if !reflect.DeepEqual(got, want) {
		t.Errorf("statements\n%+v\nwant\n%+v", got, want)
	}
}
