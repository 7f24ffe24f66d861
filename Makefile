# One entry point for people and CI. Every target sets up its own virtual environment.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NPM    ?= npm
# Stoplight Prism (pinned in contract/package-lock.json), installed by npm ci.
PRISM_STAMP := contract/node_modules/.installed
CONTRACT_ROUNDS ?= 40

.PHONY: install demo test ensure-postgres ensure-faketime ensure-alertmanager ensure-chromium contract bench bench-growth lint typecheck check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/datafold-notifier demo

# The PostgreSQL tests start a private server: make sure its binaries are installed.
ensure-postgres:
	sh tools/ensure-postgres.sh

# The clock-skew tests run a replica under libfaketime.
ensure-faketime:
	sh tools/ensure-faketime.sh

# The Alertmanager tests start a private Alertmanager (Debian's prometheus-alertmanager).
ensure-alertmanager:
	sh tools/ensure-alertmanager.sh

# The status page tests load the page in headless Chromium (Debian's chromium).
ensure-chromium:
	sh tools/ensure-chromium.sh

test: $(STAMP) ensure-postgres ensure-faketime ensure-alertmanager ensure-chromium
	$(BIN)/python -m pytest

$(PRISM_STAMP): contract/package.json $(wildcard contract/package-lock.json)
	@command -v $(NPM) >/dev/null || { echo "make contract needs Node.js >= 18.20.1 with npm (for Prism 5.14.2)" >&2; exit 1; }
	cd contract && if [ -f package-lock.json ]; then $(NPM) ci --no-audit --no-fund; else $(NPM) install --no-audit --no-fund; fi
	touch $(PRISM_STAMP)

# The client against Prism mocking the published Datafold spec (contract/run_contract.py).
contract: $(STAMP) $(PRISM_STAMP)
	$(BIN)/python contract/run_contract.py --rounds $(CONTRACT_ROUNDS)

# Speed and memory figures at 5,000 monitors (about 10 minutes): the real CLI against the
# simulator, polling and feed (bench/run_bench.py; the full table: BENCH_ARGS="--sizes
# 1000,5000,10000 --modes poll,feed"), then push triggers and trigger floods (bench/trigger_bench.py).
BENCH_ARGS ?= --sizes 5000 --modes poll,feed
TRIGGER_BENCH_ARGS ?= --monitors 5000 --modes trigger
bench: $(STAMP)
	$(BIN)/python bench/run_bench.py $(BENCH_ARGS)
	$(BIN)/python bench/trigger_bench.py $(TRIGGER_BENCH_ARGS)
	$(BIN)/python bench/state_io.py
	$(BIN)/python bench/hostile.py

# Growth with N in feed mode (about 25 minutes): bench/growth.json, plotted to docs/growth.png.
GROWTH_ARGS ?= --sizes 5000,10000,20000,50000 --modes feed --warmup 2 --cycles 3
bench-growth: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run_bench.py $(GROWTH_ARGS) --json bench/growth.json
	$(BIN)/python bench/plot.py bench/growth.json docs/growth.png

lint: $(STAMP)
	$(BIN)/ruff check notifier tests contract bench
	$(BIN)/ruff format --check notifier tests contract bench

typecheck: $(STAMP)
	$(BIN)/mypy notifier contract/run_contract.py

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache contract/node_modules contract/.out
