# Webhook: unit, golden, fuzz seeds, manifests and integration tests on the local control plane.
.PHONY: webhook-test webhook-bench webhook-fuzz webhook-golden

webhook-test: tools ## webhook: every test (kubectl from $(TOOLS_DIR) renders manifests/ and runs the dry-run test)
	PATH="$(TOOLS_DIR):$$PATH" $(GO) test -count=1 -p 1 ./webhook/...

webhook-bench: tools ## webhook: handler latency p50/p99 and Deployment create latency with/without the webhook
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 10000x ./webhook/admission
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./webhook/integration

webhook-fuzz: ## webhook: fuzz the annotation parser for 60 s
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./webhook/function

webhook-golden: ## webhook: rewrite the golden files after a deliberate change (review the diff)
	$(GO) test ./webhook/function -run Golden -update

TEST_TARGETS  += webhook-test
BENCH_TARGETS += webhook-bench
