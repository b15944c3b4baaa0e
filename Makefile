# Every target sets itself up: a bare clone needs only python3.11 and pip.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench bench-full soak clean

# Editable, so edits are live; pyproject.toml's package-dir makes the install a plain
# path that mypy follows (a user's `mypy --strict` outside the repo finds sessionactor).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Benchmarks (issue 5): bench-only deps on top of the dev venv, then the harness.
# `bench` is the quick mode (under two minutes); `bench-full` uses the issue's sizes.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run --quick

bench-full: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run --full

# Opt-in, not part of `make test`: minutes of mixed load with expiry (MINUTES=3 by default).
soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --minutes $(or $(MINUTES),3)
