# The two commands: `make demo` (the main job) and `make test`. Both create .venv when
# missing and install the exact pins in constraints.txt; a second run reuses it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COURSE_DATA ?= $(abspath ../shared/greenery-course-data)

.PHONY: venv demo test lint bench bench-peer clean check-superset orchestrate

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing pinned dependencies into $(VENV) (first run only)…"
	@$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,orchestrate]' > $(VENV)/pip.log 2>&1 \
		|| { grep -v "^WARNING: Location" $(VENV)/pip.log; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/greenery demo

# The Dagster code location (src/greenery/orchestration) in `dagster dev` on the embedded
# warehouse: the asset graph, jobs, schedules and checks at http://127.0.0.1:$(DAGSTER_PORT).
# Its instance (runs, event log, schedules) lives in warehouse/dagster/.
DAGSTER_PORT ?= 3000
DAGSTER_HOME_DIR := $(abspath warehouse/dagster)

orchestrate: $(STAMP)
	@mkdir -p $(DAGSTER_HOME_DIR)
	@cp src/greenery/orchestration/dagster.yaml $(DAGSTER_HOME_DIR)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) GREENERY_COURSE_DATA=$${GREENERY_COURSE_DATA:-$(COURSE_DATA)} \
		$(BIN)/dagster dev -m greenery.orchestration.definitions -h 127.0.0.1 -p $(DAGSTER_PORT)

# Python style (ruff's lint and format) and the package's shape: its import graph, printed,
# fails on a cycle, an upward import between rooms, or an import hidden in a function. Then
# the SQL style (sqlfluff, .sqlfluff) of the models and data tests; macros render to nothing
# outside a model and snapshots/ holds YAML only, so there is no SQL of theirs to lint.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks devtools conftest.py
	$(BIN)/ruff format --check src tests benchmarks devtools conftest.py
	$(BIN)/python -m devtools.imports
	$(BIN)/sqlfluff lint models data_tests

# dbt-mcp (dbt Labs' MCP server for AI agents) needs Python >= 3.12, which this machine lacks:
# its wheel is downloaded, never installed, and tests/test_dbt_mcp.py replays the GraphQL
# documents it ships, byte for byte, against `greenery serve`.
DBT_MCP_VERSION := 2.8.0
DBT_MCP_WHEEL := $(VENV)/clients/dbt_mcp-$(DBT_MCP_VERSION)-py3-none-any.whl

$(DBT_MCP_WHEEL): $(STAMP)
	@$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		-d $(VENV)/clients dbt-mcp==$(DBT_MCP_VERSION) 2>&1 | grep -v "^WARNING: Location" || true
	@test -f $@

# flightsql-dbapi (SQLAlchemy < 2) in a venv of its own; tests/test_sql_clients.py drives it.
FLIGHTSQL_VENV := $(VENV)/clients/flightsql
FLIGHTSQL_STAMP := $(FLIGHTSQL_VENV)/.installed

$(FLIGHTSQL_STAMP): tests/clients/flightsql-requirements.txt
	@test -x $(FLIGHTSQL_VENV)/bin/python || $(PYTHON) -m venv $(FLIGHTSQL_VENV)
	@$(FLIGHTSQL_VENV)/bin/python -m pip install -q -r $< > $(FLIGHTSQL_VENV)/pip.log 2>&1 \
		|| { grep -v "^WARNING: Location" $(FLIGHTSQL_VENV)/pip.log; exit 1; }
	@touch $@

# The tests run on $(TEST_WORKERS) workers (pytest-xdist), a test file each at a time, so that a
# file's fixtures are built once; each worker's dbt writes a target/ and logs/ of its own
# (conftest.py). Then the tests marked `serial` (they measure latency) run alone.
TEST_WORKERS ?= 2
TEST_ENV = GREENERY_COURSE_DATA=$${GREENERY_COURSE_DATA:-$(COURSE_DATA)} \
	GREENERY_DBT_MCP_WHEEL=$(abspath $(DBT_MCP_WHEEL)) GREENERY_FLIGHTSQL_PYTHON=$(abspath $(FLIGHTSQL_VENV))/bin/python

