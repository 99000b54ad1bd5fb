"""Arrow Flight SQL, driven by the real clients: `dbt-sl-sdk` (its default path), the ADBC
Flight SQL driver (DB-API), and raw pyarrow.flight calls in the order the JDBC driver makes them.

The HTTP app and the Flight server share one SemanticLayerService over a published copy of the
course warehouse; every answer is compared with GraphQL and with SemanticLayer in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import psycopg
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import requests
from adbc_driver_flightsql import DatabaseOptions
from adbc_driver_manager import AdbcStatusCode, ProgrammingError
from dbtsl import OrderByGroupBy, OrderByMetric, SemanticLayerClient
from dbtsl.api.adbc.protocol import ADBCProtocol
from dbtsl.api.shared.query_params import GroupByParam, GroupByType
from dbtsl.asyncio import AsyncSemanticLayerClient
from dbtsl.error import AuthError, QueryFailedError
from test_limits import ANSWERS_CROSS_JOIN
from test_server import FUNNEL, PRODUCT_FUNNEL, assert_same_rows

from conftest import TOKEN, Served, fetch
from greenery.semantic.layer import SemanticLayer
from greenery.serve import service
from greenery.serve.auth import TOKEN_ENV, netloc
from greenery.serve.flight import (
    SQL_INFO_SCHEMA,
    decode_message,
    encode_message,
    pack_any,
    start_flight_server,
    unpack_any,
)
from greenery.serve.statements import MetadataStatement, QueryStatement, StatementError, parse_statement
from greenery.warehouse import store

pytestmark = pytest.mark.filterwarnings("ignore:Cannot disable autocommit")  # the ADBC DB-API says so


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[SemanticLayerClient]:
    """The SDK as users make it: query() and dimension_values() go over Flight SQL."""
    sdk = SemanticLayerClient(environment_id=1, auth_token=TOKEN, host=served.http_host, timeout=60)
    assert sdk._method_map.get("query", "adbc") != "graphql"
    with sdk.session():
        yield sdk


@pytest.fixture(scope="module")
def graphql_client(served: Served) -> Iterator[SemanticLayerClient]:
    sdk = SemanticLayerClient(environment_id=1, auth_token=TOKEN, host=served.http_host, timeout=60)
    sdk._method_map["query"] = "graphql"
    with sdk.session():
        yield sdk


@pytest.fixture
def raw(served: Served) -> Iterator[flight.FlightClient]:
    client = flight.connect(served.flight_uri)
    yield client
    client.close()


AUTH = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])


def funnel_of(table: pa.Table) -> list[int]:
    return [int(table[m][0].as_py()) for m in FUNNEL]


# ---- dbt-sl-sdk over Flight ----------------------------------------------------------------


def test_sdk_query_over_flight_is_the_course_funnel_as_graphql_and_the_semantic_layer(
    client: SemanticLayerClient, graphql_client: SemanticLayerClient, course_sl: SemanticLayer
) -> None:
    over_flight = client.query(metrics=FUNNEL)
    assert funnel_of(over_flight) == [578, 467, 361]
    assert over_flight.equals(graphql_client.query(metrics=FUNNEL))
    assert_same_rows(over_flight, course_sl.query(metrics=FUNNEL).table, [])
    saved = client.query(saved_query="funnel_overall")
    assert funnel_of(saved) == [578, 467, 361]
    assert saved.equals(graphql_client.query(saved_query="funnel_overall"))


def test_sdk_query_with_every_kind_of_argument_equals_the_semantic_layer(
    client: SemanticLayerClient, graphql_client: SemanticLayerClient, course_sl: SemanticLayer
) -> None:
    where = ["{{ Dimension('session__visitor_type') }} = 'returning'"]
    request = {
        "metrics": FUNNEL,
        "group_by": [
            GroupByParam(name="metric_time", type=GroupByType.TIME_DIMENSION, grain="day"),
            GroupByParam(name="user__buyer_segment", type=GroupByType.DIMENSION),
        ],
        "where": where,
        "order_by": [OrderByMetric(name="sessions_with_checkout", descending=True)],
        "limit": 1,
    }
    actual = client.query(**request)
    expected = course_sl.query(
        metrics=FUNNEL,
        group_by=["metric_time__day", "user__buyer_segment"],
        where=where,
        order_by=["-sessions_with_checkout"],
        limit=1,
    ).table
    assert actual["sessions_with_checkout"].to_pylist() == [159]
    assert actual.equals(expected)
    assert actual.equals(graphql_client.query(**request))
    by_week = client.query(
        metrics=FUNNEL,
        group_by=["metric_time__week"],
        order_by=[OrderByGroupBy(name="metric_time", grain="week", descending=True)],
    )
    assert_same_rows(
        by_week, course_sl.query(metrics=FUNNEL, group_by=["metric_time__week"]).table, ["metric_time__week"]
    )


def test_sdk_saved_query_and_product_funnel_equal_the_semantic_layer(
    client: SemanticLayerClient, course_sl: SemanticLayer
) -> None:
    for name, keys in [
        ("funnel_by_week", ["metric_time__week"]),
        ("funnel_by_product", ["product__product_name"]),
    ]:
        assert_same_rows(client.query(saved_query=name), course_sl.query(saved_query=name).table, keys)
    top = client.query(
        metrics=[*PRODUCT_FUNNEL, "product_view_to_purchase_rate"],
        group_by=["product__product_name"],
        order_by=["-product_view_to_purchase_rate"],
        limit=1,
    )
    assert top["product__product_name"].to_pylist() == ["String of pearls"]


def test_sdk_dimension_values_over_flight(client: SemanticLayerClient, course_sl: SemanticLayer) -> None:
    states = client.dimension_values(group_by="user__state", metrics=FUNNEL)
    assert states.column_names == ["user__state"]
    expected = course_sl.engine.get_dimension_values(metric_names=FUNNEL, get_group_by_values="user__state")
    assert [str(s) for s in states["user__state"].to_pylist()] == expected
    segments = client.dimension_values(group_by="user__buyer_segment")
    assert segments["user__buyer_segment"].to_pylist() == ["no orders", "one-time buyer", "repeat buyer"]


def test_async_sdk_queries_over_flight(served: Served) -> None:
    async def ask() -> pa.Table:
        sdk = AsyncSemanticLayerClient(environment_id=1, auth_token=TOKEN, host=served.http_host, timeout=60)
        async with sdk.session():
            return await sdk.query(metrics=FUNNEL, group_by=["metric_time__day"])

    daily = asyncio.run(ask())
    assert [sum(int(v or 0) for v in daily[m].to_pylist()) for m in FUNNEL] == [578, 467, 361]


def test_the_sdk_finds_the_server_through_its_environment_variables(served: Served) -> None:
    """What a user sets (DBT_SL_GRAPHQL_URL_FORMAT / DBT_SL_ADBC_URL_FORMAT), in a fresh interpreter."""
    script = textwrap.dedent(
        f"""
        import json, sys, warnings
        warnings.simplefilter("ignore")
        from dbtsl import SemanticLayerClient
        client = SemanticLayerClient(environment_id=1, auth_token={TOKEN!r}, host={served.http_host!r})
        with client.session():
            metrics = len(client.metrics())  # GraphQL
            table = client.query(metrics={FUNNEL!r})  # Flight SQL
            states = client.dimension_values(group_by="user__state").num_rows
        print(json.dumps({{"metrics": metrics, "funnel": [int(table[m][0].as_py()) for m in {FUNNEL!r}],
                          "states": states}}))
        """
    )
    env = {
        **os.environ,
        "DBT_SL_GRAPHQL_URL_FORMAT": "http://{server_host}/api/graphql",
        "DBT_SL_ADBC_URL_FORMAT": served.flight_uri,
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["metrics"] == 41
    assert answer["funnel"] == [578, 467, 361]
    assert answer["states"] > 30


def test_flight_queries_share_the_query_log_and_the_answer_cache(
    client: SemanticLayerClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="greenery.serve")
    first = client.query(metrics=["orders", "revenue"], group_by=["metric_time__week"])
    again = client.query(metrics=["orders", "revenue"], group_by=["metric_time__week"])
    assert first.equals(again)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("createQuery")]
    assert len(lines) == 2
    assert all(line.endswith("via=flight") for line in lines)
    assert "cache=hit" in lines[1]
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


# ---- the ADBC driver, directly ------------------------------------------------------------


@pytest.mark.parametrize("wrapper", ["{}", "select * from {}", "SELECT *\n  FROM {} ;"])
def test_adbc_runs_semantic_layer_statements(adbc: flightsql.Connection, wrapper: str) -> None:
    statement = wrapper.format(
        '{{ semantic_layer.query(metrics=["sessions_with_page_view", '
        '"sessions_with_add_to_cart", "sessions_with_checkout"], read_cache=True) }}'
    )
    assert funnel_of(fetch(adbc, statement)) == [578, 467, 361]


def test_adbc_cursor_fetches_rows_and_describes_them(adbc: flightsql.Connection) -> None:
    with adbc.cursor() as cursor:
        cursor.adbc_prepare("{{ semantic_layer.query(saved_query='funnel_by_week') }}")
        cursor.execute("{{ semantic_layer.query(saved_query='funnel_by_week') }}")
        rows = cursor.fetchall()
        assert cursor.description[0][0] == "metric_time__week"
    assert [r[1:4] for r in rows if r[1] is not None] == [(578, 467, 361)]


def test_adbc_metadata_statements(adbc: flightsql.Connection, course_sl: SemanticLayer) -> None:
    metrics = fetch(adbc, "select * from {{ semantic_layer.metrics() }}")
    assert metrics.num_rows == 41
    assert metrics.column_names[:4] == ["NAME", "DESCRIPTION", "TYPE", "LABEL"]
    by_name = {r["NAME"]: r for r in metrics.to_pylist()}
    assert by_name["view_to_checkout_rate"]["TYPE"] == "RATIO"
    assert "metric_time" in by_name["sessions_with_checkout"]["DIMENSIONS"]
    saved = fetch(adbc, "{{ semantic_layer.saved_queries() }}")
    assert sorted(saved["NAME"].to_pylist()) == course_sl.saved_query_names
    weekly = next(r for r in saved.to_pylist() if r["NAME"] == "funnel_by_week")
    assert (weekly["METRICS"][:3], weekly["GROUP_BY"]) == (FUNNEL, ["metric_time__week"])
    dimensions = fetch(adbc, "{{ semantic_layer.dimensions(metrics=['sessions_with_checkout']) }}")
    assert {"metric_time", "user__state", "session__visitor_type"} <= set(dimensions["NAME"].to_pylist())
    values = fetch(adbc, '{{ semantic_layer.dimension_values(group_by=Dimension("session__visitor_type")) }}')
    assert values["session__visitor_type"].to_pylist() == ["new", "returning"]


def test_adbc_compile_returns_metricflows_sql(adbc: flightsql.Connection, course_sl: SemanticLayer) -> None:
    compiled = fetch(
        adbc,
        "{{ semantic_layer.query(metrics=['orders'], group_by=[Dimension('metric_time').grain('week')], "
        "compile=True) }}",
    )
    assert compiled.to_pylist() == [
        {"SQL": course_sl.compile(metrics=["orders"], group_by=["metric_time__week"])}
    ]


def test_adbc_connection_metadata(adbc: flightsql.Connection) -> None:
    info = adbc.adbc_get_info()
    assert info["vendor_name"] == "greenery semantic layer"
    assert info["vendor_arrow_version"] == pa.__version__
    adbc.adbc_get_objects().read_all()  # GetCatalogs, GetDbSchemas, GetTables: answered, empty


# ---- Flight SQL messages, as the JDBC driver sends them -----------------------------------


def _command(name: str, fields: list[tuple[int, bytes | int]] | None = None) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(pack_any(name, encode_message(fields or [])))


def _read(raw: flight.FlightClient, info: flight.FlightInfo) -> pa.Table:
    (endpoint,) = info.endpoints
    return raw.do_get(endpoint.ticket, AUTH).read_all()


def _action(raw: flight.FlightClient, kind: str, message: str, fields: list[tuple[int, bytes | int]]) -> list:
    return list(raw.do_action(flight.Action(kind, pack_any(message, encode_message(fields))), AUTH))


def test_statement_query_then_do_get(raw: flight.FlightClient) -> None:
    statement = b"{{ semantic_layer.query(saved_query='funnel_overall') }}"
    info = raw.get_flight_info(_command("CommandStatementQuery", [(1, statement)]), AUTH)
    assert info.total_records == 1
    table = _read(raw, info)
    assert table.schema == info.schema
    assert funnel_of(table) == [578, 467, 361]
    assert raw.get_schema(_command("CommandStatementQuery", [(1, statement)]), AUTH).schema == info.schema


def test_prepared_statement_lifecycle(raw: flight.FlightClient) -> None:
    statement = (
        b"{{ semantic_layer.query(metrics=['sessions_with_checkout'], group_by=['user__buyer_segment']) }}"
    )
    (result,) = _action(
        raw, "CreatePreparedStatement", "ActionCreatePreparedStatementRequest", [(1, statement)]
    )
    message, fields = unpack_any(result.body.to_pybytes())
    assert message == "ActionCreatePreparedStatementResult"
    handle = fields[1][0]
    schema = pa.ipc.read_schema(pa.py_buffer(fields[2][0]))
    assert schema.names == ["user__buyer_segment", "sessions_with_checkout"]
    execute = _command("CommandPreparedStatementQuery", [(1, handle)])
    first = _read(raw, raw.get_flight_info(execute, AUTH))
    second = _read(raw, raw.get_flight_info(execute, AUTH))  # executed again
    assert first.schema == schema
    assert first.sort_by("user__buyer_segment").equals(second.sort_by("user__buyer_segment"))
    assert sum(first["sessions_with_checkout"].to_pylist()) == 361
    assert _action(raw, "ClosePreparedStatement", "ActionClosePreparedStatementRequest", [(1, handle)]) == []
    with pytest.raises(pa.ArrowInvalid, match="unknown prepared statement"):  # INVALID_ARGUMENT
        raw.get_flight_info(execute, AUTH)


def test_sql_info_and_catalog_commands(raw: flight.FlightClient) -> None:
    info = _read(raw, raw.get_flight_info(_command("CommandGetSqlInfo", [(1, bytes([0, 3]))]), AUTH))
    assert info.schema == SQL_INFO_SCHEMA
    assert info.to_pylist() == [
        {"info_name": 0, "value": "greenery semantic layer"},
        {"info_name": 3, "value": True},
    ]
    assert _read(raw, raw.get_flight_info(_command("CommandGetCatalogs"), AUTH)).schema.names == [
        "catalog_name"
    ]
    schemas = _read(raw, raw.get_flight_info(_command("CommandGetDbSchemas"), AUTH))
    assert schemas.to_pylist() == [{"catalog_name": None, "db_schema_name": "semantic_layer"}]
    tables = _read(raw, raw.get_flight_info(_command("CommandGetTables", [(5, 1)]), AUTH))
    assert tables.schema.names == [
        "catalog_name",
        "db_schema_name",
        "table_name",
        "table_type",
        "table_schema",
    ]
    by_name = {row["table_name"]: row for row in tables.to_pylist()}
    assert {"funnel_by_week", "funnel_overall", "sessions", "orders", "product_sessions"} <= set(by_name)
    assert (by_name["funnel_by_week"]["table_type"], by_name["sessions"]["table_type"]) == ("VIEW", "TABLE")
    week = pa.ipc.read_schema(pa.py_buffer(by_name["funnel_by_week"]["table_schema"]))
    assert week.names[:4] == ["metric_time__week", *FUNNEL]
    assert pa.types.is_timestamp(week.field("metric_time__week").type)
    funnel = _read(
        raw, raw.get_flight_info(_command("CommandGetTables", [(2, b"semantic%"), (3, b"funnel%")]), AUTH)
    )
    assert sorted(funnel["table_name"].to_pylist()) == sorted(n for n in by_name if n.startswith("funnel"))
    views = _read(raw, raw.get_flight_info(_command("CommandGetTables", [(4, b"VIEW")]), AUTH))
    assert set(views["table_type"].to_pylist()) == {"VIEW"}
    types = _read(raw, raw.get_flight_info(_command("CommandGetTableTypes"), AUTH))
    assert types["table_type"].to_pylist() == ["TABLE", "VIEW"]
    keys = _read(raw, raw.get_flight_info(_command("CommandGetPrimaryKeys", [(3, b"sessions")]), AUTH))
    assert (keys.num_rows, keys.schema.names[2:4]) == (0, ["table_name", "column_name"])
    for command in ("CommandGetImportedKeys", "CommandGetExportedKeys", "CommandGetCrossReference"):
        fields = (
            [(3, b"sessions"), (6, b"orders")]
            if command == "CommandGetCrossReference"
            else [(3, b"sessions")]
        )
        foreign = _read(raw, raw.get_flight_info(_command(command, fields), AUTH))  # DBeaver's references
        assert (foreign.num_rows, foreign.schema.names[2:4]) == (0, ["pk_table_name", "pk_column_name"])


JDBC_TYPES = {
    "int64": "BIGINT",
    "int32": "INTEGER",
    "double": "DOUBLE",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
}


def _jdbc_type(kind: pa.DataType) -> str:
    kinds = [
        (pa.types.is_decimal, "DECIMAL"),
        (pa.types.is_timestamp, "TIMESTAMP"),
        (pa.types.is_date, "DATE"),
    ]
    return next((name for test, name in kinds if test(kind)), None) or JDBC_TYPES[str(kind)]


def test_xdbc_type_info_lists_the_types_the_tables_have(raw: flight.FlightClient) -> None:
    """JDBC's getTypeInfo over Flight SQL: every column type of every semantic_layer table is
    listed, by JDBC type code, and one code asks for one type (BIGINT's is negative)."""
    types = _read(raw, raw.get_flight_info(_command("CommandGetXdbcTypeInfo"), AUTH))
    codes = types["data_type"].to_pylist()
    assert codes == sorted(codes) and types["data_type"].equals(types["sql_data_type"])
    listed = set(types["type_name"].to_pylist())
    tables = _read(raw, raw.get_flight_info(_command("CommandGetTables", [(5, 1)]), AUTH))
    for serialized in tables["table_schema"].to_pylist():
        for field in pa.ipc.read_schema(pa.py_buffer(serialized)):
            assert _jdbc_type(field.type) in listed, field
    for code, name in [(93, "TIMESTAMP"), (-5 % (1 << 64), "BIGINT")]:
        one = _read(raw, raw.get_flight_info(_command("CommandGetXdbcTypeInfo", [(1, code)]), AUTH))
        assert one["type_name"].to_pylist() == [name]


def test_protobuf_codec_round_trips() -> None:
    message = encode_message([(1, b"handle"), (2, 300), (1, "é".encode())])
    assert decode_message(message) == {1: [b"handle", "é".encode()], 2: [300]}
    assert unpack_any(pack_any("TicketStatementQuery", message)) == (
        "TicketStatementQuery",
        decode_message(message),
    )


# ---- bad statements, bad tokens -----------------------------------------------------------

BAD_STATEMENTS = {
    "{{ semantic_layer.drop_all() }}": "unknown function semantic_layer.drop_all()",
    "{{ __import__('os').system('id') }}": "only semantic_layer.<function>(…) calls are allowed",
    "{{ semantic_layer.query(metrics=[__import__('os')]) }}": "is not a call of Dimension",
    "{{ semantic_layer.query(metrics=['orders'].__class__) }}": "argument values must be",
    "{{ semantic_layer.query(metrics=[Dimension('x').__class__.__mro__]) }}": "argument values must be",
    "{{ semantic_layer.query(metrics=['orders'], limit=(lambda: 1)()) }}": "is not a call of",
    "{{ semantic_layer.query(metrics=['orders'])": "the template is not closed",
    "{{ semantic_layer.query(metrics=['orders]) }}": "unbalanced quotes",
    "{{ semantic_layer.query(metrics=['orders'] }}": "unbalanced brackets",
    "{{ semantic_layer.query(metrics=['orders']) }} union select 1": "syntax error",
    "select * from marts.fct_sessions": "unknown table marts.fct_sessions: SQL here reads the semantic_layer",
    "select * from read_text('/etc/passwd')": "table functions are not allowed",
    "select * from semantic_layer.sessions s join semantic_layer.orders o on s.user = o.user": "no joins",
    "drop table semantic_layer.sessions": "only SELECT statements are answered",
    "copy (select 1) to '/tmp/x.csv'": "only SELECT statements are answered",
    "{{ semantic_layer.query(metrics=['orders'], where=['1=1; drop table x']) }}": "where filter rejected",
    "{{ semantic_layer.query(metrics=['no_such_metric']) }}": "does not exactly match any known metrics",
    "{{ semantic_layer.query(metrics=['orders'], group_by=['user__state; drop']) }}": "invalid group-by name",
}


@pytest.mark.parametrize("statement", list(BAD_STATEMENTS))
def test_bad_statements_are_invalid_argument_and_the_server_keeps_serving(
    adbc: flightsql.Connection, statement: str
) -> None:
    with pytest.raises(ProgrammingError) as failed:
        fetch(adbc, statement)
    assert failed.value.status_code == AdbcStatusCode.INVALID_ARGUMENT
    message = str(failed.value)
    assert BAD_STATEMENTS[statement] in message
    assert "Traceback" not in message and ".py" not in message  # no server internals
    assert funnel_of(fetch(adbc, "{{ semantic_layer.query(saved_query='funnel_overall') }}")) == [
        578,
        467,
        361,
    ]


def test_bad_statement_at_get_flight_info_before_any_data(raw: flight.FlightClient) -> None:
    with pytest.raises(pa.ArrowInvalid, match="unknown function"):  # gRPC INVALID_ARGUMENT
        raw.get_flight_info(
            _command("CommandStatementQuery", [(1, b"{{ semantic_layer.drop_all() }}")]), AUTH
        )


def test_sdk_maps_bad_queries_to_query_failed(client: SemanticLayerClient) -> None:
    with pytest.raises(QueryFailedError, match="does not exactly match any known metrics"):
        client.query(metrics=["no_such_metric"])
    with pytest.raises(QueryFailedError, match="where filter rejected"):
        client.query(metrics=FUNNEL, where=["{{ Dimension('user__state') }} = (select 1)"])
    assert funnel_of(client.query(metrics=FUNNEL)) == [578, 467, 361]


@pytest.mark.parametrize("token", ["wrong-token", ""])
def test_a_bad_token_is_unauthenticated(served: Served, token: str) -> None:
    sdk = SemanticLayerClient(environment_id=1, auth_token=token, host=served.http_host, timeout=30)
    with sdk.session(), pytest.raises(AuthError):
        sdk.query(metrics=FUNNEL)
    plain = flight.connect(served.flight_uri)
    wrong = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    with pytest.raises(flight.FlightUnauthenticatedError, match="User is not authorized"):
        plain.get_flight_info(_command("CommandGetCatalogs"), wrong)
    with pytest.raises(flight.FlightUnauthenticatedError):
        plain.get_flight_info(_command("CommandGetCatalogs"))
    plain.close()


def test_without_a_token_flight_binds_to_loopback_only(course_copy: Path) -> None:
    layer_service = service.SemanticLayerService(course_copy)
    try:
        with pytest.raises(service.ServerConfigError, match=r"on 0\.0\.0\.0 without authentication"):
            start_flight_server(layer_service, "0.0.0.0", 0, None)
        open_server = start_flight_server(layer_service, "127.0.0.1", 0, None)
        try:
            anyone = flight.connect(f"grpc://127.0.0.1:{open_server.port}")
            assert _read(anyone, anyone.get_flight_info(_command("CommandGetCatalogs"))).num_rows == 0
            anyone.close()
        finally:
            open_server.shutdown()
    finally:
        layer_service.close()


# ---- the statement parser -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"metrics": ["orders"], "group_by": ["metric_time__week"], "order_by": ["-orders"], "limit": 3},
            {
                "metrics": ("orders",),
                "group_by": ("metric_time__week",),
                "order_by": ("-orders",),
                "limit": 3,
            },
        ),
        (
            {
                "metrics": ["orders"],
                "group_by": [
                    GroupByParam(name="metric_time", type=GroupByType.TIME_DIMENSION, grain="month"),
                    GroupByParam(name="user__state", type=GroupByType.DIMENSION),
                    GroupByParam(name="user", type=GroupByType.ENTITY),
                    GroupByParam(name="order__ordered_at", type=GroupByType.DIMENSION, grain="DAY"),
                ],
                "order_by": [OrderByGroupBy(name="metric_time", grain=None, descending=True)],
            },
            {
                "metrics": ("orders",),
                "group_by": ("metric_time__month", "user__state", "user", "order__ordered_at__day"),
                "order_by": ("-metric_time__month",),
            },
        ),
        (
            {
                "saved_query": "funnel_by_week",
                "where": ["{{ TimeDimension('metric_time', 'week') }} >= '2021-02-08'"],
            },
            {
                "saved_query": "funnel_by_week",
                "where": ("{{ TimeDimension('metric_time', 'week') }} >= '2021-02-08'",),
            },
        ),
    ],
)
def test_sdk_statements_parse_to_query_requests(params: dict, expected: dict) -> None:
    statement = parse_statement(ADBCProtocol.get_query_sql(params))
    assert isinstance(statement, QueryStatement)
    assert statement.read_cache is True and statement.compile_only is False
    assert statement.request == service.QueryRequest(**expected)


