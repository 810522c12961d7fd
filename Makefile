# Two commands on a fresh machine: `make run` (set up, build the demo database, run every
# asset) and `make test` (set up, run the whole suite). Everything else is optional.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Never let uv download a Python: use the machine's python3 (3.11).
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
# uv compiles every environment's bytecode when it installs, as the images do: where
# PYTHONDONTWRITEBYTECODE is set (this machine, many containers) Python would otherwise
# compile dagster from source in every process (import dagster 1.6 s against 0.8 s here).
export UV_COMPILE_BYTECODE := 1
# Dagster reads DAGSTER_HOME before any project code, so it is set (absolute) here.
export DAGSTER_HOME := $(abspath $(or $(DAGSTER_HOME),.dagster))

# The machine's python3, found before .venv/bin goes first on PATH: uv installed from PyPI
# lands beside it, so `$(PYTHON3) -m uv` works in every recipe (the venv has no uv).
PYTHON3 := $(shell command -v python3)
UV := $(shell command -v uv 2>/dev/null || echo $(PYTHON3) -m uv)
export UV
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
SCALE ?= 1
DBT_SOURCES := $(shell find analytics_dbt/models analytics_dbt/macros -type f 2>/dev/null) \
	analytics_dbt/dbt_project.yml analytics_dbt/profiles.yml
PYPROJECTS := pyproject.toml uv.lock $(wildcard */pyproject.toml)

.PHONY: help setup seed seed-if-missing ingest reconcile discover run backfill backtest dev location lint dbt-build dbt-docs dbt-state dbt-slim-ci lint-sql check impact lineage-page test test-locations envs locks db-migrate deploy-check bench bench-test clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.synced: $(PYPROJECTS)
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON3) -m pip install --quiet 'uv>=0.9' 2>/dev/null \
		|| $(PYTHON3) -m pip install --quiet --user --break-system-packages 'uv>=0.9'  # (Debian's python3: PEP 668)
	$(UV) sync --frozen
	@touch $@

# The dbt manifest is built ahead, never parsed when a code location loads.
analytics_dbt/target/manifest.json: $(VENV)/.synced $(DBT_SOURCES)
	cd analytics_dbt && dagster-dbt project prepare-and-package --file platform_analytics/project.py

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

# Team topology: each location's own environment (<location>/.venv) from its own lock
# file, exported from uv.lock so all three resolve the same versions.
# The code locations, from their one list: dg.toml (workspace.projects, in order).
LOCATIONS := $(shell sed -n 's/^path = "\(.*\)"/\1/p' dg.toml)
%/.venv/.synced: %/requirements.lock
	$(UV) venv -q --allow-existing --python python3 $*/.venv
	$(UV) pip sync -q --python $*/.venv/bin/python $<
	@touch $@

# The analytics location runs dbt from an environment of its own (analytics_dbt/engine):
# its code server then loads without importing dbt-core.
DBT_ENGINE := analytics_dbt/engine
envs: $(VENV)/.synced $(LOCATIONS:%=%/.venv/.synced) $(DBT_ENGINE)/.venv/.synced  ## one environment per location (and dbt's), from its own lock file

locks: $(VENV)/.synced  ## re-export each location's requirements.lock from uv.lock (after `uv lock`)
	@for loc in $(LOCATIONS); do \
		pkg=$$(sed -n 's/^name = "\(.*\)"/\1/p' $$loc/pyproject.toml | head -1); \
		$(UV) export -q --package $$pkg --frozen -o $$loc/requirements.lock; done
	$(UV) export -q --package platform-dbt-engine --no-emit-project --frozen -o $(DBT_ENGINE)/requirements.lock

setup: $(VENV)/.synced analytics_dbt/target/manifest.json $(DAGSTER_HOME)/dagster.yaml  ## install environments, build the dbt manifest, prepare the instance

seed: setup  ## (re)generate the demo application database: make seed SCALE=10
	python -m platform_shared.demo_data --scale $(SCALE)

seed-if-missing: setup
	@python -m platform_shared.demo_data --scale $(SCALE) --if-missing

ingest: seed-if-missing  ## materialize every ingestion asset
	python -m tools.run_all --location ingestion

reconcile: seed-if-missing  ## compare every row of the raw tables with the source and repair them: make reconcile [TABLES=a,b]
	python -m tools.run_all --reconcile --tables "$(TABLES)"

discover: setup  ## write a catalog from SOURCE_DATABASE_URL to CATALOG_OUT (default: print it); SCHEMA=x for another schema
	@python -m platform_ingestion.discover $(if $(CATALOG_OUT),--out $(CATALOG_OUT)) $(if $(SCHEMA),--schema $(SCHEMA))

run: seed-if-missing  ## set up and materialize every asset of the three locations
	python -m tools.run_all

backfill: setup  ## rebuild days of the daily dbt models (tag daily) in one run: make backfill FROM=2026-06-10 TO=2026-06-12
	@test -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make backfill FROM=<first day> TO=<last day>" >&2; exit 2; }
	cd analytics_dbt && dg launch --assets "tag:daily" --partition-range "$(FROM)...$(TO)"

backtest: setup  ## the newest churn model's walk-forward backtest beside its single held-out split (after make run)
	python -m tools.backtest $(if $(PLOT),--plot $(PLOT))

