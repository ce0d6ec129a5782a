# bench.mk — `make bench`: ecr-replicator against crane, regctl and skopeo (scenario 5: ours
# with and without ECR blob mounting, against crane and regctl, on the sandbox's ECR).
# Included by the main Makefile; not part of `make test`. The benchmark is its own module
# (bench/go.mod): the registry, crane and regctl are pinned there as tools, so the
# product's go.mod does not carry them; skopeo comes from Debian (scripts/install-skopeo.sh).
#
#   make bench                                  # full size, 5 runs, 0 ms and 25 ms
#   make bench BENCH_SCALE=0.1 BENCH_RUNS=2     # quick: 100 MiB image, 2 MiB base
#   make bench BENCH_SCENARIOS=5 BENCH_DELAYS=25 # blob mounting only (about 4 minutes a run)
#
# Results: stdout and bench/RESULTS.md.

GO            ?= go
BENCH_RUNS    ?= 5
BENCH_SCALE   ?= 1
BENCH_TAGS    ?= 100
BENCH_DELAYS  ?= 0,25
BENCH_SCENARIOS ?= 1,2,3,4,5
BENCH_FLAGS   ?=
# Scratch space: a name starting with "_", so that `go ./...` in bench/ never walks it.
BENCH_BIN     := $(CURDIR)/bench/_work/bin

.PHONY: bench bench-tools bench-skopeo bench-clean bench-scale

## bench-tools: build the registry, crane, regctl (pinned Go tools), ecr-replicator and the bench program
bench-tools:
	mkdir -p $(BENCH_BIN)
	$(GO) -C bench build -o $(BENCH_BIN)/ github.com/distribution/distribution/v3/cmd/registry github.com/google/go-containerregistry/cmd/crane github.com/regclient/regclient/cmd/regctl
	$(GO) build -trimpath -o $(BENCH_BIN)/ecr-replicator ./cmd/ecr-replicator
	$(GO) -C bench build -o $(BENCH_BIN)/bench .

## bench-skopeo: install skopeo from Debian when possible (otherwise its rows say unavailable)
bench-skopeo:
	-bash scripts/install-skopeo.sh

## bench: run every scenario; table to stdout and bench/RESULTS.md
bench: bench-tools bench-skopeo
	$(BENCH_BIN)/bench -bin $(BENCH_BIN) -work $(CURDIR)/bench/_work -runs $(BENCH_RUNS) \
		-scale $(BENCH_SCALE) -tags $(BENCH_TAGS) -delays $(BENCH_DELAYS) \
		-scenarios $(BENCH_SCENARIOS) -out $(CURDIR)/bench/RESULTS.md $(BENCH_FLAGS)

# `make bench-scale`: a reconcile run at organisation scale in the sandbox —
# SCALE_REPOS repositories × SCALE_IMAGES images, SCALE_DRIFT of them missing at the
# destination, SCALE_LATENCY per request, SCALE_CONCURRENCY reconcile invocations at once
# — then the inline backfill of SCALE_INLINE tags under the PutImage quota. Appends to
# bench/RESULTS.md; docs/SCALE.md reads the figures.
SCALE_REPOS       ?= 10000
SCALE_IMAGES      ?= 10
SCALE_DRIFT       ?= 0.01
SCALE_LATENCY     ?= 25ms
SCALE_CONCURRENCY ?= 50
SCALE_INLINE      ?= 60

## bench-scale: reconcile 10,000 repositories in the sandbox (minutes; see docs/SCALE.md), then an inline backfill under the quota
bench-scale:
	$(GO) -C bench build -o $(BENCH_BIN)/scale ./scale
	$(BENCH_BIN)/scale -repos $(SCALE_REPOS) -images $(SCALE_IMAGES) -drift $(SCALE_DRIFT) -latency $(SCALE_LATENCY) \
		-concurrency $(SCALE_CONCURRENCY) -out $(CURDIR)/bench/RESULTS.md
	$(BENCH_BIN)/scale -inline $(SCALE_INLINE) -latency $(SCALE_LATENCY) -out $(CURDIR)/bench/RESULTS.md

## bench-clean: remove bench/_work (the benchmarks' binaries and scratch space)
bench-clean:
	rm -rf bench/_work

# The latency and memory benchmarks have their own files.
-include bench-latency.mk
-include bench-memory.mk
