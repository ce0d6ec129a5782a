package sandbox

import (
	"encoding/json"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// condCtx holds the condition keys of a request, by lowercased name; a multivalued key
// (aws:TagKeys) has several values.
type condCtx map[string][]string

func (c condCtx) set(key string, values ...string) {
	if len(values) > 0 && values[0] != "" {
		c[strings.ToLower(key)] = values
	}
}

// principalContext is what IAM knows of the caller: aws:PrincipalArn (the role's ARN for
// a role session, not the session's), aws:PrincipalAccount, aws:PrincipalOrgID and
// aws:PrincipalTag/<key> (a session's tags), and aws:RequestedRegion
// ("AWS global condition context keys",
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html).
func (s *Sandbox) principalContext(cred *credential, region string) condCtx {
	ctx := condCtx{}
	arn := cred.principalARN
	if cred.roleARN != "" {
		arn = cred.roleARN
	}
	ctx.set("aws:PrincipalArn", arn)
	ctx.set("aws:PrincipalAccount", cred.account)
	if a := s.accounts[cred.account]; a != nil {
		ctx.set("aws:PrincipalOrgID", a.orgID)
	}
	for k, v := range cred.tags {
		ctx.set("aws:PrincipalTag/"+k, v)
	}
	ctx.set("aws:RequestedRegion", region)
	return ctx
}

// requestContext adds what the request itself carries: the tags it asks for
// (aws:RequestTag/<key>, aws:TagKeys) on ECR's CreateRepository and TagResource and on
// STS's AssumeRole, and what the resource is: an ECR repository's own tags
// (aws:ResourceTag/<key>), the organization of the account owning a role
// (aws:ResourceOrgID).
func (s *Sandbox) requestContext(c *caller, service, op string, body []byte, resource string) condCtx {
	ctx := s.principalContext(c.cred, c.region)
	tags := requestTags(service, op, body)
	var keys []string
	for k, v := range tags {
		ctx.set("aws:RequestTag/"+k, v)
		keys = append(keys, k)
	}
	if len(keys) > 0 {
		sort.Strings(keys)
		ctx.set("aws:TagKeys", keys...)
	}
	switch service {
	case "ecr":
		if op != "CreateRepository" {
			for k, v := range s.repositoryTagsOf(resource) {
				ctx.set("aws:ResourceTag/"+k, v)
			}
		}
	case "sts":
		if m := roleARNPattern.FindStringSubmatch(resource); m != nil {
			if a := s.accounts[m[1]]; a != nil {
				ctx.set("aws:ResourceOrgID", a.orgID)
			}
		}
	}
	return ctx
}

// requestTags are the tags a call asks to set.
func requestTags(service, op string, body []byte) map[string]string {
	out := map[string]string{}
	switch {
	case service == "ecr" && (op == "CreateRepository" || op == "TagResource"):
		var in struct {
			Tags []resourceTag `json:"tags"`
		}
		_ = json.Unmarshal(body, &in)
		for _, t := range in.Tags {
			out[t.Key] = t.Value
		}
	case service == "sts" && op == "AssumeRole":
		form, _ := url.ParseQuery(string(body))
		for k, v := range sessionTags(form) {
			out[k] = v
		}
	}
	return out
}

// sessionTags reads AssumeRole's Tags.member.N.Key/Value.
func sessionTags(form url.Values) map[string]string {
	out := map[string]string{}
	for i := 1; ; i++ {
		k := form.Get("Tags.member." + strconv.Itoa(i) + ".Key")
		if k == "" {
			return out
		}
		out[k] = form.Get("Tags.member." + strconv.Itoa(i) + ".Value")
	}
}

// repositoryTagsOf is the tags of the repository a repository ARN names (none when it is
// not a repository or does not exist).
func (s *Sandbox) repositoryTagsOf(arn string) map[string]string {
	parts := strings.SplitN(arn, ":", 6) // arn:aws:ecr:region:account:repository/name
	if len(parts) != 6 || parts[2] != "ecr" || !strings.HasPrefix(parts[5], "repository/") {
		return nil
	}
	r := s.lookupRegistry(parts[4], parts[3])
	if r == nil {
		return nil
	}
	return r.tagsOf(strings.TrimPrefix(parts[5], "repository/"))
}

// tagsOf is a repository's tags.
func (r *registry) tagsOf(name string) map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	repo, ok := r.repos[name]
	if !ok {
		return nil
	}
	out := make(map[string]string, len(repo.tags))
	for _, t := range repo.tags {
		out[t.Key] = t.Value
	}
	return out
}
