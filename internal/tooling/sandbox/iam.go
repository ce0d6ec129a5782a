package sandbox

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
)

// IAM policy evaluation, enough to prove a deployment's permissions by running it: a
// principal with identity policies may only do what they allow (an explicit Deny wins),
// and a role with a trust policy may only be assumed by whom it names, under its
// conditions. A principal without policies is unrestricted, so tests that do not care
// about IAM need not write any.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html

// PolicyDocument is an IAM policy (identity or trust).
type PolicyDocument struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Statement is one policy statement. Strings-or-lists are normalised to lists.
type Statement struct {
	Sid       string                           `json:"Sid,omitempty"`
	Effect    string                           `json:"Effect"`
	Principal map[string]stringList            `json:"Principal,omitempty"`
	Action    stringList                       `json:"Action,omitempty"`
	NotAction stringList                       `json:"NotAction,omitempty"`
	Resource  stringList                       `json:"Resource,omitempty"`
	Condition map[string]map[string]stringList `json:"Condition,omitempty"`
}

type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("expected a string or a list of strings, got %s", b)
	}
	*l = many
	return nil
}

// UnmarshalJSON accepts `"Principal": "*"` as well as the map form.
func (s *Statement) UnmarshalJSON(b []byte) error {
	type plain Statement
	var raw struct {
		plain
		Principal json.RawMessage `json:"Principal,omitempty"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*s = Statement(raw.plain)
	if len(raw.Principal) > 0 {
		var star string
		if json.Unmarshal(raw.Principal, &star) == nil {
			s.Principal = map[string]stringList{"AWS": {star}}
		} else if err := json.Unmarshal(raw.Principal, &s.Principal); err != nil {
			return fmt.Errorf("Principal: %w", err)
		}
	}
	return nil
}

// ParsePolicy reads a policy document from JSON.
func ParsePolicy(doc string) (PolicyDocument, error) {
	var p PolicyDocument
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		return p, fmt.Errorf("policy document: %w", err)
	}
	for i, st := range p.Statement {
		if st.Effect != "Allow" && st.Effect != "Deny" {
			return p, fmt.Errorf("policy statement %d: Effect %q is neither Allow nor Deny", i, st.Effect)
		}
	}
	return p, nil
}

// request is what an authorization decision looks at.
type request struct {
	action    string
	resource  string
	principal string  // caller principal ARN
	context   condCtx // condition keys (sts:ExternalId, aws:ResourceTag/…, …)
}

// decision evaluates identity policies: explicit deny > allow > implicit deny.
func decision(policies []PolicyDocument, r request) (allowed bool, why string) {
	allow := false
	for _, p := range policies {
		for _, st := range p.Statement {
			if !st.matchesAction(r.action) || !st.matchesResource(r.resource) || !st.conditionsHold(r.context) {
				continue
			}
			if st.Effect == "Deny" {
				return false, "an explicit deny in an identity-based policy"
			}
			allow = true
		}
	}
	if !allow {
		return false, "no identity-based policy allows the " + r.action + " action"
	}
	return true, ""
}

// decideSession is decision with a role session's session policy: a request is allowed
// only when the identity's policies allow it and, when the session was given a policy at
// AssumeRole, that policy allows it too ("Session policies",
// https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session).
// nil policies: unrestricted.
func decideSession(policies, session []PolicyDocument, r request) (bool, string) {
	if policies != nil {
		if ok, why := decision(policies, r); !ok {
			return false, why
		}
	}
	if session != nil {
		if ok, _ := decision(session, r); !ok {
			return false, "no session policy allows the " + r.action + " action"
		}
	}
	return true, ""
}

// resourceDecision evaluates a resource-based policy for a principal (role: its role ARN,
// account: its account): whether a statement allows the request, and whether one denies
// it explicitly.
func resourceDecision(p PolicyDocument, r request, role, account string) (allowed, denied bool) {
	for _, st := range p.Statement {
		if !st.matchesAction(r.action) || !st.matchesResource(r.resource) || !st.conditionsHold(r.context) {
			continue
		}
		if len(st.Principal) > 0 && !st.matchesPrincipal(r.principal, role, account) {
			continue
		}
		if st.Effect == "Deny" {
			return false, true
		}
		allowed = true
	}
	return allowed, false
}

// trusts evaluates a role's trust policy for an action (sts:AssumeRole; sts:TagSession
// when the caller passes session tags).
func trusts(p PolicyDocument, action, callerPrincipal, callerRole, callerAccount string, ctx condCtx) bool {
	allow := false
	for _, st := range p.Statement {
		if !st.matchesAction(action) || !st.conditionsHold(ctx) || !st.matchesPrincipal(callerPrincipal, callerRole, callerAccount) {
			continue
		}
		if st.Effect == "Deny" {
			return false
		}
		allow = true
	}
	return allow
}

func (st Statement) matchesAction(action string) bool {
	if len(st.NotAction) > 0 {
		return !anyMatch(st.NotAction, action, true)
	}
	return anyMatch(st.Action, action, true)
}

func (st Statement) matchesResource(resource string) bool {
	if len(st.Resource) == 0 {
		return true // trust policies have no Resource
	}
	return anyMatch(st.Resource, resource, false)
}

func (st Statement) matchesPrincipal(principal, role, account string) bool {
	for _, p := range st.Principal["AWS"] {
		switch {
		case p == "*":
			return true
		case p == principal, role != "" && p == role:
			return true
		case p == account, p == "arn:aws:iam::"+account+":root":
			return true
		}
	}
	// A service principal ("events.amazonaws.com") is named as "service:<name>".
	for _, p := range st.Principal["Service"] {
		if principal == "service:"+p {
			return true
		}
	}
	return false
}

// conditionsHold evaluates a statement's conditions: every operator and key must hold.
// Supported: the String*/Arn* operators (and their IfExists forms), their set forms
// (ForAllValues:, ForAnyValue:) for multivalued keys such as aws:TagKeys, and Null. A
// negated operator holds when the key is absent; another holds only if it is present
// ("IAM JSON policy elements: Condition operators",
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html).
// An unknown operator fails closed.
func (st Statement) conditionsHold(ctx condCtx) bool {
	for op, kv := range st.Condition {
		for key, want := range kv {
			if !conditionHolds(op, ctx[strings.ToLower(key)], want) {
				return false
			}
		}
	}
	return true
}

func conditionHolds(op string, got, want []string) bool {
	set, base, ok := strings.Cut(op, ":")
	if !ok {
		set, base = "", op
	}
	if base == "Null" {
		return (len(got) == 0) == (len(want) > 0 && strings.EqualFold(want[0], "true"))
	}
	ifExists := strings.HasSuffix(base, "IfExists")
	base = strings.TrimSuffix(base, "IfExists")
	negated := strings.Contains(base, "Not")
	positive := strings.Replace(base, "Not", "", 1) // StringNotEquals → StringEquals
	switch {
	case len(got) == 0 && set == "ForAllValues":
		return true // vacuously: no value fails
	case len(got) == 0:
		return ifExists || negated
	}
	// holds says whether one value of the key satisfies the operator over the list
	// (a positive operator: equal to one of the values; a negated one: to none).
	holds := func(g string) (bool, bool) {
		any := false
		for _, w := range want {
			m, known := matchOne(positive, g, w)
			if !known {
				return false, false
			}
			any = any || m
		}
		return any != negated, true
	}
	all := set == "ForAllValues"
	for _, g := range got {
		h, known := holds(g)
		switch {
		case !known:
			return false
		case all && !h:
			return false
		case !all && h:
			return true
		}
	}
	return all
}

// matchOne compares one value with one policy value; known is false for an operator the
// sandbox does not evaluate.
func matchOne(op, got, want string) (matched, known bool) {
	switch op {
	case "StringEquals", "ArnEquals":
		return got == want, true
	case "StringEqualsIgnoreCase":
		return strings.EqualFold(got, want), true
	case "StringLike", "ArnLike":
		return globMatch(want, got, false), true
	}
	return false, false
}

func anyMatch(patterns []string, value string, fold bool) bool {
	for _, p := range patterns {
		if globMatch(p, value, fold) {
			return true
		}
	}
	return false
}

// globMatch implements IAM's wildcards: * any run of characters (including / and :), ?
// one character. Actions compare case-insensitively.
func globMatch(pattern, value string, fold bool) bool {
	if fold {
		pattern, value = strings.ToLower(pattern), strings.ToLower(value)
	}
	// path.Match treats / specially; IAM does not, so compare with / replaced.
	const slash = "\x00"
	escaped := strings.NewReplacer("[", `\[`, "]", `\]`, `\`, `\\`).Replace(pattern)
	ok, err := path.Match(strings.ReplaceAll(escaped, "/", slash), strings.ReplaceAll(value, "/", slash))
	if err != nil {
		return false
	}
	if ok {
		return true
	}
	// path.Match's * stops at the separator it knows (/), which we replaced; it does not
	// stop at \x00, so a plain Match is the IAM semantics.
	return false
}

// resourceARN builds the ARN an action is authorized against.
func repositoryARN(region, account, repo string) string {
	return fmt.Sprintf("arn:aws:ecr:%s:%s:repository/%s", region, account, repo)
}

// AccessDeniedMessage is AWS's wording for a denied call.
func accessDeniedMessage(principal, action, resource, why string) string {
	return fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s because %s", principal, action, resource, why)
}

// authorizeAPI checks the caller's identity policies for an API call. Callers without
// policies are unrestricted. GetCallerIdentity needs no permission (STS docs).
func (s *Sandbox) authorizeAPI(c *caller, service, op string, body []byte, entry *Entry) *apiError {
	actions := []string{service + ":" + iamAction(service, op)}
	kmsKey := ""
	// Tagging on creation also needs ecr:TagResource.
	// https://docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-using-tags.html
	if service == "ecr" && op == "CreateRepository" {
		var in struct {
			Tags       []json.RawMessage `json:"tags"`
			Encryption *struct {
				EncryptionType string `json:"encryptionType"`
				KmsKey         string `json:"kmsKey"`
			} `json:"encryptionConfiguration"`
		}
		if json.Unmarshal(body, &in) == nil {
			if len(in.Tags) > 0 {
				actions = append(actions, "ecr:TagResource")
			}
			if in.Encryption != nil && strings.HasPrefix(in.Encryption.EncryptionType, "KMS") {
				kmsKey = customerKeyARN(c.region, c.cred.account, in.Encryption.KmsKey)
			}
		}
		entry.AlsoAuthorized = actions[1:]
		if kmsKey != "" {
			entry.AlsoAuthorized = append(entry.AlsoAuthorized, kmsGrantActions...)
		}
	}
	// Passing session tags also needs sts:TagSession on the role (id_session-tags.html).
	if service == "sts" && op == "AssumeRole" && len(requestTags(service, op, body)) > 0 {
		actions = append(actions, "sts:TagSession")
		entry.AlsoAuthorized = append(entry.AlsoAuthorized, "sts:TagSession")
	}
	if (c.cred.policies == nil && c.cred.session == nil) || (service == "sts" && op == "GetCallerIdentity") {
		return nil
	}
	for _, action := range actions {
		if aerr := s.authorizeAction(c, service, op, action, body); aerr != nil {
			return aerr
		}
	}
	if kmsKey != "" {
		return authorizeKMSGrant(c, kmsKey, entry)
	}
	return nil
}

// kmsGrantActions are what creating a repository encrypted with a customer managed KMS
// key needs of its caller: ECR describes the key and creates grants on it for the
// repository, and retires them when the repository goes, on the caller's behalf
// (https://docs.aws.amazon.com/AmazonECR/latest/userguide/encryption-at-rest.html,
// "Required IAM permissions"), so KMS evaluates them with kms:ViaService set to ECR's
// endpoint. A repository encrypted with the AWS managed key (aws/ecr) needs none of them
// from the caller: that key's policy allows the account's principals through ECR
// (inferred from AWS managed keys' key policies).
var kmsGrantActions = []string{"kms:CreateGrant", "kms:RetireGrant", "kms:DescribeKey"}

// customerKeyARN is the ARN IAM authorizes a repository's kmsKey against ("": the AWS
// managed key). A key ID becomes its key ARN; an alias stays an alias ARN (real KMS
// resolves it to its key: not emulated).
func customerKeyARN(region, account, key string) string {
	switch {
	case key == "", key == "alias/aws/ecr", strings.HasSuffix(key, ":alias/aws/ecr"):
		return ""
	case strings.HasPrefix(key, "arn:"):
		return key
	case strings.HasPrefix(key, "alias/"):
		return fmt.Sprintf("arn:aws:kms:%s:%s:%s", region, account, key)
	}
	return fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", region, account, key)
}

// authorizeKMSGrant checks the caller may have ECR use the key for it. ECR reports KMS's
// refusal as its own KmsException (API_CreateRepository's errors; the wording is a guess).
func authorizeKMSGrant(c *caller, keyARN string, entry *Entry) *apiError {
	ctx := condCtx{"kms:viaservice": {"ecr." + c.region + ".amazonaws.com"}, "kms:calleraccount": {c.cred.account}}
	for _, action := range kmsGrantActions {
		if ok, why := decision(c.cred.policies, request{action: action, resource: keyARN, principal: c.cred.principalARN, context: ctx}); !ok {
			entry.DeniedAction = action
			return errorf(400, "KmsException", "KMS refused the key for the repository (AccessDeniedException: %s)", accessDeniedMessage(c.cred.principalARN, action, keyARN, why))
		}
	}
	return nil
}

func (s *Sandbox) authorizeAction(c *caller, service, op, action string, body []byte) *apiError {
	for _, res := range apiResources(c, service, op, body) {
		ctx := s.requestContext(c, service, op, body, res)
		if ok, why := decideSession(c.cred.policies, c.cred.session, request{action: action, resource: res, principal: c.cred.principalARN, context: ctx}); !ok {
			msg := accessDeniedMessage(c.cred.principalARN, action, res, why)
			switch service {
			case "sts":
				return errorf(403, "AccessDenied", "%s", msg)
			case "sqs":
				return errorf(403, "AccessDenied", "%s", msg)
			default:
				return errorf(400, "AccessDeniedException", "%s", msg)
			}
		}
	}
	return nil
}

// iamAction is the action IAM checks for an operation: SQS batch operations are
// authorized as their single-message action.
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-permissions-reference.html
func iamAction(service, op string) string {
	if service == "sqs" {
		switch op {
		case "SendMessageBatch", "DeleteMessageBatch", "ChangeMessageVisibilityBatch":
			return strings.TrimSuffix(op, "Batch")
		}
	}
	return op
}

// apiResources lists the resources an API call is authorized against.
func apiResources(c *caller, service, op string, body []byte) []string {
	acct, region := c.cred.account, c.region
	switch service {
	case "ecr":
		var in struct {
			RepositoryName  string   `json:"repositoryName"`
			RepositoryNames []string `json:"repositoryNames"`
			ResourceArn     string   `json:"resourceArn"`
		}
		json.Unmarshal(body, &in)
		switch {
		case op == "GetAuthorizationToken", op == "GetAccountSetting", op == "PutAccountSetting":
			// Actions without a resource type: a policy grants them on "*" (Service
			// Authorization Reference, Amazon Elastic Container Registry).
			return []string{"*"}
		case in.ResourceArn != "":
			return []string{in.ResourceArn}
		case in.RepositoryName != "":
			return []string{repositoryARN(region, acct, in.RepositoryName)}
		case len(in.RepositoryNames) > 0:
			var out []string
			for _, n := range in.RepositoryNames {
				out = append(out, repositoryARN(region, acct, n))
			}
			return out
		default:
			// Listing every repository is authorized against all of them (guess: AWS
			// evaluates DescribeRepositories without names on repository/*).
			return []string{repositoryARN(region, acct, "*")}
		}
	case "sts":
		v, _ := parseQuery(body)
		return []string{v.Get("RoleArn")}
	case "kms":
		var in struct {
			KeyID string `json:"KeyId"`
		}
		json.Unmarshal(body, &in)
		return []string{kmsKeyARN(c, in.KeyID)}
	case "sqs":
		var in struct {
			QueueURL  string `json:"QueueUrl"`
			QueueName string `json:"QueueName"`
		}
		json.Unmarshal(body, &in)
		name, owner := in.QueueName, acct
		if in.QueueURL != "" {
			parts := strings.Split(strings.TrimRight(in.QueueURL, "/"), "/")
			if len(parts) >= 2 {
				owner, name = parts[len(parts)-2], parts[len(parts)-1]
			}
		}
		return []string{fmt.Sprintf("arn:aws:sqs:%s:%s:%s", region, owner, name)}
	case "ssm":
		var in struct {
			Name string `json:"Name"`
		}
		json.Unmarshal(body, &in)
		name, _, _, aerr := ssmName(in.Name, region, acct) // a name, or GetParameter's ARN
		if aerr != nil {
			name, _, _ = strings.Cut(in.Name, ":")
		}
		return []string{ssmParameterARN(region, acct, name)}
	case "events":
		var in struct {
			Entries []struct {
				EventBusName string `json:"EventBusName"`
			} `json:"Entries"`
			Name         string `json:"Name"`
			Rule         string `json:"Rule"`
			EventBusName string `json:"EventBusName"`
		}
		json.Unmarshal(body, &in)
		if op != "PutEvents" {
			// Rule operations are authorized on the rule's ARN; ListRules on "*" (guess).
			// https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoneventbridge.html
			k, aerr := busFor(c, in.EventBusName)
			name := in.Name + in.Rule
			if aerr != nil || op == "ListRules" || name == "" {
				return []string{"*"}
			}
			return []string{ruleARN(k, name)}
		}
		seen := map[string]bool{}
		var out []string
		for _, e := range in.Entries {
			arn := e.EventBusName
			if arn == "" {
				arn = "default"
			}
			if !strings.HasPrefix(arn, "arn:") {
				arn = fmt.Sprintf("arn:aws:events:%s:%s:event-bus/%s", region, acct, arn)
			}
			if !seen[arn] {
				seen[arn] = true
				out = append(out, arn)
			}
		}
		return out
	}
	return []string{"*"}
}

// RolePolicies returns the identity policies in force for an account's role (nil when
// the role is unrestricted or unknown).
func (s *Sandbox) RolePolicies(accountID, role string) []PolicyDocument {
	if a, ok := s.accounts[accountID]; ok {
		return a.rolePolicies[role]
	}
	return nil
}
