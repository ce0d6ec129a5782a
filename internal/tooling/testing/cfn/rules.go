package cfn

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// RuleError is a template's Rules refusing the parameter values: what CloudFormation
// answers a create or update with, before it provisions anything.
// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/rules-section-structure.html
type RuleError struct {
	File string
	// Rule is the logical name of the rule whose assertion failed; Description its
	// AssertDescription (empty when the template gives none).
	Rule, Description string
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("%s: rule %s refuses the parameters: %s", e.File, e.Rule, e.Description)
}

// checkRules evaluates the Rules section for the parameter values: for each rule whose
// RuleCondition holds (or that has none), every assertion must hold. Rules are checked
// in name order and the first failed assertion is the error, a *RuleError. The
// rule-specific functions Fn::Contains, Fn::EachMemberEquals and Fn::EachMemberIn are
// evaluated beside Fn::And, Fn::Or, Fn::Not and Fn::Equals; Fn::RefAll, Fn::ValueOf and
// Fn::ValueOfAll (which need AWS-specific parameter types and the account's resources)
// are not. goformation expands the YAML short forms of the condition functions only:
// write the rule-specific ones long-form ({"Fn::Contains": [...]}).
func (r *Template) checkRules() error {
	rules := Section(r.Raw, "Rules")
	names := make([]string, 0, len(rules))
	for name := range rules {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		rule, _ := rules[name].(map[string]any)
		if c, ok := rule["RuleCondition"]; ok {
			holds, err := r.evalRule(c)
			if err != nil {
				return fmt.Errorf("%s: rule %s: RuleCondition: %w", r.File, name, err)
			}
			if !holds {
				continue
			}
		}
		list, _ := rule["Assertions"].([]any)
		if len(list) == 0 {
			return fmt.Errorf("%s: rule %s has no Assertions", r.File, name)
		}
		for i, a := range list {
			assertion, _ := a.(map[string]any)
			holds, err := r.evalRule(assertion["Assert"])
			if err != nil {
				return fmt.Errorf("%s: rule %s: Assertions[%d]: %w", r.File, name, i, err)
			}
			if !holds {
				desc, _ := assertion["AssertDescription"].(string)
				return &RuleError{File: r.File, Rule: name, Description: desc}
			}
		}
	}
	return nil
}

// evalRule evaluates a rule condition or assertion.
func (r *Template) evalRule(expr any) (bool, error) {
	m, ok := expr.(map[string]any)
	if !ok || len(m) != 1 {
		return false, fmt.Errorf("bad rule expression %v", expr)
	}
	for fn, arg := range m {
		args, _ := arg.([]any)
		switch fn {
		case "Fn::Not":
			if len(args) != 1 {
				return false, fmt.Errorf("Fn::Not of %v", arg)
			}
			v, err := r.evalRule(args[0])
			return !v, err
		case "Fn::And", "Fn::Or":
			// CloudFormation takes 2 to 10 conditions.
			if len(args) < 2 || len(args) > 10 {
				return false, fmt.Errorf("%s of %d conditions, want 2 to 10", fn, len(args))
			}
			and := fn == "Fn::And"
			for _, a := range args {
				v, err := r.evalRule(a)
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
			return a == b, err
		case "Fn::Contains", "Fn::EachMemberEquals", "Fn::EachMemberIn":
			if len(args) != 2 {
				return false, fmt.Errorf("%s of %v", fn, arg)
			}
			return r.evalMembers(fn, args[0], args[1])
		}
		return false, fmt.Errorf("unsupported rule function %s", fn)
	}
	return false, nil
}

// evalMembers evaluates the rule functions on a list: whether it contains a value, whether
// each member equals one, whether each member is in another list.
func (r *Template) evalMembers(fn string, listArg, other any) (bool, error) {
	list, err := r.ruleList(listArg)
	if err != nil {
		return false, err
	}
	if fn == "Fn::EachMemberIn" {
		allowed, err := r.ruleList(other)
		if err != nil {
			return false, err
		}
		for _, e := range list {
			if !slices.Contains(allowed, e) {
				return false, nil
			}
		}
		return true, nil
	}
	v, err := r.condValue(other)
	if err != nil {
		return false, err
	}
	if fn == "Fn::Contains" {
		return slices.Contains(list, fmt.Sprint(v)), nil
	}
	for _, e := range list {
		if e != fmt.Sprint(v) {
			return false, nil
		}
	}
	return true, nil
}

// ruleList resolves a list operand: a literal list, or a Ref to a list parameter (a
// CommaDelimitedList; a String parameter is split at commas too, as a list-typed
// parameter's value would be).
func (r *Template) ruleList(v any) ([]string, error) {
	if l, ok := v.([]any); ok {
		out := make([]string, len(l))
		for i, e := range l {
			s, err := r.condValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = fmt.Sprint(s)
		}
		return out, nil
	}
	s, err := r.condValue(v)
	if err != nil {
		return nil, err
	}
	return strings.Split(fmt.Sprint(s), ","), nil
}
