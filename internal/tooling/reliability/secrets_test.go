package reliability_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// Every scenario's fixture scans its JSON log sink for secrets when it ends
// (assertNoSecrets). This test adds the values only a client can see: a registry token
// and session credentials minted the way the function mints them, then runs a faulty
// end-to-end copy (faults make error paths log) and checks the sink, the outcomes and
// the sandbox's own access log.
func TestNoSecretsInLogs(t *testing.T) {
	f := newFx(t, 1400)
	// Session credentials of the destination role, as the function assumes it.
	src := f.w.Config(t, srcAcct, sandbox.SourceUser)
	p := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(src), sandbox.RoleARN(dstAcct, sandbox.DestinationRole), func(o *stscreds.AssumeRoleOptions) {
		o.ExternalID = aws.String(f.w.ExternalID)
	})
	creds, err := p.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	recordSecret(f, creds.SecretAccessKey, creds.SessionToken)
	for _, cfg := range []aws.Config{src, f.w.Source.Config, f.w.Dest.Config} {
		out, err := ecr.NewFromConfig(cfg).GetAuthorizationToken(f.ctx, &ecr.GetAuthorizationTokenInput{})
		if err != nil {
			t.Fatal(err)
		}
		tok := aws.ToString(out.AuthorizationData[0].AuthorizationToken)
		raw, _ := base64.StdEncoding.DecodeString(tok)
		_, pass, _ := strings.Cut(string(raw), ":")
		recordSecret(f, tok, pass)
	}
	digest := f.push(t, "team-a/app", "v1", f.image(t, 64<<10, 2))
	f.sb.ExpireRegistryTokens(dstAcct)
	f.sb.FailRegistryRequests(srcAcct, 2, 401, 0)
	f.sb.ThrottleAPI("ecr", "GetAuthorizationToken", 4)
	st := f.deliver(t, f.records(sandboxtest.ImageEvent("evt-1", "PUSH", "team-a/app", digest, "v1")), nil)
	sum, _ := f.direct(t, sandboxtest.ImageEvent("evt-2", "PUSH", "team-a/app", digest, "v1"))
	f.verify(t, "team-a/app", digest)
	// The direct-invocation summary is output too.
	assertNoSecrets(t, f, strings.Join([]string{f.logs.String(), toJSON(sum)}, "\n"))
	var access strings.Builder
	for _, e := range f.sb.AccessLog() {
		access.WriteString(toJSON(e))
	}
	for _, s := range knownSecrets(t, f)[4:] { // the sandbox's access log holds key ids, not secrets
		if strings.Contains(access.String(), s) {
			t.Errorf("the sandbox access log holds a secret (%.6s…)", s)
		}
	}
	report(t, "%d log bytes scanned (debug level, %d invocation(s) with faults): no key, secret, session token or registry token; %d known secret values + shape checks", len(f.logs.String()), st.invocations, len(knownSecrets(t, f)))
}
