"""The semantic-layer server, driven by the real `dbt-sl-sdk` client (sync and async) over HTTP.

The server runs under uvicorn on a free loopback port, over a published copy of the course
warehouse (and of the generated scale-10 one, for paging). Every answer is compared with
the same query through SemanticLayer in-process.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dbtsl.env
import duckdb
import oracle
import pandas as pd
import pyarrow as pa
import pytest
import requests
from dbtsl import SemanticLayerClient
from dbtsl.api.shared.query_params import GroupByParam, GroupByType
from dbtsl.asyncio import AsyncSemanticLayerClient
from dbtsl.error import AuthError, QueryFailedError

from conftest import TOKEN, publish_copy, running
from greenery.semantic import filters
from greenery.semantic.layer import SemanticLayer
from greenery.serve import service
from greenery.serve.auth import TOKEN_ENV
from greenery.serve.graphql import GraphQLApi
from greenery.serve.http import create_app
from greenery.serve.run import serve
from greenery.warehouse.publish import KEEP_PUBLISHED, current_published, publish, published_root

FUNNEL = ["sessions_with_page_view", "sessions_with_add_to_cart", "sessions_with_checkout"]
PRODUCT_FUNNEL = ["product_sessions_viewed", "product_sessions_added_to_cart", "product_sessions_purchased"]
INJECTIONS = [
    "1=1; drop table x",
    "{{ Dimension('user__state') }} = 'CA'; delete from marts.fct_sessions",
    "(select 1) = 1",
    "{{ Dimension('user__state') }} in (select state from marts.dim_users)",
    "read_csv('/etc/passwd') is not null",
    "{{ Dimension('user__state') }} = (select content from read_text('/etc/passwd'))",
    "{{ Dimension('user__state') }} = 'CA' -- and more",
    "{{ Dimension('user__state') }} = 'CA' /* comment */",
    "glob('/*') is not null",
    "{{ ''.__class__.__mro__ }} = 1",
    "{% set x = 1 %} 1 = 1",
    "user_id = 1",
]


# ---- fixtures ------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def sdk_points_at_local_servers() -> Iterator[None]:
    """dbt-sl-sdk builds its URLs from these; Flight (the next issue) is opened lazily, never here."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dbtsl.env, "GRAPHQL_URL_FORMAT", "http://{server_host}/api/graphql")
        patch.setattr(dbtsl.env, "ADBC_URL_FORMAT", "grpc://127.0.0.1:9")
        yield


@pytest.fixture(scope="module")
def course_host(course_copy: Path) -> Iterator[str]:
    with running(create_app(course_copy, token=TOKEN)) as host:
        yield host


@pytest.fixture(scope="module")
def generated_host(generated_copy: Path) -> Iterator[str]:
    with running(create_app(generated_copy, token=TOKEN)) as host:
        yield host


def sdk(host: str, token: str = TOKEN) -> SemanticLayerClient:
    client = SemanticLayerClient(environment_id=1, auth_token=token, host=host, timeout=60)
    client._method_map["query"] = "graphql"  # query over GraphQL (Flight SQL is the next issue)
    return client


@pytest.fixture(scope="module")
def course_client(course_host: str) -> Iterator[SemanticLayerClient]:
    client = sdk(course_host)
    with client.session():
        yield client


