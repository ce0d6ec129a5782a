// Package cfn renders a CloudFormation/SAM template for a set of parameter values the way
// CloudFormation would before provisioning: the Rules section checked (a refusal is a
// *RuleError, as CloudFormation refuses the stack), parameters and pseudo parameters
// substituted, conditions evaluated, Fn::If / Fn::Sub / Fn::FindInMap / Fn::Split /
// Fn::Select / Fn::Join resolved, AWS::NoValue removed. References to resources are resolved by Options.Resolve when it
// knows them; otherwise they stay symbolic: Ref X renders as "ref:X", Fn::GetAtt X.Y as
// "getatt:X.Y".
//
// goformation does the YAML short-form tag expansion and the intrinsic-function walk; its
// handlers for Ref, Fn::If, Fn::Sub, Fn::GetAtt, Fn::FindInMap, Fn::Split, Fn::Select and Fn::Join are
// replaced because the stock ones resolve only parameter defaults, drop resource
// references, and (with EvaluateConditions) replace any resource carrying a Condition
// attribute by a boolean.
//
// It is a test and tooling aid, not CloudFormation: SAM transforms are not applied (the
// Serverless resources stay as written), AllowedPattern/AllowedValues are not checked, and
// only the condition functions Fn::Equals, Fn::Not, Fn::And, Fn::Or and Condition exist.
package cfn

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"
)

// Options are the values a template is rendered for.
type Options struct {
	// Parameters override parameter defaults; each must name a declared parameter.
	// CommaDelimitedList values are given as one comma-separated string.
	Parameters map[string]any
	// Pseudo parameters. Partition defaults to "aws"; referring to an empty Region,
	// AccountID or StackName is an error.
	Partition string
	Region    string
	AccountID string
	StackName string
	// Resolve, when set, gives the concrete value of a resource reference: "X" for Ref X,
	// "X.Y" for Fn::GetAtt X.Y (or ${X.Y} in Fn::Sub). Unresolved references stay symbolic.
	Resolve func(ref string) (string, bool)
}

// Template is a rendered template.
type Template struct {
	File   string
	Raw    map[string]any // long-form template, intrinsics unevaluated
	Doc    map[string]any // rendered template
	Params map[string]any // parameter values (defaults and overrides)
	conds  map[string]bool
	opts   Options
}

// noValue stands for Ref AWS::NoValue until prune removes the key or list element holding it.
const noValue = "\x00AWS::NoValue"

// SubPattern matches the ${...} placeholders of Fn::Sub.
var SubPattern = regexp.MustCompile(`\$\{[^}]+\}`)

// RenderFile reads and renders a template file.
func RenderFile(file string, opts Options) (*Template, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return Render(file, data, opts)
}

