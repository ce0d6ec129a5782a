package infra

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestOrganizationIdBoundsAssumeRole: with OrganizationId, the functions' roles assume a
// destination role only in an account of that organization (aws:ResourceOrgID), even one
// the role ARNs name.
func TestOrganizationIdBoundsAssumeRole(t *testing.T) {
	const org = "o-aaaaaaaaaa"
	for _, c := range []struct {
		destinationOrg string
		allowed        bool
	}{{org, true}, {"o-bbbbbbbbbb", false}, {"", false}} {
		params := attackParams()
		params["OrganizationId"] = org
		w := sandboxtest.Start(t, sandboxtest.Deployed(t, params), func(cfg *sandbox.Config) {
			for i := range cfg.Accounts {
				cfg.Accounts[i].OrgID = map[bool]string{true: org, false: c.destinationOrg}[cfg.Accounts[i].ID == sandbox.SourceAccount]
			}
		})
		for _, role := range []string{sandboxtest.FunctionRole, sandboxtest.ReconcilerRole} {
			_, err := sts.NewFromConfig(roleConfig(t, w, role)).AssumeRole(w.Ctx, &sts.AssumeRoleInput{
				RoleArn: aws.String(w.DestinationRoleARN()), RoleSessionName: aws.String("org-test"), ExternalId: aws.String(sandboxtest.ExternalID)})
			switch {
			case c.allowed && err != nil:
				t.Errorf("destination in %s: %s cannot assume the destination role: %v", c.destinationOrg, role, err)
			case !c.allowed && ecraccess.ErrorCode(err) != "AccessDenied":
				t.Errorf("destination in organization %q: %s assumed the destination role outside %s (answer %v)", c.destinationOrg, role, org, err)
			}
		}
	}
}
