package backfill

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// Handle is the Lambda entry point: it parses the request and runs the backfill. An
// invalid request or rules document is an error; the outcome of the work, failures
// included, is the response.
func (b *Backfill) Handle(ctx context.Context, payload json.RawMessage) (*Response, error) {
	if err := rules.Usable(b.Rules, b.RulesErr); err != nil {
		b.log().Error("the rules document cannot be used; fix the configuration (the rules document or its parameter)", "error", err.Error())
		return nil, err
	}
	req, err := ParseRequest(payload)
	if err != nil {
		return nil, err
	}
	// Bad globs are rejected here, before any network call.
	if _, err := b.Rules.Narrow(req.Repositories, req.Tags); err != nil {
		return nil, fmt.Errorf("backfill request: %w", err)
	}
	return b.Invoke(ctx, req)
}
