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
SAM_INSTALL   := https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/install-sam-cli.html
ARTIFACTS_DIR ?= $(CURDIR)/.aws-sam/build
SAM_BUILD_DIR ?= $(CURDIR)/.aws-sam/build
SAM_DEPLOYED  ?= $(CURDIR)/.aws-sam/deployed
SAM_FLAGS     ?=

# $(call lambda-build,<package>,<output dir>): a static linux binary named bootstrap for provided.al2023.
lambda-build = CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH) $(GO) build -trimpath -ldflags "-s -w" -tags lambda.norpc -o $(2)/bootstrap $(1)

.PHONY: build-ReplicateFunction build-BackfillFunction build-ReconcileFunction build-functions check-sam sam-build deploy invoke-backfill invoke-reconcile

# TRUST_DIR holds the promotion gates' trust material (public keys, Sigstore trusted roots,
# Notation trust stores) that the rules name by file (publicKeyFile: trust/cosign.pub …):
# copied into the replicate function's code as trust/ when it exists (docs/PROMOTION.md).
TRUST_DIR ?= trust
copy-trust = if [ -d "$(TRUST_DIR)" ]; then rm -rf "$(1)/trust" && cp -R "$(TRUST_DIR)" "$(1)/trust"; fi

## build-ReplicateFunction: the replicate function's bootstrap (and TRUST_DIR, as trust/) into ARTIFACTS_DIR (what sam build runs)
build-ReplicateFunction:
	$(call lambda-build,./functions/replicate,$(ARTIFACTS_DIR))
	@$(call copy-trust,$(ARTIFACTS_DIR))

## build-BackfillFunction: the backfill function's bootstrap into ARTIFACTS_DIR (what sam build runs)
build-BackfillFunction:
	$(call lambda-build,./functions/backfill,$(ARTIFACTS_DIR))

## build-ReconcileFunction: the reconcile function's bootstrap into ARTIFACTS_DIR (what sam build runs)
build-ReconcileFunction:
	$(call lambda-build,./functions/reconcile,$(ARTIFACTS_DIR))

## build-functions: the three bootstraps into .aws-sam/build/<Function>/bootstrap, without SAM
build-functions:
	$(call lambda-build,./functions/replicate,$(SAM_BUILD_DIR)/ReplicateFunction)
	@$(call copy-trust,$(SAM_BUILD_DIR)/ReplicateFunction)
	$(call lambda-build,./functions/backfill,$(SAM_BUILD_DIR)/BackfillFunction)
	$(call lambda-build,./functions/reconcile,$(SAM_BUILD_DIR)/ReconcileFunction)

## check-sam: fail, saying how to install it, when the AWS SAM CLI (SAM, default sam) is missing
check-sam:
	@command -v $(SAM) >/dev/null 2>&1 || { \
		echo "the AWS SAM CLI ($(SAM)) is not installed: install it (e.g. pip install aws-sam-cli; see $(SAM_INSTALL)), or name it with SAM=/path/to/sam" >&2; \
		exit 1; }

## sam-build: sam build (every function, through build-<Function>), into .aws-sam/build
sam-build: check-sam
	ARCH=$(ARCH) $(SAM) build $(SAM_FLAGS)

# The first deploy is guided (stack name, parameters, confirmation saved to samconfig.toml);
# later ones reuse samconfig.toml. The marker is removed with .aws-sam (make clean).
## deploy: sam build, then sam deploy (--guided the first time, saving samconfig.toml); needs the AWS SAM CLI and credentials
deploy: sam-build
	@if [ -f "$(SAM_DEPLOYED)" ]; then \
		echo "$(SAM) deploy $(SAM_FLAGS)"; $(SAM) deploy $(SAM_FLAGS); \
	else \
		echo "$(SAM) deploy --guided $(SAM_FLAGS)"; $(SAM) deploy --guided $(SAM_FLAGS); \
	fi
	@mkdir -p "$(dir $(SAM_DEPLOYED))" && touch "$(SAM_DEPLOYED)"

## invoke-backfill: run the deployed BackfillFunction with events/backfill.json (sam remote invoke)
invoke-backfill: check-sam
	$(SAM) remote invoke BackfillFunction --event-file events/backfill.json $(SAM_FLAGS)

## invoke-reconcile: start a reconcile run now with the deployed ReconcileFunction (events/reconcile.json's scope; {} for everything)
invoke-reconcile: check-sam
	$(SAM) remote invoke ReconcileFunction --event-file events/reconcile.json $(SAM_FLAGS)
