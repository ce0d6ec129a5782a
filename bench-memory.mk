# bench-memory.mk — `make bench-memory`: the smallest Lambda. Included by
# bench.mk; not part of `make test`.
#
# The replicate function's real bootstrap, under the Lambda Runtime Interface Emulator,
# copies (a) a MEMORY_LAYER single-layer image and (b) a 4-platform index of
# MEMORY_PLATFORM per platform, between the sandbox's two accounts, inside a cgroup v1
# memory cgroup limited to MEMORY_LIMIT (Lambda's smallest setting, 128 MB); then
# `crane copy` does the same in the same limit. Records success, wall time, peak memory,
# CPU and whether the OOM killer fired.
#
# NEEDS ROOT AND CGROUP V1 (the memory and cpuacct controllers): it makes cgroups under
# its own and moves the emulator and crane into them. Disk: about 3× the images' size
# under MEMORY_DATA (removed at the end).
#
#   make bench-memory                                               # 4 GiB and 4 × 1 GiB
#   make bench-memory MEMORY_LAYER=256MiB MEMORY_PLATFORM=64MiB     # quick
#
# Results: stdout and bench/RESULTS.md.

MEMORY_LAYER    ?= 4GiB
MEMORY_PLATFORM ?= 1GiB
MEMORY_LIMIT    ?= 128MiB
MEMORY_DATA     ?= $(CURDIR)/bench/_work
MEMORY_FLAGS    ?=

.PHONY: bench-memory

## bench-memory: copy a 4 GiB image and a 4 × 1 GiB index with the replicate function in 128 MiB, then with crane (needs root and cgroup v1)
bench-memory:
	@if [ "$$(id -u)" != 0 ]; then \
		echo "bench-memory: needs root: it makes cgroup v1 memory and cpuacct cgroups and runs the function and crane in them (try: sudo make bench-memory)" >&2; exit 1; fi
	@if ! grep -Eq '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' /proc/self/cgroup || ! grep -Eq '^[0-9]+:([^:]*,)?cpuacct(,[^:]*)?:' /proc/self/cgroup; then \
		echo "bench-memory: needs cgroup v1 with the memory and cpuacct controllers mounted; this machine has none (cgroup v2 only?)" >&2; exit 1; fi
	mkdir -p $(BENCH_BIN) $(MEMORY_DATA)
	$(GO) -C bench build -o $(BENCH_BIN)/ github.com/google/go-containerregistry/cmd/crane
	$(GO) -C bench build -o $(BENCH_BIN)/memory ./memory
	$(BENCH_BIN)/memory -root $(CURDIR) -crane $(BENCH_BIN)/crane -data $(MEMORY_DATA) \
		-layer $(MEMORY_LAYER) -platform-size $(MEMORY_PLATFORM) -limit $(MEMORY_LIMIT) \
		-out $(CURDIR)/bench/RESULTS.md $(MEMORY_FLAGS)
