package sandbox

import (
	"fmt"
	"regexp"
	"sort"
	"time"
)

// Pull times and pull-time update exclusions (ECR User Guide, "Pull-time update
// exclusions", https://docs.aws.amazon.com/AmazonECR/latest/userguide/pull-time-update-exclusions.html;
// API RegisterPullTimeUpdateExclusion):
//   - ECR records an image's lastRecordedPullTime (ImageDetail) on every pull — here a
//     registry manifest GET and a BatchGetImage that returns the image (a HEAD is not a
//     pull: a guess);
//   - except pulls by a principal on the registry's exclusion list: an IAM role (or user)
//     ARN; a session of an excluded role is excluded. At most 100 exclusions per account
//     (LimitExceededException); registering one twice is ExclusionAlreadyExistsException,
//     deregistering an unknown one ExclusionNotFoundException ("Considerations for
//     pull-time update exclusions").
// Exclusions belong to a registry (account and region), as the API's "for a registry" says.

// PullTimeUpdateExclusion registers a principal at start (what a deployed
// AWS::ECR::PullTimeUpdateExclusion does).
type PullTimeUpdateExclusion struct {
	Region       string // empty: DefaultRegion
	PrincipalARN string
}

// maxPullTimeExclusions: "You can configure up to 100 exclusions per account."
const maxPullTimeExclusions = 100

var exclusionPrincipalRE = regexp.MustCompile(`^arn:aws(-[a-z]+)*:iam::[0-9]{12}:(role|user)/[\w+=,.@-]+(/[\w+=,.@-]+)*$`)

// pullExcluded reports whether pulls by tok's principal leave lastRecordedPullTime alone.
func (s *Sandbox) pullExcluded(tok *registryToken) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ex := s.pullExclusions[regionKey{tok.account, tok.region}]
	_, byPrincipal := ex[tok.principal]
	_, byRole := ex[tok.role]
	return byPrincipal || (tok.role != "" && byRole)
}

// recordPull sets a manifest's lastRecordedPullTime unless the puller is excluded. The
// registry's lock must be held.
func (r *registry) recordPull(m *manifestRecord, tok *registryToken) {
	if tok != nil && !r.sb.pullExcluded(tok) {
		m.lastPulledAt = r.sb.now()
	}
}

func (s *Sandbox) pullTimeExclusionCall(c *caller, op, principal string, maxResults *int, token string) (any, *apiError) {
	k := regionKey{c.cred.account, c.region}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pullExclusions[k] == nil {
		s.pullExclusions[k] = map[string]time.Time{}
	}
	ex := s.pullExclusions[k]
	switch op {
	case "RegisterPullTimeUpdateExclusion", "DeregisterPullTimeUpdateExclusion":
		if len(principal) > 200 || !exclusionPrincipalRE.MatchString(principal) {
			return nil, errorf(400, "InvalidParameterException", "Invalid parameter at 'principalArn' failed to satisfy constraint: 'must be an IAM role or user ARN'")
		}
		if op == "DeregisterPullTimeUpdateExclusion" {
			if _, ok := ex[principal]; !ok {
				return nil, errorf(400, "ExclusionNotFoundException", "The exclusion for principal '%s' does not exist", principal)
			}
			delete(ex, principal)
			return map[string]any{"principalArn": principal}, nil
		}
		if _, ok := ex[principal]; ok {
			return nil, errorf(400, "ExclusionAlreadyExistsException", "The exclusion for principal '%s' already exists", principal)
		}
		n := 0
		for key, m := range s.pullExclusions {
			if key.account == c.cred.account {
				n += len(m)
			}
		}
		if n >= maxPullTimeExclusions {
			return nil, errorf(400, "LimitExceededException", "%s", faultMessage("LimitExceededException"))
		}
		ex[principal] = s.now()
		return map[string]any{"principalArn": principal, "createdAt": epoch(ex[principal])}, nil
	}
	names := make([]string, 0, len(ex))
	for p := range ex {
		names = append(names, p)
	}
	sort.Strings(names)
	start, end, next, aerr := pageBounds(len(names), maxResults, token, 100)
	if aerr != nil {
		return nil, aerr
	}
	return withToken(map[string]any{"pullTimeUpdateExclusions": names[start:end]}, next), nil
}

// registerPullExclusions applies the configured exclusions (New).
func (s *Sandbox) registerPullExclusions(account string, list []PullTimeUpdateExclusion) error {
	for _, e := range list {
		region := e.Region
		if region == "" {
			region = DefaultRegion
		}
		if !exclusionPrincipalRE.MatchString(e.PrincipalARN) {
			return fmt.Errorf("sandbox: pull-time update exclusion %q is not an IAM role or user ARN", e.PrincipalARN)
		}
		k := regionKey{account, region}
		if s.pullExclusions[k] == nil {
			s.pullExclusions[k] = map[string]time.Time{}
		}
		s.pullExclusions[k][e.PrincipalARN] = s.now()
	}
	return nil
}
