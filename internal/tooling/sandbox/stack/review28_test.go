package stack_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/rulesource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/stack"
)

// TestReview28FunctionEnvCarriesTheStacksScope: a stack deployed with the template
// parameters Options models (MirrorDeletes, RepositoryPrefixFilter) gives its replicate
// function the environment template.yaml gives it for them (MIRROR_DELETES,
// REPOSITORY_PREFIX_FILTER), so that the sandbox's function refuses the rules document
// the deployed function refuses: one whose rule the stack's event rule cannot feed.
// FunctionEnv sets neither: the sandbox's function accepts what a deployment refuses.
func TestReview28FunctionEnvCarriesTheStacksScope(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sb, err := sandbox.New(sandbox.TwoAccounts(""))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	opts := stack.Options{MirrorDeletes: false, RepositoryPrefixFilter: "team-a/"}
	st, err := stack.Deploy(ctx, sb, opts)
	if err != nil {
		t.Fatal(err)
	}
	env := st.FunctionEnv()

	globals := path(t, render(t, map[string]any{"MirrorDeletes": "false", "RepositoryPrefixFilter": "team-a/"}).Doc,
		"Globals", "Function", "Environment", "Variables")
	for _, name := range []string{rulesource.EnvMirrorDeletes, rulesource.EnvRepositoryPrefixFilter} {
		want := fmt.Sprint(path(t, globals, name))
		if got, ok := env[name]; !ok || got != want {
			t.Errorf("FunctionEnv()[%s] = %q (set: %v); template.yaml sets %q", name, got, ok, want)
		}
	}

	// What it means: the function refuses these rules as deployed, and not in the sandbox.
	doc := `{"rules":[{"name":"b","repositories":["team-b/**"],"mirrorDeletes":true,"destinations":[{"accountId":"` +
		sandbox.DestinationAccount + `","region":"` + sandbox.DefaultRegion + `"}]}]}`
	getenv := func(name string) string {
		if name == rules.EnvRules {
			return doc
		}
		return env[name]
	}
	if _, err := rulesource.New(getenv, os.ReadFile).Current(ctx); err == nil {
		t.Errorf("the stack's function accepts rules for team-b/** with mirrorDeletes, which a stack deployed with MirrorDeletes=false, RepositoryPrefixFilter=team-a/ never feeds")
	}
}
