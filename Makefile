# Every target sets itself up: a bare clone needs only python3.11 and pip.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DOCS_STAMP  := $(VENV)/.docs-installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: demo test lint docs bench bench-full soak clean

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

# mypy also checks the documentation's build hooks, which import mkdocs' libraries.
lint: $(DOCS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info site
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Documentation (mkdocs.yml): docs-only deps on top of the dev venv, then the site in
# site/. --strict turns every warning into a failure: a broken link or reference, a
# public object missing from the API reference (docs/hooks/checks.py).

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# Benchmarks: bench-only deps on top of the dev venv, then the harness.
# `bench` is the quick mode (about two and a half minutes on 2 cores, the store over a
# connection included); `bench-full` uses the full sizes (about 21 minutes).

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
