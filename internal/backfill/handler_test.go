package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestUnusableRulesDocumentIsAConfigurationError: a backfill built from a rules document
// that failed to read, or from none, answers every invocation with the configuration
// error (ConfigurationErrors; Lambda's async retry) — never a panic, never an answer that
// reads as work done.
func TestUnusableRulesDocumentIsAConfigurationError(t *testing.T) {
	parseErr := errors.New("rules: at least one rule")
	for _, c := range []struct {
		name string
		b    *Backfill
		want string
	}{
		{"invalid document", &Backfill{RulesErr: parseErr}, "configuration error: invalid rules document: rules: at least one rule"},
		{"no document", &Backfill{}, "configuration error: no rules document"},
	} {
		resp, err := func() (resp *Response, err error) {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("%s: Handle panicked: %v", c.name, p)
				}
			}()
			return c.b.Handle(context.Background(), json.RawMessage(`{"mode":"enqueue"}`))
		}()
		if err == nil || !strings.Contains(err.Error(), c.want) || resp != nil {
			t.Errorf("%s: Handle = %v, %v; want no response and %q", c.name, resp, err, c.want)
		}
	}
}
