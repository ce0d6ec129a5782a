package destinations

import "github.com/ecr-replicator/ecr-replicator/internal/copyengine"

// Outcome is what happened at one destination: the engine's outcomes for a copy, and
// those destinations adds (Deleted, KeptImmutable). Callers read outcomes here, not in
// the engine: destinations is their one door to it.
type Outcome = copyengine.Outcome

// The engine's outcomes (copyengine.Outcome).
const (
	Copied         = copyengine.Copied
	AlreadyPresent = copyengine.AlreadyPresent
	TagUpdated     = copyengine.TagUpdated
	Skipped        = copyengine.Skipped
	Conflict       = copyengine.Conflict
	TooLarge       = copyengine.TooLarge
	Failed         = copyengine.Failed
)

// CopyResult is what the engine's copy did at one destination; Result adds what
// destinations knows.
type CopyResult = copyengine.Result
