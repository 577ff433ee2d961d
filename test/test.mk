# The local control plane for humans (dev-up/dev-down) and the foundation's own tests.
.PHONY: dev-up dev-down dev-status test-cluster test-unit

dev-up: tools ## start the local control plane; writes .dev/kubeconfig
	$(GO) run ./test/cmd/skipper-dev up -dir $(DEV_DIR)

dev-down: ## stop every process dev-up started and remove .dev
	$(GO) run ./test/cmd/skipper-dev down -dir $(DEV_DIR)

dev-status:
	$(GO) run ./test/cmd/skipper-dev status -dir $(DEV_DIR)

test-cluster: tools ## the control plane itself: pods run, the garbage collector works, nothing left behind
	$(GO) test -count=1 ./test/cluster/... ./tools/...

TEST_TARGETS += test-cluster