def test_metadata_and_dimension_values_statements_parse() -> None:
    values = parse_statement(
        ADBCProtocol.get_dimension_values_sql({"group_by": "user__state", "metrics": ["a"]})
    )
    assert values == QueryStatement(
        service.QueryRequest(metrics=("a",), group_by=("user__state",), dimension_values=True)
    )
    assert parse_statement("select * from {{ semantic_layer.dimensions(metrics=['a', 'b']) }}") == (
        MetadataStatement("dimensions", ("a", "b"))
    )
    assert parse_statement("{{semantic_layer.saved_queries()}}") == MetadataStatement("saved_queries")
    ordered = parse_statement(
        "{{ semantic_layer.query(metrics=['a'], group_by=[TimeDimension('metric_time', 'None')], "
        "order_by=[Metric('a').descending(True)], read_cache=False, compile=True) }}"
    )
    assert ordered == QueryStatement(
        service.QueryRequest(metrics=("a",), group_by=("metric_time",), order_by=("-a",)),
        read_cache=False,
        compile_only=True,
    )


def test_nested_templates_inside_strings_do_not_end_the_statement() -> None:
    statement = parse_statement(
        """{{ semantic_layer.query(metrics=["a"], where=["{{ Dimension('u__s') }} in ('}}', \\"x\\")"]) }}"""
    )
    assert isinstance(statement, QueryStatement)
    assert statement.request.where == ("{{ Dimension('u__s') }} in ('}}', \"x\")",)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("{{ semantic_layer.query(metrics='a', bogus=1) }}", "has no argument 'bogus'"),
        ("{{ semantic_layer.query('a') }}", "keyword arguments only"),
        ("{{ semantic_layer.query(**{'metrics': ['a']}) }}", "does not take **arguments"),
        ("{{ semantic_layer.query(metrics=['a'], limit=-1) }}", "argument values must be"),
        ("{{ semantic_layer.query(metrics=['a'], limit=True) }}", "limit takes a whole number"),
        ("{{ semantic_layer.query(metrics=[f'{x}']) }}", "argument values must be"),
        ("{{ semantic_layer.query(metrics=['a'], group_by=[Metric('a')]) }}", "group_by items are names"),
        (
            "{{ semantic_layer.query(metrics=['a'], group_by=[Dimension('x').bogus('y')]) }}",
            ".bogus() is not",
        ),
        ("{{ semantic_layer.metrics(metrics=['a']) }}", "has no argument 'metrics'"),
        ("{{ semantic_layer.dimension_values(metrics=['a']) }}", "takes one group_by"),
        ("{{ semantic_layer['query'](metrics=['a']) }}", "only semantic_layer.<function>(…) calls"),
        ("{{ semantic_layer.query(metrics=['a']) }} {{ semantic_layer.metrics() }}", "unexpected text after"),
        ("", "a statement is"),
    ],
)
def test_the_parser_names_what_is_wrong(statement: str, message: str) -> None:
    with pytest.raises(StatementError) as failed:
        parse_statement(statement)
    assert message in str(failed.value)


