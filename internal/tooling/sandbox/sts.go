package sandbox

import (
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// STS over the query protocol: AssumeRole and GetCallerIdentity.
// https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
// https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html

const stsNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"

type stsErrorResponse struct {
	XMLName   xml.Name `xml:"ErrorResponse"`
	Xmlns     string   `xml:"xmlns,attr,omitempty"`
	Error     stsError `xml:"Error"`
	RequestID string   `xml:"RequestId"`
}

type stsError struct {
	Type    string `xml:"Type"`
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

type stsResponseMetadata struct {
	RequestID string `xml:"RequestId"`
}

type assumeRoleResponse struct {
	XMLName  xml.Name `xml:"AssumeRoleResponse"`
	Xmlns    string   `xml:"xmlns,attr"`
	Result   assumeRoleResult
	Metadata stsResponseMetadata `xml:"ResponseMetadata"`
}

type assumeRoleResult struct {
	XMLName     xml.Name `xml:"AssumeRoleResult"`
	Credentials struct {
		AccessKeyID     string `xml:"AccessKeyId"`
		SecretAccessKey string `xml:"SecretAccessKey"`
		SessionToken    string `xml:"SessionToken"`
		Expiration      string `xml:"Expiration"`
	} `xml:"Credentials"`
	AssumedRoleUser struct {
		Arn           string `xml:"Arn"`
		AssumedRoleID string `xml:"AssumedRoleId"`
	} `xml:"AssumedRoleUser"`
	PackedPolicySize int `xml:"PackedPolicySize"`
}

type callerIdentityResponse struct {
	XMLName xml.Name `xml:"GetCallerIdentityResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Result  struct {
		Arn     string `xml:"Arn"`
		UserID  string `xml:"UserId"`
		Account string `xml:"Account"`
	} `xml:"GetCallerIdentityResult"`
	Metadata stsResponseMetadata `xml:"ResponseMetadata"`
}

var (
	roleSessionNamePattern = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	externalIDPattern      = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
	roleARNPattern         = regexp.MustCompile(`^arn:aws[a-z-]*:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})$`)
)

func parseQuery(body []byte) (url.Values, error) { return url.ParseQuery(string(body)) }

func (s *Sandbox) stsCall(c *caller, op string, body []byte, entry *Entry) (any, *apiError) {
	form, err := parseQuery(body)
	if err != nil {
		return nil, errorf(400, "MalformedInput", "cannot parse the form body: %v", err)
	}
	switch op {
	case "GetCallerIdentity":
		var resp callerIdentityResponse
		resp.Xmlns = stsNamespace
		resp.Result.Arn = c.cred.principalARN
		resp.Result.Account = c.cred.account
		resp.Result.UserID = c.cred.accessKeyID
		resp.Metadata.RequestID = randomString(16, upperAlnum)
		return resp, nil
	case "AssumeRole":
		return s.assumeRole(c, form, entry)
	default:
		return nil, errorf(400, "InvalidAction", "Could not find operation %s for version 2011-06-15", op)
	}
}

func (s *Sandbox) assumeRole(c *caller, form url.Values, entry *Entry) (any, *apiError) {
	roleARN := form.Get("RoleArn")
	sessionName := form.Get("RoleSessionName")
	entry.Reference = roleARN
	if roleARN == "" || sessionName == "" {
		return nil, errorf(400, "ValidationError", "RoleArn and RoleSessionName are required")
	}
	if !roleSessionNamePattern.MatchString(sessionName) {
		return nil, errorf(400, "ValidationError", "1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*", sessionName)
	}
	extID, hasExtID := form.Get("ExternalId"), form.Has("ExternalId")
	if hasExtID && (len(extID) < 2 || len(extID) > 1224 || !externalIDPattern.MatchString(extID)) {
		return nil, errorf(400, "ValidationError", "1 validation error detected: Value at 'externalId' failed to satisfy constraint: Member must have length between 2 and 1224 and match [\\w+=,.@:/-]*")
	}
	denied := errorf(403, "AccessDenied", "User: %s is not authorized to perform: sts:AssumeRole on resource: %s", c.cred.principalARN, roleARN)
	m := roleARNPattern.FindStringSubmatch(roleARN)
	if m == nil {
		return nil, errorf(400, "ValidationError", "%s is invalid", roleARN)
	}
	acct, ok := s.accounts[m[1]]
	if !ok {
		return nil, denied
	}
	role, ok := acct.roles[m[2]]
	if !ok {
		return nil, denied
	}
	entry.Account = acct.id
	trusted := false
	tags := sessionTags(form)
	if tp := acct.trust[role.Name]; tp != nil {
		ctx := s.principalContext(c.cred, c.region)
		if hasExtID {
			ctx.set("sts:ExternalId", extID)
		}
		for k, v := range tags {
			ctx.set("aws:RequestTag/"+k, v)
		}
		trusted = trusts(*tp, "sts:AssumeRole", c.cred.principalARN, c.cred.roleARN, c.cred.account, ctx)
		// Passing session tags needs sts:TagSession in the trust policy too ("Passing
		// session tags in AWS STS",
		// https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html).
		if trusted && len(tags) > 0 {
			trusted = trusts(*tp, "sts:TagSession", c.cred.principalARN, c.cred.roleARN, c.cred.account, ctx)
		}
	} else {
		for _, t := range role.Trusted {
			if t == c.cred.account || t == c.cred.principalARN || (c.cred.roleARN != "" && t == c.cred.roleARN) {
				trusted = true
			}
		}
		// The sts:ExternalId condition must match exactly; absent when required is a denial.
		// https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_common-scenarios_third-party.html
		if role.ExternalID != "" && role.ExternalID != extID {
			trusted = false
		}
	}
	if !trusted {
		return nil, denied
	}
	duration := time.Hour
	if v := form.Get("DurationSeconds"); v != "" {
		secs, err := strconv.Atoi(v)
		if err != nil || secs < 900 || secs > 43200 {
			return nil, errorf(400, "ValidationError", "1 validation error detected: Value '%s' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200", v)
		}
		duration = time.Duration(secs) * time.Second
		if duration > role.MaxSessionDuration {
			return nil, errorf(400, "ValidationError", "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
		}
	}
	// Role chaining is capped at one hour.
	// https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_terms-and-concepts.html#iam-term-role-chaining
	if c.cred.roleARN != "" && duration > time.Hour {
		return nil, errorf(400, "ValidationError", "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
	}
	// A session policy narrows the session's permissions to what both it and the role's
	// policies allow; its plain-text form is limited to 2,048 characters
	// (https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html, Policy).
	var session []PolicyDocument
	if doc := form.Get("Policy"); doc != "" {
		if len(doc) > 2048 {
			return nil, errorf(400, "PackedPolicyTooLarge", "Serialized policy size exceeds the 2048 characters allowed.")
		}
		p, err := ParsePolicy(doc)
		if err != nil {
			return nil, errorf(400, "MalformedPolicyDocument", "the session policy is not a valid policy document: %v", err)
		}
		session = []PolicyDocument{p}
	}
	now := s.now()
	roleID := "AROA" + strings.ToUpper(randomString(17, upperAlnum))
	cred := &credential{
		accessKeyID:  "ASIA" + randomString(16, upperAlnum),
		secret:       randomString(40, secretAlphabet),
		sessionToken: "IQoJb3JpZ2luX2VjE" + randomString(200, secretAlphabet),
		account:      acct.id,
		principalARN: fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", acct.id, role.Name, sessionName),
		roleARN:      RoleARN(acct.id, role.Name),
		policies:     acct.rolePolicies[role.Name],
		session:      session,
		tags:         tags,
		expires:      now.Add(duration),
	}
	s.mu.Lock()
	s.keys[cred.accessKeyID] = cred
	s.mu.Unlock()

	var resp assumeRoleResponse
	resp.Xmlns = stsNamespace
	resp.Result.Credentials.AccessKeyID = cred.accessKeyID
	resp.Result.Credentials.SecretAccessKey = cred.secret
	resp.Result.Credentials.SessionToken = cred.sessionToken
	resp.Result.Credentials.Expiration = cred.expires.UTC().Format("2006-01-02T15:04:05Z")
	resp.Result.AssumedRoleUser.Arn = cred.principalARN
	resp.Result.AssumedRoleUser.AssumedRoleID = roleID + ":" + sessionName
	resp.Metadata.RequestID = randomString(16, upperAlnum)
	return resp, nil
}

// ExpireSessions makes every temporary credential of an account expired now, so that
// the next call signed with one is refused with ExpiredToken(Exception).
func (s *Sandbox) ExpireSessions(accountID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.keys {
		if c.account == accountID && c.sessionToken != "" {
			c.expired = true
		}
	}
}

// IssuedSecrets returns every secret the sandbox holds or has handed out — secret access
// keys, session tokens, registry passwords and their base64 "AWS:password" form, and the
// key ID, security token and signature of every presigned storage URL — so tests can
// prove none of them reaches a log.
func (s *Sandbox) IssuedSecrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.keys {
		out = append(out, c.secret)
		if c.sessionToken != "" {
			out = append(out, c.sessionToken)
		}
	}
	for tok := range s.tokens {
		out = append(out, tok, base64.StdEncoding.EncodeToString([]byte("AWS:"+tok)))
	}
	return append(out, s.storage.secrets()...)
}
