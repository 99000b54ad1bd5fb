"""Shared fixtures: the course data folder and isolated warehouses."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import dbtsl.env
import duckdb
import oracle
import pandas as pd
import psycopg
import pyarrow as pa
import pytest
import uvicorn
from adbc_driver_flightsql import DatabaseOptions
from starlette.applications import Starlette

from greenery.semantic.layer import SemanticLayer
from greenery.serve.catalog import Catalog
from greenery.serve.connections import GuardedConfig
from greenery.serve.flight import start_flight_server
from greenery.serve.http import create_app
from greenery.serve.postgres import start_postgres_server
from greenery.serve.tables import SqlTable, SqlTables
from greenery.warehouse.build import rebuild
from greenery.warehouse.dbt import TARGET_DIR
from greenery.warehouse.publish import publish

REPO = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789"  # what the test servers accept
DEFAULT_COURSE_DATA = REPO.parent / "shared" / "greenery-course-data"


@pytest.fixture(scope="session")
def course_data() -> Path:
    """The real course CSVs (../shared or $GREENERY_COURSE_DATA); skip when absent."""
    folder = Path(os.environ.get("GREENERY_COURSE_DATA") or DEFAULT_COURSE_DATA)
    if not (folder / "events.csv").is_file():
        pytest.skip(f"course data not found at {folder}")
    return folder


@pytest.fixture
def warehouse_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh warehouse path for one test, also set as $GREENERY_WAREHOUSE."""
    path = tmp_path / "warehouse" / "greenery.duckdb"
    monkeypatch.setenv("GREENERY_WAREHOUSE", str(path))
    return path


def read_sql(database: Path, sql: str) -> pd.DataFrame:
    """One query's rows from a DuckDB file, opened read-only for just that query."""
    con = duckdb.connect(str(database), read_only=True)
    try:
        return oracle.as_text_ids(con.execute(sql).df())
    finally:
        con.close()


def data_test_results() -> dict[str, dict]:
    """The last dbt command's data tests' results (run_results.json) by test name."""
    results = json.loads((TARGET_DIR / "run_results.json").read_text())["results"]
    return {r["unique_id"].split(".")[2]: r for r in results if r["unique_id"].startswith("test.")}


def as_built_before_irregular_page_url(warehouse_file: Path) -> None:
    """Give stg_greenery__event_rows the columns a warehouse built before it stored
    irregular_page_url holds (page_url in its place): an incremental model's columns changed."""
    with duckdb.connect(str(warehouse_file)) as warehouse:
        warehouse.execute(
            "alter table staging.stg_greenery__event_rows rename column irregular_page_url to page_url"
        )


def build_warehouse(warehouse_file: Path, *, course_data: Path | None = None, scale: int = 1) -> Path:
    """Raw data (course CSVs, or generated at `scale`), weeks 1–4 replayed, `dbt build`."""
    rebuild(warehouse_file, course_data=course_data, scale=scale)
    return warehouse_file