// Render renders a template (YAML or JSON); name is used in error messages.
func Render(name string, data []byte, opts Options) (*Template, error) {
	if opts.Partition == "" {
		opts.Partition = "aws"
	}
	rawJSON, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	r := &Template{File: name, Params: map[string]any{}, conds: map[string]bool{}, opts: opts}
	if err := json.Unmarshal(rawJSON, &r.Raw); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}

	// Parameter values: defaults, then overrides (which must name declared parameters).
	decls := Section(r.Raw, "Parameters")
	for pname, d := range decls {
		decl, _ := d.(map[string]any)
		v, ok := opts.Parameters[pname]
		if !ok {
			v, ok = decl["Default"]
		}
		if !ok {
			continue // no default and no value: referencing it is an error below
		}
		if decl["Type"] == "CommaDelimitedList" {
			var list []any
			for _, s := range strings.Split(fmt.Sprint(v), ",") {
				list = append(list, strings.TrimSpace(s))
			}
			v = list
		}
		r.Params[pname] = v
	}
	for pname := range opts.Parameters {
		if _, ok := decls[pname]; !ok {
			return nil, fmt.Errorf("%s: override of undeclared parameter %s", name, pname)
		}
	}

	if err := r.checkRules(); err != nil {
		return nil, err
	}
	for cname := range Section(r.Raw, "Conditions") {
		v, err := r.condition(cname, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		r.conds[cname] = v
	}

	var errs []string
	fail := func(format string, a ...any) any {
		errs = append(errs, fmt.Sprintf(format, a...))
		return nil
	}
	handlers := map[string]intrinsics.IntrinsicHandler{
		"Ref": func(_ string, in any, _ any) any {
			s, ok := in.(string)
			if !ok {
				return fail("Ref of %v", in)
			}
			return r.ref(s, fail)
		},
		"Fn::GetAtt": func(_ string, in any, _ any) any {
			switch v := in.(type) {
			case string:
				return r.getAtt(v)
			case []any:
				if len(v) == 2 {
					return r.getAtt(fmt.Sprintf("%v.%v", v[0], v[1]))
				}
			}
			return fail("Fn::GetAtt of %v", in)
		},
		"Fn::If": func(_ string, in any, _ any) any {
			args, ok := in.([]any)
			if !ok || len(args) != 3 {
				return fail("Fn::If of %v", in)
			}
			cname, _ := args[0].(string)
			val, ok := r.conds[cname]
			if !ok {
				return fail("Fn::If names undefined condition %v", args[0])
			}
			if val {
				return args[1]
			}
			return args[2]
		},
		"Fn::Sub": func(_ string, in any, _ any) any {
			var src string
			vars := map[string]any{}
			switch v := in.(type) {
			case string:
				src = v
			case []any:
				if len(v) != 2 {
					return fail("Fn::Sub of %v", in)
				}
				src, _ = v[0].(string)
				vars, _ = v[1].(map[string]any)
			}
			return SubPattern.ReplaceAllStringFunc(src, func(m string) string {
				vname := m[2 : len(m)-1]
				if strings.HasPrefix(vname, "!") {
					return "${" + vname[1:] + "}"
				}
				if v, ok := vars[vname]; ok {
					s, ok := v.(string)
					if !ok {
						fail("Fn::Sub variable %s is %T, not a string", vname, v)
					}
					return s
				}
				if strings.Contains(vname, ".") {
					return r.getAtt(vname)
				}
				v := r.ref(vname, fail)
				if _, isList := v.([]any); isList {
					fail("Fn::Sub of list parameter %s", vname)
				}
				return ScalarString(v)
			})
		},
		"Fn::FindInMap": func(_ string, in any, _ any) any {
			args, ok := in.([]any)
			if !ok || len(args) != 3 {
				return fail("Fn::FindInMap of %v", in)
			}
			m := Section(r.Raw, "Mappings")
			top, _ := m[ScalarString(args[0])].(map[string]any)
			second, _ := top[ScalarString(args[1])].(map[string]any)
			v, ok := second[ScalarString(args[2])]
			if !ok {
				return fail("Fn::FindInMap %v: no such entry", args)
			}
			return v
		},
		"Fn::Split": func(_ string, in any, _ any) any {
			args, ok := in.([]any)
			if !ok || len(args) != 2 {
				return fail("Fn::Split of %v", in)
			}
			sep, ok1 := args[0].(string)
			s, ok2 := args[1].(string)
			if !ok1 || !ok2 {
				return fail("Fn::Split of %v: not strings (after evaluation)", in)
			}
			var out []any
			for _, p := range strings.Split(s, sep) {
				out = append(out, p)
			}
			return out
		},
		// Fn::Select [index, list]: CloudFormation refuses an index out of range, so does this
		// (goformation's own answers nil).
		"Fn::Select": func(_ string, in any, _ any) any {
			args, ok := in.([]any)
			if !ok || len(args) != 2 {
				return fail("Fn::Select of %v", in)
			}
			list, ok := args[1].([]any)
			i, err := strconv.Atoi(ScalarString(args[0]))
			if !ok || err != nil || i < 0 || i >= len(list) {
				return fail("Fn::Select of %v: index out of range or not a list (after evaluation)", in)
			}
			return list[i]
		},
		"Fn::Join": func(_ string, in any, _ any) any {
			args, ok := in.([]any)
			if !ok || len(args) != 2 {
				return fail("Fn::Join of %v", in)
			}
			sep, ok1 := args[0].(string)
			list, ok2 := args[1].([]any)
			if !ok1 || !ok2 {
				return fail("Fn::Join of %v", in)
			}
			parts := make([]string, 0, len(list))
			for _, e := range list {
				if e == noValue {
					continue
				}
				parts = append(parts, ScalarString(e))
			}
			return strings.Join(parts, sep)
		},
	}
	out, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{IntrinsicHandlerOverrides: handlers})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s with %v:\n%s", name, opts.Parameters, strings.Join(errs, "\n"))
	}
	var doc any
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	r.Doc, _ = prune(doc).(map[string]any)
	return r, nil
}

func (r *Template) getAtt(ref string) string {
	if r.opts.Resolve != nil {
		if v, ok := r.opts.Resolve(ref); ok {
			return v
		}
	}
	return "getatt:" + ref
}

