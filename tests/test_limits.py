"""Bounds on what one client may ask: body size, document shape, filters, query time.

Each refusal is an error naming the bound, before anything heavy runs, and the server keeps
answering the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import asyncpg
import psycopg
import pytest
import requests

from conftest import TOKEN, Served, fetch, running, table_names
from greenery.semantic.layer import QueryInterrupted, SemanticLayer, SemanticLayerError
from greenery.serve import connections, graphql, http, service
from greenery.serve.postgres import start_postgres_server
from greenery.serve.service import QueryRequest
from greenery.warehouse import store

CATALOG_CROSS_JOIN = "select count(*) from " + ", ".join(f"pg_catalog.pg_attribute a{n}" for n in range(5))
ORDERS = "{{ semantic_layer.query(metrics=['orders'], group_by=['order']) }}"
ANSWERS_CROSS_JOIN = "select count(*) from " + ", ".join(f"{ORDERS} {n}" for n in "abcde")  # hours of work
FUNNEL_QUERY = 'mutation { createQuery(environmentId: 1, savedQuery: "funnel_overall") { queryId } }'


def post(served: Served, body: bytes | str, content_type: str = "application/json") -> requests.Response:
    return requests.post(
        f"http://{served.http_host}/api/graphql",
        data=body,
        headers={"authorization": f"Bearer {TOKEN}", "content-type": content_type},
        timeout=60,
    )


def still_serving(served: Served) -> None:
    answer = post(served, '{"query": "{ environmentInfo(environmentId: 1) { dialect } }"}')
    assert answer.json()["data"]["environmentInfo"]["dialect"] == "DUCKDB"


def test_an_oversized_body_is_refused_unread(served: Served) -> None:
    body = b'{"query": "' + b" " * (http.MAX_BODY_BYTES + 1) + b'{ __typename }"}'
    answer = post(served, body)
    assert answer.status_code == 413
    assert (
        answer.json()["errors"][0]["message"]
        == f"the request body is larger than {http.MAX_BODY_BYTES:,} bytes"
    )
    still_serving(served)


def test_a_body_still_arriving_after_its_413_is_not_read_as_headers(served: Served) -> None:
    host, port = served.http_host.split(":")
    size = 4 * http.MAX_BODY_BYTES
    head = (
        f"POST /api/graphql HTTP/1.1\r\nhost: {served.http_host}\r\nauthorization: Bearer {TOKEN}\r\n"
        f"content-type: application/json\r\ncontent-length: {size}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            for _ in range(size // 16384):
                sock.sendall(b" " * 16384)  # past the 16 KB of headers allowed, after the answer
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ") and answer.count(b"HTTP/1.1 ") == 1


def test_a_text_plain_body_is_refused(served: Served) -> None:
    """A browser may send text/plain across origins without asking: never accepted."""
    answer = post(served, f'{{"query": "{FUNNEL_QUERY}"}}', content_type="text/plain")
    assert answer.status_code == 415
    still_serving(served)


def test_a_deeply_nested_document_is_refused(served: Served) -> None:
    deep = "{ metrics(environmentId: 1) " + "{ dimensions " * 20 + "{ name }" + " }" * 21
    message = post(served, f'{{"query": "{deep}"}}').json()["errors"][0]["message"]
    assert message.startswith(f"the query has more than {graphql.MAX_DEPTH} levels deep")
    absurd = "{ a " * 50_000 + "}" * 50_000  # past the token limit: refused by the parser
    assert "errors" in post(served, f'{{"query": "{absurd}"}}').json()
    still_serving(served)


def test_too_many_aliases_are_refused(served: Served) -> None:
    aliased = "{ " + " ".join(f"m{i}: metrics(environmentId: 1) {{ name }}" for i in range(30)) + " }"
    message = post(served, f'{{"query": "{aliased}"}}').json()["errors"][0]["message"]
    assert message.startswith(f"the query has more than {graphql.MAX_ALIASES} aliases")
    still_serving(served)


def test_too_many_or_too_long_where_filters_are_refused() -> None:
    many = QueryRequest(metrics=("sessions",), where=("{{ Dimension('user__state') }} = 'CA'",) * 21)
    with pytest.raises(ValueError, match=f"at most {service.MAX_FILTERS} where filters"):
        many.checked()
    long = QueryRequest(
        metrics=("sessions",), where=("{{ Dimension('user__state') }} = '" + "x" * 3900 + "'",) * 6
    )
    with pytest.raises(ValueError, match="longer than 20,000 characters together"):
        long.checked()
    with pytest.raises(ValueError, match=f"at most {service.MAX_ITEMS} metrics"):
        QueryRequest(metrics=tuple(f"m{i}" for i in range(101))).checked()


def test_a_slow_query_is_interrupted_at_its_time_limit(course_copy: Path) -> None:
    layer = SemanticLayer.published(course_copy)
    try:
        slow = "select count(*) from range(100000000000) a"  # minutes of work
        with pytest.raises(QueryInterrupted, match=r"longer than 0\.5 s and was stopped"):
            layer.run(slow, timeout_s=0.5)
        assert layer.query(metrics=["sessions_with_checkout"]).table.to_pylist() == [
            {"sessions_with_checkout": 361}
        ]
    finally:
        layer.close()


def test_a_query_over_the_memory_limit_says_what_to_ask_instead(
    course_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB's own message advises fewer threads or more memory, which a client cannot set;
    the layer's says what to ask for instead, and the engine answers the next query. (What a
    semantic model's every column costs: select * of page_views at scale 1000 stopped so.)"""
    monkeypatch.setenv(store.MEMORY_ENV, "64MB")
    layer = SemanticLayer.published(course_copy)
    try:
        with pytest.raises(
            SemanticLayerError, match="needs more memory than the warehouse may use: group by"
        ):
            layer.run("select list(i) from range(50000000) t(i)")  # a list cannot spill to disk
        assert layer.query(metrics=["sessions_with_checkout"]).table.to_pylist() == [
            {"sessions_with_checkout": 361}
        ]
    finally:
        layer.close()


