package backfill

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzRequest: ParseRequest never panics; whatever it accepts re-encodes to a request
// it accepts again with the same meaning; errors name the backfill request.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		``, `null`, `{}`, `{"repositories":["team-a/*"],"tags":["v*"],"since":"2024-01-01T00:00:00Z","dryRun":true,"mode":"enqueue"}`,
		`{"mode":"inline","continuationToken":"x"}`, `{"repositorys":[]}`, `{} {}`, `{"since":""}`, `{"tags":["!v1","**"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ParseRequest(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "backfill request") {
				t.Fatalf("error does not name the backfill request: %v", err)
			}
			return
		}
		raw := map[string]any{"repositories": req.Repositories, "tags": req.Tags, "dryRun": req.DryRun, "mode": req.Mode, "continuationToken": req.ContinuationToken}
		if !req.Since.IsZero() {
			raw["since"] = req.Since.Format("2006-01-02T15:04:05.999999999Z07:00")
		}
		b, _ := json.Marshal(raw)
		again, err := ParseRequest(b)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		if !again.Since.Equal(req.Since) || again.Mode != req.Mode || again.DryRun != req.DryRun || again.ContinuationToken != req.ContinuationToken ||
			len(again.Repositories) != len(req.Repositories) || len(again.Tags) != len(req.Tags) {
			t.Fatalf("round trip changed the request: %+v → %+v", req, again)
		}
	})
}