def graphql(host: str, query: str, variables: dict[str, Any] | None = None, token: str | None = TOKEN) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = requests.post(
        f"http://{host}/api/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    return answer.json()


def assert_same_rows(actual: pa.Table, expected: pa.Table, keys: list[str]) -> None:
    """Same columns and rows (in key order); floats to 1e-12, everything else exactly."""
    assert actual.column_names == expected.column_names
    assert actual.num_rows == expected.num_rows
    order = [(k, "ascending") for k in keys]
    left = actual.sort_by(order).to_pylist() if keys else actual.to_pylist()
    right = expected.sort_by(order).to_pylist() if keys else expected.to_pylist()
    for got, want in zip(left, right, strict=True):
        for column, value in want.items():
            if isinstance(value, float):
                assert got[column] == pytest.approx(value, rel=1e-12), column
            else:
                assert got[column] == value, column


# ---- metadata ------------------------------------------------------------------------------


def test_sdk_lists_every_metric_with_its_type_and_grains(
    course_client: SemanticLayerClient, course_sl: SemanticLayer
) -> None:
    metrics = {m.name: m for m in course_client.metrics()}
    assert sorted(metrics) == sorted(m.name for m in course_sl.engine.list_metrics(include_dimensions=False))
    assert len(metrics) == 41
    assert metrics["sessions_with_page_view"].type.value == "SIMPLE"
    assert metrics["view_to_checkout_rate"].type.value == "RATIO"
    assert metrics["session_view_to_checkout_conversion"].type.value == "RATIO"
    wow = metrics["view_to_checkout_rate_wow_change"]
    assert (wow.type.value, wow.requires_metric_time) == ("DERIVED", True)
    assert metrics["sessions_with_checkout"].requires_metric_time is False
    assert metrics["view_to_checkout_rate"].label == "View → checkout conversion (overall)"
    assert {"day", "week", "month"} <= set(metrics["sessions_with_checkout"].queryable_time_granularities)
    rate = metrics["view_to_checkout_rate"]
    assert [m.name for m in rate.measures] == ["sessions_with_checkout", "sessions_with_page_view"]
    # named as a query groups by them: joined entities keep their path
    assert {e.name for e in rate.entities} == {
        "session",
        "user",
        "order",
        "order__user",
        "session__user",
        "session__order",
    }


def test_sdk_dimensions_of_the_funnel_are_metricflows(
    course_client: SemanticLayerClient, course_sl: SemanticLayer
) -> None:
    dimensions = {d.name: d for d in course_client.dimensions(metrics=FUNNEL)}
    expected = course_sl.engine.simple_dimensions_for_metrics(FUNNEL)
    assert sorted(dimensions) == sorted({d.granularity_free_dunder_name for d in expected})
    assert {"metric_time", "session__visitor_type", "user__state", "user__buyer_segment"} <= set(dimensions)
    metric_time = dimensions["metric_time"]
    assert metric_time.type.value == "TIME"
    assert {"day", "week"} <= set(metric_time.queryable_time_granularities)
    assert dimensions["user__state"].type.value == "CATEGORICAL"
    assert dimensions["user__state"].queryable_time_granularities == []
    entities = {e.name: e for e in course_client.entities(metrics=FUNNEL)}
    assert entities["session"].type.value == "PRIMARY"
    measures = {m.name: m for m in course_client.measures(metrics=FUNNEL)}
    assert sorted(measures) == sorted(FUNNEL)
    assert measures["sessions_with_checkout"].agg.value == "SUM"


def test_sdk_saved_queries_with_their_exports(
    course_client: SemanticLayerClient, course_sl: SemanticLayer
) -> None:
    saved = {q.name: q for q in course_client.saved_queries()}
    assert sorted(saved) == course_sl.saved_query_names
    weekly = saved["funnel_by_week"]
    assert weekly.label == "Funnel by week"
    assert [m.name for m in weekly.query_params.metrics][:3] == FUNNEL
    (group_by,) = weekly.query_params.group_by
    assert (group_by.name, group_by.time_granularity) == ("metric_time", "week")
    assert weekly.query_params.where is None
    (export,) = weekly.exports
    assert (export.name, export.config.schema, export.config.alias) == (
        "funnel_by_week",
        "exports",
        "funnel_by_week",
    )
    assert export.config.export_as.value == "TABLE"
    by_product = [g.name for g in saved["funnel_by_product"].query_params.group_by]
    assert by_product == ["product__product_name", "product__price_band"]


def test_environment_info_says_duckdb(course_client: SemanticLayerClient) -> None:
    info = course_client.environment_info()
    assert info.dialect.value == "DUCKDB"
    assert info.has_metrics_defined is True


def test_sdk_compile_sql_is_metricflows_sql(
    course_client: SemanticLayerClient, course_sl: SemanticLayer
) -> None:
    sql = course_client.compile_sql(metrics=FUNNEL, group_by=["metric_time__week"])
    assert sql == course_sl.compile(metrics=FUNNEL, group_by=["metric_time__week"])
    assert '"greenery"."marts"."fct_sessions"' in sql
    assert course_client.compile_sql(saved_query="funnel_by_week") == course_sl.compile(
        saved_query="funnel_by_week"
    )


# ---- queries -------------------------------------------------------------------------------


def test_sdk_gets_the_course_funnel_578_467_361(
    course_client: SemanticLayerClient, course_sl: SemanticLayer
) -> None:
    overall = course_client.query(saved_query="funnel_overall")
    assert [overall[m][0].as_py() for m in FUNNEL] == [578, 467, 361]
    assert_same_rows(overall, course_sl.query(saved_query="funnel_overall").table, [])
    adhoc = course_client.query(metrics=FUNNEL)
    assert [adhoc[m][0].as_py() for m in FUNNEL] == [578, 467, 361]


def test_async_sdk_gets_the_same_funnel(course_host: str) -> None:
    async def ask() -> pa.Table:
        client = AsyncSemanticLayerClient(environment_id=1, auth_token=TOKEN, host=course_host, timeout=60)
        client._method_map["query"] = "graphql"
        async with client.session():
            metrics = await client.metrics()
            assert len(metrics) > 30
            return await client.query(metrics=FUNNEL, group_by=["metric_time__week"])

    weekly = asyncio.run(ask())
    totals = [sum(v or 0 for v in weekly[m].to_pylist()) for m in FUNNEL]
    assert totals == [578, 467, 361]


def test_funnel_by_week_equals_the_semantic_layer(
    course_client: SemanticLayerClient, course_sl: SemanticLayer
) -> None:
    by_name = course_client.query(metrics=FUNNEL, group_by=["metric_time__week"])
    by_param = course_client.query(
        metrics=FUNNEL,
        group_by=[GroupByParam(name="metric_time", type=GroupByType.TIME_DIMENSION, grain="week")],
    )
    expected = course_sl.query(metrics=FUNNEL, group_by=["metric_time__week"]).table
    assert_same_rows(by_name, expected, ["metric_time__week"])
    assert_same_rows(by_param, expected, ["metric_time__week"])
    saved = course_client.query(saved_query="funnel_by_week")
    assert_same_rows(saved, course_sl.query(saved_query="funnel_by_week").table, ["metric_time__week"])


def test_product_funnel_by_product_equals_the_semantic_layer(
    course_client: SemanticLayerClient, course_sl: SemanticLayer
) -> None:
    metrics = [*PRODUCT_FUNNEL, "product_view_to_purchase_rate"]
    actual = course_client.query(metrics=metrics, group_by=["product__product_name"])
    expected = course_sl.query(metrics=metrics, group_by=["product__product_name"]).table
    assert_same_rows(actual, expected, ["product__product_name"])
    saved = course_client.query(saved_query="funnel_by_product")
    assert_same_rows(saved, course_sl.query(saved_query="funnel_by_product").table, ["product__product_name"])
    top = course_client.query(
        metrics=["product_view_to_purchase_rate"],
        group_by=["product__product_name"],
        order_by=["-product_view_to_purchase_rate"],
        limit=1,
    )
    assert top.to_pylist() == [
        {"product__product_name": "String of pearls", "product_view_to_purchase_rate": 39 / 64}
    ]


def test_saved_query_with_a_filter(course_client: SemanticLayerClient, course_sl: SemanticLayer) -> None:
    where = ["{{ TimeDimension('metric_time', 'week') }} = '2021-03-01'"]
    actual = course_client.query(saved_query="inventory_changes_by_product_by_week", where=where)
    expected = course_sl.query(saved_query="inventory_changes_by_product_by_week", where=where).table
    assert actual.num_rows == 6
    assert_same_rows(actual, expected, ["product__product_name"])


def test_paging_over_1024_rows_on_scale_10(generated_host: str, generated_copy: Path) -> None:
    metrics, group_by = ["product_sessions_viewed", "product_sessions_purchased"], ["product__product_name"]
    group_by.append("metric_time__hour")
    client = sdk(generated_host)
    with client.session():
        actual = client.query(metrics=metrics, group_by=group_by)
    layer = SemanticLayer.published(generated_copy)
    try:
        expected = layer.query(metrics=metrics, group_by=group_by).table
    finally:
        layer.close()
    assert actual.num_rows > 3 * service.PAGE_ROWS
    assert_same_rows(actual, expected, group_by)


def test_pages_are_self_contained_arrow_streams(generated_host: str) -> None:
    create = """mutation($m: [MetricInput!], $g: [GroupByInput!]) {
        createQuery(environmentId: "1", metrics: $m, groupBy: $g) { queryId } }"""
    poll = """query($id: String!, $p: Int!) { query(environmentId: 1, queryId: $id, pageNum: $p) {
        status totalPages arrowResult } }"""
    variables = {
        "m": [{"name": "product_sessions_viewed"}],
        "g": [{"name": "product__product_name"}, {"name": "metric_time", "grain": "HOUR"}],
    }
    query_id = graphql(generated_host, create, variables)["data"]["createQuery"]["queryId"]
    first = graphql(generated_host, poll, {"id": query_id, "p": 1})["data"]["query"]
    assert first["status"] == "SUCCESSFUL"
    pages = [first] + [
        graphql(generated_host, poll, {"id": query_id, "p": n})["data"]["query"]
        for n in range(2, first["totalPages"] + 1)
    ]
    tables = [pa.ipc.open_stream(base64.b64decode(p["arrowResult"])).read_all() for p in pages]
    assert [t.num_rows for t in tables[:-1]] == [service.PAGE_ROWS] * (len(tables) - 1)
    assert {t.schema for t in tables} == {tables[0].schema}
    total = sum(t.num_rows for t in tables)
    assert first["totalPages"] == math.ceil(total / service.PAGE_ROWS) > 1
    beyond = graphql(generated_host, poll, {"id": query_id, "p": first["totalPages"] + 1})
    assert "does not exist" in beyond["errors"][0]["message"]


def test_zero_rows_is_one_schema_only_page(course_client: SemanticLayerClient, course_host: str) -> None:
    where = ["{{ Dimension('user__state') }} = 'no such state'"]
    empty = course_client.query(metrics=FUNNEL, group_by=["user__state"], where=where)
    assert (empty.num_rows, empty.column_names) == (0, ["user__state", *FUNNEL])


def test_json_result_for_clients_that_read_json(course_host: str) -> None:
    create = 'mutation { createQuery(environmentId: 1, savedQuery: "funnel_overall") { queryId } }'
    query_id = graphql(course_host, create)["data"]["createQuery"]["queryId"]
    poll = (
        "query($id: String!) { query(environmentId: 1, queryId: $id) { status jsonResult(orient: RECORDS) } }"
    )
    answer = graphql(course_host, poll, {"id": query_id})["data"]["query"]
    (row,) = json.loads(base64.b64decode(answer["jsonResult"]))
    assert [row[m] for m in FUNNEL] == [578, 467, 361]


def test_environment_id_may_be_a_string_and_compile_sql_a_query(course_host: str) -> None:
    answer = graphql(
        course_host,
        'query { compileSql(environmentId: "42", metrics: [{name: "sessions"}]) { sql } }',
    )
    assert "fct_sessions" in answer["data"]["compileSql"]["sql"]
    assert graphql(course_host, "query { metrics(environmentId: 1.5) { name } }")["errors"]


def test_create_query_answers_once_its_query_is_done(course_host: str) -> None:
    create = (
        'mutation { createQuery(environmentId: 1, savedQuery: "funnel_by_product", readCache: false) '
        "{ queryId } }"
    )
    poll = "query($id: String!) { query(environmentId: 1, queryId: $id) { status } }"
    for _ in range(3):  # computed each time: the poll right after finds it done
        query_id = graphql(course_host, create)["data"]["createQuery"]["queryId"]
        assert graphql(course_host, poll, {"id": query_id})["data"]["query"]["status"] == "SUCCESSFUL"


def test_cancel_query(course_host: str) -> None:
    create = 'mutation { createQuery(environmentId: 1, metrics: [{name: "orders"}]) { queryId } }'
    query_id = graphql(course_host, create)["data"]["createQuery"]["queryId"]
    cancel = "mutation($id: String!) { cancelQuery(environmentId: 1, queryId: $id) { queryId } }"
    assert graphql(course_host, cancel, {"id": query_id})["data"]["cancelQuery"]["queryId"] == query_id
    unknown = graphql(course_host, cancel, {"id": "nope"})
    assert "unknown query id 'nope'" in unknown["errors"][0]["message"]


def test_one_log_line_per_query_and_answers_cached_per_version(
    course_client: SemanticLayerClient, course_host: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="greenery.serve")
    request = {"metrics": ["orders", "revenue"], "group_by": ["metric_time__day"]}
    first, second = course_client.query(**request), course_client.query(**request)
    assert first.equals(second)
    create = """mutation { createQuery(environmentId: 1, metrics: [{name: "orders"}, {name: "revenue"}],
        groupBy: [{name: "metric_time", timeGranularity: "day"}], readCache: false) { queryId } }"""
    graphql(course_host, create)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("createQuery")]
    assert len(lines) == 3
    assert re.fullmatch(
        rf"createQuery \w{{8}} SUCCESSFUL metrics=orders,revenue rows={first.num_rows} ms=\d+", lines[0]
    )
    assert lines[1].endswith("cache=hit")
    assert not lines[2].endswith("cache=hit")
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