def test_a_query_over_the_memory_limit_is_out_of_memory_over_postgres(
    course_copy: Path, course_sl: SemanticLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLSTATE 53200, as PostgreSQL reports a query out of memory, with the layer's advice; the
    connection answers the next statement. (Every column of a table at 10 MB on the course data.)"""
    monkeypatch.setenv(store.MEMORY_ENV, "10MB")
    with own_postgres(course_copy) as (_, connection):
        with pytest.raises(psycopg.errors.OutOfMemory, match="needs more memory than the warehouse may use"):
            connection.execute("select * from semantic_layer.sessions")
        checkouts = course_sl.query(metrics=["sessions_with_checkout"]).table.to_pylist()
        answer = connection.execute("select sessions_with_checkout from semantic_layer.sessions")
        assert [{"sessions_with_checkout": value} for (value,) in answer] == checkouts


def test_the_time_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(service.TIMEOUT_ENV, raising=False)
    assert service.query_timeout_s() == service.DEFAULT_TIMEOUT_S
    monkeypatch.setenv(service.TIMEOUT_ENV, "2.5")
    assert service.query_timeout_s() == 2.5
    monkeypatch.setenv(service.TIMEOUT_ENV, "soon")
    with pytest.raises(service.ServerConfigError, match="must be a number of seconds"):
        service.query_timeout_s()


# ---- connections and headers ------------------------------------------------------------------

HALF_SENT = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # the blank line never comes


def open_sockets(served: Served, count: int, first_bytes: bytes) -> list[socket.socket]:
    host, port = served.http_host.split(":")
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(first_bytes)
        sockets.append(sock)
    return sockets


def closed_by_server(sockets: list[socket.socket]) -> int:
    closed = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            closed += sock.recv(1024) == b""
        except BlockingIOError:
            pass
        except ConnectionResetError:
            closed += 1
    return closed


def test_healthz_answers_while_2000_half_sent_requests_are_held(served: Served) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 6000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    cap = connections.connection_cap()
    sockets = open_sockets(served, 2000, HALF_SENT)
    try:
        for _ in range(3):
            start = time.perf_counter()
            answer = requests.get(f"http://{served.http_host}/healthz", timeout=10)
            assert answer.status_code == 200 and answer.json() == {"status": "ok"}
            assert time.perf_counter() - start < 2.0
        deadline = time.monotonic() + 10
        while (closed := closed_by_server(sockets)) < 2000 - cap and time.monotonic() < deadline:
            time.sleep(0.1)
        print(f"\n2000 half-sent requests: the server closed the {closed} oldest (cap {cap} connections)")
        assert closed >= 2000 - cap  # never more open than the cap: the idlest made room
        still_serving(served)
    finally:
        for sock in sockets:
            sock.close()


def test_a_request_slow_to_send_its_headers_is_closed(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connections, "HEADER_TIMEOUT_S", 0.5)
    slow, silent = open_sockets(served, 1, HALF_SENT) + open_sockets(served, 1, b"")
    try:
        for sock in (slow, silent):
            sock.settimeout(5)
            start = time.perf_counter()
            assert sock.recv(1024) == b""  # closed by the server, without an answer
            assert time.perf_counter() - start < 3
        still_serving(served)  # a request sent at once is not affected
    finally:
        slow.close()
        silent.close()


def test_too_many_or_too_large_headers_are_refused(served: Served) -> None:
    many = {f"x-h{i}": "1" for i in range(connections.MAX_HEADERS + 1)}
    answer = requests.get(f"http://{served.http_host}/healthz", headers=many, timeout=10)
    assert answer.status_code == 431 and f"at most {connections.MAX_HEADERS}" in answer.text
    large = {"x-large": "x" * (connections.MAX_HEADER_BYTES + 1)}
    assert requests.get(f"http://{served.http_host}/healthz", headers=large, timeout=10).status_code == 431
    (sock,) = open_sockets(served, 1, HALF_SENT)  # the same headers, arriving in pieces
    with sock:
        for _ in range(20):
            try:
                sock.sendall(b"x-piece: " + b"y" * 1000 + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):  # refused and closed past the limit
                break
            time.sleep(0.01)
        assert sock.recv(1024).startswith(b"HTTP/1.1 431 ")
    still_serving(served)


# ---- input nested too deeply: the client's error, with a message, on every transport ----------

DEEP_SQL = "select " + "(" * 1900 + "1" + ")" * 1900  # past Python's recursion limit in sqlglot
DEEP_FILTER = "{{ Dimension('user__state') }} = " + "(" * 1900 + "'CA'" + ")" * 1900


def test_deeply_nested_json_and_filters_are_input_errors_over_graphql(served: Served) -> None:
    answer = post(served, '{"query": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["message"].startswith("the request body must be JSON")
    compile_deep = {
        "query": "mutation C($w: [WhereInput!]) { compileSql(environmentId: 1, "
        'metrics: [{name: "sessions"}], where: $w) { sql } }',
        "variables": {"w": [{"sql": DEEP_FILTER}]},
    }
    message = post(served, json.dumps(compile_deep)).json()["errors"][0]["message"]
    assert message == f"a where filter: {service.TOO_COMPLEX}"
    still_serving(served)


def test_deeply_nested_sql_is_an_input_error_over_flight(adbc: flightsql.Connection) -> None:
    with pytest.raises(flightsql.Error) as raised:
        fetch(adbc, DEEP_SQL)
    assert service.TOO_COMPLEX in str(raised.value) and "internal error" not in str(raised.value)
    assert fetch(adbc, "select 1 as one").to_pylist() == [{"one": 1}]


def test_deeply_nested_sql_is_an_input_error_over_postgres(served: Served) -> None:
    with psycopg.connect(host="127.0.0.1", port=served.pg_port, user="u", password=TOKEN) as connection:
        with pytest.raises(psycopg.Error) as raised:
            connection.execute(DEEP_SQL)
        assert raised.value.sqlstate == "54001" and service.TOO_COMPLEX in str(raised.value)
        connection.rollback()
        assert connection.execute("select 1").fetchone() == (1,)


def test_a_slow_catalog_query_and_slow_sql_around_answers_stop_at_the_time_limit(
    served: Served, adbc: flightsql.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What runs beside MetricFlow's queries is held to the same limit: a cross join of the
    system catalog over Postgres, or of answers over Flight SQL, would otherwise run for hours."""
    monkeypatch.setenv(service.TIMEOUT_ENV, "1")
    with psycopg.connect(host="127.0.0.1", port=served.pg_port, user="u", password=TOKEN) as connection:
        start = time.monotonic()
        with pytest.raises(psycopg.Error) as raised:
            connection.execute(CATALOG_CROSS_JOIN)
        assert raised.value.sqlstate == "57014" and "longer than 1 s" in str(raised.value)
        assert time.monotonic() - start < 30
        connection.rollback()
        assert connection.execute("select 1").fetchone() == (1,)
    start = time.monotonic()
    with pytest.raises(flightsql.Error, match="ran longer than 1 s and was stopped"):
        fetch(adbc, ANSWERS_CROSS_JOIN)
    assert time.monotonic() - start < 30
    assert fetch(adbc, "select 1 as one").to_pylist() == [{"one": 1}]


@contextlib.contextmanager
def own_postgres(
    course_copy: Path, workers: int = service.QUERY_WORKERS
) -> Iterator[tuple[service.SemanticLayerService, psycopg.Connection]]:
    """A service with a Postgres endpoint of the test's own (settings it reads when it opens, its
    own workers), and a connection to it; both closed at the end."""
    layer_service = service.SemanticLayerService(course_copy, workers=workers)
    postgres = start_postgres_server(layer_service, "127.0.0.1", 0, TOKEN, warm=False)
    try:
        with psycopg.connect(
            host="127.0.0.1", port=postgres.port, user="u", password=TOKEN, autocommit=True
        ) as connection:
            yield layer_service, connection
    finally:
        postgres.shutdown()
        layer_service.close()


def occupy_workers(layer_service: service.SemanticLayerService, release: threading.Event) -> None:
    """Both of the service's two workers busy with other clients' jobs until `release` is set."""
    for client in ("a", "b"):
        layer_service.scheduler.submit(lambda: release.wait(60), client)


def pg(served: Served, **kwargs: str) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1", port=served.pg_port, user="u", password=TOKEN, autocommit=True, **kwargs
    )


