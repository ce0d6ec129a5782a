# ecr-replicator — one file for building, testing and deploying.
# `make test` is the one test command (gofmt, go vet, every test, integration included).

SHELL        := /bin/bash
GO           ?= go
ARCH         ?= arm64
ARTIFACTS_DIR ?= $(CURDIR)/.aws-sam/build
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -s -w -X github.com/ecr-replicator/ecr-replicator/internal/cli.Version=$(VERSION)
TEST_TIMEOUT ?= 9m

.PHONY: all build cli test lint fmt-check vet deadcode cfn-lint clean demo demo-bin

## all: the default target: build
all: build

## build: the CLI into ./bin and both Lambda bootstraps into .aws-sam/build/<Function>/
build: cli build-functions

## cli: the CLI into ./bin/ecr-replicator (version from git describe)
cli:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/ecr-replicator ./cmd/ecr-replicator

## test: gofmt check, go vet, dead code, cfn-lint where installed, and every test (unit, integration against the sandbox, short fuzz seeds)
test: fmt-check vet deadcode cfn-lint
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

## fmt-check: fail listing the Go files gofmt would change
fmt-check:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## vet: go vet, of the module and of bench/
vet:
	$(GO) vet ./...
	$(GO) -C bench vet ./...

# deadcode (golang.org/x/tools/cmd/deadcode, pinned by go.mod's tool block), twice:
# - with -test: no function that no program and no test of the module reaches, tooling
#   included;
# - without -test, over the product packages (cmd, functions, internal but
#   internal/tooling): no exported API that only tests call, but the test hooks declared
#   in internal/tooling/testing/testhooks.txt (file and function; positions ignored).
# Findings are printed and fail the target; deadcode's own errors fail it too. The bench
# module (bench/go.mod) is tooling and not checked: it costs another 20 s of make test.
## deadcode: fail listing the functions no program or test reaches, and product API only tests call
deadcode:
	@test -r internal/tooling/testing/testhooks.txt || { echo "internal/tooling/testing/testhooks.txt missing"; exit 1; }; \
	dc=$$($(GO) tool -n deadcode) || exit 1; \
	out=$$($$dc -test ./...) || { echo "$$out"; exit 1; }; \
	api=$$($$dc -filter '^github.com/ecr-replicator/ecr-replicator/(cmd|functions|internal)/' ./...) || { echo "$$api"; exit 1; }; \
	api=$$(echo "$$api" | grep -v '^internal/tooling/' | sed -E 's/:[0-9]+:[0-9]+:/:/' | grep -vxF -f internal/tooling/testing/testhooks.txt | sed '/^$$/d'); \
	if [ -n "$$out" ]; then echo "dead code (delete it, or call it from a program or a test):"; echo "$$out"; fi; \
	if [ -n "$$api" ]; then echo "product API only tests call (delete it, or declare it in internal/tooling/testing/testhooks.txt):"; echo "$$api"; fi; \
	[ -z "$$out" ] && [ -z "$$api" ]

## lint: fmt-check, vet, deadcode and cfn-lint, without the tests
lint: fmt-check vet deadcode cfn-lint

# cfn-lint is AWS's CloudFormation linter (it applies the SAM transform, as `sam validate
# --lint` does); -c I includes its informational checks (-I only turns on its logging). It
# is Python, not a Go tool, so it is not pinned: where it is not installed, the templates
# are not linted and this says so.
CFN_LINT ?= cfn-lint
TEMPLATES := template.yaml infra/destination-role.yaml
## cfn-lint: lint both templates with AWS's linter (informational checks on), where it is installed
cfn-lint:
	@if command -v $(CFN_LINT) >/dev/null 2>&1; then \
		echo "$(CFN_LINT) -c I -- $(TEMPLATES)"; $(CFN_LINT) -c I -- $(TEMPLATES); \
	else \
		echo "cfn-lint is not installed: the templates were NOT linted (pip install cfn-lint)"; \
	fi

DEMO_BIN := .demo/bin

## demo: the whole product on this machine (sandbox, both functions under the Lambda RIE), no AWS, no Docker
demo: demo-bin
	$(GO) run ./cmd/ecr-replicator demo --bin $(DEMO_BIN)

## demo-bin: the two bootstraps and the Lambda RIE for this machine, into .demo/bin (make demo builds them)
demo-bin:
	@mkdir -p $(DEMO_BIN)
	CGO_ENABLED=0 $(GO) build -tags lambda.norpc -o $(DEMO_BIN)/replicate-bootstrap ./functions/replicate
	CGO_ENABLED=0 $(GO) build -tags lambda.norpc -o $(DEMO_BIN)/backfill-bootstrap ./functions/backfill
	CGO_ENABLED=0 $(GO) build -tags lambda.norpc -o $(DEMO_BIN)/reconcile-bootstrap ./functions/reconcile
	CGO_ENABLED=0 $(GO) build -o $(DEMO_BIN)/aws-lambda-rie github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie

## clean: remove bin/, .aws-sam/ (and the first-deploy marker) and .demo/
clean:
	rm -rf bin .aws-sam .demo

## help: this list: every target, with its "## target:" comment (in this file and the ones it includes)
.PHONY: help
help:
	@awk '/^## [A-Za-z0-9_-]+: /{sub(/^## /, ""); n=index($$0, ": "); printf "  %-24s %s\n", substr($$0, 1, n-1), substr($$0, n+2)}' $(MAKEFILE_LIST)
	@documented="$$(grep -hoE '^## [A-Za-z0-9_-]+:' $(MAKEFILE_LIST) | sed 's/^## //; s/:$$//' | paste -sd'|' -)"; \
	others="$$(grep -hoE '^[A-Za-z][A-Za-z0-9_-]*:([^=]|$$)' $(MAKEFILE_LIST) | cut -d: -f1 | sort -u | grep -vxE "$$documented" | paste -sd' ' -)"; \
	if [ -n "$$others" ]; then printf '  %-24s %s\n' "(undescribed)" "$$others"; fi

# SAM build/deploy targets (build-ReplicateFunction, build-BackfillFunction,
# build-ReconcileFunction, deploy, invoke-backfill, invoke-reconcile) and the benchmarks.
include sam.mk
include bench.mk
include reliability.mk