test: lint $(DBT_MCP_WHEEL) $(FLIGHTSQL_STAMP)
	$(TEST_ENV) $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial"
	$(TEST_ENV) $(BIN)/pytest -m serial

# Apache Superset against `greenery serve --pg-port` (not part of `make test`: a large install),
# in a venv of its own pinned by tests/clients/superset-requirements.txt; tests/test_superset.py
# lists the semantic_layer tables through Superset and runs the SQL its chart builder writes.
SUPERSET_VENV := $(VENV)/clients/superset
SUPERSET_STAMP := $(SUPERSET_VENV)/.installed

$(SUPERSET_STAMP): tests/clients/superset-requirements.txt
	@test -x $(SUPERSET_VENV)/bin/python || $(PYTHON) -m venv $(SUPERSET_VENV)
	@echo "installing Apache Superset into $(SUPERSET_VENV) (first run only, a few minutes)…"
	@$(SUPERSET_VENV)/bin/python -m pip install -q -r $< > $(SUPERSET_VENV)/pip.log 2>&1 \
		|| { grep -v "^WARNING: Location" $(SUPERSET_VENV)/pip.log; exit 1; }
	@touch $@

check-superset: $(STAMP) $(SUPERSET_STAMP)
	GREENERY_COURSE_DATA=$${GREENERY_COURSE_DATA:-$(COURSE_DATA)} \
		GREENERY_SUPERSET_PYTHON=$(abspath $(SUPERSET_VENV))/bin/python $(BIN)/pytest -q tests/test_superset.py

# Benchmarks live outside the package (benchmarks/); they print figures, never assert them.
# `make bench` ends with the peer comparison below, on the scale-1000 warehouse it built.
bench: $(STAMP)
	GREENERY_COURSE_DATA=$${GREENERY_COURSE_DATA:-$(COURSE_DATA)} $(BIN)/python -m benchmarks

# Every saved query vs sidemantic (the open peer) on the same warehouse: a built and published
# BENCH_WAREHOUSE, or a fresh scale-1000 one (benchmarks/peer.py).
bench-peer: $(STAMP)
	$(BIN)/python -m benchmarks.peer $(BENCH_WAREHOUSE)

clean:
	rm -rf warehouse output target logs

# The `snowflake` target (dbt-snowflake) against fakesnow, Snowflake emulated in-process with
# dummy credentials: load raw.public, replay weeks 1–4, dbt build, check the answers; then
# the Snowflake dialect check of everything dbt compiles. Output in target/snowflake-*.
.PHONY: snowflake-emulated
snowflake-emulated: $(STAMP)
	GREENERY_COURSE_DATA=$${GREENERY_COURSE_DATA:-$(COURSE_DATA)} $(BIN)/python -m greenery.snowflake.emulation pipeline
	$(BIN)/python -m greenery.snowflake.emulation dialect

# The whole pipeline at one scale (generate → replay → build → exports → publish → two appended
# days, each built incrementally), wall time, CPU, peak memory and disk reads and writes per
# step: a table, and JSON in output/. BENCH_SCALE_ARGS=--check-incremental then compares every
# table with one full refresh of the same data (docs/benchmarks.md).
SCALE ?= 1000
BENCH_SCALE_ARGS ?=
.PHONY: bench-scale
bench-scale: $(STAMP)
	$(BIN)/python -m benchmarks.scale --scale $(SCALE) $(BENCH_SCALE_ARGS)

# Arrow Flight SQL against GraphQL: funnel_by_week latency per client, and rows/s of a large
# result (daily funnel by product), on a scale-1000 warehouse built in /tmp (about a minute).
.PHONY: bench-flight
bench-flight: $(STAMP)
	$(BIN)/python -m benchmarks.flight
