package cli

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// side is how one end of a copy is reached.
type side struct {
	which      string // "source" or "destination", for messages
	profile    string
	roleARN    string
	externalID string
}

// endpointFor reaches a repository: through ECR (SDK credentials, role, token) when the
// host is an ECR registry, through the Docker keychain otherwise.
type endpointFor struct {
	repo     name.Repository // as the user named it
	endpoint destinations.Endpoint
	ecr      *ecraccess.Client
	region   string
	side     side
	account  string      // the ECR registry's
	caller   *awsSession // the identity acting on it (before any role)
}

// resolveSide reaches repo as s says; region (empty: the host's) is where STS is asked.
// externalIDFrom names where s.externalID came from, for messages.
func resolveSide(ctx context.Context, sessions *awsSessions, repo name.Repository, s side, region string, externalIDFrom string) (*endpointFor, error) {
	account, hostRegion, isECR := ecraccess.ParseRegistryHost(repo.RegistryStr())
	if !isECR {
		auth, err := authn.DefaultKeychain.Resolve(repo)
		if err != nil {
			return nil, configProblem(err, "Docker credentials for %s could not be read: %v", repo.RegistryStr(), err)
		}
		return &endpointFor{repo: repo, side: s, endpoint: destinations.Endpoint{Repository: repo, Auth: auth}}, nil
	}
	// The session's region is where STS is asked (--region); the registry's is its host's.
	if region == "" {
		region = hostRegion
	}
	sess, err := sessions.get(ctx, s.profile, region)
	if err != nil {
		return nil, err
	}
	e := &endpointFor{repo: repo, region: hostRegion, side: s, account: account, caller: sess}
	// The destination's sessions write: a destination role requires the write session tag.
	access := ecraccess.Access{AccountID: account, Region: hostRegion, RoleARN: s.roleARN, ExternalID: s.externalID, Write: s.which == "destination"}
	reg, err := sess.assumeRole(ctx, access, externalIDFrom)
	if err != nil {
		return nil, err
	}
	// The host to talk to comes from ECR's answers, not from the name the user typed.
	host, err := reg.Host(ctx, repo.RepositoryStr())
	if err != nil {
		return nil, e.explainDenied(awsProblem(err, repo.String()))
	}
	real, err := name.NewRepository(host + "/" + repo.RepositoryStr())
	if err != nil {
		return nil, fmt.Errorf("registry host %q from ECR: %w", host, err)
	}
	e.ecr = reg
	e.endpoint = destinations.Endpoint{Repository: real, Auth: reg.Authenticator(), Transport: reg.Transport(nil),
		Tags: destinations.RepositoryTags(reg.API(), account, repo.RepositoryStr())} // tags of 129-300 characters, as the function copies them
	return e, nil
}

// explainDenied adds to a denial on another account's registry, reached without a role,
// what the first-time user needs: both accounts, and the flags that act in the other.
func (e *endpointFor) explainDenied(p *problem) *problem {
	if !deniedCodes[p.code] || e.caller == nil || e.side.roleARN != "" || e.account == e.caller.account {
		return p
	}
	what := fmt.Sprintf("%s %s is in account %s, and this identity (%s) is in account %s: %s was denied there (%s).",
		e.side.which, e.repo, e.account, e.caller.callerARN, e.caller.account, p.op, p.code)
	if e.side.which == "destination" {
		p.msg = fmt.Sprintf("%s To write another account, pass --dest-role-arn with a role of account %s that account %s may assume "+
			"(and --external-id if its trust policy requires one), or --dest-profile with credentials of account %s", what, e.account, e.caller.account, e.account)
	} else {
		p.msg = fmt.Sprintf("%s To read another account, pass --source-role-arn with a role of account %s that account %s may assume, "+
			"or --profile with credentials of account %s (and --dest-profile for the destination's), or allow account %s in the repository's policy",
			what, e.account, e.caller.account, e.account, e.caller.account)
	}
	p.exit = ExitUsage
	return p
}

// checkSideFlags refuses ECR-only flags on another registry, and a role in another
// account than the registry's: the role would act in its own account's registry, not
// in the one the user named.
func checkSideFlags(what string, repo name.Repository, profile, role, roleFlag string) error {
	account, _, isECR := ecraccess.ParseRegistryHost(repo.RegistryStr())
	if !isECR {
		if role != "" || profile != "" {
			flag := roleFlag
			if role == "" {
				flag = "profile"
			}
			return usagef("%s %s is not an ECR registry: --%s applies to ECR registries only (ACCOUNT.dkr.ecr.REGION.amazonaws.com)", what, repo.RegistryStr(), flag)
		}
		return nil
	}
	if role == "" {
		return nil
	}
	roleAccount, err := ecrname.RoleAccount(role)
	if err != nil {
		return usagef("--%s: %v", roleFlag, err)
	}
	if roleAccount != account {
		return usagef("--%s %s is in account %s, but %s %s is in account %s: a role acts in its own account's registry; name the registry of account %s, or a role in account %s",
			roleFlag, role, roleAccount, what, repo.RegistryStr(), account, roleAccount, account)
	}
	return nil
}