# ---- `greenery serve --flight-port` ----------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    """Ports free now, all different (each held open until all are chosen)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.create_server(("127.0.0.1", 0))) for _ in range(count)]
        return [sock.getsockname()[1] for sock in sockets]


def _greenery_serve(
    course_copy: Path, http_port: int, *args: str, host: str = "127.0.0.1"
) -> subprocess.Popen[str]:
    """`greenery serve` on the course copy with the test token, once its health check answers."""
    env = {**os.environ, TOKEN_ENV: TOKEN, store.ENV_VAR: str(course_copy)}
    greenery = Path(sys.executable).with_name("greenery")
    process = subprocess.Popen(
        [str(greenery), "serve", "--host", host, "--port", str(http_port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise AssertionError(f"greenery serve ended: {process.communicate()[1]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("greenery serve did not start")
        try:
            if requests.get(f"http://{netloc(host, http_port)}/healthz", timeout=2).ok:
                return process
        except requests.ConnectionError:
            time.sleep(0.2)


def test_greenery_serve_runs_flight_next_to_graphql_with_one_token(course_copy: Path) -> None:
    http_port, flight_port = _free_ports(2)
    process = _greenery_serve(course_copy, http_port, "--flight-port", str(flight_port), "--access-log")
    try:
        kwargs = {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {TOKEN}"}
        with flightsql.connect(f"grpc://127.0.0.1:{flight_port}", db_kwargs=kwargs) as connection:
            overall = fetch(connection, "{{ semantic_layer.query(saved_query='funnel_overall') }}")
        assert funnel_of(overall) == [578, 467, 361]
        page = requests.get(f"http://127.0.0.1:{http_port}/dashboard?token={TOKEN}", timeout=10)
        assert page.ok and TOKEN not in page.text
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=30)
    assert f"Arrow Flight SQL at grpc://127.0.0.1:{flight_port}" in stdout
    assert "createQuery" in stderr and "via=flight" in stderr  # the shared query log
    assert "/dashboard?token=[redacted]" in stdout + stderr  # uvicorn's access log, asked for
    assert "GET /healthz" in stdout + stderr
    assert TOKEN not in stdout + stderr


def test_greenery_serve_interrupted_stops_the_statements_running(course_copy: Path) -> None:
    """Ctrl-C while statements run (a cross join of answers: hours of work in DuckDB): each client
    is told the server is shutting down (Postgres: FATAL 57P01, as PostgreSQL's fast shutdown;
    Flight SQL: cancelled), and the process ends at once. A thread left inside DuckDB when
    Python exits aborts the process ("terminate called …"), as it did before. On IPv6 loopback,
    which the Postgres endpoint could not serve."""
    http_port, flight_port, pg_port = _free_ports(3)
    process = _greenery_serve(
        course_copy, http_port, "--flight-port", str(flight_port), "--pg-port", str(pg_port), host="::1"
    )
    errors: dict[str, BaseException] = {}

    def postgres() -> None:
        with psycopg.connect(host="::1", port=pg_port, user="u", password=TOKEN) as connection:
            try:
                connection.execute(ANSWERS_CROSS_JOIN)
            except psycopg.Error as exc:
                errors["postgres"] = exc

    def adbc() -> None:
        kwargs = {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {TOKEN}"}
        with flightsql.connect(f"grpc://[::1]:{flight_port}", db_kwargs=kwargs) as connection:
            try:
                fetch(connection, ANSWERS_CROSS_JOIN)
            except Exception as exc:
                errors["flight"] = exc

    clients = [threading.Thread(target=postgres), threading.Thread(target=adbc)]
    try:
        with psycopg.connect(host="::1", port=pg_port, user="u", password=TOKEN) as idle:
            assert idle.execute("select 1").fetchone() == (1,)
            for client in clients:
                client.start()
            time.sleep(3)  # both statements are running
            assert all(client.is_alive() for client in clients)
            start = time.monotonic()
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=60)
            assert time.monotonic() - start < 30
            with pytest.raises(psycopg.OperationalError, match="terminating connection due to administrator"):
                idle.execute("select 1")
    finally:
        process.kill()
        for client in clients:
            client.join(timeout=30)
    assert isinstance(errors["postgres"], psycopg.errors.AdminShutdown)
    assert "the server is shutting down" in str(errors["flight"])
    assert f"Postgres at postgresql://[::1]:{pg_port}/greenery" in stdout
    assert f"GraphQL at http://[::1]:{http_port}/api/graphql" in stdout
    assert process.returncode == 130 and "greenery serve: interrupted" in stderr
    assert "terminate called" not in stderr and "Traceback" not in stderr


def test_updates_are_refused_as_read_only(adbc: flightsql.Connection) -> None:
    with adbc.cursor() as cursor:
        cursor.adbc_statement.set_sql_query("insert into semantic_layer.sessions values (1)")
        with pytest.raises(Exception, match="read-only") as refused:
            cursor.adbc_statement.execute_update()
    assert "NotImplementedError" not in str(refused.value)
    assert fetch(adbc, "select 1 as still_serving").to_pylist() == [{"still_serving": 1}]
