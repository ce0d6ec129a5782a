package rules

import (
	"strings"
	"testing"
)

// TestSyntaxErrorLine: a syntax error is reported on the line where it is, not where
// the enclosing collection starts (yaml.v3's line, counted from 0).
func TestSyntaxErrorLine(t *testing.T) {
	for _, tc := range []struct {
		doc, want string
	}{
		// A key indented like the sequence it should be inside: yaml.v3 says "line 1".
		{"rules:\n  - name: prod\n  destinations:\n      - accountId: x\n", "line 3: did not find expected '-' indicator"},
		{"rules:\n  - name: prod\n    destinations:\n      - accountId: \"222222222222\"\n      region: us-east-1\n", "line 5: did not find expected '-' indicator"},
		{"rules:\n  - name: prod\n    - repositories: x\n", "line 3: did not find expected key"},
		{"rules:\n  - name: prod\n    tags: [v1, v2\n    destinations: []\n", "line 3: did not find expected ',' or ']'"},
		{"rules:\n  - name: prod\n    repositories: 'team-a/*\n", "line 3: found unexpected end of stream"},
		{"rules:\n  - name: prod\n\tdestinations: []\n", "line 3: found a tab character that violates indentation"},
		{"rules:\n  - name: prod\n    destinations: {accountId: 222222222222 region: us-east-1}\n", "line 3: did not find expected ',' or '}'"},
		// Already right before: unchanged.
		{"rules:\n  - name: prod\n    destinations:\n    - accountId: \"2\"\n      region: a: b\n", "line 5: mapping values are not allowed in this context"},
		{"rules:\n  - name: a\n    tag: [x]\n", `line 3: unknown field "tag" in a rule`},
		// JSON: the exact line from encoding/json.
		{"{\n  \"rules\": [\n    {\n      \"name\": \"prod\",\n      \"destinations\": [\n        {\"accountId\": \"222222222222\" \"region\": \"us-east-1\"}\n      ]\n    }\n  ]\n}\n", "line 6: did not find expected ',' or '}'"},
	} {
		_, err := Parse([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), "rules document: "+tc.want) {
			t.Errorf("%q: %v, want %q", tc.doc, err, tc.want)
		}
	}
}