def test_a_statement_stops_at_the_sessions_statement_timeout(served: Served) -> None:
    """statement_timeout read as Postgres reads it, from SET or from the startup options (libpq's
    PGOPTIONS, JDBC's options), stops a statement on the catalog or around answers; the
    connection answers on, and a value Postgres would refuse is refused the same way."""
    with pg(served) as connection:
        for value, shown in (("2500", "2500ms"), ("'1.5s'", "1500ms"), ("'60 s'", "1min"), ("0", "0")):
            connection.execute(f"set statement_timeout = {value}")
            assert connection.execute("show statement_timeout").fetchone() == (shown,)
        connection.execute("set statement_timeout to '500ms'")
        start = time.monotonic()
        with pytest.raises(
            psycopg.errors.QueryCanceled, match="canceling statement due to statement timeout"
        ):
            connection.execute(CATALOG_CROSS_JOIN)
        assert 0.5 <= time.monotonic() - start < 30
        for bad, message in (
            ("'abc'", 'invalid value for parameter "statement_timeout": "abc"'),
            ("-5", '-5 ms is outside the valid range for parameter "statement_timeout"'),
            ("'5 sec'", 'valid units are "us", "ms", "s", "min", "h" and "d"'),
        ):
            with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
                connection.execute(f"set statement_timeout = {bad}")
        assert connection.execute("show statement_timeout").fetchone() == ("500ms",)
    with pg(served, options="-c statement_timeout=1s") as connection:
        assert connection.execute("show statement_timeout").fetchone() == ("1s",)
        start = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="due to statement timeout"):
            connection.execute(ANSWERS_CROSS_JOIN)
        assert 1 <= time.monotonic() - start < 30
        assert connection.execute("select 1").fetchone() == (1,)
    with pytest.raises(
        psycopg.OperationalError, match='invalid value for parameter "statement_timeout": "soon"'
    ):
        pg(served, options="-c statement_timeout=soon")


