# Reliability targets, included by the main Makefile.
#   make soak  SOAK_DURATION=10m SOAK_SEED=1   random pushes, tag moves, deletes and faults
#              against the sandbox, then reconciliation and a divergence check; then
#              reconcile runs under random throttles and faults for SOAK_DURATION, each
#              checked for divergence; then INTERLEAVE_SCHEDULES (default 10000)
#              interleavings of racing, killed invocations
#   make reconcile-matrix                      rerun the reconcile fault matrix and rewrite
#              docs/RECONCILE_FAULT_MATRIX.md
#   make fuzz  FUZZTIME=1m                     every fuzz target, one after the other
#   make fault-matrix                          rerun the fault matrix and rewrite docs/FAULT_MATRIX.md

SOAK_DURATION ?= 10m
SOAK_SEED     ?= 1
INTERLEAVE_SCHEDULES ?= 10000
FUZZTIME      ?= 1m

# package:FuzzTarget
FUZZ_TARGETS := \
	./internal/ecrevent:FuzzParse \
	./internal/rules:FuzzParse \
	./internal/rules:FuzzGlobFastPath \
	./internal/ecrname:FuzzRepositoryPrefix \
	./internal/ecrname:FuzzValidators \
	./internal/backfill:FuzzRequest \
	./internal/tooling/reliability:FuzzSQSBatch

.PHONY: soak fuzz fault-matrix reconcile-matrix

## soak: 10 minutes of random pushes, moves, deletes and faults, then 10,000 interleavings of racing, killed invocations (SOAK_DURATION, SOAK_SEED)
soak:
	@# -timeout 0: the soak bounds itself by SOAK_DURATION (plus the final reconciliation).
	SOAK_DURATION=$(SOAK_DURATION) SOAK_SEED=$(SOAK_SEED) $(GO) test -count=1 -v -timeout 0 \
		-run '^TestSoak$$' ./internal/tooling/reliability/ 2>&1 | grep -E '^(SOAK|---|ok|FAIL|PASS)|OBSERVED|divergence|Error'; test $${PIPESTATUS[0]} -eq 0
	SOAK_DURATION=$(SOAK_DURATION) SOAK_SEED=$(SOAK_SEED) $(GO) test -count=1 -v -timeout 0 \
		-run '^TestReconcileSoak$$' ./internal/tooling/reliability/ 2>&1 | grep -E 'SOAK|^(---|ok|FAIL|PASS)|divergence|Error'; test $${PIPESTATUS[0]} -eq 0
	INTERLEAVE_SCHEDULES=$(INTERLEAVE_SCHEDULES) INTERLEAVE_SEED=$(SOAK_SEED) $(GO) test -count=1 -v -timeout 0 \
		-run '^TestInterleavings$$' ./internal/tooling/reliability/ 2>&1 | grep -E '^(---|ok|FAIL|PASS)|OBSERVED|Error'; exit $${PIPESTATUS[0]}

## fuzz: every fuzz target for FUZZTIME (1m) each, one after the other
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
	done

## fault-matrix: every registry step × every fault kind, written to docs/FAULT_MATRIX.md (also part of make test)
fault-matrix:
	FAULT_MATRIX_OUT=$(CURDIR)/docs/FAULT_MATRIX.md $(GO) test -count=1 -run '^TestFaultMatrix$$' ./internal/tooling/reliability/

## reconcile-matrix: every call the reconcile makes × every failure, written to docs/RECONCILE_FAULT_MATRIX.md (also part of make test)
reconcile-matrix:
	RECONCILE_MATRIX_OUT=$(CURDIR)/docs/RECONCILE_FAULT_MATRIX.md $(GO) test -count=1 -run '^TestReconcileFaultMatrix$$' ./internal/tooling/reliability/
