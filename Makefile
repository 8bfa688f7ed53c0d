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

# Install, start embedded PostgreSQL/Redis (unless DATABASE_URL/REDIS_URL are set), migrate,
# load the demo tenants and serve on http://127.0.0.1:8000/.
demo: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py better_tenant seed --name "Acme" --slug acme --if-missing
	$(PY) manage.py better_tenant seed --name "Globex" --slug globex --if-missing
	$(PY) manage.py runserver 127.0.0.1:8000

# Install, start the services the tests use, run the whole suite.
test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt
	@for script in benchmarks/[!_]*.py; do echo "== $$script"; $(PY) $$script || exit 1; done
