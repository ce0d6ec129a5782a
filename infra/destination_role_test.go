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
	for name, want := range map[string]string{"MirrorDeletes": "false", "CreateRepositories": "true", "ExternalId": ""} {
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

func TestDestinationRoleTrust(t *testing.T) {
	for _, ext := range []string{"", "s3cr3t-id"} {
		role, err := render(t, destinationTemplate, map[string]any{
			"ReplicatorRoleArn": replicatorRoleArn, "ExternalId": ext,
		}).typed().GetIAMRoleWithName("DestinationRole")
		if err != nil {
			t.Fatal(err)
		}
		trust := statements(t, role.AssumeRolePolicyDocument)
		if len(trust) != 1 {
			t.Fatalf("trust policy has %d statements, want 1", len(trust))
		}
		s := trust[0]
		if s.Effect != "Allow" || !reflect.DeepEqual(s.Action, []string{"sts:AssumeRole"}) {
			t.Errorf("trust statement = %+v", s)
		}
		if !reflect.DeepEqual(s.Principal, map[string]any{"AWS": replicatorRoleArn}) {
			t.Errorf("trusted principal = %v, want only %s", s.Principal, replicatorRoleArn)
		}
		var want any
		if ext != "" {
			want = map[string]any{"StringEquals": map[string]any{"sts:ExternalId": ext}}
		}
		if !reflect.DeepEqual(s.Condition, want) {
			t.Errorf("ExternalId=%q: Condition = %v, want %v", ext, s.Condition, want)
		}
	}
}

func TestDestinationRolePermissions(t *testing.T) {
	always := []string{
		"ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
		"ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage", "ecr:DescribeImages",
		"ecr:DescribeRepositories", "ecr:ListImages", "ecr:GetDownloadUrlForLayer",
	}
	create := []string{"ecr:CreateRepository", "ecr:TagResource", "ecr:PutLifecyclePolicy"}
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
				if len(role.ManagedPolicyArns) != 0 {
					t.Errorf("ManagedPolicyArns = %v, want none", role.ManagedPolicyArns)
				}
				var all []statement
				for _, p := range role.Policies {
					all = append(all, statements(t, p.PolicyDocument)...)
				}
				got := actions(t, all)

				repos := []string{"arn:aws:ecr:*:111111111111:repository/" + prefix + "*"}
				want := map[string][]string{"ecr:GetAuthorizationToken": {"*"}, "ecr:GetAccountSetting": {"*"}}
				scoped := append([]string(nil), always...)
				if createRepos == "true" {
					scoped = append(scoped, create...)
				}
				if mirrorDeletes == "true" {
					scoped = append(scoped, "ecr:BatchDeleteImage")
				}
				for _, a := range scoped {
					want[a] = repos
				}
				what := "prefix=" + prefix + " CreateRepositories=" + createRepos + " MirrorDeletes=" + mirrorDeletes
				if !reflect.DeepEqual(keys(got), keys(want)) {
					t.Errorf("%s: actions = %v\nwant %v", what, keys(got), keys(want))
				}
				for a, res := range want {
					if g, ok := got[a]; ok && !reflect.DeepEqual(g, res) {
						t.Errorf("%s: %s on %v, want %v", what, a, g, res)
					}
				}
				for _, s := range all {
					if s.Condition != nil || s.Principal != nil {
						t.Errorf("%s: statement %s has Condition/Principal", what, s.Sid)
					}
				}
			}
		}
	}
}
