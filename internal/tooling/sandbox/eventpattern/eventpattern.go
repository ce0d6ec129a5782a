// Package eventpattern evaluates Amazon EventBridge event patterns against events.
//
// It implements the subset of the pattern language described in
// https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html and
// https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html
// that deployment templates use, so tests can prove which events a rule forwards:
//
//   - nested objects: every field named in the pattern must match, other event fields are ignored;
//   - arrays of alternatives: a leaf matches when any alternative matches any of the event's values
//     (an event array contributes each of its elements);
//   - exact values: strings, numbers (compared numerically), booleans and null;
//   - {"prefix": "..."} and {"suffix": "..."} (also with {"equals-ignore-case": "..."} as operand);
//   - {"anything-but": value | [values] | {"prefix": ...} | {"suffix": ...} | {"equals-ignore-case": ...}};
//   - {"exists": true|false};
//   - {"equals-ignore-case": "..."}, {"wildcard": "..."} and {"numeric": [op, n, ...]}.
//
// "$or" and "cidr" are not supported: Compile reports them as errors rather than
// silently mis-evaluating a pattern.
package eventpattern

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Pattern is a compiled event pattern.
type Pattern struct {
	root *object
}

// object is a (nested) pattern object: each field is either a nested object or a leaf.
type object struct {
	fields map[string]*object
	leaves map[string][]matcher
}

// Compile parses a pattern given as JSON.
func Compile(pattern []byte) (*Pattern, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(pattern))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("eventpattern: invalid JSON: %w", err)
	}
	return New(normalize(v))
}

// New compiles a pattern that is already decoded into Go values, as produced by
// encoding/json (map[string]any, []any, string, float64 or json.Number, bool, nil).
func New(pattern any) (*Pattern, error) {
	m, ok := normalize(pattern).(map[string]any)
	if !ok {
		return nil, errors.New("eventpattern: a pattern must be a JSON object")
	}
	root, err := compileObject(m, "")
	if err != nil {
		return nil, err
	}
	return &Pattern{root: root}, nil
}

// MustCompile is Compile that panics on error.
func MustCompile(pattern string) *Pattern {
	p, err := Compile([]byte(pattern))
	if err != nil {
		panic(err)
	}
	return p
}

