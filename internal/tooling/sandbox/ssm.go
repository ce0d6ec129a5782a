package sandbox

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Systems Manager Parameter Store (AWS JSON 1.1, X-Amz-Target AmazonSSM.<Operation>): what
// a deployment that keeps its rules document in a parameter needs — PutParameter,
// GetParameter and DeleteParameter, versions, tiers and their size limits, IAM on the
// parameter's ARN.
// https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html
// https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameter.html
// https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_DeleteParameter.html

// Parameter tiers and their value limits: 4 KB standard, 8 KB advanced; the API's message
// counts characters ("Standard tier parameters support a maximum parameter value of 4096
// characters", aws/aws-sdk-net#3157).
// https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-advanced-parameters.html
const (
	ssmTierStandard    = "Standard"
	ssmTierAdvanced    = "Advanced"
	ssmTierIntelligent = "Intelligent-Tiering"
	ssmStandardMax     = 4096
	ssmAdvancedMax     = 8192
	// ssmMaxVersions: Parameter Store keeps the 100 most recent versions of a parameter
	// and deletes the oldest when a new one is created (labels, which would pin one,
	// are not emulated).
	ssmMaxVersions = 100
)

// ssmNameRE is what a parameter name may contain: letters, digits, "_", ".", "-", and "/"
// separating the levels of a hierarchy (a leading "/" is part of the name).
// https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-su-create.html
var ssmNameRE = regexp.MustCompile(`^[a-zA-Z0-9_./-]+$`)

// ssmName reads a request's Name: a parameter name, or (GetParameter) the parameter's ARN
// — "The name or Amazon Resource Name (ARN) of the parameter" — either with an optional
// ":version" selector. An ARN names a parameter of the caller's account and region here
// (parameters shared from another account are not emulated).
// https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameter.html#systemsmanager-GetParameter-request-Name
func ssmName(raw, region, account string) (name, selector string, byARN bool, aerr *apiError) {
	name = raw
	if rest, ok := strings.CutPrefix(raw, "arn:"); ok {
		parts := strings.SplitN(rest, ":", 5) // partition, service, region, account, resource
		path, found := "", false
		if len(parts) == 5 && parts[1] == "ssm" {
			path, found = strings.CutPrefix(parts[4], "parameter/")
		}
		if !found || parts[2] != region || parts[3] != account {
			return "", "", true, errorf(400, "ValidationException", "Parameter name: %q is not the ARN of a parameter of account %s in %s (the sandbox does not emulate shared parameters)", raw, account, region)
		}
		// A name of one level has no leading "/" in its ARN; a hierarchy's does (ssmParameterARN).
		name, byARN = path, true
		if p, _, _ := strings.Cut(path, ":"); strings.Contains(p, "/") {
			name = "/" + path
		}
	}
	name, selector, _ = strings.Cut(name, ":")
	if len(name) > 2048 || !ssmNameRE.MatchString(name) {
		return "", "", byARN, errorf(400, "ValidationException", "Parameter name: %q can't be prefixed with or contain invalid characters", name)
	}
	return name, selector, byARN, nil
}

// ssmMaxLevels is the deepest a hierarchy may be (guess: every "/"-separated segment
// counts, the name's own included; the guide does not say).
const ssmMaxLevels = 15

// ssmNewName refuses names PutParameter refuses: "A parameter name can't be prefixed with
// "aws" or "ssm" (case-insensitive)" and "Parameter hierarchies are limited to a maximum
// depth of fifteen levels".
// https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html#systemsmanager-PutParameter-request-Name
func ssmNewName(name string) *apiError {
	bare := strings.ToLower(strings.TrimPrefix(name, "/"))
	if strings.HasPrefix(bare, "aws") || strings.HasPrefix(bare, "ssm") {
		return errorf(400, "ValidationException", "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive).")
	}
	if levels := strings.Count(bare, "/") + 1; levels > ssmMaxLevels {
		return errorf(400, "HierarchyLevelLimitExceededException", "A hierarchy can have a maximum of 15 levels. (%s has %d)", name, levels)
	}
	return nil
}

type ssmKey struct{ account, region, name string }