func (r *Template) ref(name string, fail func(string, ...any) any) any {
	pseudo := func(v string) any {
		if v == "" {
			return fail("pseudo parameter %s has no value", name)
		}
		return v
	}
	switch name {
	case "AWS::Partition":
		return pseudo(r.opts.Partition)
	case "AWS::Region":
		return pseudo(r.opts.Region)
	case "AWS::AccountId":
		return pseudo(r.opts.AccountID)
	case "AWS::StackName":
		return pseudo(r.opts.StackName)
	case "AWS::URLSuffix":
		return "amazonaws.com"
	case "AWS::NoValue":
		return noValue
	}
	if v, ok := r.Params[name]; ok {
		return v
	}
	if _, ok := Section(r.Raw, "Parameters")[name]; ok {
		return fail("parameter %s has no value", name)
	}
	if _, ok := Section(r.Raw, "Resources")[name]; ok {
		if r.opts.Resolve != nil {
			if v, ok := r.opts.Resolve(name); ok {
				return v
			}
		}
		return "ref:" + name
	}
	return fail("Ref to unknown %s", name)
}

// Condition returns the value of a condition of the Conditions section.
func (r *Template) Condition(name string) (bool, error) {
	v, ok := r.conds[name]
	if !ok {
		return false, fmt.Errorf("%s: undefined condition %s", r.File, name)
	}
	return v, nil
}

func (r *Template) condition(name string, seen []string) (bool, error) {
	for _, s := range seen {
		if s == name {
			return false, fmt.Errorf("condition cycle %v", append(seen, name))
		}
	}
	expr, ok := Section(r.Raw, "Conditions")[name]
	if !ok {
		return false, fmt.Errorf("undefined condition %s", name)
	}
	return r.evalCondition(expr, append(seen, name))
}

func (r *Template) evalCondition(expr any, seen []string) (bool, error) {
	if name, ok := expr.(string); ok {
		// goformation expands the short form `!Condition X` to the bare name "X".
		return r.condition(name, seen)
	}
	m, ok := expr.(map[string]any)
	if !ok || len(m) != 1 {
		return false, fmt.Errorf("bad condition expression %v", expr)
	}
	for fn, arg := range m {
		args, _ := arg.([]any)
		switch fn {
		case "Condition":
			s, _ := arg.(string)
			return r.condition(s, seen)
		case "Fn::Not":
			if len(args) != 1 {
				return false, fmt.Errorf("Fn::Not of %v", arg)
			}
			v, err := r.evalCondition(args[0], seen)
			return !v, err
		case "Fn::And", "Fn::Or":
			and := fn == "Fn::And"
			for _, a := range args {
				v, err := r.evalCondition(a, seen)
				if err != nil {
					return false, err
				}
				if v != and {
					return !and, nil
				}
			}
			return and, nil
		case "Fn::Equals":
			if len(args) != 2 {
				return false, fmt.Errorf("Fn::Equals of %v", arg)
			}
			a, err := r.condValue(args[0])
			if err != nil {
				return false, err
			}
			b, err := r.condValue(args[1])
			if err != nil {
				return false, err
			}
			return reflect.DeepEqual(a, b), nil
		}
		return false, fmt.Errorf("unsupported condition function %s", fn)
	}
	return false, nil
}

// condValue resolves an Fn::Equals operand (a literal or a Ref) to its string form.
func (r *Template) condValue(v any) (any, error) {
	if m, ok := v.(map[string]any); ok {
		name, ok := m["Ref"].(string)
		if !ok {
			return nil, fmt.Errorf("unsupported Fn::Equals operand %v", v)
		}
		var err error
		v = r.ref(name, func(f string, a ...any) any { err = fmt.Errorf(f, a...); return nil })
		if err != nil {
			return nil, err
		}
	}
	if l, ok := v.([]any); ok {
		parts := make([]string, len(l))
		for i, e := range l {
			parts[i] = ScalarString(e)
		}
		return strings.Join(parts, ","), nil
	}
	return ScalarString(v), nil
}

// Section returns a top-level section of a template document (nil when absent).
func Section(doc map[string]any, name string) map[string]any {
	m, _ := doc[name].(map[string]any)
	return m
}