// Match reports whether the JSON event matches the pattern.
func (p *Pattern) Match(event []byte) (bool, error) {
	var v any
	if err := json.Unmarshal(event, &v); err != nil {
		return false, fmt.Errorf("eventpattern: invalid event JSON: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return false, errors.New("eventpattern: an event must be a JSON object")
	}
	return p.MatchEvent(m), nil
}

// MatchEvent reports whether a decoded event matches the pattern.
func (p *Pattern) MatchEvent(event map[string]any) bool {
	return p.root.match(normalize(event), true)
}

// Match compiles pattern and matches event against it.
func Match(pattern, event []byte) (bool, error) {
	p, err := Compile(pattern)
	if err != nil {
		return false, err
	}
	return p.Match(event)
}

func compileObject(m map[string]any, path string) (*object, error) {
	if len(m) == 0 {
		return nil, fmt.Errorf("eventpattern: %s: empty object", where(path))
	}
	o := &object{fields: map[string]*object{}, leaves: map[string][]matcher{}}
	for key, val := range m {
		p := join(path, key)
		if strings.HasPrefix(key, "$") {
			return nil, fmt.Errorf("eventpattern: %s: %q is not supported", where(p), key)
		}
		switch v := val.(type) {
		case map[string]any:
			sub, err := compileObject(v, p)
			if err != nil {
				return nil, err
			}
			o.fields[key] = sub
		case []any:
			if len(v) == 0 {
				return nil, fmt.Errorf("eventpattern: %s: empty array of alternatives", where(p))
			}
			ms := make([]matcher, 0, len(v))
			for _, alt := range v {
				mt, err := compileMatcher(alt, p)
				if err != nil {
					return nil, err
				}
				ms = append(ms, mt)
			}
			o.leaves[key] = ms
		default:
			return nil, fmt.Errorf("eventpattern: %s: leaf values must be arrays, got %s", where(p), describe(val))
		}
	}
	return o, nil
}

// match evaluates the object against the event value v (present=false when the field is absent).
func (o *object) match(v any, present bool) bool {
	// An event array of objects matches when any of its elements does.
	if arr, ok := v.([]any); ok && present {
		for _, el := range arr {
			if _, isObj := el.(map[string]any); isObj && o.match(el, true) {
				return true
			}
		}
		return false
	}
	m, _ := v.(map[string]any)
	if !present {
		m = nil
	}
	for key, sub := range o.fields {
		val, ok := m[key]
		if !sub.match(val, ok) {
			return false
		}
	}
	for key, ms := range o.leaves {
		val, ok := m[key]
		values := leafValues(val, ok)
		if !matchAny(ms, values) {
			return false
		}
	}
	return true
}

// leafValues flattens an event field into the scalar values a leaf compares against.
// Objects are not leaves; an empty array contributes nothing.
func leafValues(v any, present bool) []any {
	if !present {
		return nil
	}
	switch t := v.(type) {
	case map[string]any:
		return nil
	case []any:
		var out []any
		for _, el := range t {
			out = append(out, leafValues(el, true)...)
		}
		return out
	default:
		return []any{v}
	}
}

func matchAny(ms []matcher, values []any) bool {
	for _, m := range ms {
		if e, ok := m.(existsMatcher); ok {
			if bool(e) == (len(values) > 0) {
				return true
			}
			continue
		}
		for _, v := range values {
			if m.match(v) {
				return true
			}
		}
	}
	return false
}

// matcher matches one scalar event value.
type matcher interface {
	match(v any) bool
}

type literal struct{ v any } // string, float64, bool or nil

func (l literal) match(v any) bool { return sameValue(l.v, v) }

type existsMatcher bool

func (existsMatcher) match(any) bool { return false } // handled in matchAny

type stringFunc func(string) bool

func (f stringFunc) match(v any) bool {
	s, ok := v.(string)
	return ok && f(s)
}

type anythingBut struct{ excluded []matcher }

func (a anythingBut) match(v any) bool {
	for _, m := range a.excluded {
		if m.match(v) {
			return false
		}
	}
	return true
}

type numericRange struct {
	ops  []string
	nums []float64
}

func (n numericRange) match(v any) bool {
	f, ok := v.(float64)
	if !ok {
		return false
	}
	for i, op := range n.ops {
		x := n.nums[i]
		var ok bool
		switch op {
		case "=":
			ok = f == x
		case "<":
			ok = f < x
		case "<=":
			ok = f <= x
		case ">":
			ok = f > x
		case ">=":
			ok = f >= x
		}
		if !ok {
			return false
		}
	}
	return true
}

func compileMatcher(alt any, path string) (matcher, error) {
	switch v := alt.(type) {
	case nil, string, float64, bool:
		return literal{v}, nil
	case []any:
		return nil, fmt.Errorf("eventpattern: %s: nested arrays are not allowed", where(path))
	case map[string]any:
		if len(v) != 1 {
			return nil, fmt.Errorf("eventpattern: %s: an operator object must have exactly one key, got %d", where(path), len(v))
		}
		for op, arg := range v {
			return compileOperator(op, arg, path)
		}
	}
	return nil, fmt.Errorf("eventpattern: %s: unsupported value %s", where(path), describe(alt))
}

func compileOperator(op string, arg any, path string) (matcher, error) {
	bad := func(want string) error {
		return fmt.Errorf("eventpattern: %s: %q needs %s, got %s", where(path), op, want, describe(arg))
	}
	switch op {
	case "exists":
		b, ok := arg.(bool)
		if !ok {
			return nil, bad("true or false")
		}
		return existsMatcher(b), nil
	case "prefix", "suffix":
		s, fold, ok := stringOperand(arg)
		if !ok {
			return nil, bad(`a string or {"equals-ignore-case": string}`)
		}
		return affix(op, s, fold), nil
	case "equals-ignore-case":
		s, ok := arg.(string)
		if !ok {
			return nil, bad("a string")
		}
		return stringFunc(func(v string) bool { return strings.EqualFold(v, s) }), nil
	case "wildcard":
		s, ok := arg.(string)
		if !ok {
			return nil, bad("a string")
		}
		return stringFunc(func(v string) bool { return wildcard(s, v) }), nil
	case "anything-but":
		switch a := arg.(type) {
		case nil, string, float64, bool:
			return anythingBut{[]matcher{literal{a}}}, nil
		case []any:
			if len(a) == 0 {
				return nil, bad("a non-empty list")
			}
			var ex []matcher
			for _, el := range a {
				switch el.(type) {
				case string, float64:
					ex = append(ex, literal{el})
				default:
					return nil, bad("a list of strings or numbers")
				}
			}
			return anythingBut{ex}, nil
		case map[string]any:
			if len(a) != 1 {
				return nil, bad("one operator")
			}
			for inner, innerArg := range a {
				switch inner {
				case "prefix", "suffix", "equals-ignore-case", "wildcard":
					m, err := compileOperator(inner, innerArg, path)
					if err != nil {
						return nil, err
					}
					// anything-but with a string operator only matches strings.
					return stringFunc(func(v string) bool { return !m.match(v) }), nil
				}
				return nil, fmt.Errorf("eventpattern: %s: anything-but %q is not supported", where(path), inner)
			}
		}
		return nil, bad("a value, a list or an operator object")
	case "numeric":
		a, ok := arg.([]any)
		if !ok || len(a) == 0 || len(a)%2 != 0 || len(a) > 4 {
			return nil, bad("[op, number] or [op, number, op, number]")
		}
		var n numericRange
		for i := 0; i < len(a); i += 2 {
			o, ok1 := a[i].(string)
			x, ok2 := a[i+1].(float64)
			if !ok1 || !ok2 {
				return nil, bad("[op, number, ...]")
			}
			switch o {
			case "=", "<", "<=", ">", ">=":
			default:
				return nil, fmt.Errorf("eventpattern: %s: unknown numeric operator %q", where(path), o)
			}
			n.ops = append(n.ops, o)
			n.nums = append(n.nums, x)
		}
		return n, nil
	case "cidr":
		return nil, fmt.Errorf("eventpattern: %s: %q is not supported", where(path), op)
	}
	return nil, fmt.Errorf("eventpattern: %s: unknown operator %q", where(path), op)
}

// stringOperand accepts "s" or {"equals-ignore-case": "s"}.
func stringOperand(arg any) (s string, fold, ok bool) {
	switch a := arg.(type) {
	case string:
		return a, false, true
	case map[string]any:
		if v, has := a["equals-ignore-case"].(string); has && len(a) == 1 {
			return v, true, true
		}
	}
	return "", false, false
}

func affix(op, s string, fold bool) matcher {
	return stringFunc(func(v string) bool {
		if len(v) < len(s) {
			return false
		}
		var part string
		if op == "prefix" {
			part = v[:len(s)]
		} else {
			part = v[len(v)-len(s):]
		}
		if fold {
			return strings.EqualFold(part, s)
		}
		return part == s
	})
}

// wildcard matches v against a pattern where '*' matches any run of characters.
func wildcard(pattern, v string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == v
	}
	if !strings.HasPrefix(v, parts[0]) {
		return false
	}
	v = v[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(v, p)
		if i < 0 {
			return false
		}
		v = v[i+len(p):]
	}
	return strings.HasSuffix(v, last)
}

func sameValue(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && (x == y || math.Abs(x-y) < 1e-9*math.Max(math.Abs(x), math.Abs(y)))
	}
	return false
}

// normalize converts json.Number to float64 and other numeric Go types produced by
// YAML decoders to float64, recursively; maps with non-string keys are not expected.
func normalize(v any) any {
	switch t := v.(type) {
	case json.Number:
		f, err := t.Float64()
		if err != nil {
			return t.String()
		}
		return f
	case int:
		return float64(t)
	case int64:
		return float64(t)
	case uint64:
		return float64(t)
	case float32:
		return float64(t)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, val := range t {
			out[k] = normalize(val)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, val := range t {
			out[i] = normalize(val)
		}
		return out
	case []string:
		out := make([]any, len(t))
		for i, val := range t {
			out[i] = val
		}
		return out
	}
	return v
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func where(path string) string {
	if path == "" {
		return "pattern"
	}
	return path
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		keys := make([]string, 0)
		for k := range v.(map[string]any) {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return "an object {" + strings.Join(keys, ",") + "}"
	}
	return fmt.Sprintf("%T", v)
}
