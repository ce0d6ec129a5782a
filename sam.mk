# sam.mk — AWS SAM build and deploy targets for the two Lambda functions.
# Included by the main Makefile; also usable alone: make -f sam.mk build-functions
#
#   sam build                 runs build-ReplicateFunction / build-BackfillFunction / build-ReconcileFunction (template.yaml:
#                             Metadata BuildMethod: makefile) with ARTIFACTS_DIR set by SAM
#   make build-functions      both binaries into .aws-sam/build/<Name>/bootstrap, without SAM
#   make deploy               sam build, then sam deploy (--guided the first time)
#   make invoke-backfill      runs the deployed BackfillFunction with events/backfill.json
#   make invoke-reconcile     starts a reconcile run (ReconcileFunction, events/reconcile.json)
#
# ARCH is the GOARCH and must match the template's Architecture parameter:
# arm64 (default) or, for Architecture=x86_64, ARCH=amd64 (`ARCH=amd64 sam build ...`).

GO            ?= go
ARCH          ?= arm64
SAM           ?= sam
ARTIFACTS_DIR ?= $(CURDIR)/.aws-sam/build
SAM_BUILD_DIR ?= $(CURDIR)/.aws-sam/build
SAM_DEPLOYED  ?= $(CURDIR)/.aws-sam/deployed
SAM_FLAGS     ?=

# $(call lambda-build,<package>,<output dir>): a static linux binary named bootstrap for provided.al2023.
lambda-build = CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH) $(GO) build -trimpath -ldflags "-s -w" -tags lambda.norpc -o $(2)/bootstrap $(1)

.PHONY: build-ReplicateFunction build-BackfillFunction build-ReconcileFunction build-functions sam-build deploy invoke-backfill invoke-reconcile

build-ReplicateFunction:
	$(call lambda-build,./functions/replicate,$(ARTIFACTS_DIR))

build-BackfillFunction:
	$(call lambda-build,./functions/backfill,$(ARTIFACTS_DIR))

build-ReconcileFunction:
	$(call lambda-build,./functions/reconcile,$(ARTIFACTS_DIR))

build-functions:
	$(call lambda-build,./functions/replicate,$(SAM_BUILD_DIR)/ReplicateFunction)
	$(call lambda-build,./functions/backfill,$(SAM_BUILD_DIR)/BackfillFunction)
	$(call lambda-build,./functions/reconcile,$(SAM_BUILD_DIR)/ReconcileFunction)

sam-build:
	ARCH=$(ARCH) $(SAM) build $(SAM_FLAGS)

# The first deploy is guided (stack name, parameters, confirmation saved to samconfig.toml);
# later ones reuse samconfig.toml. The marker is removed with .aws-sam (make clean).
deploy: sam-build
	@if [ -f "$(SAM_DEPLOYED)" ]; then \
		echo "$(SAM) deploy $(SAM_FLAGS)"; $(SAM) deploy $(SAM_FLAGS); \
	else \
		echo "$(SAM) deploy --guided $(SAM_FLAGS)"; $(SAM) deploy --guided $(SAM_FLAGS); \
	fi
	@mkdir -p "$(dir $(SAM_DEPLOYED))" && touch "$(SAM_DEPLOYED)"

invoke-backfill:
	$(SAM) remote invoke BackfillFunction --event-file events/backfill.json $(SAM_FLAGS)

# A reconcile run now, of everything in scope (or of events/reconcile.json's scope).
invoke-reconcile:
	$(SAM) remote invoke ReconcileFunction --event-file events/reconcile.json $(SAM_FLAGS)
