package rulesource_test

// Review of issue 23 (rules from a Systems Manager parameter). Each test here failed on
// the merged tree (efb334f / c64154b) and names what it shows.

import (
	"strings"
	"testing"

	"github.com/ecr-replicator/ecr-replicator/internal/rulesource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// TestReview23DeletedParameterIsNotKeptForever: once a warm execution environment has read
// the rules parameter, deleting the parameter is never noticed. GetParameter answers
// ParameterNotFound — an answer that says the document is gone, not an outage — and the
// Source treats it like a timeout: "keeping the version read before", forever (every
// check fails the same way, so the old document stands until the environment is recycled).
// Meanwhile every new execution environment refuses every invocation (ConfigurationErrors).
// The fleet splits into environments still copying with rules the operator deleted and
// environments refusing everything — the state the package documentation says it never
// allows ("every execution environment refuses it, old and new alike, instead of some
// copying with the old rules and some refusing").
//
// ParameterNotFound: https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameter.html#API_GetParameter_Errors
func TestReview23DeletedParameterIsNotKeptForever(t *testing.T) {
	w := start(t)
	ctx := t.Context()
	w.put(t, doc("v1", destRole))
	warm := w.source(nil)
	if d, err := warm.Current(ctx); err != nil || d.Rules[0].Name != "v1" {
		t.Fatalf("cold start: %v, %v", d, err)
	}
	if err := w.sb.DeleteParameter(sandbox.SourceAccount, sandbox.DefaultRegion, param); err != nil {
		t.Fatal(err)
	}
	cold := w.source(nil)
	_, coldErr := cold.Current(ctx)
	if coldErr == nil || !strings.Contains(coldErr.Error(), "ParameterNotFound") {
		t.Fatalf("a new environment after the deletion: %v, want ParameterNotFound", coldErr)
	}
	// Ten check intervals later the warm environment still copies with the deleted rules.
	for range 10 {
		w.clock.add(rulesource.DefaultCheckInterval)
		d, err := warm.Current(ctx)
		if err == nil {
			t.Fatalf("warm environment %v after the parameter was deleted (ParameterNotFound) while a new one refuses with %q: "+
				"the fleet is split, and the warm half never notices the deletion", d, coldErr)
		}
	}
}

// TestReview23ExternalIDNotEchoedInErrors: the external ID is treated as a secret by the
// deployment (NoEcho in both templates; a SecureString parameter is the documented home of
// a document carrying it), but a document whose external ID STS would refuse — one
// character STS does not allow, e.g. a space pasted in, or a single-character ID — is
// refused with the whole external ID quoted in the error. That error is logged at the
// load ("invalid rules document"), logged again and returned by every invocation
// (wiring.Serve: "configuration error: ..."), so the secret lands in CloudWatch Logs and in
// every function error until the document is fixed.
func TestReview23ExternalIDNotEchoedInErrors(t *testing.T) {
	const secret = "Prod-Ext-1d 7f3a9c2e"
	w := start(t)
	ctx := t.Context()
	w.put(t, `{"rules":[{"name":"a","destinations":[{"accountId":"222222222222","region":"us-east-1","roleArn":"`+destRole+`","externalId":"`+secret+`"}]}]}`)
	_, err := w.source(nil).Current(ctx)
	if err == nil {
		t.Fatal("an external ID STS refuses was accepted")
	}
	if strings.Contains(err.Error(), "7f3a9c2e") {
		t.Errorf("the error every invocation returns and logs carries the external ID: %v", err)
	}
	if strings.Contains(w.logs.String(), "7f3a9c2e") {
		t.Errorf("the external ID is in the function's log:\n%s", w.logs)
	}
}
