# Runtimes for inline functions (docs/runtimes.md): Node.js 20 + Express, Python + Flask under
# gunicorn. The tests run the real programs with this machine's node and Debian's python3.

RUNTIMES_NODE_DIR := runtimes/node
# Debian's python3 (python3-flask, python3-gunicorn, python3-pytest). A pyenv python3 first on
# PATH cannot see those packages, hence the absolute path.
RUNTIMES_PYTHON   ?= /usr/bin/python3

.PHONY: runtimes-deps runtimes-check runtimes-test runtimes-bench

runtimes-deps: $(RUNTIMES_NODE_DIR)/node_modules/.package-lock.json ## npm ci in runtimes/node when node_modules is missing or stale

# npm ci writes node_modules/.package-lock.json; older than the lock file means stale.
$(RUNTIMES_NODE_DIR)/node_modules/.package-lock.json: $(RUNTIMES_NODE_DIR)/package.json $(RUNTIMES_NODE_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "runtimes: npm is not on PATH: install Node.js 20 (with npm)" >&2; exit 1; }
	cd $(RUNTIMES_NODE_DIR) && npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

# Fails, never skips, when a runtime's prerequisites are missing.
runtimes-check:
	@command -v node >/dev/null || { echo "runtimes: node is not on PATH: install Node.js 20" >&2; exit 1; }
	@node --version | grep -q '^v20\.' || { echo "runtimes: node is $$(node --version), the image runs Node.js 20: install it" >&2; exit 1; }
	@test -x $(RUNTIMES_PYTHON) || { echo "runtimes: $(RUNTIMES_PYTHON) is missing: apt-get install python3 (or set RUNTIMES_PYTHON)" >&2; exit 1; }
	@$(RUNTIMES_PYTHON) -c 'import flask, gunicorn, pytest' || { echo "runtimes: $(RUNTIMES_PYTHON) cannot import flask, gunicorn and pytest: apt-get install python3-flask python3-gunicorn python3-pytest" >&2; exit 1; }

runtimes-test: runtimes-deps runtimes-check ## node and python unit tests, image checks, the contract suite against both runtimes
	cd $(RUNTIMES_NODE_DIR) && node --test test/
	PYTHONDONTWRITEBYTECODE=1 $(RUNTIMES_PYTHON) -m pytest -q -p no:cacheprovider runtimes/python/tests
	SKIPPER_TEST_PYTHON=$(RUNTIMES_PYTHON) $(GO) test -p 1 -count=1 ./runtimes/...

runtimes-bench: runtimes-deps runtimes-check ## start-up and requests/s of both runtimes against bare Express and bare Flask
	SKIPPER_TEST_PYTHON=$(RUNTIMES_PYTHON) $(GO) run ./runtimes/bench -root $(CURDIR)

TEST_TARGETS  += runtimes-test
BENCH_TARGETS += runtimes-bench
