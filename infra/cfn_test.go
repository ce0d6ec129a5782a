// Package infra holds the deployment templates' tests: template.yaml (the SAM source-account
// stack, at the repository root) and infra/destination-role.yaml.
package infra

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"
)

// Values of the pseudo parameters when templates are rendered in tests.
const (
	testPartition = "aws"
	testRegion    = "us-east-1"
	testAccountID = "111111111111"
	testStackName = "ecr-replicator"
)

var (
	sourceTemplate      = filepath.Join("..", "template.yaml")
	destinationTemplate = "destination-role.yaml"
)

// noValue stands for Ref AWS::NoValue until prune removes the key or list element holding it.
const noValue = "\x00AWS::NoValue"

// rendered is a template evaluated for one set of parameter values, the way CloudFormation
// would before provisioning: parameters and pseudo parameters substituted, conditions
// evaluated, Fn::If / Fn::Sub / Fn::FindInMap resolved, AWS::NoValue removed. References to
// resources stay symbolic: Ref X renders as "ref:X", Fn::GetAtt X.Y as "getatt:X.Y".
//
// goformation does the YAML short-form tag expansion and the intrinsic-function walk; its
// handlers for Ref, Fn::If, Fn::Sub, Fn::GetAtt and Fn::FindInMap are replaced because the
// stock ones resolve only parameter defaults, drop resource references, and (with
// EvaluateConditions) replace any resource carrying a Condition attribute by a boolean.
type rendered struct {
	t      *testing.T
	file   string
	raw    map[string]any // long-form template, intrinsics unevaluated
	doc    map[string]any // rendered template
	params map[string]any
	conds  map[string]bool
}

func render(t *testing.T, file string, overrides map[string]any) *rendered {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	rawJSON, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	r := &rendered{t: t, file: file, params: map[string]any{}, conds: map[string]bool{}}
	if err := json.Unmarshal(rawJSON, &r.raw); err != nil {
		t.Fatal(err)
	}

	// Parameter values: defaults, then overrides (which must name declared parameters).
	decls := r.section(r.raw, "Parameters")
	for name, d := range decls {
		decl := d.(map[string]any)
		v, ok := overrides[name]
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
		r.params[name] = v
	}
	for name := range overrides {
		if _, ok := decls[name]; !ok {
			t.Fatalf("%s: override of undeclared parameter %s", file, name)
		}
	}

	for name := range r.section(r.raw, "Conditions") {
		r.conds[name] = r.condition(name, nil)
	}

	var errs []string
	fail := func(format string, a ...any) any {
		errs = append(errs, fmt.Sprintf(format, a...))
		return nil
	}
	handlers := map[string]intrinsics.IntrinsicHandler{
		"Ref": func(_ string, in any, _ any) any {
			name, ok := in.(string)
			if !ok {
				return fail("Ref of %v", in)
			}
			return r.ref(name, fail)
		},
		"Fn::GetAtt": func(_ string, in any, _ any) any {
			switch v := in.(type) {
			case string:
				return "getatt:" + v
			case []any:
				if len(v) == 2 {
					return fmt.Sprintf("getatt:%v.%v", v[0], v[1])
				}
			}
			return fail("Fn::GetAtt of %v", in)
		},
		"Fn::If": func(_ string, in any, _ any) any {
			args, ok := in.([]any)
			if !ok || len(args) != 3 {
				return fail("Fn::If of %v", in)
			}
			name, _ := args[0].(string)
			val, ok := r.conds[name]
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
			return subRE.ReplaceAllStringFunc(src, func(m string) string {
				name := m[2 : len(m)-1]
				if strings.HasPrefix(name, "!") {
					return "${" + name[1:] + "}"
				}
				if v, ok := vars[name]; ok {
					s, ok := v.(string)
					if !ok {
						fail("Fn::Sub variable %s is %T, not a string", name, v)
					}
					return s
				}
				if strings.Contains(name, ".") {
					return "getatt:" + name
				}
				v := r.ref(name, fail)
				if _, isList := v.([]any); isList {
					fail("Fn::Sub of list parameter %s", name)
				}
				return scalarString(v)
			})
		},
		"Fn::FindInMap": func(_ string, in any, _ any) any {
			args, ok := in.([]any)
			if !ok || len(args) != 3 {
				return fail("Fn::FindInMap of %v", in)
			}
			m := r.section(r.raw, "Mappings")
			top, _ := m[scalarString(args[0])].(map[string]any)
			second, _ := top[scalarString(args[1])].(map[string]any)
			v, ok := second[scalarString(args[2])]
			if !ok {
				return fail("Fn::FindInMap %v: no such entry", args)
			}
			return v
		},
	}
	out, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{IntrinsicHandlerOverrides: handlers})
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(errs) > 0 {
		t.Fatalf("%s with %v:\n%s", file, overrides, strings.Join(errs, "\n"))
	}
	var doc any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	r.doc = prune(doc).(map[string]any)
	return r
}