type ssmVersion struct {
	value    string
	typ      string
	tier     string
	modified time.Time
}

type ssmParameter struct {
	versions map[int64]ssmVersion
	latest   int64
}

type ssmState struct {
	mu     sync.Mutex
	params map[ssmKey]*ssmParameter
}

func newSSMState() *ssmState { return &ssmState{params: map[ssmKey]*ssmParameter{}} }

func (s *Sandbox) ssm() *ssmState { return s.ssmState }

// ssmParameterARN is a parameter's ARN: a name starting with "/" is appended as is, any
// other after "parameter/".
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssystemsmanager.html#awssystemsmanager-resources-for-iam-policies
func ssmParameterARN(region, account, name string) string {
	return fmt.Sprintf("arn:aws:ssm:%s:%s:parameter/%s", region, account, strings.TrimPrefix(name, "/"))
}

type ssmInput struct {
	Name           string `json:"Name"`
	Value          string `json:"Value"`
	Type           string `json:"Type"`
	Tier           string `json:"Tier"`
	KeyID          string `json:"KeyId"`
	Overwrite      bool   `json:"Overwrite"`
	WithDecryption bool   `json:"WithDecryption"`
}

func (s *Sandbox) ssmCall(c *caller, op string, body []byte, entry *Entry) (any, *apiError) {
	var in ssmInput
	if aerr := decodeInput(body, &in); aerr != nil {
		return nil, aerr
	}
	entry.Reference = in.Name
	name, selector, byARN, aerr := ssmName(in.Name, c.region, c.cred.account)
	if aerr != nil {
		return nil, aerr
	}
	if byARN && op != "GetParameter" {
		// PutParameter and DeleteParameter: "You can't enter the Amazon Resource Name (ARN)
		// for a parameter, only the parameter name itself."
		return nil, errorf(400, "ValidationException", "Parameter name: %q: an ARN is not accepted by %s", in.Name, op)
	}
	st := s.ssm()
	st.mu.Lock()
	defer st.mu.Unlock()
	key := ssmKey{c.cred.account, c.region, name}
	switch op {
	case "PutParameter":
		if aerr := ssmNewName(name); aerr != nil {
			return nil, aerr
		}
		return st.put(key, &in, s.now())
	case "GetParameter":
		return st.get(key, selector, in.WithDecryption)
	case "DeleteParameter":
		return st.delete(key)
	}
	return nil, errorf(400, "UnknownOperationException", "the sandbox does not emulate ssm:%s", op)
}

func (st *ssmState) put(key ssmKey, in *ssmInput, now time.Time) (any, *apiError) {
	switch in.Type {
	case "String", "StringList", "SecureString":
	case "":
		if st.params[key] == nil {
			return nil, errorf(400, "ValidationException", "A parameter type is required when you create a parameter.")
		}
	default:
		return nil, errorf(400, "ValidationException", "1 validation error detected: Value '%s' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [SecureString, StringList, String]", in.Type)
	}
	if in.KeyID != "" {
		return nil, errorf(400, "ValidationException", "the sandbox emulates SecureString parameters with the AWS managed key only (no KeyId)")
	}
	if in.Value == "" {
		return nil, errorf(400, "ValidationException", "1 validation error detected: Value at 'value' failed to satisfy constraint: Member must have length greater than or equal to 1")
	}
	p := st.params[key]
	if p != nil && !in.Overwrite {
		return nil, errorf(400, "ParameterAlreadyExists", "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.")
	}
	tier := in.Tier
	switch tier {
	case "":
		tier = ssmTierStandard
	case ssmTierStandard, ssmTierAdvanced:
	case ssmTierIntelligent:
		// Intelligent-Tiering picks Advanced when the value needs it (the guide; but see
		// aws/aws-sdk-net#3157, which reports the Standard error instead).
		tier = ssmTierStandard
		if utf8.RuneCountInString(in.Value) > ssmStandardMax {
			tier = ssmTierAdvanced
		}
	default:
		return nil, errorf(400, "ValidationException", "1 validation error detected: Value '%s' at 'tier' failed to satisfy constraint: Member must satisfy enum value set: [Advanced, Intelligent-Tiering, Standard]", tier)
	}
	typ := in.Type
	if p != nil {
		prev := p.versions[p.latest]
		if typ == "" {
			typ = prev.typ
		}
		// An advanced parameter cannot go back to the standard tier (the guide): it stays
		// advanced (guess: an explicit Standard is not refused).
		if prev.tier == ssmTierAdvanced {
			tier = ssmTierAdvanced
		}
	}
	n := utf8.RuneCountInString(in.Value)
	if tier == ssmTierStandard && n > ssmStandardMax {
		return nil, errorf(400, "ValidationException", "Standard tier parameters support a maximum parameter value of 4096 characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier. For more information, see https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-advanced-parameters.html")
	}
	if n > ssmAdvancedMax {
		// Guess: the Advanced tier's refusal, worded like the Standard one.
		return nil, errorf(400, "ValidationException", "Advanced tier parameters support a maximum parameter value of 8192 characters.")
	}
	if p == nil {
		p = &ssmParameter{versions: map[int64]ssmVersion{}}
		st.params[key] = p
	}
	p.latest++
	p.versions[p.latest] = ssmVersion{value: in.Value, typ: typ, tier: tier, modified: now}
	delete(p.versions, p.latest-ssmMaxVersions)
	return map[string]any{"Version": p.latest, "Tier": tier}, nil
}

