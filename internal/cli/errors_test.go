package cli

import (
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// TestUnresolvableHost: a registry host DNS says does not exist (NXDOMAIN) is named as
// such — check the name — and not "did not answer after retries: rerun"; the CLI's own
// lookups make it a usage error. A resolver that did not answer is still transient. (No
// DNS here: the errors are the ones net returns, built by hand.)
func TestUnresolvableHost(t *testing.T) {
	failure := func(dns *net.DNSError) error {
		return &url.Error{Op: "Get", URL: "https://registry.example.invalid/v2/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: dns}}
	}
	nx := failure(&net.DNSError{Err: "no such host", Name: "registry.example.invalid", IsNotFound: true})
	timeout := failure(&net.DNSError{Err: "i/o timeout", Name: "registry.example.invalid", IsTimeout: true})
	const want = "registry host registry.example.invalid does not resolve (DNS: no such host): check the host name (or the DNS or VPN it needs)"
	repo, _ := name.NewRepository("registry.example.invalid/app")

	if code, retryable := retry.Classify(nx); code != retry.CodeNetwork || retryable {
		t.Errorf("NXDOMAIN classified %s retryable=%v, want NETWORK permanent", code, retryable)
	}
	f := copyFailure{err: &copyengine.Error{Op: "get source manifest", Code: retry.CodeNetwork, Err: nx}, source: repo.String(), destination: "reg.example/app", tag: "v1"}
	if _, msg := explainCopy(f); msg != want {
		t.Errorf("copy failure: %q, want %q", msg, want)
	}
	if p, ok := registryProblem(nx, "listing the tags of", repo).(*problem); !ok || p.exit != ExitUsage || p.msg != want {
		t.Errorf("listing: %+v", p)
	}
	f.err = &copyengine.Error{Op: "get source manifest", Code: retry.CodeNetwork, Transient: true, Err: timeout}
	if _, msg := explainCopy(f); !strings.Contains(msg, "did not answer (NETWORK) after retries") {
		t.Errorf("a resolver timeout: %q", msg)
	}
}

// TestFailureWithoutOperation: a failure that is its own explanation, with a code and no
// AWS operation (a destination repository the replicator does not own), is said as it
// is, with its code — not " failed (RepositoryNotOwned): …" for want of an operation.
func TestFailureWithoutOperation(t *testing.T) {
	dest := ecrname.Repo{Registry: ecrname.Registry{AccountID: "222222222222", Region: "us-east-1"}, Name: "mirror/team-a/app"}
	err := destinations.NotOwned(dest, ecraccess.Repository{ARN: "arn:aws:ecr:us-east-1:222222222222:repository/mirror/team-a/app"}, "111111111111")
	code, msg := explainCopy(copyFailure{err: err, source: "src/app", destination: "dst/app", tag: "v1"})
	if code != destinations.CodeRepositoryNotOwned || !strings.HasPrefix(msg, "destination repository 222222222222/us-east-1/mirror/team-a/app exists") ||
		!strings.HasSuffix(msg, "("+destinations.CodeRepositoryNotOwned+")") {
		t.Errorf("explainCopy: %s %q", code, msg)
	}
}
