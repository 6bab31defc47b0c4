# commonpool: the two commands are `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: demo test lint install clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "commonpool needs $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/pip install --quiet -e '.[test,workloads]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/commonpool demo

lint: $(STAMP)
	$(BIN)/ruff check .

# PostgreSQL tests run when the local server answers; pytest's exit 5 (no tests) fails.
test: $(STAMP) lint
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect('host=127.0.0.1 port=5432 dbname=test user=postgres', connect_timeout=3).close()" 2>/dev/null; then \
		echo "PostgreSQL answers: PostgreSQL tests enabled"; \
		export COMMONPOOL_TEST_POSTGRES_URL="$(PG_URL)"; \
	else echo "PostgreSQL not reachable: PostgreSQL tests will skip"; fi; \
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) build *.egg-info
