package verify_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecr-replicator/ecr-replicator/internal/gate/verify"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/signing"
)

func doc(t *testing.T, signers string) *rules.Document {
	t.Helper()
	d, err := rules.Parse([]byte(`{"rules":[{"name":"r","require":{"signatures":{"signers":[` + signers + `]}},
	  "destinations":[{"accountId":"222222222222","region":"us-east-1","require":{"signatures":{"signers":[{"name":"own","publicKeyFile":"trust/own.pub"}]}}}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestCompile: every signer of the rules and of their destinations gets a verifier; a
// relative file is read from Dir (the function's code directory); what does not compile
// is named by its field.
func TestCompile(t *testing.T) {
	dir := t.TempDir()
	key, other := signing.NewKey(t), signing.NewKey(t)
	os.MkdirAll(filepath.Join(dir, "trust"), 0o755)
	os.WriteFile(filepath.Join(dir, "trust", "own.pub"), []byte(other.PublicPEM(t)), 0o644)
	os.WriteFile(filepath.Join(dir, "trust", "root.json"), []byte(signing.NewSigstore(t).TrustedRoot(t)), 0o644)
	d := doc(t, `{"name":"k","publicKey":`+quote(key.PublicPEM(t))+`},{"name":"ks","keyless":{"issuer":"i","subject":"s","trustedRootFile":"trust/root.json"}}`)
	vs, err := verify.Compile(d, verify.Options{Dir: dir})
	if err != nil || len(vs) != 3 {
		t.Fatalf("%d verifiers, %v", len(vs), err)
	}
	for _, c := range []struct{ signers, want string }{
		{`{"publicKey":"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}`, "rules[0].require.signatures.signers[0].publicKey: not a PEM public key"},
		{`{"publicKeyFile":"trust/missing.pub"}`, "rules[0].require.signatures.signers[0].publicKeyFile: open " + dir + "/trust/missing.pub"},
		{`{"keyless":{"issuer":"i","subject":"s","trustedRoot":"{}"}}`, "signers[0].keyless.trustedRoot: not a Sigstore trusted root"},
		{`{"notation":{"trustStore":"not pem","trustedIdentities":["*"]}}`, "signers[0].notation.trustStore: no PEM certificate"},
	} {
		_, err := verify.Compile(doc(t, c.signers), verify.Options{Dir: dir})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.signers, err, c.want)
		}
	}
	// The destination's own signer's file is looked for too.
	if _, err := verify.Compile(d, verify.Options{Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "rules[0].require.signatures.signers[1].keyless.trustedRootFile") {
		t.Errorf("without the files: %v", err)
	}
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, "\n", `\n`) + `"` }
