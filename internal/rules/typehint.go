package rules

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// typedNode is one node of the rules document, with the Go type the decoder fills from
// it and where it is: the value of the field key, or (entry) an entry of the list field
// key.
type typedNode struct {
	node  *yaml.Node
	typ   reflect.Type // pointers removed, as the decoder names the type it fills
	key   string
	entry bool
}

// typedNodes are the document's nodes in document order, the order yaml.v3 reports its
// type errors in; used marks those an error was matched to.
type typedNodes struct {
	nodes []typedNode
	used  []bool
}

// newTypedNodes walks the document as the decoder does (rawDocument's fields), typing
// each node it reaches; a node under one of the wrong kind is not reached, as the
// decoder does not reach it either.
func newTypedNodes(data []byte) *typedNodes {
	t := &typedNodes{}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return t
	}
	var visit func(n *yaml.Node, typ reflect.Type, key string, entry bool)
	visit = func(n *yaml.Node, typ reflect.Type, key string, entry bool) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		t.nodes = append(t.nodes, typedNode{node: n, typ: typ, key: key, entry: entry})
		switch {
		case n.Kind == yaml.MappingNode && typ.Kind() == reflect.Struct:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if f, ok := yamlField(typ, n.Content[i].Value); ok {
					visit(n.Content[i+1], f.Type, n.Content[i].Value, false)
				}
			}
		case n.Kind == yaml.SequenceNode && typ.Kind() == reflect.Slice:
			for _, c := range n.Content {
				visit(c, typ.Elem(), key, true)
			}
		}
	}
	visit(root.Content[0], reflect.TypeOf(rawDocument{}), "", false)
	t.used = make([]bool, len(t.nodes))
	return t
}

// yamlField is the field of struct type typ that the YAML key name fills.
func yamlField(typ reflect.Type, name string) (reflect.StructField, bool) {
	for i := range typ.NumField() {
		f := typ.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// listExamples are the example values of the list fields.
var listExamples = map[string]string{"repositories": "team-a/*", "tags": "v*"}

// mismatch says what a value written with the wrong YAML type must be, naming its field:
// it finds the node yaml.v3's error is about (its line, YAML type, value and the Go type
// it was to fill), the first one not matched yet.
func (t *typedNodes) mismatch(line, tag, value, into string) (string, bool) {
	n, err := strconv.Atoi(line)
	if err != nil {
		return "", false
	}
	for i, c := range t.nodes {
		if t.used[i] || c.node.Line != n || c.node.ShortTag() != "!!"+tag || c.typ.String() != into || !valueIs(c.node.Value, value) {
			continue
		}
		t.used[i] = true
		return c.describe(line, tag, into)
	}
	return "", false
}

// valueIs reports whether a node's value is the one an error quotes (yaml.v3 shortens a
// value of more than 10 bytes to its first 7 and "...").
func valueIs(v, quoted string) bool {
	if quoted == "" {
		return true
	}
	if len(quoted) == 10 && strings.HasSuffix(quoted, "...") {
		return strings.HasPrefix(v, quoted[:7])
	}
	return v == quoted
}

// describe is the error said in the document's words, or false where yaml.v3's own
// (with the type names replaced) is as clear.
func (c typedNode) describe(line, tag, into string) (string, bool) {
	scalar := tag == "str" || tag == "int" || tag == "bool" || tag == "float"
	kind := "a list"
	if tag == "map" {
		kind = "a mapping"
	}
	destinationsEg := `[{accountId: "222222222222", region: us-east-1}]`
	switch {
	case c.entry && (into == "string" || into == "bool") && !scalar:
		return fmt.Sprintf("line %s: %s must be a list of single values, not of %ss, e.g. %s: [%q]", line, c.key, strings.TrimPrefix(kind, "a "), c.key, listExample(c.key)), true
	case c.entry && into == "rules.rawDestination":
		return fmt.Sprintf("line %s: %s must be a list of destinations, each a mapping, e.g. %s: %s", line, c.key, c.key, destinationsEg), true
	case c.entry && into == "rules.rawRule":
		return fmt.Sprintf("line %s: %s must be a list of rules, each a mapping (repositories:, destinations:, …)", line, c.key), true
	case c.entry:
		return "", false
	case into == "[]string":
		eg := listExample(c.key)
		if scalar {
			eg = c.node.Value
		}
		return fmt.Sprintf("line %s: %s must be a list, e.g. %s: [%q]", line, c.key, c.key, eg), true
	case into == "[]*rules.rawDestination":
		return fmt.Sprintf("line %s: %s must be a list of destinations, e.g. %s: %s", line, c.key, c.key, destinationsEg), true
	case into == "[]*rules.rawRule":
		return fmt.Sprintf("line %s: %s must be a list of rules, each a mapping (repositories:, destinations:, …)", line, c.key), true
	case (into == "string" || into == "bool") && !scalar:
		return fmt.Sprintf("line %s: %s must be a single value, not %s", line, c.key, kind), true
	case strings.HasPrefix(into, "[]"): // a promotion gate's lists (signers, allow, trustedIdentities)
		what := "a single value"
		if tag == "map" {
			what = "a mapping"
		}
		return fmt.Sprintf("line %s: %s must be a list, not %s", line, c.key, what), true
	}
	return "", false
}

func listExample(key string) string {
	if eg := listExamples[key]; eg != "" {
		return eg
	}
	return "…"
}
