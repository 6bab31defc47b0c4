# commonpool: the two commands are `make demo` and `make test`.
# Prefer the system interpreter: the donor-safety test runs jobs as `nobody`, which
# cannot execute a Python kept in root's home (pyenv's, mode 0700).
PYTHON ?= $(shell test -x /usr/bin/python3.11 && echo /usr/bin/python3.11 || echo python3.11)
VENV := .venv
BIN := $(VENV)/bin
BASE_STAMP := $(VENV)/.installed-base
TEST_STAMP := $(VENV)/.installed-test
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: demo test lint install clean browser

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "commonpool needs $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The demo needs only the package; the tests also need the workload extras (Keras,
# Transformers, ONNX, TensorFlow) that their jobs import.
$(BASE_STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/pip install --quiet -e .
	@touch $(BASE_STAMP)

$(TEST_STAMP): $(BASE_STAMP)
	$(BIN)/pip install --quiet -e '.[test,workloads,tensorflow]'
	@touch $(TEST_STAMP)

install: $(BASE_STAMP)

demo: $(BASE_STAMP)
	$(BIN)/commonpool demo

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

# The browser tests drive Debian's Chromium (never a downloaded browser): installed with apt
# when missing and we may (root, or passwordless sudo); otherwise they skip, loudly (under
# CI=true they fail instead: CI must run them).
CHROMIUM := /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else SUDO=none; fi; \
	if [ "$$SUDO" != none ] && command -v apt-get >/dev/null; then \
		echo "installing Debian chromium for the browser tests (apt-get)"; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver \
		|| { $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q chromium chromium-driver; } \
		|| echo "!!! apt-get could not install chromium"; \
	fi; \
	if [ ! -x $(CHROMIUM) ]; then \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; \
		echo "!!! $(CHROMIUM) is missing and cannot be installed here:"; \
		echo "!!! the dashboard's browser tests (tests/browser) will SKIP"; \
		echo "!!! (install it: apt-get install chromium; under CI=true they fail)"; \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; \
	fi

# PostgreSQL tests run when the local server answers; pytest's exit 5 (no tests) fails.
# Two pytest-xdist workers: the tests that start Ray run in order on one of them, the
# other modules beside (tests/conftest.py, `pytest_xdist_make_scheduler`).
PYTEST_WORKERS ?= -n 2
test: $(TEST_STAMP) lint browser
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect('host=127.0.0.1 port=5432 dbname=test user=postgres', connect_timeout=3).close()" 2>/dev/null; then \
		echo "PostgreSQL answers: PostgreSQL tests enabled"; \
		export COMMONPOOL_TEST_POSTGRES_URL="$(PG_URL)"; \
	else echo "PostgreSQL not reachable: PostgreSQL tests will skip"; fi; \
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) build *.egg-info