# The alert sensors read the global graph from this webserver (impact of a failure).
dev: export DAGSTER_WEBSERVER_URL = http://$(or $(HOST),127.0.0.1):$(or $(PORT),3000)
dev: setup envs  ## the Dagster UI on http://127.0.0.1:3000 with the three locations (dg dev)
	@# A server warehouse takes WAREHOUSE_CONCURRENCY steps at once (the DuckDB pool stays at 1).
	@if [ "$(WAREHOUSE)" = postgres ]; then dagster instance concurrency set warehouse_server $(or $(WAREHOUSE_CONCURRENCY),4); fi
	@# dg dev: dg.toml's locations, each from its own environment (<location>/.venv, make envs).
	@# `dagster dev -w workspace.yaml` runs the same locations from this one environment.
	dg dev --host $(or $(HOST),127.0.0.1) --port $(or $(PORT),3000)

location: setup  ## a new team location, wired everywhere: make location NAME=finance TEAM=finance
	@test -n "$(NAME)" -a -n "$(TEAM)" || { echo "usage: make location NAME=<name> TEAM=<team>" >&2; exit 2; }
	python -m tools.new_location $(NAME) --team $(TEAM)
	$(UV) lock
	$(MAKE) --no-print-directory locks
	$(MAKE) --no-print-directory envs

dbt-build: setup  ## plain `dbt build` from analytics_dbt/ (DBT_TARGET=personal for your own file)
	cd analytics_dbt && dbt build

dbt-docs: setup  ## generate the dbt docs site and serve it on http://127.0.0.1:8081
	cd analytics_dbt && dbt docs generate && dbt docs serve --host 127.0.0.1 --port 8081

# Slim CI: build only what changed against the manifest saved by `make dbt-state`, deferring
# unchanged upstream models to the warehouse.
DBT_STATE ?= $(CURDIR)/data/dbt-state
dbt-state: setup  ## save the current manifest as the state slim CI compares with
	mkdir -p $(DBT_STATE) && cp analytics_dbt/target/manifest.json $(DBT_STATE)/

dbt-slim-ci: setup  ## dbt build --select state:modified+ --defer against DBT_STATE
	cd analytics_dbt && dbt build --select state:modified+ --defer --state $(DBT_STATE)

lint-sql: setup  ## sqlfluff on the dbt models
	cd analytics_dbt && sqlfluff lint models

check: setup  ## the contract of the global graph: undefined or duplicate keys, owners, unused tables
	python -m tools.check_graph

impact: setup  ## every asset (or column) downstream of one, by location: make impact ASSET=raw/customers [COLUMN=country] [FORMAT=json]
	@test -n "$(ASSET)" || { echo "usage: make impact ASSET=raw/customers [COLUMN=country] [FORMAT=json]" >&2; exit 2; }
	@python -m tools.impact $(ASSET) $(if $(COLUMN),--column $(COLUMN)) --format $(or $(FORMAT),text)

lineage-page: setup  ## the column lineage across locations as one HTML page, data/lineage.html: make lineage-page [ASSET=raw/customers] [COLUMN=country]
	@python -m tools.lineage_page $(if $(ASSET),--asset $(ASSET)) $(if $(COLUMN),--column $(COLUMN))

# tools/test_all.py says how the suite and the location tests share the machine.
# TEST_WORKERS=0 runs the suite in one process; PYTEST_ARGS go to the suite's pytest,
# LOCATION_PYTEST_ARGS to the location tests (`-k ...`; not `-m`).
TEST_WORKERS ?= 4
lint: setup  ## ruff (lint, format) and basedpyright (types) on the Python code (part of make test; `ruff format .` fixes the format)
	ruff check . && ruff format --check . && basedpyright

test: setup envs lint  ## set up, lint, run the cross-location suite (the graph contract too) and each location's tests
	python -m tools.test_all --workers $(TEST_WORKERS) --location-args "$(LOCATION_PYTEST_ARGS)" $(PYTEST_ARGS)

# Each location's tests, in its own environment (as its team's CI would run them).
LOCATION_TESTS := $(LOCATIONS)
test-locations: envs  ## each location's tests in its own environment
	@for loc in $(LOCATION_TESTS); do python -m tools.test_all --only $$loc --location-args "$(LOCATION_PYTEST_ARGS)" || exit 1; done

# The PostgreSQL-backed instance: deploy/dagster.yaml in DEPLOY_HOME (the DAGSTER_HOME of the
# deployment's webserver and daemon), connection from DAGSTER_PG_* (see .env.example).
DEPLOY_HOME ?= $(CURDIR)/.dagster-deploy
db-migrate: setup  ## apply the PostgreSQL instance schema (DEPLOY_HOME, DAGSTER_PG_*) before webserver and daemon start
	@mkdir -p $(DEPLOY_HOME) && cp deploy/dagster.yaml $(DEPLOY_HOME)/dagster.yaml
	DAGSTER_HOME=$(DEPLOY_HOME) dagster instance migrate

deploy-check: setup envs  ## run the whole team topology here (PostgreSQL, code servers, webserver, daemon) and check it
	python -m tools.deploy_check

# Figures only, no assertions: demo databases of each scale are generated once under data/bench/.
SCALES ?= 1,10
bench: setup envs  ## ingestion against a raw copy (the baseline) and a naive one (make bench SCALES=1,10,100), and on TPC-H (TPCH=1), make dev's start against trivial locations, warm make run against its bare steps
	python -m bench.ingest_bench --scales $(SCALES)
	python -m bench.ingest_bench --tpch $(or $(TPCH),1)
	python -m bench.dev_bench
	python -m bench.run_bench

bench-test:  ## time make test on a clean clone of HEAD with CI's variables (about 9 minutes; figures only)
	$(PYTHON3) -m bench.clean_clone

clean:  ## remove local data, the instance and dbt output (keeps the environment)
	rm -rf data .dagster analytics_dbt/target analytics_dbt/logs