def test_a_cancel_request_stops_the_statement_running(served: Served) -> None:
    """Postgres's CancelRequest, sent on a second connection with the key the server gave at
    startup: by psycopg's cancel_safe, by asyncpg when a fetch times out. A wrong key stops nothing."""
    with pg(served) as connection:
        for statement in (CATALOG_CROSS_JOIN, ANSWERS_CROSS_JOIN):
            cancel = threading.Timer(0.5, connection.cancel_safe)
            start = time.monotonic()
            cancel.start()
            with pytest.raises(psycopg.errors.QueryCanceled, match="canceling statement due to user request"):
                connection.execute(statement)
            cancel.join()
            assert time.monotonic() - start < 30
            assert connection.execute("select 1").fetchone() == (1,)

        connection.execute("set statement_timeout = '1.5s'")
        wrong_key = struct.pack("!iiii", 16, 80877102, connection.info.backend_pid, 12345)
        cancel = threading.Timer(
            0.3, lambda: socket.create_connection(("127.0.0.1", served.pg_port)).sendall(wrong_key)
        )
        cancel.start()
        with pytest.raises(psycopg.errors.QueryCanceled, match="due to statement timeout"):
            connection.execute(CATALOG_CROSS_JOIN)
        cancel.join()

    async def time_out() -> tuple[int, float]:
        connection = await asyncpg.connect(host="127.0.0.1", port=served.pg_port, user="u", password=TOKEN)
        try:
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                await connection.fetch(CATALOG_CROSS_JOIN, timeout=0.5)
            return await connection.fetchval("select 1"), time.monotonic() - start
        finally:
            await connection.close()

    one, seconds = asyncio.run(time_out())
    assert one == 1 and seconds < 30