var subRE = regexp.MustCompile(`\$\{[^}]+\}`)

func (r *rendered) ref(name string, fail func(string, ...any) any) any {
	switch name {
	case "AWS::Partition":
		return testPartition
	case "AWS::Region":
		return testRegion
	case "AWS::AccountId":
		return testAccountID
	case "AWS::StackName":
		return testStackName
	case "AWS::URLSuffix":
		return "amazonaws.com"
	case "AWS::NoValue":
		return noValue
	}
	if v, ok := r.params[name]; ok {
		return v
	}
	if _, ok := r.section(r.raw, "Parameters")[name]; ok {
		return fail("parameter %s has no value", name)
	}
	if _, ok := r.section(r.raw, "Resources")[name]; ok {
		return "ref:" + name
	}
	return fail("Ref to unknown %s", name)
}

// condition evaluates a condition of the Conditions section.
func (r *rendered) condition(name string, seen []string) bool {
	for _, s := range seen {
		if s == name {
			r.t.Fatalf("%s: condition cycle %v", r.file, append(seen, name))
		}
	}
	expr, ok := r.section(r.raw, "Conditions")[name]
	if !ok {
		r.t.Fatalf("%s: undefined condition %s", r.file, name)
	}
	return r.evalCondition(expr, append(seen, name))
}

func (r *rendered) evalCondition(expr any, seen []string) bool {
	m, ok := expr.(map[string]any)
	if !ok || len(m) != 1 {
		r.t.Fatalf("%s: bad condition expression %v", r.file, expr)
	}
	for fn, arg := range m {
		args, _ := arg.([]any)
		switch fn {
		case "Condition":
			return r.condition(arg.(string), seen)
		case "Fn::Not":
			return !r.evalCondition(args[0], seen)
		case "Fn::And", "Fn::Or":
			and := fn == "Fn::And"
			for _, a := range args {
				if r.evalCondition(a, seen) != and {
					return !and
				}
			}
			return and
		case "Fn::Equals":
			if len(args) != 2 {
				r.t.Fatalf("%s: Fn::Equals of %v", r.file, arg)
			}
			return reflect.DeepEqual(r.condValue(args[0]), r.condValue(args[1]))
		}
		r.t.Fatalf("%s: unsupported condition function %s", r.file, fn)
	}
	return false
}

// condValue resolves an Fn::Equals operand (a literal or a Ref) to its string form.
func (r *rendered) condValue(v any) any {
	if m, ok := v.(map[string]any); ok {
		if name, ok := m["Ref"].(string); ok {
			v = r.ref(name, func(f string, a ...any) any { r.t.Fatalf(f, a...); return nil })
		} else {
			r.t.Fatalf("%s: unsupported Fn::Equals operand %v", r.file, v)
		}
	}
	if l, ok := v.([]any); ok {
		parts := make([]string, len(l))
		for i, e := range l {
			parts[i] = scalarString(e)
		}
		return strings.Join(parts, ",")
	}
	return scalarString(v)
}

func (r *rendered) section(doc map[string]any, name string) map[string]any {
	m, _ := doc[name].(map[string]any)
	return m
}

