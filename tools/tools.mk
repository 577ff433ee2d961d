# Local control plane and test services, built from the Go module proxy once per version.
CONTROL_PLANE := etcd kubernetes kwok

.PHONY: tools tools-all
tools: ## etcd, kube-apiserver, controller-manager, scheduler, kwok into $(TOOLS_DIR)
	$(GO) run ./tools/build -out $(TOOLS_DIR) $(CONTROL_PLANE)

tools-%: ## one tool: tools-keda, tools-minio, tools-loki, tools-krew
	$(GO) run ./tools/build -out $(TOOLS_DIR) $*

.PHONY: bench-tools
bench-tools: ## cold build time of the control plane (empty build cache); takes ~15 minutes
	tools/bench-cold.sh
