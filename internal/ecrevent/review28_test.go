package ecrevent

import (
	"strings"
	"testing"
)

// TestReview28ValidateNamesTheWrongField: ImageAction.Validate, for an action built by
// hand (not through Parse), says which field is wrong, as it did before issue 28 moved
// its checks into class(): a result that is not SUCCESS is detail.result's fault, an
// action type that is neither PUSH nor DELETE is detail.action-type's. Passes on
// 9f496d5; on 1f6884d both are blamed on "detail" ("not an action to replicate").
func TestReview28ValidateNamesTheWrongField(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	good := ImageAction{Account: "111111111111", Region: "us-east-1", Repository: "team-a/app", Digest: digest, Tag: "v1",
		ActionType: ActionPush, Result: ResultSuccess}
	if err := good.Validate(); err != nil {
		t.Fatalf("a valid action: %v", err)
	}
	for _, c := range []struct {
		name  string
		edit  func(*ImageAction)
		field string
	}{
		{"failed push", func(a *ImageAction) { a.Result = "FAILURE" }, "detail.result: "},
		{"no result", func(a *ImageAction) { a.Result = "" }, "detail.result: "},
		{"archive", func(a *ImageAction) { a.ActionType = "UPDATE_STORAGE_CLASS" }, "detail.action-type: "},
		{"unknown action", func(a *ImageAction) { a.ActionType = "TAG" }, "detail.action-type: "},
	} {
		a := good
		c.edit(&a)
		err := a.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), c.field) {
			t.Errorf("%s: Validate() = %v, want an error naming %q", c.name, err, strings.TrimSuffix(c.field, ": "))
		}
	}
}