// resources returns the resources CloudFormation would create: those without a Condition
// attribute or whose condition holds.
func (r *rendered) resources() map[string]map[string]any {
	out := map[string]map[string]any{}
	for name, v := range r.section(r.doc, "Resources") {
		res := v.(map[string]any)
		if c, ok := res["Condition"].(string); ok && !r.condition(c, nil) {
			continue
		}
		out[name] = res
	}
	return out
}

// resource returns a created resource of the given type, failing the test otherwise.
func (r *rendered) resource(name, typ string) map[string]any {
	r.t.Helper()
	res, ok := r.resources()[name]
	if !ok {
		r.t.Fatalf("%s: no resource %s", r.file, name)
	}
	if res["Type"] != typ {
		r.t.Fatalf("%s: %s is %v, want %s", r.file, name, res["Type"], typ)
	}
	props, _ := res["Properties"].(map[string]any)
	return props
}

// typed parses the rendered template with goformation's typed resources. SAM resources and
// Globals are left out: goformation's SAM types predate LoggingConfig, ScalingConfig and
// FunctionResponseTypes and reject them.
func (r *rendered) typed() *cloudformation.Template {
	r.t.Helper()
	doc := map[string]any{}
	for k, v := range r.doc {
		if k != "Globals" && k != "Resources" {
			doc[k] = v
		}
	}
	res := map[string]any{}
	for name, v := range r.section(r.doc, "Resources") {
		if typ, _ := v.(map[string]any)["Type"].(string); !strings.HasPrefix(typ, "AWS::Serverless::") {
			res[name] = v
		}
	}
	doc["Resources"] = res
	data, err := json.Marshal(doc)
	if err != nil {
		r.t.Fatal(err)
	}
	tmpl, err := goformation.ParseJSONWithOptions(data, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		r.t.Fatalf("%s: goformation: %v", r.file, err)
	}
	return tmpl
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

func scalarString(v any) string {
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

// number reads a rendered numeric property (a number, or a number in a string).
func number(t *testing.T, what string, v any) float64 {
	t.Helper()
	switch n := v.(type) {
	case float64:
		return n
	case int:
		return float64(n)
	case string:
		f, err := strconv.ParseFloat(n, 64)
		if err == nil {
			return f
		}
	}
	t.Fatalf("%s = %#v, not a number", what, v)
	return 0
}

// strs reads a string or list of strings (as IAM's Action and Resource allow).
func strs(v any) []string {
	switch t := v.(type) {
	case nil:
		return nil
	case string:
		return []string{t}
	case []string:
		return t
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			out = append(out, scalarString(e))
		}
		return out
	}
	return []string{fmt.Sprint(v)}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// statement is one IAM policy statement.
type statement struct {
	Sid       string
	Effect    string
	Principal any
	Action    []string
	Resource  []string
	Condition any
}

func statements(t *testing.T, doc any) []statement {
	t.Helper()
	m, ok := doc.(map[string]any)
	if !ok {
		t.Fatalf("policy document %#v is not an object", doc)
	}
	if m["Version"] != "2012-10-17" {
		t.Errorf("policy Version = %v, want 2012-10-17", m["Version"])
	}
	var list []any
	switch s := m["Statement"].(type) {
	case []any:
		list = s
	case map[string]any:
		list = []any{s}
	}
	var out []statement
	for _, e := range list {
		s := e.(map[string]any)
		for k := range s {
			switch k {
			case "Sid", "Effect", "Principal", "Action", "Resource", "Condition":
			default:
				t.Errorf("statement has unexpected key %s (NotAction/NotResource are not used)", k)
			}
		}
		st := statement{Action: strs(s["Action"]), Resource: strs(s["Resource"]), Principal: s["Principal"], Condition: s["Condition"]}
		st.Sid, _ = s["Sid"].(string)
		st.Effect, _ = s["Effect"].(string)
		out = append(out, st)
	}
	return out
}

// actions collects the allowed actions of statements, keyed by action, with their resources.
func actions(t *testing.T, sts []statement) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, s := range sts {
		if s.Effect != "Allow" {
			t.Errorf("statement %s: Effect %q", s.Sid, s.Effect)
		}
		for _, a := range s.Action {
			if strings.Contains(a, "*") {
				t.Errorf("statement %s: wildcard action %s", s.Sid, a)
			}
			if _, dup := out[a]; dup {
				t.Errorf("action %s granted twice", a)
			}
			out[a] = s.Resource
		}
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// refsIn collects the names that Ref, Fn::GetAtt, Fn::Sub and Fn::If refer to in a
// long-form template fragment, plus resource Condition attributes.
func refsIn(v any, refs, conds map[string]bool) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			switch k {
			case "Ref":
				if s, ok := e.(string); ok {
					refs[s] = true
				}
			case "Fn::GetAtt":
				switch g := e.(type) {
				case string:
					refs[strings.SplitN(g, ".", 2)[0]] = true
				case []any:
					refs[scalarString(g[0])] = true
				}
			case "Fn::Sub":
				src := e
				vars := map[string]any{}
				if l, ok := e.([]any); ok {
					src = l[0]
					vars, _ = l[1].(map[string]any)
					refsIn(l[1], refs, conds)
				}
				for _, m := range subRE.FindAllString(scalarString(src), -1) {
					name := m[2 : len(m)-1]
					if _, local := vars[name]; local || strings.HasPrefix(name, "!") {
						continue
					}
					refs[strings.SplitN(name, ".", 2)[0]] = true
				}
				continue
			case "Fn::If":
				if l, ok := e.([]any); ok {
					conds[scalarString(l[0])] = true
				}
			case "Condition":
				if s, ok := e.(string); ok {
					conds[s] = true
					continue
				}
			}
			refsIn(e, refs, conds)
		}
	case []any:
		for _, e := range t {
			refsIn(e, refs, conds)
		}
	}
}

