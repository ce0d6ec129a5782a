package rules

import (
	"fmt"
	"testing"
)

// benchDoc is shaped like a real multi-team setup: literal, segment and
// doublestar patterns, excludes, several destinations.
const benchDoc = `
rules:
  - name: platform
    repositories: ["platform/**", "!platform/scratch-*", "!platform/**/tmp-*"]
    tags: ["v*", "release-*", "latest"]
    destinations:
      - {accountId: "222222222222", region: eu-west-1, repositoryPrefix: "mirror/"}
      - {accountId: "222222222222", region: us-west-2, repositoryPrefix: "mirror/"}
  - name: team-a
    repositories: ["team-a/*", "shared/base-images"]
    tags: ["v[0-9]*", "{main,stable}"]
    untagged: false
    destinations:
      - {accountId: "333333333333", region: eu-central-1}
  - name: dr
    repositories: ["!sandbox/**", "!**/test-*"]
    destinations:
      - {accountId: "444444444444", region: us-east-2, repositoryPrefix: "dr-"}
`

func benchNames(n int) []string {
	prefixes := []string{"platform", "platform/scratch-x", "team-a", "team-b/sub", "sandbox/u", "shared", "ml/models/x"}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s/svc-%d", prefixes[i%len(prefixes)], i)
	}
	return names
}

// BenchmarkMatch: one op = Targets + RepositoryInScope over 10,000
// repository names. Run with -benchmem.
func BenchmarkMatch(b *testing.B) {
	d := mustParse(b, benchDoc)
	names := benchNames(10000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, n := range names {
			_ = d.RepositoryInScope(n)
			_ = d.Targets(n, "v1.2.3")
		}
	}
}
