package sandboxtest

import (
	"fmt"
	"strings"
)

// TeamRules is the rules document of a platform team serving n teams: rule team-NN
// replicates team-NN/** to the same destinations, one per region of regions in
// account, through role (with externalID when set), each under the prefix
// "<region>/" — the shape of a document that outgrows Lambda's 4 KB of environment. The
// destinations are written once, as YAML anchors, and named by alias in every rule.
func TeamRules(n int, account string, regions []string, role, externalID string) string {
	var b strings.Builder
	b.WriteString("# ecr-replicator rules: one rule per team, the same destinations for all\nrules:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: team-%02d\n    repositories: [\"team-%02d/**\"]\n    tags: [\"v*\", \"release-*\", \"latest\"]\n    destinations:\n", i, i)
		for j, region := range regions {
			if i > 0 {
				fmt.Fprintf(&b, "      - *dst%d\n", j)
				continue
			}
			fmt.Fprintf(&b, "      - &dst%d\n        accountId: %q\n        region: %s\n        roleArn: %s\n", j, account, region, role)
			if externalID != "" {
				fmt.Fprintf(&b, "        externalId: %s\n", externalID)
			}
			fmt.Fprintf(&b, "        repositoryPrefix: %s/\n", region)
		}
	}
	return b.String()
}
