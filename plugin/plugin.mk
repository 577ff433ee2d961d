# kubectl skipper: golden transcript tests on the local control plane with the webhook and a
# real Loki, run --local against real PostgreSQL and Redis, the krew install test, the list
# benchmark and the release archives with their krew manifest.
PLUGIN_PKGS := ./plugin/...
DIST_DIR    ?= $(CURDIR)/dist

.PHONY: plugin-test plugin-krew-test plugin-bench plugin-golden dist

plugin-test: tools tools-loki tools-krew ## plugin: every test (transcripts, run --local, krew install)
	$(GO) test -count=1 -p 1 -timeout 20m $(PLUGIN_PKGS)

plugin-krew-test: tools tools-krew ## plugin: validate the manifest and install the archive with krew
	$(GO) test -count=1 -run TestKrew ./plugin/internal/dist

plugin-bench: tools ## plugin: list over 1,000 functions vs kubectl get deploy (docs/benchmarks.md)
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 15m ./plugin/bench

plugin-golden: tools tools-loki ## plugin: rewrite the transcripts after a deliberate change (review the diff)
	$(GO) test -count=1 -p 1 ./plugin/cmd -run TestPlugin -update

dist: tools-krew ## plugin: archives for linux/darwin/windows x amd64/arm64, sha256sums.txt, krew/skipper.yaml
	$(GO) run ./plugin/internal/dist -version $(VERSION) -out $(DIST_DIR) -manifest krew/skipper.yaml
	$(TOOLS_DIR)/validate-krew-manifest -manifest krew/skipper.yaml -skip-install

TEST_TARGETS  += plugin-test
BENCH_TARGETS += plugin-bench