// ecrLikeHost is any host shaped like an ECR registry's (the names of
// https://docs.aws.amazon.com/general/latest/gr/ecr.html), whatever its account and
// region: a typo there names a host that can never resolve.
var ecrLikeHost = regexp.MustCompile(`^([^.]+)\.dkr[.-]ecr(?:-fips)?\.([^.]+)\.(?:amazonaws\.com(?:\.cn)?|on\.aws|api\.aws|c2s\.ic\.gov|sc2s\.sgov\.gov)$`)

// checkRegistryHost says what is wrong with an ECR host whose account or region is
// invalid, in the validator's words (the rules document's), before any DNS lookup: such
// a name never resolves, and retrying it would only say "did not answer".
func checkRegistryHost(what, host string) error {
	if _, _, ok := ecraccess.ParseRegistryHost(host); ok {
		return nil
	}
	m := ecrLikeHost.FindStringSubmatch(strings.ToLower(host))
	if m == nil {
		return nil
	}
	if err := ecrname.AccountID(m[1]); err != nil {
		return usagef("%s registry %s: %v", what, host, err)
	}
	if err := ecrname.Region(m[2]); err != nil {
		return usagef("%s registry %s: %v", what, host, err)
	}
	return nil
}

// namesNoRegistry reports whether a reference starts with no registry host, which
// means Docker Hub (as for docker pull).
func namesNoRegistry(arg string) bool {
	registry, _, _, _, _ := splitReference(arg)
	return !strings.ContainsAny(registry, ".:") && registry != "localhost"
}

// isECR reports whether repo is on an ECR registry.
func isECR(repo name.Repository) bool {
	_, _, ok := ecraccess.ParseRegistryHost(repo.RegistryStr())
	return ok
}

// warnings says what is legal but likely a mistake: a Docker Hub reference written
// without its host while the other side is ECR, and a copy onto itself.
func (c copyArgs) warnings(a *app, srcArg, dstArg string) {
	src := c.src.repo
	switch {
	case namesNoRegistry(srcArg) && isECR(c.dstRepo):
		a.warn("SRC %q names no registry, so it is Docker Hub's %s; an ECR image is named ACCOUNT.dkr.ecr.REGION.amazonaws.com/%s", srcArg, c.src.name(), srcArg)
	case namesNoRegistry(dstArg) && isECR(src):
		a.warn("DST %q names no registry, so it is Docker Hub's %s; an ECR repository is named ACCOUNT.dkr.ecr.REGION.amazonaws.com/%s", dstArg, c.dstRepo.Name(), dstArg)
	}
	if sameRepository(src, c.dstRepo) {
		a.warn("SRC and DST are the same repository, %s: there is nothing to copy (for another account or region, change the host)", c.dstRepo)
	}
}

// sameRepository compares two repositories: an ECR registry by account and region (its
// standard, FIPS and dual-stack hosts are one registry), any other by host.
func sameRepository(a, b name.Repository) bool {
	if a.RepositoryStr() != b.RepositoryStr() {
		return false
	}
	aa, ar, aECR := ecraccess.ParseRegistryHost(a.RegistryStr())
	ba, br, bECR := ecraccess.ParseRegistryHost(b.RegistryStr())
	if aECR || bECR {
		return aECR && bECR && aa == ba && ar == br
	}
	return a.RegistryStr() == b.RegistryStr()
}

// apiTag reports whether tag is one the registry API cannot carry (over 128 characters)
// and ep reads it through the ECR API instead (destinations.RepositoryTags).
func apiTag(ep *endpointFor, tag string) bool {
	return len(tag) > ecrname.MaxRegistryTagLen && ep.endpoint.Tags != nil
}

// headTag is where a tag points on one side of a copy: a HEAD, or for a tag the registry
// API cannot carry, DescribeImages (TagAPI.TagDigest: not a pull either). A tag that is
// not there is the registry's 404 either way.
func headTag(ctx context.Context, ep *endpointFor, tag string) (string, error) {
	if !apiTag(ep, tag) {
		desc, err := remote.Head(ep.endpoint.Repository.Tag(tag), lookupOptions(ctx, ep.endpoint)...)
		if err != nil {
			return "", err
		}
		return desc.Digest.String(), nil
	}
	d, found, err := ep.endpoint.Tags.TagDigest(ctx, tag)
	if err == nil && !found {
		err = &transport.Error{StatusCode: http.StatusNotFound}
	}
	return d, err
}
