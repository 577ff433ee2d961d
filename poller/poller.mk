# skipper-poll: unit, integration and chaos tests against real PostgreSQL, MariaDB, Redis and
# MinIO on 127.0.0.1 (MinIO from $(TOOLS_DIR)/minio, built by `make tools-minio`).
POLLER_PKGS := ./poller/...

.PHONY: poller-test poller-bench poller-fuzz
poller-test: ## skipper-poll unit + integration + chaos tests (fuzz seed corpora included)
	@test -x $(TOOLS_DIR)/minio || $(GO) run ./tools/build -out $(TOOLS_DIR) minio
	MINIO_BIN=$(TOOLS_DIR)/minio $(GO) test -p 1 -count=1 -timeout 12m $(POLLER_PKGS)

poller-bench: ## skipper-poll throughput vs the raw loop, start-to-ready and RSS
	$(GO) test -p 1 -count=1 -run '^$$' -bench . -benchtime 1x -timeout 10m ./poller/bench/

poller-fuzz: ## fuzz the placeholder translation and the MinIO decoder (FUZZTIME each, default 60s)
	$(GO) test -run '^$$' -fuzz '^FuzzTranslate$$' -fuzztime $(or $(FUZZTIME),60s) ./poller/sqlsource/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(or $(FUZZTIME),60s) ./poller/miniosource/

TEST_TARGETS  += poller-test
BENCH_TARGETS += poller-bench
