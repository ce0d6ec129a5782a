// Package reliability holds the replicator's reliability suite, and nothing else: tests
// that drive the replicate function's handler (internal/eventhandler) and the backfill
// against the in-process AWS sandbox while its fault hooks fail, reset, throttle and
// expire things, while events arrive duplicated, out of order and racing, and while
// input is hostile — and check that the destination is never wrong: every tag ends up
// pointing at complete content equal to the source, nothing is half-tagged, permanent
// failures are reported and acknowledged, bad input is rejected before any network
// call, and no secret reaches the logs.
//
// `go test ./internal/tooling/reliability/` runs the bounded, seeded suite (part of make test);
// `make soak` (SOAK_DURATION, default 10m) runs the randomized soak; `make fuzz` runs
// every fuzz target for FUZZTIME. docs/RELIABILITY.md records the scenarios and results.
package reliability