@pytest.fixture(scope="session")
def course_warehouse(course_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse built from the course CSVs: loaded, weeks 1–4 replayed, dbt build passed."""
    return build_warehouse(tmp_path_factory.mktemp("course") / "greenery.duckdb", course_data=course_data)


@pytest.fixture(scope="session")
def generated_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse built from generated scale-10 data, weeks 1–4 replayed, dbt build passed."""
    return build_warehouse(tmp_path_factory.mktemp("scale10") / "greenery.duckdb", scale=10)


@contextmanager
def running(app: Starlette) -> Iterator[str]:
    """The app under uvicorn on a free loopback port, in a background thread; yields host:port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(GuardedConfig(app, log_level="warning"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
        sock.close()


def publish_copy(source: Path, folder: Path) -> Path:
    """A copy of a built warehouse in `folder`, published (readers use the published copy)."""
    folder.mkdir(parents=True)
    copy = folder / source.name
    shutil.copy(source, copy)
    publish(copy)
    return copy


@pytest.fixture(scope="module")
def course_copy(course_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A published copy of the course warehouse, for a module's servers."""
    return publish_copy(course_warehouse, tmp_path_factory.mktemp("served") / "warehouse")


@pytest.fixture(scope="module")
def generated_copy(generated_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A published copy of the scale-10 warehouse, for a module's servers."""
    return publish_copy(generated_warehouse, tmp_path_factory.mktemp("served10") / "warehouse")


@pytest.fixture(scope="module")
def course_sl(course_copy: Path) -> Iterator[SemanticLayer]:
    """A warm engine over the module's published course copy."""
    layer = SemanticLayer.published(course_copy)
    yield layer
    layer.close()


@dataclass(frozen=True)
class Served:
    http_host: str  # host:port of GraphQL and the dashboard
    flight_port: int
    pg_port: int  # the Postgres endpoint (password: TOKEN, any user and database name)

    @property
    def flight_uri(self) -> str:
        return f"grpc://127.0.0.1:{self.flight_port}"


@pytest.fixture(scope="module")
def course_catalog(course_sl: SemanticLayer) -> Catalog:
    """The metadata of the module's published course copy, as the server builds it."""
    return Catalog(course_sl, course_sl.engine_lock)


def model_tables(catalog: Catalog) -> list[SqlTable]:
    """The semantic_layer tables of the semantic models (not of saved queries), columns only."""
    tables = SqlTables(catalog, describe=lambda metrics, group_by: pa.schema([]))
    return [table for table in tables.tables.values() if table.saved_query is None]


@pytest.fixture(scope="module")
def served(course_copy: Path) -> Iterator[Served]:
    """GraphQL under uvicorn, Flight SQL and Postgres over the course copy, all on free loopback
    ports, one service, one token; dbt-sl-sdk clients made meanwhile point at them."""
    app = create_app(course_copy, token=TOKEN)
    flight_server = start_flight_server(app.state.service, "127.0.0.1", 0, TOKEN)
    app.state.on_shutdown.append(flight_server.shutdown)  # stopped by the app
    # its catalog is built when a Postgres client first asks (most modules never do)
    postgres = start_postgres_server(app.state.service, "127.0.0.1", 0, TOKEN, warm=False)
    app.state.on_shutdown.append(postgres.shutdown)
    with running(app) as host, pytest.MonkeyPatch.context() as patch:
        served = Served(host, flight_server.port, postgres.port)
        patch.setattr(dbtsl.env, "GRAPHQL_URL_FORMAT", "http://{server_host}/api/graphql")
        patch.setattr(dbtsl.env, "ADBC_URL_FORMAT", served.flight_uri)
        yield served


@pytest.fixture
def adbc(served: Served) -> Iterator[flightsql.Connection]:
    """The ADBC Flight SQL driver's DB-API connection with the bearer token."""
    kwargs = {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {TOKEN}"}
    with flightsql.connect(served.flight_uri, db_kwargs=kwargs) as connection:
        yield connection


def fetch(connection: flightsql.Connection, statement: str) -> pa.Table:
    with connection.cursor() as cursor:
        cursor.execute(statement)
        return cursor.fetch_arrow_table()


def information_schema_listing(served: Served, table: str) -> tuple[list[str], list[tuple[str, str]]]:
    """What the Postgres endpoint's information_schema lists: the semantic_layer tables, and the
    table's columns with their types, in order (what a JDBC or ODBC browser must agree with)."""
    with psycopg.connect(host="127.0.0.1", port=served.pg_port, user="u", password=TOKEN) as pg:
        tables = pg.execute(
            "select table_name from information_schema.tables "
            "where table_schema = 'semantic_layer' order by 1"
        ).fetchall()
        columns = pg.execute(
            "select column_name, udt_name from information_schema.columns "
            "where table_schema = 'semantic_layer' and table_name = %s order by ordinal_position",
            [table],
        ).fetchall()
    return [name for (name,) in tables], [(name, type_) for name, type_ in columns]


def table_names(connection: flightsql.Connection, **filters: str) -> list[str]:
    """The tables GetTables lists (ADBC's get_objects, with its filters)."""
    objects = connection.adbc_get_objects(depth="tables", **filters).read_all().to_pylist()
    return [
        table["table_name"]
        for catalog in objects
        for schema in catalog["catalog_db_schemas"] or []
        for table in schema["db_schema_tables"] or []
    ]
