package destinations_test

import (
	"reflect"
	"testing"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// TestDestinationAccesses: each destination access of the rules once, in the order of
// first use, named by the first destination that uses it; every one a write session.
func TestDestinationAccesses(t *testing.T) {
	doc, err := rules.Parse([]byte(`
rules:
  - name: one
    destinations:
      - {accountId: "222222222222", region: eu-west-1, roleArn: "arn:aws:iam::222222222222:role/dest", externalId: ext-1}
      - {accountId: "333333333333", region: eu-west-1}
  - name: two
    destinations:
      - {accountId: "222222222222", region: eu-west-1, roleArn: "arn:aws:iam::222222222222:role/dest", externalId: ext-1, repositoryPrefix: "b/"}
      - {accountId: "222222222222", region: us-east-1, roleArn: "arn:aws:iam::222222222222:role/dest", externalId: ext-1}
`))
	if err != nil {
		t.Fatal(err)
	}
	got := destinations.DestinationAccesses(doc)
	want := []destinations.RuleAccess{
		{Access: ecraccess.Access{AccountID: "222222222222", Region: "eu-west-1", RoleARN: "arn:aws:iam::222222222222:role/dest", ExternalID: "ext-1", Write: true}},
		{Access: ecraccess.Access{AccountID: "333333333333", Region: "eu-west-1", Write: true}, Destination: 1},
		{Access: ecraccess.Access{AccountID: "222222222222", Region: "us-east-1", RoleARN: "arn:aws:iam::222222222222:role/dest", ExternalID: "ext-1", Write: true}, Rule: 1, Destination: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DestinationAccesses:\n got %+v\nwant %+v", got, want)
	}
}

// TestSourceAccess: the source is read through the rules' source role, or as the caller
// (no role), and never in a write session.
func TestSourceAccess(t *testing.T) {
	reg := ecrname.Registry{AccountID: "111111111111", Region: "eu-west-1"}
	for _, role := range []string{"", "arn:aws:iam::111111111111:role/reader"} {
		a := ecraccess.SourceAccess(reg, role)
		if a != (ecraccess.Access{AccountID: reg.AccountID, Region: reg.Region, RoleARN: role}) {
			t.Errorf("ecraccess.SourceAccess(%q) = %+v", role, a)
		}
	}
	if acct, err := destinations.SourceAccount(t.Context(), nil, "arn:aws:iam::444444444444:role/reader"); err != nil || acct != "444444444444" {
		t.Errorf("SourceAccount of a source role = %q, %v; want the role's account", acct, err)
	}
	if _, err := destinations.SourceAccount(t.Context(), nil, "not-an-arn"); err == nil {
		t.Error("SourceAccount of an invalid source role: no error")
	}
}
