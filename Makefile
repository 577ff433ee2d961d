# Skipper. `make demo` runs the main job on a local control plane; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := build

GO        ?= go
BIN       := $(CURDIR)/bin
# Control-plane and service binaries built from the Go module proxy (tools/versions.env).
# CI points this at a cache outside the clone so a fresh clone does not rebuild them.
TOOLS_DIR ?= $(BIN)/tools
DEV_DIR   ?= $(CURDIR)/.dev
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/getkipper/skipper/internal/version.Version=$(VERSION)
# The server binaries are built as their images build them (webhook/Dockerfile,
# poller/Dockerfile): static, reproducible paths, stripped.
SERVER_BUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)"
export TOOLS_DIR

# Each area adds its own test and bench targets to these lists in its .mk file.
TEST_TARGETS  :=
BENCH_TARGETS :=

include tools/tools.mk
include test/test.mk
-include webhook/webhook.mk
-include plugin/plugin.mk
-include poller/poller.mk
-include runtimes/runtimes.mk

.PHONY: build
build: ## bin/kubectl-skipper, bin/skipper-webhook, bin/skipper-poll
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/kubectl-skipper ./plugin/cmd/kubectl-skipper
	$(SERVER_BUILD) -o $(BIN)/skipper-webhook ./webhook/cmd/skipper-webhook
	$(SERVER_BUILD) -tags timetzdata -o $(BIN)/skipper-poll ./poller/cmd/skipper-poll

.PHONY: fmt vet lint
fmt:
	gofmt -w $$(git ls-files '*.go')
vet:
	$(GO) vet ./...
lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: test
test: lint build $(TEST_TARGETS) ## every test: unit, integration, contract, fuzz seeds

.PHONY: bench
bench: build $(BENCH_TARGETS) ## benchmarks; results go to docs/benchmarks.md

.PHONY: help
help:
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'