# ---- errors, auth, safety ------------------------------------------------------------------


def test_unknown_metric_fails_with_metricflows_message(course_client: SemanticLayerClient) -> None:
    with pytest.raises(QueryFailedError) as failed:
        course_client.query(metrics=["no_such_metric"])
    assert "does not exactly match any known metrics" in failed.value.message
    assert "no_such_metric" in failed.value.message


@pytest.mark.parametrize("token", ["wrong-token", ""])
def test_a_bad_token_is_an_auth_error(course_host: str, token: str) -> None:
    client = sdk(course_host, token=token)
    with client.session(), pytest.raises(AuthError):
        client.metrics()


def test_auth_scheme_is_case_insensitive_and_required(course_host: str) -> None:
    query = {"query": "{ environmentInfo(environmentId: 1) { dialect } }"}
    url = f"http://{course_host}/api/graphql"
    shouted = requests.post(url, json=query, headers={"Authorization": f"BEARER {TOKEN}"})
    assert shouted.json()["data"]["environmentInfo"]["dialect"] == "DUCKDB"
    missing = requests.post(url, json=query)
    assert missing.status_code == 401
    assert missing.json()["errors"][0]["message"] == "User is not authorized"
    basic = requests.post(url, json=query, headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401


def test_where_injection_is_rejected_and_the_warehouse_is_unchanged(
    course_client: SemanticLayerClient, course_copy: Path
) -> None:
    served = current_published(course_copy) / course_copy.name
    before = sha256(served), sha256(course_copy)
    baseline = course_client.query(metrics=["sessions"])["sessions"][0].as_py()
    for where in INJECTIONS:
        with pytest.raises(QueryFailedError, match="where filter rejected"):
            course_client.query(metrics=["sessions"], where=[where])
        with pytest.raises(Exception, match="where filter rejected"):
            course_client.compile_sql(metrics=["sessions"], where=[where])
    assert course_client.query(metrics=["sessions"])["sessions"][0].as_py() == baseline
    assert (sha256(served), sha256(course_copy)) == before


def test_names_are_checked_before_metricflow(course_client: SemanticLayerClient) -> None:
    with pytest.raises(QueryFailedError, match="invalid group-by name"):
        course_client.query(metrics=["sessions"], group_by=["user__state; drop table x"])


@pytest.mark.parametrize(
    ("where", "canonical"),
    [
        ("{{ Dimension('user__state') }} = 'CA'", "{{ Dimension('user__state') }} = 'CA'"),
        (
            "{{ TimeDimension('metric_time', 'week') }} >= '2021-02-08' and {{ Entity('user') }} is not null",
            "{{ TimeDimension('metric_time', time_granularity_name='week') }} >= '2021-02-08' "
            "AND NOT {{ Entity('user') }} IS NULL",
        ),
        (
            "lower({{ Dimension('product__product_name') }}) in ('pothos', 'bamboo')",
            "LOWER({{ Dimension('product__product_name') }}) IN ('pothos', 'bamboo')",
        ),
        (
            "{{ Metric('orders', group_by=['user']) }} between 2 and 5",
            "{{ Metric('orders', group_by=['user']) }} BETWEEN 2 AND 5",
        ),
    ],
)
def test_filter_validator_keeps_predicates_in_canonical_form(where: str, canonical: str) -> None:
    assert filters.normalize_where(where) == canonical


@pytest.mark.parametrize("where", INJECTIONS)
def test_filter_validator_rejects_anything_else(where: str) -> None:
    with pytest.raises(filters.FilterRejected):
        filters.normalize_where(where)


def test_unauthenticated_serve_refuses_a_public_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(
        service.ServerConfigError, match=r"refusing to serve on 0\.0\.0\.0 without authentication"
    ):
        serve("0.0.0.0", 0, None)


def test_query_store_evicts_the_oldest_finished_results() -> None:
    store = service.QueryStore(max_jobs=2, max_bytes=10**9)
    jobs = [store.add(service.QueryRequest(metrics=("orders",))) for _ in range(3)]
    for job in jobs:
        job.finish(table=pa.table({"orders": [1]}))
        store.finished(job)
        job.done.set()
    running = store.add(service.QueryRequest(metrics=("orders",)))  # unfinished: never evicted
    with pytest.raises(service.QueryNotFound, match="evicted"):
        store.get(jobs[0].id)
    assert len(store) == 2
    store.add(service.QueryRequest(metrics=("orders",)))  # the oldest finished goes, not the running
    assert store.get(running.id) is running
    with pytest.raises(service.QueryNotFound):
        store.get(jobs[2].id)
    assert len(store) == 2


def test_polls_and_query_starts_are_run_without_a_thread(course_copy: Path) -> None:
    layer_service = service.SemanticLayerService(course_copy)
    api = GraphQLApi(layer_service)
    poll = "query Poll($id: String!) { query(environmentId: 1, queryId: $id) { status totalPages } }"
    create = 'mutation Create { createQuery(environmentId: 1, savedQuery: "funnel_overall") { queryId } }'
    try:
        assert not api.runs_at_once(poll, None)  # never parsed: parsing may take a while
        answer, started = api.execute(create, None, None)
        assert len(started) == 1 and started[0].done.wait(60)
        job_id = answer["data"]["createQuery"]["queryId"]
        answer, started = api.execute(poll, {"id": job_id}, None)
        assert answer["data"]["query"] == {"status": "SUCCESSFUL", "totalPages": 1} and started == []
        assert api.runs_at_once(poll, None) and api.runs_at_once(poll, "Poll")
        assert api.runs_at_once(create, None) and not api.runs_at_once(poll, "Other")
        for document in (
            'query { query(environmentId: 1, queryId: "x") { status } compileSql(environmentId: 1, '
            'savedQuery: "funnel_overall") { sql } }',
            'query A { query(environmentId: 1, queryId: "x") { status } } query B { environmentInfo('
            "environmentId: 1) { dialect } }",
            "{ metrics(environmentId: 1) { name } }",
        ):
            api.execute(document, None, "A" if "query A" in document else None)
            assert not api.runs_at_once(document, None)  # compiles, reads metadata, or names no one operation
    finally:
        layer_service.close()


def test_a_query_known_to_be_quick_runs_in_the_thread_that_starts_it(
    course_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer_service = service.SemanticLayerService(course_copy)
    ran_in: list[str] = []
    run = layer_service._run

    def recording(job: service.QueryJob) -> None:
        ran_in.append(threading.current_thread().name)
        run(job)

    monkeypatch.setattr(layer_service, "_run", recording)
    monkeypatch.setattr(service, "QUICK_RUN_S", 1.0)  # a slow machine's run counts as quick too
    quick = service.QueryRequest(saved_query="inventory_on_hand_by_product_by_week")
    try:
        first = layer_service.create_query(quick, read_cache=False)  # its time is not known yet
        assert first.done.wait(60) and first.status == "SUCCESSFUL"
        again = layer_service.create_query(quick, read_cache=False)
        assert again.done.is_set()  # answered by the time createQuery returns: it ran here
        assert again.table is not None and first.table is not None and not again.from_cache
        rows = [sorted(job.table.to_pylist(), key=repr) for job in (first, again)]  # no order was asked
        assert rows[0] == rows[1]
        assert ran_in[0].startswith("greenery-query") and ran_in[1] == threading.current_thread().name

        monkeypatch.setattr(service, "QUICK_RUN_S", 0.0)  # now no query counts as quick
        slow = service.QueryRequest(saved_query="funnel_overall")
        for _ in range(2):
            assert layer_service.create_query(slow, read_cache=False).done.wait(60)
        assert all(name.startswith("greenery-query") for name in ran_in[2:]) and len(ran_in) == 4
    finally:
        layer_service.close()


# ---- refresh -------------------------------------------------------------------------------


def test_a_new_publish_is_served_without_restart(course_warehouse: Path, tmp_path: Path) -> None:
    copy = publish_copy(course_warehouse, tmp_path / "warehouse")
    first = current_published(copy)
    assert first is not None
    with running(create_app(copy, token=TOKEN)) as host:
        auth = {"authorization": f"Bearer {TOKEN}"}  # without the token /healthz says only "ok"
        health = requests.get(f"http://{host}/healthz", headers=auth).json()
        assert (health["status"], health["published_version"], health["metrics"]) == ("ok", first.name, 41)
        client = sdk(host)
        with client.session():
            assert client.query(metrics=FUNNEL)["sessions_with_page_view"][0].as_py() == 578
            con = duckdb.connect(str(copy))  # a "rebuild" holds the warehouse itself: reads go on
            try:
                con.execute(
                    "delete from marts.fct_sessions where session_id = "
                    "(select min(session_id) from marts.fct_sessions where has_page_view)"
                )
                assert client.query(metrics=FUNNEL)["sessions_with_page_view"][0].as_py() == 578
            finally:
                con.close()
            second = publish(copy)
            deadline = time.monotonic() + 10
            while (
                requests.get(f"http://{host}/healthz", headers=auth).json()["published_version"]
                != second.name
            ):
                assert time.monotonic() < deadline, "the new version was not picked up"
                time.sleep(0.2)
            assert client.query(metrics=FUNNEL)["sessions_with_page_view"][0].as_py() == 577


def _graphql_rows(host: str, arguments: str) -> list[dict[str, Any]]:
    """createQuery with these arguments, polled to the end; the rows as dicts."""
    created = graphql(host, f"mutation {{ createQuery(environmentId: 1, {arguments}) {{ queryId }} }}")
    query_id = created["data"]["createQuery"]["queryId"]
    fields = "status error totalPages arrowResult"
    result = graphql(host, f'{{ query(environmentId: 1, queryId: "{query_id}") {{ {fields} }} }}')["data"][
        "query"
    ]
    assert result["status"] == "SUCCESSFUL", result["error"]
    return pa.ipc.open_stream(base64.b64decode(result["arrowResult"])).read_all().to_pylist()


def test_no_request_waits_while_a_new_publish_opens(
    course_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = publish_copy(course_warehouse, tmp_path / "warehouse")
    first = current_published(copy)
    layer_service = service.SemanticLayerService(copy)
    opening, release = threading.Event(), threading.Event()
    real_open = service.PublishedLayer.open

    def slow_open(cls: type, folder: Path, name: str) -> service.PublishedLayer:
        opening.set()
        assert release.wait(30)
        return real_open(folder, name)

    monkeypatch.setattr(service.PublishedLayer, "open", classmethod(slow_open))
    try:
        second = publish(copy)
        assert opening.wait(10), "the server did not start opening the new publish"
        for _ in range(3):  # meanwhile every request is answered, by the version it had
            assert layer_service.health()["published_version"] == first.name
        release.set()
        deadline = time.monotonic() + 30
        while layer_service.health()["published_version"] != second.name:
            assert time.monotonic() < deadline, "the new version was not swapped in"
            time.sleep(0.1)
    finally:
        release.set()
        layer_service.close()


def _versions_held_open(root: Path) -> set[str]:
    """The published versions under `root` of which this process holds a file open."""
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # closed meanwhile
            continue
        if target.parent.parent == root:
            held.add(target.parent.name)
    return held


def test_a_long_running_server_lets_go_of_the_versions_publish_removes(
    course_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that runs for days over daily publishes keeps only the served version's file
    open: each published copy is the whole warehouse (4.8 GiB at scale 10000), and a copy
    removed while a process holds it open keeps its disk space."""
    monkeypatch.setattr(service, "CHECK_EVERY_S", 0.1)
    copy = publish_copy(course_warehouse, tmp_path / "warehouse")
    layer_service = service.SemanticLayerService(copy)
    request = service.QueryRequest(metrics=tuple(FUNNEL))
    try:
        for _ in range(KEEP_PUBLISHED + 2):
            layer_service.run_query(request, read_cache=False, transport="test")  # under a time limit
            version = publish(copy)
            deadline = time.monotonic() + 30
            while layer_service.health()["published_version"] != version.name:
                assert time.monotonic() < deadline, "the new version was not swapped in"
                time.sleep(0.1)
        deadline = time.monotonic() + 10  # the old version is closed just after the swap
        while (held := _versions_held_open(published_root(copy))) != {version.name}:
            assert time.monotonic() < deadline, f"open: {sorted(held)}, served: {version.name}"
            time.sleep(0.1)
    finally:
        layer_service.close()


def test_a_dimension_only_query(course_client: SemanticLayerClient, course_warehouse: Path) -> None:
    table = course_client.query(metrics=[], group_by=["session__visitor_type"])
    assert table.column_names == ["session__visitor_type"]
    first = oracle.sessions(oracle.raw_frames(course_warehouse))["is_first_session"]
    expected = {"new" if is_first else "returning" for is_first in first}
    assert sorted(table["session__visitor_type"].to_pylist()) == sorted(expected)


def test_date_parts_by_graphql_date_part(course_host: str, course_warehouse: Path) -> None:
    rows = _graphql_rows(
        course_host,
        'metrics: [{name: "sessions"}], groupBy: [{name: "metric_time", datePart: DOW}], '
        'orderBy: [{groupBy: {name: "metric_time", datePart: DOW}}]',
    )
    started = pd.to_datetime(oracle.sessions(oracle.raw_frames(course_warehouse))["session_started_at"])
    expected = (started.dt.day_of_week + 1).value_counts().sort_index()  # ISO: Monday 1 … Sunday 7
    assert [(r["metric_time__extract_dow"], r["sessions"]) for r in rows] == list(expected.items())


def test_grouping_by_the_entity_named_order(
    course_client: SemanticLayerClient, course_warehouse: Path
) -> None:
    table = course_client.query(
        metrics=["orders"], group_by=[GroupByParam(name="order", type=GroupByType.ENTITY)], limit=1000
    )
    orders = oracle.raw_frames(course_warehouse)["orders"]
    assert sorted(table["order"].to_pylist()) == sorted(orders["order_id"])
    assert set(table["orders"].to_pylist()) == {1}
