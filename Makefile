# adaptrec — see README.md. `make demo` runs the platform on a local stack of
# real components; `make test` runs every test. Both install what they need.

SHELL := /bin/bash
GO ?= go
export GOTOOLCHAIN := local
export GOFLAGS := -buildvcs=false
export CGO_ENABLED := 1

ROOT := $(abspath .)
TOOLS := $(ROOT)/.tools
TOOLBIN := $(TOOLS)/bin
export ADAPTREC_TOOLS_DIR := $(TOOLBIN)

# Pinned tool versions (see ../shared/PLATFORM.md for why these).
TEMPORAL_CLI_VERSION := v1.5.1
VERSITYGW_VERSION := v1.8.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
BUF_VERSION := v1.50.0
# ONNX Runtime for ranking: the Linux x64 library that npm's onnxruntime-node
# ships (Debian has none); github.com/yalue/onnxruntime_go v1.27.0 needs >= 1.24.
ONNXRUNTIME_VERSION := 1.30.0
ONNXRUNTIME_SHA256 := ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23

BINARIES := server worker consumers adaptrec
# The commit the binaries record (trainer code version in model metadata):
# VCS stamping is off (GOFLAGS above), so it is passed at link time.
COMMIT := $(shell git describe --always --dirty --abbrev=12 2>/dev/null)
LDFLAGS := -X github.com/adaptrec/adaptrec/internal/version.Commit=$(COMMIT)

.PHONY: all build tools test test-unit demo proto lint bench image clean help
all: build

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/server, bin/worker, bin/consumers and bin/adaptrec
	@mkdir -p bin
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/ $(addprefix ./cmd/,$(BINARIES))

# Each tool is installed into a versioned folder and linked from .tools/bin,
# so a version bump rebuilds it and an unchanged version is reused.
$(TOOLS)/temporal-$(TEMPORAL_CLI_VERSION)/temporal:
	@echo ">> building the Temporal CLI $(TEMPORAL_CLI_VERSION) (dev server + Web UI); a cold build takes 10-20 min on 2 cores, later builds reuse it"
	@mkdir -p $(dir $@)
	GOBIN=$(dir $@) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)

$(TOOLS)/versitygw-$(VERSITYGW_VERSION)/versitygw:
	@echo ">> building versitygw $(VERSITYGW_VERSION) (S3 server, ~4 min cold)"
	@mkdir -p $(dir $@)
	GOBIN=$(dir $@) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

# `npm pack` downloads the package tarball without running its install
# scripts; only the library is kept, and only if its checksum matches.
ONNXRUNTIME_NPM_PATH := package/bin/napi-v6/linux/x64/libonnxruntime.so.1
$(TOOLS)/onnxruntime-$(ONNXRUNTIME_VERSION)/libonnxruntime.so.1:
	@echo ">> fetching ONNX Runtime $(ONNXRUNTIME_VERSION) (libonnxruntime.so.1 from npm onnxruntime-node, ~110 MB download)"
	@command -v npm >/dev/null || { \
	  echo "error: npm not found: install it (apt-get install npm), or download libonnxruntime.so.1 $(ONNXRUNTIME_VERSION) yourself and set ADAPTREC_ONNXRUNTIME_LIB to its path" >&2; exit 1; }
	@set -eo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  (cd "$$tmp" && npm pack --silent onnxruntime-node@$(ONNXRUNTIME_VERSION) >/dev/null) || { \
	    echo "error: npm pack onnxruntime-node@$(ONNXRUNTIME_VERSION) failed (is the npm registry reachable?)" >&2; exit 1; }; \
	  tar -xzmf "$$tmp/onnxruntime-node-$(ONNXRUNTIME_VERSION).tgz" -C "$$tmp" $(ONNXRUNTIME_NPM_PATH) || { \
	    echo "error: onnxruntime-node-$(ONNXRUNTIME_VERSION).tgz has no $(ONNXRUNTIME_NPM_PATH)" >&2; exit 1; }; \
	  echo "$(ONNXRUNTIME_SHA256)  $$tmp/$(ONNXRUNTIME_NPM_PATH)" | sha256sum --check --status || { \
	    echo "error: $(ONNXRUNTIME_NPM_PATH) from onnxruntime-node@$(ONNXRUNTIME_VERSION) has sha256 $$(sha256sum "$$tmp/$(ONNXRUNTIME_NPM_PATH)" | cut -d' ' -f1), want $(ONNXRUNTIME_SHA256); not installed" >&2; exit 1; }; \
	  mkdir -p $(dir $@); mv "$$tmp/$(ONNXRUNTIME_NPM_PATH)" $@.partial; mv $@.partial $@
	@echo ">> ONNX Runtime $(ONNXRUNTIME_VERSION) installed in $(dir $@) (sha256 verified)"

$(TOOLBIN)/temporal: $(TOOLS)/temporal-$(TEMPORAL_CLI_VERSION)/temporal
	@mkdir -p $(TOOLBIN) && ln -sf $< $@
$(TOOLBIN)/versitygw: $(TOOLS)/versitygw-$(VERSITYGW_VERSION)/versitygw
	@mkdir -p $(TOOLBIN) && ln -sf $< $@
