"""Arrow Flight SQL and Postgres against GraphQL: latency of the same query, throughput of a large result.

`greenery serve --port P --flight-port F --pg-port G` runs in its own process over a built,
published warehouse (with a fresh token), and is asked:
- the weekly funnel (saved query ``funnel_by_week``), one client at a time: GraphQL
  ``createQuery`` + ``query`` polls (stdlib HTTP, keep-alive), Flight SQL with pyarrow
  (``GetFlightInfo`` + ``DoGet``), the ADBC driver's DB-API (which prepares, executes, fetches
  and closes: four RPCs), psycopg over the Postgres wire protocol (the same template, and
  ``select * from semantic_layer.funnel_by_week``), and `dbt-sl-sdk` ``client.query()`` over
  each transport;
- the daily funnel by product (product metrics by ``product__product_name`` and
  ``metric_time__day``), a large result on a scale-1000 warehouse: rows/s over Flight SQL
  against GraphQL's 1024-row Arrow pages, once computed (readCache false) and once served
  from the answer cache (the transfer alone).

    python -m benchmarks.flight [WAREHOUSE_FILE]   # default: build scale 1000 in /tmp (~1 min)
"""

from __future__ import annotations

import base64
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.flight as flight

from benchmarks.server import SAVED_QUERY, BenchError, GraphQLClient, ServerProcess, Timings, _time
from greenery.serve.flight import encode_message, pack_any
from greenery.warehouse.build import rebuild
from greenery.warehouse.publish import current_published, publish

LARGE_METRICS = ["product_sessions_viewed", "product_sessions_added_to_cart", "product_sessions_purchased"]
LARGE_GRAINS = ("day", "hour")  # the daily funnel by product, and the same by hour (~24x the rows)
CREATE_LARGE = (
    "mutation($m: [MetricInput!], $g: [GroupByInput!], $cache: Boolean!) { createQuery(environmentId: 1, "
    "metrics: $m, groupBy: $g, readCache: $cache) { queryId } }"
)


def _statement(read_cache: bool, **arguments: str) -> str:
    rendered = ",".join(f"{k}={v}" for k, v in sorted(arguments.items()))
    return f"{{{{ semantic_layer.query({rendered},read_cache={read_cache}) }}}}"


WEEKLY = {cache: _statement(cache, saved_query=f'"{SAVED_QUERY}"') for cache in (False, True)}
LARGE = {
    (grain, cache): _statement(
        cache, metrics=repr(LARGE_METRICS), group_by=repr(["product__product_name", f"metric_time__{grain}"])
    )
    for grain in LARGE_GRAINS
    for cache in (False, True)
}


class FlightClient:
    """Flight SQL with pyarrow alone: GetFlightInfo(CommandStatementQuery), then DoGet."""

    def __init__(self, uri: str, token: str) -> None:
        self._client = flight.connect(uri)
        self._options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])

    def run(self, statement: str) -> pa.Table:
        command = pack_any("CommandStatementQuery", encode_message([(1, statement.encode())]))
        info = self._client.get_flight_info(flight.FlightDescriptor.for_command(command), self._options)
        return pa.concat_tables(
            self._client.do_get(e.ticket, self._options).read_all() for e in info.endpoints
        ).combine_chunks()

    def close(self) -> None:
        self._client.close()


def _adbc(uri: str, token: str) -> Any:
    import adbc_driver_flightsql.dbapi as flightsql
    from adbc_driver_flightsql import DatabaseOptions

    options = {
        DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}",
        DatabaseOptions.WITH_MAX_MSG_SIZE.value: str(512 * 1024 * 1024),
    }
    return flightsql.connect(uri, db_kwargs=options, autocommit=True)


def _adbc_query(connection: Any, statement: str) -> pa.Table:
    with connection.cursor() as cursor:
        cursor.execute(statement)
        return cursor.fetch_arrow_table()


def _pg(server: ServerProcess) -> psycopg.Connection:
    """psycopg 3 on the Postgres endpoint: the token as password, autocommit (no BEGIN per query)."""
    return psycopg.connect(
        host="127.0.0.1", port=server.pg_port, user="bench", password=server.token, autocommit=True
    )


def _pg_query(connection: psycopg.Connection, sql: str) -> list[tuple[Any, ...]]:
    return connection.execute(sql).fetchall()


