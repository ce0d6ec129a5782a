package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"

	"go.yaml.in/yaml/v3"
)

// yaml.v3 reports a parser error at the line where the enclosing block or flow
// collection starts (its "context mark", counted from 0), not where the parser got
// stuck: a misindented key on line 3 of a sequence that starts on line 2 is reported on
// "line 1". It looks at the context mark first since
// https://github.com/go-yaml/yaml/issues/542, and the marks are not exported.
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxLine reparses documents up to these sizes (rules documents are short).
const (
	maxSyntaxScanLines = 1000
	maxSyntaxScanBytes = 64 << 10
)

// syntaxLine finds the line of a YAML syntax error: the first line from which on every
// prefix of the document that ends at a line's end fails with the same error, message
// and reported line (a prefix cut inside a collection fails too, but elsewhere, or with
// another message, or a longer prefix recovers). It returns the message without yaml's
// line, and false when the error is not a located syntax error or the document is too
// long to reparse.
func syntaxLine(data []byte, err error) (line int, msg string, ok bool) {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil || len(data) > maxSyntaxScanBytes || bytes.Count(data, []byte("\n")) > maxSyntaxScanLines {
		return 0, "", false
	}
	msg = m[2]
	if l, ok := jsonSyntaxLine(data); ok {
		return l, msg, true
	}
	for n, end := 1, 0; end < len(data); n++ {
		// The prefix ends before the newline: a prefix that fails only because it ends
		// then fails on its own last line, which the whole document does not.
		cut := len(data)
		if i := bytes.IndexByte(data[end:], '\n'); i >= 0 {
			cut = end + i
		}
		end = cut + 1
		var node yaml.Node
		perr := yaml.Unmarshal(data[:cut], &node)
		same := false
		if perr != nil {
			pm := yamlLineRE.FindStringSubmatch(perr.Error())
			same = pm != nil && pm[1] == m[1] && pm[2] == msg
		}
		switch {
		case !same:
			line = 0
		case line == 0:
			line = n
		}
	}
	return line, msg, line > 0
}

// jsonSyntaxLine locates a syntax error in a JSON document exactly (encoding/json
// reports the byte offset); YAML's line for an error inside a flow collection is the
// collection's.
func jsonSyntaxLine(data []byte) (int, bool) {
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		return 0, false
	}
	var v any
	var se *json.SyntaxError
	if err := json.Unmarshal(data, &v); !errors.As(err, &se) {
		return 0, false
	}
	off := min(int(se.Offset), len(data))
	// The offset is just past the offending byte.
	return 1 + bytes.Count(data[:max(off-1, 0)], []byte("\n")), true
}
