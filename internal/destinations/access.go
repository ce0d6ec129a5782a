package destinations

import (
	"context"
	"fmt"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// DestinationAccess is how to reach a destination: its registry, through its role. Its
// sessions of the role are write sessions (ecraccess.Access.Write); a caller that only
// lists sets ListOnly.
func DestinationAccess(d rules.Destination) ecraccess.Access {
	return ecraccess.Access{AccountID: d.AccountID, Region: d.Region, RoleARN: d.RoleARN, ExternalID: d.ExternalID, Write: true}
}

// SourceAccount is the source registry's account: source.roleArn's (roleARN) when the
// rules name one, or else the caller's (asked once per Resolver).
func SourceAccount(ctx context.Context, resolver *ecraccess.Resolver, roleARN string) (string, error) {
	if roleARN != "" {
		acct, err := ecrname.RoleAccount(roleARN)
		if err != nil {
			return "", fmt.Errorf("source.roleArn: %w", err)
		}
		return acct, nil
	}
	return resolver.CallerAccount(ctx)
}

// RuleAccess is one distinct destination access of a rules document, and the first
// destination that uses it (rules[Rule].destinations[Destination]).
type RuleAccess struct {
	Access            ecraccess.Access
	Rule, Destination int
}

// DestinationAccesses lists the distinct accesses of doc's destinations, in the order
// of their first use.
func DestinationAccesses(doc *rules.Document) []RuleAccess {
	var out []RuleAccess
	seen := map[ecraccess.Access]bool{}
	for i, r := range doc.Rules {
		for j, d := range r.Destinations {
			a := DestinationAccess(d)
			if !seen[a] {
				seen[a] = true
				out = append(out, RuleAccess{Access: a, Rule: i, Destination: j})
			}
		}
	}
	return out
}
