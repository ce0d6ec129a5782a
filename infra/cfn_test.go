// Package infra holds the deployment templates' tests: template.yaml (the SAM source-account
// stack, at the repository root) and infra/destination-role.yaml.
package infra

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7/cloudformation"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/cfn"
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

// rendered is a template rendered by internal/cfn for one set of parameter values (see
// cfn.Render), with test-failing accessors. References to resources stay symbolic: Ref X
// renders as "ref:X", Fn::GetAtt X.Y as "getatt:X.Y".
type rendered struct {
	t *testing.T
	*cfn.Template
	file   string
	raw    map[string]any // long-form template, intrinsics unevaluated
	doc    map[string]any // rendered template
	params map[string]any
}

func render(t *testing.T, file string, overrides map[string]any) *rendered {
	t.Helper()
	tmpl, err := cfn.RenderFile(file, cfn.Options{
		Parameters: overrides,
		Partition:  testPartition, Region: testRegion, AccountID: testAccountID, StackName: testStackName,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &rendered{t: t, Template: tmpl, file: file, raw: tmpl.Raw, doc: tmpl.Doc, params: tmpl.Params}
}

var subRE = cfn.SubPattern

func (r *rendered) section(doc map[string]any, name string) map[string]any {
	return cfn.Section(doc, name)
}

// resources returns the resources CloudFormation would create: those without a Condition
// attribute or whose condition holds.
func (r *rendered) resources() map[string]map[string]any { return r.Resources() }

// resource returns a created resource of the given type, failing the test otherwise.
func (r *rendered) resource(name, typ string) map[string]any {
	r.t.Helper()
	props, err := r.Resource(name, typ)
	if err != nil {
		r.t.Fatal(err)
	}
	return props
}

// typed parses the rendered template with goformation's typed resources (cfn.Template.Typed).
func (r *rendered) typed() *cloudformation.Template {
	r.t.Helper()
	tmpl, err := r.Typed()
	if err != nil {
		r.t.Fatal(err)
	}
	return tmpl
}

func scalarString(v any) string { return cfn.ScalarString(v) }

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
