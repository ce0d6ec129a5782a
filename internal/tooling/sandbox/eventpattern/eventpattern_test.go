package eventpattern

import (
	"os"
	"path/filepath"
	"testing"
)

const ecrPush = `{
  "version": "0",
  "detail-type": "ECR Image Action",
  "source": "aws.ecr",
  "account": "111111111111",
  "region": "us-east-1",
  "resources": [],
  "detail": {
    "result": "SUCCESS",
    "repository-name": "team-a/app",
    "action-type": "PUSH",
    "image-tag": "v1.2.0",
    "size": 1024,
    "signed": true,
    "note": null,
    "platforms": ["linux/amd64", "linux/arm64"],
    "layers": [{"digest": "sha256:aa", "size": 10}, {"digest": "sha256:bb", "size": 20}]
  }
}`

func TestMatch(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		want    bool
	}{
		{"empty detail-free pattern on source", `{"source": ["aws.ecr"]}`, true},
		{"exact mismatch", `{"source": ["aws.s3"]}`, false},
		{"alternatives", `{"source": ["aws.s3", "aws.ecr"]}`, true},
		{"several fields all must match", `{"source": ["aws.ecr"], "detail-type": ["ECR Image Scan"]}`, false},
		{"nested object", `{"detail": {"result": ["SUCCESS"], "action-type": ["PUSH"]}}`, true},
		{"nested object mismatch", `{"detail": {"action-type": ["DELETE"]}}`, false},
		{"nested field missing", `{"detail": {"missing": ["x"]}}`, false},
		{"object where event has scalar", `{"source": {"x": ["aws.ecr"]}}`, false},
		{"exact is case sensitive", `{"detail": {"result": ["success"]}}`, false},
		{"number literal", `{"detail": {"size": [1024]}}`, true},
		{"number literal other spelling", `{"detail": {"size": [1.024e3]}}`, true},
		{"number does not match string", `{"detail": {"size": ["1024"]}}`, false},
		{"boolean literal", `{"detail": {"signed": [true]}}`, true},
		{"boolean mismatch", `{"detail": {"signed": [false]}}`, false},
		{"null literal", `{"detail": {"note": [null]}}`, true},
		{"null does not match missing", `{"detail": {"absent": [null]}}`, false},
		{"event array any element", `{"detail": {"platforms": ["linux/arm64"]}}`, true},
		{"event array no element", `{"detail": {"platforms": ["windows/amd64"]}}`, false},
		{"empty event array is absent", `{"resources": [{"exists": true}]}`, false},
		{"empty event array exists false", `{"resources": [{"exists": false}]}`, true},
		{"array of objects", `{"detail": {"layers": {"digest": ["sha256:bb"]}}}`, true},
		{"array of objects no match", `{"detail": {"layers": {"digest": ["sha256:cc"]}}}`, false},
		{"prefix", `{"detail": {"repository-name": [{"prefix": "team-a/"}]}}`, true},
		{"prefix mismatch", `{"detail": {"repository-name": [{"prefix": "team-b/"}]}}`, false},
		{"prefix longer than value", `{"detail": {"result": [{"prefix": "SUCCESSFUL"}]}}`, false},
		{"prefix ignore case", `{"detail": {"repository-name": [{"prefix": {"equals-ignore-case": "TEAM-A/"}}]}}`, true},
		{"prefix on number", `{"detail": {"size": [{"prefix": "10"}]}}`, false},
		{"empty prefix matches any string", `{"detail": {"repository-name": [{"prefix": ""}]}}`, true},
		{"suffix", `{"detail": {"repository-name": [{"suffix": "/app"}]}}`, true},
		{"suffix mismatch", `{"detail": {"repository-name": [{"suffix": "/web"}]}}`, false},
		{"prefix or literal", `{"detail": {"repository-name": ["other", {"prefix": "team-a"}]}}`, true},
		{"anything-but value", `{"detail": {"action-type": [{"anything-but": "DELETE"}]}}`, true},
		{"anything-but value excluded", `{"detail": {"action-type": [{"anything-but": "PUSH"}]}}`, false},
		{"anything-but list", `{"detail": {"action-type": [{"anything-but": ["DELETE", "REPLICATE"]}]}}`, true},
		{"anything-but list excluded", `{"detail": {"action-type": [{"anything-but": ["DELETE", "PUSH"]}]}}`, false},
		{"anything-but number", `{"detail": {"size": [{"anything-but": [1024, 2048]}]}}`, false},
		{"anything-but missing field", `{"detail": {"absent": [{"anything-but": "x"}]}}`, false},
		{"anything-but prefix", `{"detail": {"repository-name": [{"anything-but": {"prefix": "team-b/"}}]}}`, true},
		{"anything-but prefix excluded", `{"detail": {"repository-name": [{"anything-but": {"prefix": "team-a/"}}]}}`, false},
		{"anything-but suffix", `{"detail": {"repository-name": [{"anything-but": {"suffix": "/app"}}]}}`, false},
		{"exists true", `{"detail": {"image-tag": [{"exists": true}]}}`, true},
		{"exists true missing", `{"detail": {"image-digest": [{"exists": true}]}}`, false},
		{"exists false", `{"detail": {"image-digest": [{"exists": false}]}}`, true},
		{"exists false present", `{"detail": {"image-tag": [{"exists": false}]}}`, false},
		{"exists false missing parent", `{"missing": {"x": [{"exists": false}]}}`, true},
		{"exists true on null value", `{"detail": {"note": [{"exists": true}]}}`, true},
		{"equals-ignore-case", `{"detail": {"result": [{"equals-ignore-case": "success"}]}}`, true},
		{"wildcard", `{"detail": {"repository-name": [{"wildcard": "team-*/a*"}]}}`, true},
		{"wildcard mismatch", `{"detail": {"repository-name": [{"wildcard": "team-*/web"}]}}`, false},
		{"numeric range", `{"detail": {"size": [{"numeric": [">", 0, "<=", 1024]}]}}`, true},
		{"numeric out of range", `{"detail": {"size": [{"numeric": [">", 1024]}]}}`, false},
		{"numeric on array of objects", `{"detail": {"layers": {"size": [{"numeric": [">=", 20]}]}}}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Match([]byte(tc.pattern), []byte(ecrPush))
			if err != nil {
				t.Fatalf("Match: %v", err)
			}
			if got != tc.want {
				t.Errorf("Match(%s) = %v, want %v", tc.pattern, got, tc.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	bad := []string{
		`[]`,
		`"source"`,
		`{}`,
		`{"source": "aws.ecr"}`,
		`{"source": []}`,
		`{"detail": {}}`,
		`{"source": [["aws.ecr"]]}`,
		`{"source": [{"prefix": 1}]}`,
		`{"source": [{"prefix": "a", "suffix": "b"}]}`,
		`{"source": [{"exists": "yes"}]}`,
		`{"source": [{"anything-but": []}]}`,
		`{"source": [{"anything-but": [true]}]}`,
		`{"source": [{"anything-but": {"exists": true}}]}`,
		`{"source": [{"numeric": ["<"]}]}`,
		`{"source": [{"numeric": ["!=", 1]}]}`,
		`{"source": [{"cidr": "10.0.0.0/8"}]}`,
		`{"source": [{"unknown": "x"}]}`,
		`{"$or": [{"source": ["a"]}, {"source": ["b"]}]}`,
		`{"source": ["aws.ecr"]`,
	}
	for _, p := range bad {
		if _, err := Compile([]byte(p)); err == nil {
			t.Errorf("Compile(%s) succeeded, want an error", p)
		}
	}
}

func TestNewAcceptsDecodedValues(t *testing.T) {
	// Values as a YAML decoder or a template processor would produce them.
	p, err := New(map[string]any{
		"source": []string{"aws.ecr"},
		"detail": map[string]any{"size": []any{1024}, "action-type": []any{"PUSH"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ok, err := p.Match([]byte(ecrPush))
	if err != nil || !ok {
		t.Fatalf("Match = %v, %v; want true", ok, err)
	}
	if _, err := p.Match([]byte(`[]`)); err == nil {
		t.Error("Match of a non-object event succeeded")
	}
}

// The sample ECR events in events/ against the pattern the deployment's rule uses.
func TestSampleEvents(t *testing.T) {
	pushOnly := MustCompile(`{"source": ["aws.ecr"], "detail-type": ["ECR Image Action"],
		"detail": {"result": ["SUCCESS"], "action-type": ["PUSH"]}}`)
	withDeletes := MustCompile(`{"source": ["aws.ecr"], "detail-type": ["ECR Image Action"],
		"detail": {"result": ["SUCCESS"], "action-type": ["PUSH", "DELETE"]}}`)
	cases := map[string][2]bool{ // file: {pushOnly, withDeletes}
		"push.json":          {true, true},
		"push-index.json":    {true, true},
		"push-untagged.json": {true, true},
		"delete.json":        {false, true},
	}
	for file, want := range cases {
		data, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "events", file))
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range []*Pattern{pushOnly, withDeletes} {
			got, err := p.Match(data)
			if err != nil {
				t.Fatal(err)
			}
			if got != want[i] {
				t.Errorf("%s: pattern %d matched = %v, want %v", file, i, got, want[i])
			}
		}
	}
}
