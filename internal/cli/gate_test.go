package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/signing"
)

// TestCLIPromotionGates: plan says which copies promotion gates hold or block, and why;
// sync copies what passes and leaves the rest.
func TestCLIPromotionGates(t *testing.T) {
	w := sandboxtest.Start(t)
	key := signing.NewKey(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	r := signing.NewRepo(t, w.Source.Host, "team-a/app", w.Source.Auth)
	push := func(tag string) string {
		img, _ := random.Image(256, 1)
		d := w.Source.Push(t, "team-a/app", tag, img).String()
		if tag != "unscanned" {
			if err := w.SB.SetImageScan(sandbox.SourceAccount, sandbox.DefaultRegion, "team-a/app", d, sandbox.ScanResult{}); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	signed, unsigned, untrusted, unscanned := push("signed"), push("unsigned"), push("untrusted"), push("unscanned")
	key.Cosign(t, r, r.Subject(t, signed), signing.Options{})
	key.Cosign(t, r, r.Subject(t, unscanned), signing.Options{})
	signing.NewKey(t).Cosign(t, r, r.Subject(t, untrusted), signing.Options{})
	doc := fmt.Sprintf("rules:\n  - name: gated\n    repositories: [\"team-a/*\"]\n    require:\n      signatures:\n        signers: [{name: release, publicKey: %q}]\n      scan: {severity: HIGH}\n    destinations:\n%s",
		key.PublicPEM(t), destination(w, "mirror/", w.ExternalID))
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}

	res := runCLI(t, w.Ctx, nil, "plan", "--rules", rules)
	for _, want := range []string{
		"; promotion gates hold 2 and block 1 of them",
		"held team-a/app:unsigned@" + unsigned[:19] + " -> 222222222222/us-east-1/mirror/team-a/app: SignatureMissing: no signature",
		"held team-a/app:unscanned@" + unscanned[:19] + " -> 222222222222/us-east-1/mirror/team-a/app: ScanPending: no scan yet",
		"blocked team-a/app:untrusted@" + untrusted[:19] + " -> 222222222222/us-east-1/mirror/team-a/app: SignatureUntrusted: ",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, res)
		}
	}
	if strings.Contains(res.stdout, "team-a/app:signed@") || strings.Contains(res.stdout, "team-a/app:signature") {
		t.Errorf("plan names a copy that passes, or a signature on its own:\n%s", res)
	}
	res = runCLI(t, w.Ctx, nil, "plan", "--rules", rules, "-o", "json")
	var plan struct {
		Totals struct{ Held, Blocked, ToCopy int }
		Items  []struct{ Tag, State, Reason string }
	}
	if err := json.Unmarshal([]byte(res.stdout), &plan); err != nil {
		t.Fatalf("%v: %s", err, res)
	}
	states := map[string]string{}
	for _, it := range plan.Items {
		states[it.Tag] = it.State
	}
	if plan.Totals.Held != 2 || plan.Totals.Blocked != 1 || plan.Totals.ToCopy != 4 ||
		states["signed"] != "to-copy" || states["unsigned"] != "held" || states["unscanned"] != "held" || states["untrusted"] != "blocked" {
		t.Fatalf("plan JSON: %+v %v", plan.Totals, states)
	}

	// sync accounts for every copy it planned: the held and blocked ones are neither
	// failed nor "not attempted", and nothing failed.
	res = runCLI(t, w.Ctx, nil, "sync", "--rules", rules)
	if !strings.Contains(res.stdout, "promotion gates hold 2 and block 1 of them") || res.code != 0 ||
		strings.Contains(res.stdout, "NOT_ATTEMPTED") || strings.Contains(res.stdout, "not attempted") {
		t.Errorf("sync:\n%s", res)
	}
	tags := w.Dest.Tags(t, w.Ctx, "mirror/team-a/app")
	if tags["signed"] != signed || tags["unsigned"] != "" || tags["untrusted"] != "" || tags["unscanned"] != "" {
		t.Fatalf("destination after sync: %v", tags)
	}
	if tags["sha256-"+strings.TrimPrefix(signed, "sha256:")+".sig"] == "" {
		t.Errorf("the signature did not travel with the image: %v", tags)
	}
	res = runCLI(t, w.Ctx, nil, "sync", "--rules", rules, "-o", "json")
	var run struct {
		Totals struct{ Held, Blocked, Failed int }
		Items  []struct{ Tag, State, Reason string }
	}
	if err := json.Unmarshal([]byte(res.stdout), &run); err != nil {
		t.Fatalf("%v: %s", err, res)
	}
	states = map[string]string{}
	for _, it := range run.Items {
		states[it.Tag] = it.State
	}
	if res.code != 0 || run.Totals.Held != 2 || run.Totals.Blocked != 1 || run.Totals.Failed != 0 ||
		states["unsigned"] != "held" || states["unscanned"] != "held" || states["untrusted"] != "blocked" {
		t.Fatalf("sync JSON (exit %d): %+v %v\n%s", res.code, run.Totals, states, res.stdout)
	}
}
