# The local control plane for humans (dev-up/dev-down) and the foundation's own tests.
.PHONY: dev-up dev-down dev-status test-cluster test-demo test-keda test-e2e test-images demo

demo: tools tools-keda build runtimes-deps ## the main job end to end on the local control plane
	bash test/demo/demo.sh

# The KEDA operator runs by default (issue 7); DEV_UP_FLAGS= starts the control plane without it.
DEV_UP_FLAGS ?= -keda

dev-up: tools tools-keda build ## start the local control plane, the KEDA operator and skipper-webhook; writes .dev/kubeconfig
	$(GO) run ./test/cmd/skipper-dev up -dir $(DEV_DIR) -webhook $(BIN)/skipper-webhook $(DEV_UP_FLAGS)

dev-down: ## stop every process dev-up started and remove .dev
	$(GO) run ./test/cmd/skipper-dev down -dir $(DEV_DIR)

dev-status:
	$(GO) run ./test/cmd/skipper-dev status -dir $(DEV_DIR)

test-cluster: tools ## the control plane itself: pods run, the garbage collector works, nothing left behind
	$(GO) test -count=1 ./test/cluster/... ./tools/...

test-demo: tools tools-keda build runtimes-deps ## make demo on a cluster of its own, so CI proves the README's first command
	DEV_DIR=$$(mktemp -d)/dev bash test/demo/demo.sh

TEST_TARGETS += test-cluster test-demo

test-keda: tools tools-keda ## the real KEDA operator takes Deployments 0 -> 1 -> 0 on PostgreSQL, MySQL and Redis
	$(GO) test -count=1 ./test/keda/...

TEST_TARGETS += test-keda

test-e2e: tools tools-keda build runtimes-deps ## functions created with the plugin, scaled 0 -> 1 -> 0 by KEDA, events handled by run --local
	$(GO) test -count=1 -timeout 15m ./test/e2e/...

TEST_TARGETS += test-e2e

test-images: ## the skipper-webhook and skipper-poll Dockerfiles, checked without a container engine
	$(GO) test -count=1 ./test/images/ ./internal/dockerfile/

TEST_TARGETS += test-images