def test_cancel_query_stops_a_running_query(
    course_copy: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """GraphQL's cancelQuery (dbt-sl-sdk, dbt-mcp) stops the query's statement in DuckDB, so the
    worker it held is free again at once, not when the server's time limit ends it."""
    endless = "select sum(a.range * b.range) as n from range(1000000) as a, range(1000000) as b"  # hours
    monkeypatch.setattr(service.PublishedLayer, "compile", lambda *_, **__: endless)
    caplog.set_level(logging.INFO, logger="greenery.serve")
    served = {"authorization": f"Bearer {TOKEN}"}
    with running(http.create_app(course_copy, token=TOKEN)) as host:

        def ask(document: str, query_id: str | None = None) -> dict:
            body = {"query": document, "variables": {"id": query_id}}
            answer = requests.post(f"http://{host}/api/graphql", json=body, headers=served, timeout=60)
            return answer.json()["data"]

        query_id = ask('mutation { createQuery(environmentId: 1, metrics: [{name: "orders"}]) { queryId } }')[
            "createQuery"
        ]["queryId"]
        status = "query($id: String!) { query(environmentId: 1, queryId: $id) { status error } }"
        deadline = time.monotonic() + 30
        while ask(status, query_id)["query"]["status"] != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # well inside DuckDB's statement
        cancel = "mutation($id: String!) { cancelQuery(environmentId: 1, queryId: $id) { queryId } }"
        ask(cancel, query_id)
        assert ask(status, query_id)["query"] == {"status": "FAILED", "error": "cancelled by the client"}
        ended, deadline = f"createQuery {query_id[:8]} FAILED", time.monotonic() + 10
        while not any(r.getMessage().startswith(ended) for r in caplog.records):  # its worker's log line
            assert time.monotonic() < deadline, "the cancelled query still runs"
            time.sleep(0.05)


def test_a_flight_call_the_client_cancels_stops_its_statement(
    served: Served, adbc: flightsql.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """ADBC's adbc_cancel ends the gRPC call; the server sees it and stops the statement the call
    runs, rather than computing an answer nobody reads until the server's time limit."""
    caplog.set_level(logging.INFO, logger="greenery.serve")
    with adbc.cursor() as cursor:
        cancel = threading.Timer(0.5, cursor.adbc_cancel)
        cancel.start()
        with pytest.raises(flightsql.OperationalError, match="CANCELLED"):
            cursor.execute(ANSWERS_CROSS_JOIN)
        cancel.join()
    deadline = time.monotonic() + 10
    while not any("stopped: the client cancelled the call" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the cancelled call's statement still runs"
        time.sleep(0.05)
    assert fetch(adbc, "select 1 as one").to_pylist() == [{"one": 1}]


def test_a_statement_stopped_while_its_query_waits_for_a_worker(
    course_copy: Path, course_sl: SemanticLayer
) -> None:
    """Every worker busy with other clients' queries: a Postgres statement's query waits its
    turn, and its statement_timeout ends the wait (the waiting query is cancelled, not run later)."""
    release = threading.Event()
    with own_postgres(course_copy, workers=2) as (layer_service, connection):
        try:
            occupy_workers(layer_service, release)
            connection.execute("set statement_timeout = 500")
            start = time.monotonic()
            with pytest.raises(psycopg.errors.QueryCanceled, match="due to statement timeout"):
                connection.execute("select revenue from semantic_layer.orders")
            assert 0.5 <= time.monotonic() - start < 10
            release.set()
            orders = course_sl.query(metrics=["orders"]).table.to_pylist()[0]["orders"]
            assert connection.execute("select orders from semantic_layer.orders").fetchone() == (orders,)
            cancelled = [
                job for job in layer_service.queries._jobs.values() if job.request.metrics == ("revenue",)
            ]
            assert [job.error for job in cancelled] == ["cancelled by the client"]
        finally:
            release.set()  # before the service closes, which waits for its workers


def test_closing_the_service_ends_the_queries_not_finished(course_copy: Path) -> None:
    """A query still waiting for a worker when the server stops ends FAILED, saying why, so a
    client polling it is told, not left waiting for a worker that never comes."""
    layer_service = service.SemanticLayerService(course_copy, workers=2)
    release = threading.Event()
    try:
        occupy_workers(layer_service, release)
        job = layer_service.create_query(QueryRequest(metrics=("revenue",)), read_cache=False)
        closing = threading.Thread(target=layer_service.close)
        closing.start()
        assert job.done.wait(10)
        assert (job.status, job.error) == ("FAILED", service.SHUTTING_DOWN)
    finally:
        release.set()
    closing.join(30)
    assert not closing.is_alive()


def test_input_made_to_backtrack_is_refused_at_once(served: Served) -> None:
    """Regular expressions read array parameters, COPY statements and a prepared statement's
    parameters: input shaped to make them backtrack (a malformed array of 60,000 spaces, a COPY
    with 90,000 trailing spaces, 40,000 unclosed dollar quotes) is refused in linear time,
    where each took a minute or more."""
    with pg(served) as connection:
        start = time.monotonic()
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="malformed array literal"):
            connection.execute(
                "select user__state from semantic_layer.orders where user__state = any(%s::text[])",
                ["{" + " " * 30_000 + "x" + " " * 30_000 + '"}'],
            )
        with pytest.raises(psycopg.errors.SyntaxError):
            connection.execute("copy (select 1) to stdout " + " " * 90_000 + "x")
        unclosed_quotes = "".join(f"$t{n}$ " for n in range(40_000))  # each opens a string never closed
        with pytest.raises(psycopg.Error):
            connection.execute(f"select %s {unclosed_quotes}", [1])  # Parse: parameters read first
        assert time.monotonic() - start < 10
        assert connection.execute("select 1").fetchone() == (1,)


NESTED_ARRAYS = "array[" * 20 + "1" + "]" * 20  # 126 characters: sqlglot took 8 s, doubling per level


def test_sql_the_parser_cannot_afford_is_refused_before_parsing(
    served: Served, adbc: flightsql.Connection
) -> None:
    """Shapes sqlglot's parser takes exponential or quadratic time over are refused first, on
    every transport, in the time a normal query takes; each took seconds to minutes of CPU."""
    start = time.monotonic()
    where = {"sql": "{{ Dimension('user__state') }} = " + NESTED_ARRAYS}
    compile_nested = {
        "query": "mutation C($w: [WhereInput!]) { compileSql(environmentId: 1, "
        'metrics: [{name: "sessions"}], where: $w) { sql } }',
        "variables": {"w": [where]},
    }
    message = post(served, json.dumps(compile_nested)).json()["errors"][0]["message"]
    assert "square brackets nested 20 deep (at most 8)" in message
    search = {
        "query": "query M($t: [String!]) { "
        "metricsPaginated(environmentId: 1, searchTerms: $t) { totalItems } }",
        "variables": {"t": ["x"] * 101},
    }
    assert "at most 100 searchTerms" in post(served, json.dumps(search)).json()["errors"][0]["message"]
    with pytest.raises(flightsql.Error, match="too complex to read: square brackets"):
        fetch(adbc, f"select {NESTED_ARRAYS} as n")
    with pytest.raises(flightsql.Error, match="at most 2000"):
        fetch(adbc, "select " + ",".join(["?"] * 2001))
    tables = table_names(adbc, table_name_filter="%" * 30 + "ord_rs")
    assert tables == ["orders"]  # LIKE matched in linear time (a regex of 30 .* took minutes)
    with pg(served) as connection:
        for statement, sqlstate in (
            (f"select {NESTED_ARRAYS}", "54001"),
            ("select 1;" * 1001, "54000"),
            (f"set search_path = '{'x' * 5000}'", "22023"),
        ):
            assert _sqlstate(connection, statement) == sqlstate, statement
        for n in range(100):
            connection.execute(f"set greenery.custom_{n} = 1")
        assert _sqlstate(connection, "set greenery.custom_100 = 1") == "53400"
        assert connection.execute("select 1").fetchone() == (1,)

    async def huge_parameter_number() -> str:
        connection = await asyncpg.connect(host="127.0.0.1", port=served.pg_port, user="u", password=TOKEN)
        try:
            with pytest.raises(asyncpg.PostgresError) as raised:
                await connection.fetch("select $10000000")  # 16 characters: 12 s and 2 GB before
            return str(raised.value.sqlstate)
        finally:
            await connection.close()

    assert asyncio.run(huge_parameter_number()) == "54000"
    assert time.monotonic() - start < 30


def _sqlstate(connection: psycopg.Connection, statement: str) -> str | None:
    with pytest.raises(psycopg.Error) as raised:
        psycopg.ClientCursor(connection).execute(statement)
    return raised.value.sqlstate
