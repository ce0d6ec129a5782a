# bench-latency.mk — `make bench-latency`: push-to-replica latency through the deployed
# push path. Included by bench.mk; not part of `make test`.
#
# In the sandbox on 127.0.0.1 (every API, registry and storage request delayed by
# LATENCY_DELAY), the push path as template.yaml deploys it: ECR push events → rule →
# ReplicationQueue → event source → the replicate function's real bootstrap under the
# Lambda Runtime Interface Emulator, one per execution environment. For (a) a 1 MiB
# image, (b) a LATENCY_BIG image in 2 layers and (c) a 4-platform index of 256 KiB
# platforms, LATENCY_PUSHES fresh images are pushed one after another (remote.Write /
# remote.WriteIndex, as crane push does), each waiting for its replica; per push it takes
# end-to-end, queueing, function and transfer times from the access log and the
# invocations. Done for each Lambda-side configuration in LATENCY_CONFIGS: default (the
# template's BatchSize 5, no batching window) and window (BatchSize 10,
# MaximumBatchingWindow 1 s).
#
#   LATENCY_PUSHES   pushes per image kind and configuration (50)
#   LATENCY_DELAY    the sandbox's delay per request (25ms)
#   LATENCY_BIG      size of image (b) (100MiB)
#   LATENCY_CONFIGS  default,window
#   LATENCY_DATA     where the run's directory is made and removed (bench/_work); disk:
#                    about twice LATENCY_BIG plus the small images, per configuration
#   LATENCY_FLAGS    more flags (-small, -platform-size, -platforms, -big-layers, -kinds,
#                    -timeout: per push, 2m; see `$(BENCH_BIN)/latency -h`)
#
#   make bench-latency                                        # full size: minutes, on a quiet machine
#   make bench-latency LATENCY_PUSHES=5 LATENCY_BIG=10MiB     # quick
#
# Results: stdout and bench/RESULTS.md.

LATENCY_PUSHES  ?= 50
LATENCY_DELAY   ?= 25ms
LATENCY_BIG     ?= 100MiB
LATENCY_CONFIGS ?= default,window
LATENCY_DATA    ?= $(CURDIR)/bench/_work
LATENCY_FLAGS   ?=

.PHONY: bench-latency

## bench-latency: push-to-replica latency through the deployed push path in the sandbox (p50/p99 per image kind and batching configuration)
bench-latency:
	mkdir -p $(BENCH_BIN) $(LATENCY_DATA)
	$(GO) -C bench build -o $(BENCH_BIN)/latency ./latency
	$(BENCH_BIN)/latency -root $(CURDIR) -pushes $(LATENCY_PUSHES) -latency $(LATENCY_DELAY) -big $(LATENCY_BIG) \
		-configs $(LATENCY_CONFIGS) -data $(LATENCY_DATA) -out $(CURDIR)/bench/RESULTS.md $(LATENCY_FLAGS)