PG_TABLE = f"select * from semantic_layer.{SAVED_QUERY}"


def _sdk_timings(server: ServerProcess, runs: int) -> dict[str, Timings]:
    """dbt-sl-sdk's client.query(saved_query=…) over its default (Flight SQL) and over GraphQL."""
    import dbtsl.env
    from dbtsl import SemanticLayerClient

    saved = dbtsl.env.GRAPHQL_URL_FORMAT, dbtsl.env.ADBC_URL_FORMAT
    dbtsl.env.GRAPHQL_URL_FORMAT, dbtsl.env.ADBC_URL_FORMAT = (
        "http://{server_host}/api/graphql",
        server.flight_uri,
    )
    try:
        clients = {
            transport: SemanticLayerClient(
                environment_id=1, auth_token=server.token, host=f"127.0.0.1:{server.port}"
            )
            for transport in ("flight", "graphql")
        }
    finally:
        dbtsl.env.GRAPHQL_URL_FORMAT, dbtsl.env.ADBC_URL_FORMAT = saved
    clients["graphql"]._method_map["query"] = "graphql"
    timings = {}
    for transport, client in clients.items():
        with client.session():
            timings[transport] = _time(lambda c=client: c.query(saved_query=SAVED_QUERY), runs)
    return timings


def _graphql_large(port: int, token: str, grain: str, *, read_cache: bool) -> pa.Table:
    """The large result over GraphQL: createQuery, poll, then every 1024-row page."""
    client = GraphQLClient(port, token)
    try:
        group_by = [{"name": "product__product_name"}, {"name": "metric_time", "timeGranularity": grain}]
        variables = {"m": [{"name": m} for m in LARGE_METRICS], "g": group_by, "cache": read_cache}
        query_id = client._post(CREATE_LARGE, variables)["createQuery"]["queryId"]
        first = client._poll(query_id)
        pages = [first] + [client._page(query_id, n) for n in range(2, first["totalPages"] + 1)]
        return pa.concat_tables(
            pa.ipc.open_stream(base64.b64decode(p["arrowResult"])).read_all() for p in pages
        )
    finally:
        client.close()


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(table.column_names[0], "ascending")]).combine_chunks()


def _throughput(fetch: Callable[[], pa.Table], runs: int) -> tuple[Timings, int, int]:
    """(timings, rows, Arrow bytes) of `runs` fetches after one warm-up."""
    table = fetch()
    return _time(fetch, runs, warmup=0), table.num_rows, table.nbytes


def _rate(timings: Timings, rows: int, nbytes: int) -> str:
    seconds = timings.percentile(50) / 1000
    return (
        f"{rows / seconds:>12,.0f} rows/s  {nbytes / seconds / 2**20:7.1f} MiB/s"
        f"  (p50 {timings.percentile(50):7.1f} ms, n={len(timings.seconds)})"
    )


def run(warehouse_file: Path, *, runs: int = 100, large_runs: int = 10) -> list[str]:
    """Printable lines: funnel_by_week latency per client and transport; rows/s of a large result."""
    folder = current_published(warehouse_file)
    if folder is None:
        raise BenchError(f"nothing published for {warehouse_file}: build it, then `publish(warehouse_file)`")
    server = ServerProcess(warehouse_file, flight=True, postgres=True)
    try:
        return _measure(server, warehouse_file, folder.name, runs, large_runs)
    finally:
        server.stop()


def _measure(
    server: ServerProcess, warehouse_file: Path, version: str, runs: int, large_runs: int
) -> list[str]:
    raw = FlightClient(server.flight_uri, server.token)
    adbc = _adbc(server.flight_uri, server.token)
    pg = _pg(server)
    lines = [
        f"Flight SQL and Postgres vs GraphQL on {warehouse_file} (published {version});"
        f" {os.cpu_count()} CPUs, load average {Path('/proc/loadavg').read_text().split()[0]} before",
    ]
    try:
        lines += _latency_lines(server, raw, adbc, pg, runs)
        for grain in LARGE_GRAINS:
            lines += _large_lines(server, raw, adbc, grain, large_runs)
    finally:
        raw.close()
        adbc.close()
        pg.close()
    return lines


