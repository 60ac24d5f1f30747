# Two commands: `make run` (the whole stack) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
PY := $(BIN)/python
export PATH := $(BIN):$(PATH)
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: install run test lint lint-migrations format bench soak deploy-drill clean

# Installs exactly what uv.lock pins (runtime + the dev extra), nothing newer: `uv sync --locked`
# refuses a lock that is stale against pyproject.toml (`uv lock` refreshes it; commit both).
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
$(VENV)/.installed: pyproject.toml uv.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(PY) -m pip install --quiet 'uv>=0.13,<0.14'
	$(BIN)/uv sync --quiet --locked --extra dev --compile-bytecode --python $(PY)
	touch $@

install: $(VENV)/.installed

## Start web, worker, beat, the payment sandbox and an SMTP sink (embedded Postgres/Redis unless
## DATABASE_URL/REDIS_URL are set). API on http://127.0.0.1:5000, Swagger UI on /docs.
run: install
	$(PY) -m app.devtools.services -- sh -c '\
	  flask --app app db upgrade && \
	  flask --app app seed-demo && \
	  exec honcho start -f Procfile.dev'

## The whole suite against real Postgres and Redis (TEST_DATABASE_URL/TEST_REDIS_URL, else embedded).
test: install
	$(PY) -m app.devtools.services --tests -- pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

## N-1 compatibility: the previous release's API tests on this release's schema (docs/deploy.md).
n1-compat: install
	$(PY) -m app.devtools.services --tests -- scripts/n1_compat.sh

lint: install
	uv lock --check
	ruff check .
	ruff format --check .
	mypy
	lint-imports

## Render every Alembic migration to SQL (offline) and lint it with squawk for locking hazards.
lint-migrations: install
	$(PY) -m app.devtools.lint_migrations

format: install
	ruff format .
	ruff check --fix .

bench: install
	$(PY) -m app.devtools.services -- $(PY) -m bench.run $(BENCH_ARGS)

## Soak: 10 minutes of steady mixed traffic against the Procfile processes (SOAK_ARGS="--minutes 1"
## for a smoke run); writes docs/soak.json, docs/soak.md and docs/soak.png.
SOAK_ARGS ?=
soak: install
	$(PY) -m app.devtools.services -- $(PY) -m bench.soak $(SOAK_ARGS)

## Deploy drill: blue-green, canary, rollback and rolling restarts behind HAProxy + PgBouncer under load
## (installs both from Debian when missing; a few minutes); writes docs/deploy-drill.json/.png and the
## table in docs/deploy.md. DRILL_ARGS="--bad-migration" shows a locking migration failing it.
DRILL_ARGS ?=
deploy-drill: install
	$(PY) -m app.devtools.services -- $(PY) -m deploy.drill $(DRILL_ARGS)

clean:
	rm -rf instance/test-postgres instance/test-redis .pytest_cache .mypy_cache .ruff_cache
