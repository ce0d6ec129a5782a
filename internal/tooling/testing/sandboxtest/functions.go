package sandboxtest

import (
	"os"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/gate/verify"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// ReplicateHandler builds the replicate function's handler from deps and the
// environment as functions/replicate does; the set fields of c (logger, metrics, result
// events, reserve) replace its own.
func ReplicateHandler(deps *wiring.Deps, c eventhandler.Config) *eventhandler.Handler {
	deps.Verify = verify.ForLambda
	return deps.Handler(os.Getenv, c.EMF, func(h *eventhandler.Config) {
		if c.Log != nil {
			h.Log = c.Log
		}
		if c.Namespace != "" {
			h.Namespace = c.Namespace
		}
		if c.Events != nil {
			h.Events, h.EventBus = c.Events, c.EventBus
		}
		if c.Reserve != 0 {
			h.Reserve = c.Reserve
		}
	})
}

// BackfillFunction builds the backfill function from deps and the environment as
// functions/backfill does (getenv nil: os.Getenv).
func BackfillFunction(deps *wiring.Deps, getenv func(string) string) *backfill.Backfill {
	if getenv == nil {
		getenv = os.Getenv
	}
	return deps.Backfill(getenv, nil)
}
