# Tidings — developer entry points. `make run` and `make test` are the two commands in README.md.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint typecheck db-check check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed ## install, migrate the embedded SQLite database, serve
	$(BIN)/tidings serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed ## the whole test suite (SQLite always; PostgreSQL when reachable)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)
	# fails on any medium or high finding; the benchmark seeder (not part of the served app)
	# builds its SQL from its own typed integer parameters, which B608 cannot tell apart
	$(BIN)/bandit -q -r src -ll -x src/tidings/bench

typecheck: $(VENV)/.installed
	$(BIN)/mypy

db-check: $(VENV)/.installed ## migrations match the models, on SQLite and PostgreSQL
	TIDINGS_DATABASE_URL=sqlite+aiosqlite:///$(CURDIR)/.dbcheck.sqlite $(BIN)/tidings migrate --check
	rm -f $(CURDIR)/.dbcheck.sqlite*
	psql -h 127.0.0.1 -U postgres -d postgres -qc 'DROP DATABASE IF EXISTS tidings_dbcheck' -c 'CREATE DATABASE tidings_dbcheck'
	TIDINGS_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/tidings_dbcheck $(BIN)/tidings migrate --check
	psql -h 127.0.0.1 -U postgres -d postgres -qc 'DROP DATABASE IF EXISTS tidings_dbcheck'

check: lint typecheck db-check test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
