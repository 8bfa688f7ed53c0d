# Two commands for a machine with only Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test install lint bench stop-services

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# Install; start the embedded PostgreSQL/Redis (unless DATABASE_URL/REDIS_URL are set); migrate as
# the owner role; load the demo data; run runserver on 127.0.0.1:$(DEMO_PORT) beside a Celery worker
# (and the webhook polling worker when webhooks do not go through Celery). Ctrl-C stops them all.
DEMO_PORT ?= 8000
demo: install
	$(PY) -m example_project.run_demo --port $(DEMO_PORT)

# Stop the embedded PostgreSQL and Redis that `make demo` and `make test` leave running in .data/.
stop-services:
	$(PY) -m example_project.run_demo --stop-services

# Install, start the services the tests use, run the whole suite.
test: install
	$(PY) -m pytest

# ruff, then mypy on the six packages ([tool.mypy] in pyproject.toml). The Django plugin imports
# tests.settings; URLs of its own keep that import from starting the embedded PostgreSQL and
# Redis (nothing connects to them).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DATABASE_URL=postgres://typecheck@127.0.0.1:1/typecheck REDIS_URL=redis://127.0.0.1:1/0 \
		$(VENV)/bin/mypy

bench: install
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt
	@for script in benchmarks/[!_]*.py; do echo "== $$script"; $(PY) $$script || exit 1; done
