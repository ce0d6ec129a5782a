package cli

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
)

// TestRedactSecrets: what looks like a credential is masked in debug output; digests,
// ARNs, account IDs and AWS error codes are not.
func TestRedactSecrets(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	for _, tc := range []struct{ in, want string }{
		{`{"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": "` + secret + `", "SessionToken": "FwoGZXIvYXdz"}`,
			`{"AccessKeyId": "<redacted>", "SecretAccessKey": "<redacted>", "SessionToken": "<redacted>"}`},
		{"aws_secret_access_key = " + secret, "aws_secret_access_key = <redacted>"},
		{"https://h/p?X-Amz-Security-Token=abc&x=1", "https://h/p?X-Amz-Security-Token=<redacted>&x=1"},
		{"key ASIAIOSFODNN7EXAMPLE in use", "key ASIA<redacted> in use"},
		{"bare " + secret + " here", "bare <redacted> here"},
		{"sha256:4d8c3f2034100d8f4cb6c5e0c4f5d9b1c2f1e6a7b8c9d0e1f2a3b4c5d6e7f8a9", "sha256:4d8c3f2034100d8f4cb6c5e0c4f5d9b1c2f1e6a7b8c9d0e1f2a3b4c5d6e7f8a9"},
		{"ExpiredToken: The security token included in the request is expired", "ExpiredToken: The security token included in the request is expired"},
		{"arn:aws:iam::222222222222:role/ecr-replicator-destination", "arn:aws:iam::222222222222:role/ecr-replicator-destination"},
	} {
		if got := redactSecrets(tc.in); got != tc.want {
			t.Errorf("redactSecrets(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

// TestDetailDropsCredentialProcessOutput: the SDK's error for a credential_process answer
// that does not parse quotes the whole answer; the debug detail keeps the cause only.
func TestDetailDropsCredentialProcessOutput(t *testing.T) {
	out := `{"Version": 1, "AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": "s3cr3t", "SessionToken": "t0k3n", "Expiration": "soon"}`
	err := fmt.Errorf("failed to refresh cached credentials, %w", &processcreds.ProviderError{
		Err: fmt.Errorf("parse failed of process output: %s, error: %w", out, errors.New(`parsing time "soon"`))})
	got := detail(err)
	if strings.Contains(got, "s3cr3t") || strings.Contains(got, "t0k3n") || strings.Contains(got, "AKIAIOSFODNN7EXAMPLE") ||
		!strings.Contains(got, `not shown: it holds credentials), error: parsing time "soon"`) {
		t.Errorf("detail: %s", got)
	}
}