def _latency_lines(
    server: ServerProcess, raw: FlightClient, adbc: Any, pg: psycopg.Connection, runs: int
) -> list[str]:
    lines = [f"latency of {SAVED_QUERY} (one client, sequential, after 3 warm-up calls):"]
    expected = raw.run(WEEKLY[True])
    for sql in (WEEKLY[True], PG_TABLE):
        if len(_pg_query(pg, sql)) != expected.num_rows:
            raise BenchError(f"Postgres and Flight SQL disagree on {SAVED_QUERY} ({sql})")
    for cache in (False, True):
        graphql = GraphQLClient(server.port, server.token, read_cache=cache)
        try:
            if not _sorted(graphql.funnel_by_week()).equals(_sorted(expected)):  # row order is free
                raise BenchError("GraphQL and Flight SQL disagree on funnel_by_week")
            figures = {
                "GraphQL createQuery+poll (stdlib HTTP)  ": _time(graphql.funnel_by_week, runs),
                "Flight SQL, pyarrow GetFlightInfo+DoGet ": _time(lambda c=cache: raw.run(WEEKLY[c]), runs),
                "Flight SQL, ADBC DB-API execute+fetch   ": _time(
                    lambda c=cache: _adbc_query(adbc, WEEKLY[c]), runs
                ),
                "Postgres, psycopg execute+fetchall      ": _time(
                    lambda c=cache: _pg_query(pg, WEEKLY[c]), runs
                ),
            }
            if cache:
                figures["Postgres, psycopg semantic_layer table  "] = _time(
                    lambda: _pg_query(pg, PG_TABLE), runs
                )
        finally:
            graphql.close()
        lines.append(f"  readCache {str(cache).lower()}:")
        lines += [f"    {name} {t.summary()}" for name, t in figures.items()]
    sdk = _sdk_timings(server, max(10, runs // 2))
    lines.append("  dbt-sl-sdk client.query(saved_query=…), readCache true:")
    lines += [f"    over {transport:<37} {t.summary()}" for transport, t in sdk.items()]
    return lines


def _large_lines(server: ServerProcess, raw: FlightClient, adbc: Any, grain: str, runs: int) -> list[str]:
    lines = [f"large result: the product funnel ({len(LARGE_METRICS)} metrics) by product and {grain}"]
    for cache in (False, True):
        statement = LARGE[(grain, cache)]
        flight_t, rows, nbytes = _throughput(lambda s=statement: raw.run(s), runs)
        adbc_t, _, _ = _throughput(lambda s=statement: _adbc_query(adbc, s), runs)
        graphql_t, graphql_rows, _ = _throughput(
            lambda c=cache: _graphql_large(server.port, server.token, grain, read_cache=c), runs
        )
        if graphql_rows != rows:
            raise BenchError(f"GraphQL returned {graphql_rows} rows, Flight SQL {rows}")
        label = "computed (readCache false)" if not cache else "from the answer cache (readCache true)"
        lines += [
            f"  {label}: {rows:,} rows, {nbytes / 2**20:.1f} MiB of Arrow",
            f"    Flight SQL, pyarrow      {_rate(flight_t, rows, nbytes)}",
            f"    Flight SQL, ADBC DB-API  {_rate(adbc_t, rows, nbytes)}",
            f"    GraphQL, 1024-row pages  {_rate(graphql_t, rows, nbytes)}",
        ]
    return lines


def build_scale_1000(folder: Path) -> Path:
    """Generated scale-1000 data, weeks 1–4 replayed, dbt build, published (about a minute)."""
    warehouse_file = folder / "greenery.duckdb"
    rebuild(warehouse_file, scale=1000)
    publish(warehouse_file)
    return warehouse_file


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        sys.exit("usage: python -m benchmarks.flight [WAREHOUSE_FILE (built and published)]")
    if argv:
        print("\n".join(run(Path(argv[0]).resolve())))
        return
    with tempfile.TemporaryDirectory(prefix="bench-flight-1000-") as tmp:
        start = time.perf_counter()
        warehouse_file = build_scale_1000(Path(tmp))
        print(f"built and published scale 1000 in {time.perf_counter() - start:.0f} s", flush=True)
        print("\n".join(run(warehouse_file)))


if __name__ == "__main__":
    main(sys.argv[1:])
