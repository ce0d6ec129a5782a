package infra

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventpattern"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/cfn"
)

// TestSourceAccountIds: whose ECR events ImageActionRule forwards. By default this
// account's only, with one destination or a rules parameter (the rule names the source
// account, issue 27). A rules parameter whose source.roleArn is in another account (a
// central account): exactly SourceAccountIds, which the functions get too (they refuse a
// document whose source is outside it). SourceAccountIds without a rules parameter is
// refused at deploy time.
func TestSourceAccountIds(t *testing.T) {
	push, err := os.ReadFile(filepath.Join("..", "events", "push.json"))
	if err != nil {
		t.Fatal(err)
	}
	const central, other = "444444444444", "333333333333"
	rulesParam := map[string]any{"RulesParameterName": "/ecr-replicator/rules", "DestinationRoleArns": "arn:aws:iam::222222222222:role/ecr-replicator-destination"}
	with := func(m map[string]any, k, v string) map[string]any {
		out := map[string]any{k: v}
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	cases := []struct {
		name   string
		params map[string]any
		want   map[string]bool // account → forwarded
	}{
		{"one destination", destination(nil), map[string]bool{testAccountID: true, central: false, other: false}},
		{"rules parameter", rulesParam, map[string]bool{testAccountID: true, central: false, other: false}},
		{"rules parameter, SourceAccountIds", with(rulesParam, "SourceAccountIds", central), map[string]bool{testAccountID: false, central: true, other: false}},
		{"rules parameter, two SourceAccountIds", with(rulesParam, "SourceAccountIds", testAccountID+","+central), map[string]bool{testAccountID: true, central: true, other: false}},
	}
	for _, tc := range cases {
		rule, err := render(t, sourceTemplate, tc.params).typed().GetEventsRuleWithName("ImageActionRule")
		if err != nil {
			t.Fatal(err)
		}
		pattern, err := eventpattern.New(rule.EventPattern)
		if err != nil {
			t.Fatal(err)
		}
		for acct, want := range tc.want {
			ev := bytes.Replace(push, []byte(`"`+testAccountID+`"`), []byte(`"`+acct+`"`), 1)
			if got, err := pattern.Match(ev); err != nil || got != want {
				t.Errorf("%s: a push of account %s forwarded = %t (%v), want %t (pattern %v)", tc.name, acct, got, err, want, rule.EventPattern)
			}
		}
		env := render(t, sourceTemplate, tc.params).function("ReplicateFunction").Environment.Variables
		want := testAccountID
		if ids, ok := tc.params["SourceAccountIds"]; ok {
			want = scalarString(ids)
		}
		if got := scalarString(env["SOURCE_ACCOUNT_IDS"]); got != want {
			t.Errorf("%s: SOURCE_ACCOUNT_IDS = %q, want %q", tc.name, got, want)
		}
	}
	_, err = cfn.RenderFile(sourceTemplate, cfn.Options{Parameters: destination(map[string]any{"SourceAccountIds": central}),
		Region: testRegion, AccountID: testAccountID, StackName: testStackName})
	if re := (*cfn.RuleError)(nil); !errors.As(err, &re) || re.Rule != "SourceAccountsOfTheRulesParameter" {
		t.Errorf("SourceAccountIds with one destination: %v, want the rule SourceAccountsOfTheRulesParameter to refuse it", err)
	}
}