// Resources returns the resources CloudFormation would create: those without a Condition
// attribute or whose condition holds.
func (r *Template) Resources() map[string]map[string]any {
	out := map[string]map[string]any{}
	for name, v := range Section(r.Doc, "Resources") {
		res, _ := v.(map[string]any)
		if c, ok := res["Condition"].(string); ok && !r.conds[c] {
			continue
		}
		out[name] = res
	}
	return out
}

// Resource returns the properties of a created resource of the given type.
func (r *Template) Resource(name, typ string) (map[string]any, error) {
	res, ok := r.Resources()[name]
	if !ok {
		return nil, fmt.Errorf("%s: no resource %s", r.File, name)
	}
	if res["Type"] != typ {
		return nil, fmt.Errorf("%s: %s is %v, want %s", r.File, name, res["Type"], typ)
	}
	props, _ := res["Properties"].(map[string]any)
	return props, nil
}

// Typed parses the rendered template with goformation's typed resources. SAM resources and
// Globals are left out: goformation's SAM types predate LoggingConfig, ScalingConfig and
// FunctionResponseTypes and reject them. So are resource types newer than goformation's
// schema (AWS::ECR::PullTimeUpdateExclusion, 2025), which it cannot parse at all; Doc and
// Resources keep every resource.
func (r *Template) Typed() (*cloudformation.Template, error) {
	doc := map[string]any{}
	for k, v := range r.Doc {
		if k != "Globals" && k != "Resources" {
			doc[k] = v
		}
	}
	res := map[string]any{}
	known := cloudformation.AllResources()
	for name, v := range Section(r.Doc, "Resources") {
		typ, _ := v.(map[string]any)["Type"].(string)
		if _, ok := known[typ]; ok && !strings.HasPrefix(typ, "AWS::Serverless::") {
			res[name] = v
		}
	}
	doc["Resources"] = res
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	tmpl, err := goformation.ParseJSONWithOptions(data, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		return nil, fmt.Errorf("%s: goformation: %w", r.File, err)
	}
	return tmpl, nil
}

// RolePolicies returns the inline policy documents (Policies[].PolicyDocument) of an
// AWS::IAM::Role as JSON. Managed policies (ManagedPolicyArns) are ignored: their documents
// are not in the template.
func (r *Template) RolePolicies(role string) ([]string, error) {
	props, err := r.Resource(role, "AWS::IAM::Role")
	if err != nil {
		return nil, err
	}
	list, _ := props["Policies"].([]any)
	out := []string{}
	for i, p := range list {
		pol, _ := p.(map[string]any)
		doc, ok := pol["PolicyDocument"]
		if !ok {
			return nil, fmt.Errorf("%s: %s.Policies[%d] has no PolicyDocument", r.File, role, i)
		}
		s, err := policyJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %s.Policies[%d]: %w", r.File, role, i, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// TrustPolicy returns the AssumeRolePolicyDocument of an AWS::IAM::Role as JSON.
func (r *Template) TrustPolicy(role string) (string, error) {
	props, err := r.Resource(role, "AWS::IAM::Role")
	if err != nil {
		return "", err
	}
	doc, ok := props["AssumeRolePolicyDocument"]
	if !ok {
		return "", fmt.Errorf("%s: %s has no AssumeRolePolicyDocument", r.File, role)
	}
	s, err := policyJSON(doc)
	if err != nil {
		return "", fmt.Errorf("%s: %s.AssumeRolePolicyDocument: %w", r.File, role, err)
	}
	return s, nil
}

// symbolic finds references left unresolved, which a policy cannot be evaluated with.
var symbolic = regexp.MustCompile(`"(?:ref|getatt):[A-Za-z0-9.]+"`)

func policyJSON(doc any) (string, error) {
	var s string
	switch d := doc.(type) {
	case string: // a policy document may be given as a JSON string
		s = d
	case map[string]any:
		b, err := json.Marshal(d)
		if err != nil {
			return "", err
		}
		s = string(b)
	default:
		return "", errors.New("policy document is neither an object nor a string")
	}
	if m := symbolic.FindString(s); m != "" {
		return "", fmt.Errorf("unresolved resource reference %s (give Options.Resolve a value for it)", m)
	}
	return s, nil
}

// prune removes map entries and list elements that are AWS::NoValue.
func prune(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range t {
			if e == noValue {
				continue
			}
			out[k] = prune(e)
		}
		return out
	case []any:
		out := []any{}
		for _, e := range t {
			if e == noValue {
				continue
			}
			out = append(out, prune(e))
		}
		return out
	}
	return v
}

// ScalarString is the string form CloudFormation gives a scalar (numbers without exponent).
func ScalarString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}
