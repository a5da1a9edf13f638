# Godel: `make demo` and `make test` work on a fresh clone (they create .venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PI_DIR := tools/pi
PI_STAMP := $(PI_DIR)/node_modules/.installed
DEMO_HOME ?= $(CURDIR)/.demo-home
PYTEST_ARGS ?=
BENCH_ARGS ?=
# pytest-textual-snapshot 1.1.0 pins syrupy==4.8.0, which declares pytest<9: pip refuses
# them beside pytest 9, under which both run (tests/tui/test_snapshots.py). So they are
# installed without that check, at the versions in constraints.txt.
SNAPSHOT_PKGS := pytest-textual-snapshot syrupy

.PHONY: setup demo test test-fast lint bench screenshots clean help

help:
	@echo "make demo   - set up and run the demo (godel do on a scratch repo: planned, edited by"
	@echo "              shell, native and pi agents in worktrees, gated, merged, under a budget)"
	@echo "make test   - set up, lint and run the whole test suite"
	@echo "make lint   - ruff, mypy and the import contract"
	@echo "make bench  - run the benchmarks, write docs/benchmarks.md"
	@echo "              (BENCH_ARGS='--compare-with DIR': beside an older checkout's figures;"
	@echo "              BENCH_ARGS='--only cli', '--only memory' or '--only tui': that section alone)"
	@echo "make screenshots - redraw screenshots/*.svg (the README's pictures of the console)"
	@echo "make setup  - create .venv and install everything (Python packages, pinned pi)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps -c constraints.txt $(SNAPSHOT_PKGS)
	touch $(STAMP)

# The pinned pi coding agent, from its lockfile, into tools/pi/node_modules (git-ignored).
$(PI_STAMP): $(PI_DIR)/package.json $(PI_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed to install pi (apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix $(PI_DIR) --no-audit --no-fund --loglevel=error
	touch $(PI_STAMP)

setup: $(STAMP) $(PI_STAMP)

demo: setup
	GODEL_HOME=$(DEMO_HOME) $(VENV)/bin/godel demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -n 2 -x $(PYTEST_ARGS)

bench: setup
	GODEL_CONFIG=/nonexistent $(PY) tests/bench/run_benchmarks.py $(BENCH_ARGS)

# The console replaying tests/tui/fixtures/console.jsonl: the scenes the snapshot tests pin.
screenshots: setup
	$(PY) scripts/screenshots.py --out screenshots

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info $(DEMO_HOME)