# internal/onnxrt looks for the library here (after ADAPTREC_ONNXRUNTIME_LIB).
$(TOOLBIN)/libonnxruntime.so: $(TOOLS)/onnxruntime-$(ONNXRUNTIME_VERSION)/libonnxruntime.so.1
	@mkdir -p $(TOOLBIN) && ln -sf $< $@

# The local Kafka-protocol broker is built from this module, so it is rebuilt
# whenever its source or go.sum changes.
$(TOOLBIN)/kafkabroker: $(wildcard devtools/kafkabroker/*.go) go.sum
	@mkdir -p $(TOOLBIN)
	$(GO) build -o $@ ./devtools/kafkabroker

.PHONY: redis-server
redis-server:
	@command -v redis-server >/dev/null || { \
	  echo ">> installing Debian's redis-server"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  ($$SUDO apt-get update -qq && $$SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null || { \
	    echo "error: could not install redis-server; install it yourself (apt-get install redis-server) or point ADAPTREC_REDIS_ADDR at a Redis server" >&2; exit 1; }; }

tools: $(TOOLBIN)/temporal $(TOOLBIN)/versitygw $(TOOLBIN)/kafkabroker $(TOOLBIN)/libonnxruntime.so redis-server ## fetch and build the local stack's tools and the ONNX Runtime library into .tools/

test: tools ## run every test (unit and integration, against real servers)
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

test-unit: ## run the tests that need no servers
	$(GO) test -count=1 -short ./...

demo: tools build ## bring up the local stack and run the demo (Ctrl-C stops it)
	./bin/adaptrec demo

bench: tools build ## run the benchmarks and print their JSON (one line each)
	./bin/adaptrec bench ingest --json
	./bin/adaptrec bench features --json
	./bin/adaptrec bench nearline --json
	./bin/adaptrec bench train --json
	./bin/adaptrec bench ann --json
	./bin/adaptrec bench serving --rate 500 --duration 30s --json
	./bin/adaptrec bench serving --rate 1500 --duration 30s --json
	./bin/adaptrec bench pipeline --json
	./bin/adaptrec eval --dataset ../shared/datasets/ml-100k --json

# Protobuf: protoc (Debian's protobuf-compiler) with pinned Go plugins, and buf
# for lint and breaking-change checks.
$(TOOLBIN)/protoc-gen-go:
	@mkdir -p $(TOOLBIN)
	GOBIN=$(TOOLBIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLBIN)/protoc-gen-go-grpc:
	@mkdir -p $(TOOLBIN)
	GOBIN=$(TOOLBIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(TOOLS)/buf-$(BUF_VERSION)/buf:
	@echo ">> building buf $(BUF_VERSION) (protobuf lint)"
	@mkdir -p $(dir $@)
	GOBIN=$(dir $@) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
.PHONY: protoc
protoc:
	@command -v protoc >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  ($$SUDO apt-get update -qq && $$SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler) >/dev/null || { \
	    echo "error: could not install protoc; apt-get install protobuf-compiler" >&2; exit 1; }; }

# Breaking changes are checked against the last commit (BUF_AGAINST to
# compare with another ref, e.g. BUF_AGAINST='.git#branch=main').
BUF_AGAINST ?= .git\#ref=HEAD
proto: protoc $(TOOLBIN)/protoc-gen-go $(TOOLBIN)/protoc-gen-go-grpc $(TOOLS)/buf-$(BUF_VERSION)/buf ## lint, check breaking changes and regenerate gen/ from proto/ (and third_party/onnx)
	$(TOOLS)/buf-$(BUF_VERSION)/buf lint
	$(TOOLS)/buf-$(BUF_VERSION)/buf breaking --against '$(BUF_AGAINST)'
	rm -rf gen/adaptrec gen/onnx
	PATH=$(TOOLBIN):$$PATH protoc -I proto \
	  --go_out=gen --go_opt=paths=source_relative \
	  --go-grpc_out=gen --go-grpc_opt=paths=source_relative \
	  $$(find proto -name '*.proto' | sort)
	@# third_party/ holds upstream schemas kept verbatim: outside buf's module
	@# (not linted, no breaking checks), Go package set here as they have none.
	PATH=$(TOOLBIN):$$PATH protoc -I third_party \
	  --go_out=gen --go_opt=paths=source_relative \
	  '--go_opt=Monnx/onnx.proto=github.com/adaptrec/adaptrec/gen/onnx;onnx' \
	  onnx/onnx.proto

# The container image of deploy/ (deploy/README.md); needs a Docker daemon.
IMAGE ?= adaptrec:$(COMMIT)
image: tools build ## build the container image $(IMAGE) from deploy/Dockerfile
	@command -v docker >/dev/null || { echo "error: docker not found: install Docker to build the image (deploy/README.md)" >&2; exit 1; }
	docker build -f deploy/Dockerfile --build-arg ONNXRUNTIME_VERSION=$(ONNXRUNTIME_VERSION) -t $(IMAGE) .

clean: ## remove build outputs (keeps .tools and the local stack's state)
	rm -rf bin