// delete removes a parameter with its history: one created again under the name starts
// over at version 1 (guess: a new parameter; the API reference does not say).
func (st *ssmState) delete(key ssmKey) (any, *apiError) {
	if st.params[key] == nil {
		return nil, errorf(400, "ParameterNotFound", "")
	}
	delete(st.params, key)
	return struct{}{}, nil
}

func (st *ssmState) get(key ssmKey, selector string, decrypt bool) (any, *apiError) {
	p := st.params[key]
	if p == nil {
		return nil, errorf(400, "ParameterNotFound", "")
	}
	version := p.latest
	if selector != "" {
		v, err := strconv.ParseInt(selector, 10, 64)
		if err != nil {
			return nil, errorf(400, "ValidationException", "the sandbox emulates version selectors only (name:version), not labels")
		}
		version = v
	}
	v, ok := p.versions[version]
	if !ok {
		return nil, errorf(400, "ParameterVersionNotFound", "Systems Manager could not find version %d of %s. Verify the version and try again.", version, key.name)
	}
	value := v.value
	if v.typ == "SecureString" && !decrypt {
		// Without WithDecryption a SecureString answers its ciphertext; the sandbox's
		// stand-in is opaque, never the value.
		value = "AQICAHsandbox-ciphertext-" + strconv.FormatInt(version, 10)
	}
	return map[string]any{"Parameter": map[string]any{
		"ARN":              ssmParameterARN(key.region, key.account, key.name),
		"DataType":         "text",
		"LastModifiedDate": epoch(v.modified),
		"Name":             key.name,
		"Type":             v.typ,
		"Value":            value,
		"Version":          version,
	}}, nil
}

// DeleteParameter deletes a parameter as that account's DeleteParameter would.
func (s *Sandbox) DeleteParameter(accountID, region, name string) error {
	st := s.ssm()
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, aerr := st.delete(ssmKey{accountID, region, name}); aerr != nil {
		return aerr
	}
	return nil
}

// PutParameter stores a parameter in an account and region as that account's PutParameter
// would (tier "" is Standard; overwrite as the API's Overwrite), for tests and the demo,
// and returns its new version.
func (s *Sandbox) PutParameter(accountID, region, name, value, tier string, overwrite bool) (int64, error) {
	st := s.ssm()
	st.mu.Lock()
	defer st.mu.Unlock()
	key := ssmKey{accountID, region, name}
	typ := "String"
	if st.params[key] != nil {
		typ = "" // an overwrite keeps the parameter's type
	}
	out, aerr := st.put(key, &ssmInput{Name: name, Value: value, Type: typ, Tier: tier, Overwrite: overwrite}, s.now())
	if aerr != nil {
		return 0, aerr
	}
	return out.(map[string]any)["Version"].(int64), nil
}