// checkReferences asserts every reference resolves and every parameter and condition is used.
func checkReferences(t *testing.T, r *rendered) {
	t.Helper()
	refs, conds := map[string]bool{}, map[string]bool{}
	for _, sec := range []string{"Conditions", "Globals", "Resources", "Outputs"} {
		refsIn(r.raw[sec], refs, conds)
	}
	params, resources, defined := r.section(r.raw, "Parameters"), r.section(r.raw, "Resources"), r.section(r.raw, "Conditions")
	for name := range refs {
		_, isParam := params[name]
		_, isRes := resources[name]
		if !isParam && !isRes && !strings.HasPrefix(name, "AWS::") {
			t.Errorf("%s: reference to undefined %s", r.file, name)
		}
	}
	for name := range params {
		if !refs[name] {
			t.Errorf("%s: parameter %s is never used", r.file, name)
		}
	}
	for name := range conds {
		if _, ok := defined[name]; !ok {
			t.Errorf("%s: undefined condition %s", r.file, name)
		}
	}
	for name := range defined {
		if !conds[name] {
			t.Errorf("%s: condition %s is never used", r.file, name)
		}
	}
}

// checkCreatedReferences asserts that what CloudFormation would create (resources whose
// condition holds, and outputs) only refers to resources that are created too.
func checkCreatedReferences(t *testing.T, r *rendered) {
	t.Helper()
	created := r.resources()
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, e := range x {
				walk(where, e)
			}
		case []any:
			for _, e := range x {
				walk(where, e)
			}
		case string:
			for _, m := range resourceRefRE.FindAllStringSubmatch(x, -1) {
				if _, ok := created[m[1]]; !ok {
					t.Errorf("%s: %s refers to %s, which is not created with these parameters", r.file, where, m[1])
				}
			}
		}
	}
	for name, res := range created {
		walk(name, res["Properties"])
	}
	for name, o := range r.section(r.doc, "Outputs") {
		walk("output "+name, o)
	}
}

var resourceRefRE = regexp.MustCompile(`(?:ref|getatt):([A-Za-z0-9]+)`)
