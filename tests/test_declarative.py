"""Declarative caching: queries answered from a saved query's export table, only when exact and current."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dbtsl.env
import duckdb
import pyarrow as pa
import pytest
from dbtsl import SemanticLayerClient

from conftest import TOKEN, running
from greenery.semantic.declarative import CACHE_MARK, ExportCache, ExportTable
from greenery.semantic.exports import run_exports
from greenery.semantic.layer import MetricQuery, SemanticLayer
from greenery.serve.http import create_app
from greenery.serve.service import CHECK_EVERY_S, QueryRequest, SemanticLayerService
from greenery.warehouse import store
from greenery.warehouse.build import copy_warehouse
from greenery.warehouse.dbt import run_dbt
from greenery.warehouse.publish import publish

SEGMENT_METRICS = (
    "sessions_with_page_view",
    "sessions_with_add_to_cart",
    "sessions_with_checkout",
    "view_to_cart_rate",
    "cart_to_checkout_rate",
    "view_to_checkout_rate",
)
SEGMENTS = ("session__visitor_type", "user__buyer_segment")
REPEAT_BUYERS = "{{ Dimension('user__buyer_segment') }} = 'repeat buyer'"
# A dashboard tile: the saved query funnel_by_user_segment, filtered on one of its dimensions.
EXPORT = '"greenery"."exports"."funnel_by_user_segment"'
IN_CALIFORNIA = "{{ Dimension('user__state') }} = 'California'"
DASHBOARD = QueryRequest(metrics=SEGMENT_METRICS, group_by=SEGMENTS, where=(REPEAT_BUYERS,))


@pytest.fixture
def exported(course_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the course warehouse (and its raw catalog) with every export run, published."""
    copy = copy_warehouse(course_warehouse, tmp_path / "warehouse" / course_warehouse.name)
    monkeypatch.setenv(store.ENV_VAR, str(copy))
    results = run_exports(copy)
    assert [r.error for r in results] == [None] * len(results)
    publish(copy)
    return copy


@pytest.fixture
def service(exported: Path) -> Iterator[SemanticLayerService]:
    service = SemanticLayerService(exported)
    yield service
    service.close()


def _rows(table: pa.Table) -> list[tuple[object, ...]]:
    return sorted(tuple(row.values()) for row in table.to_pylist())


def _answer(
    service: SemanticLayerService, request: QueryRequest, *, read_cache: bool
) -> tuple[str, pa.Table]:
    job = service.run_query(request, read_cache=read_cache, transport="test")
    assert job.sql is not None and job.table is not None
    return job.sql, job.table


def _served_from_export(service: SemanticLayerService, request: QueryRequest) -> pa.Table:
    """The answer from the export table, checked equal to MetricFlow's (the uncached path)."""
    cached_sql, cached = _answer(service, request, read_cache=True)
    uncached_sql, uncached = _answer(service, request, read_cache=False)
    assert cached_sql.startswith(CACHE_MARK), cached_sql
    assert not uncached_sql.startswith(CACHE_MARK)
    assert cached.schema == uncached.schema
    assert cached.num_rows > 0
    if request.order_by:
        assert cached.to_pylist() == uncached.to_pylist()
    else:
        assert _rows(cached) == _rows(uncached)
    return cached


def test_a_dashboard_query_is_answered_from_the_export_over_every_client(
    exported: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="greenery.serve")
    app = create_app(exported, token=TOKEN)
    service: SemanticLayerService = app.state.service
    cached = _served_from_export(service, DASHBOARD)
    assert set(cached["user__buyer_segment"].to_pylist()) == {"repeat buyer"}
    assert f"cache=export:{EXPORT}" in caplog.text
    monkeypatch.setattr(dbtsl.env, "GRAPHQL_URL_FORMAT", "http://{server_host}/api/graphql")
    with running(app) as host:
        client = SemanticLayerClient(environment_id=1, auth_token=TOKEN, host=host, timeout=60)
        client._method_map["query"] = "graphql"
        with client.session():
            sql = client.compile_sql(
                metrics=list(SEGMENT_METRICS), group_by=list(SEGMENTS), where=[REPEAT_BUYERS]
            )
            assert sql.startswith(f"{CACHE_MARK} answered from export table {EXPORT}")
            uncached = client.compile_sql(  # the SQL a query created without the cache runs
                metrics=list(SEGMENT_METRICS),
                group_by=list(SEGMENTS),
                where=[REPEAT_BUYERS],
                read_cache=False,
            )
            assert uncached == _answer(service, DASHBOARD, read_cache=False)[0]
            assert CACHE_MARK not in uncached
            over_graphql = client.query(
                metrics=list(SEGMENT_METRICS), group_by=list(SEGMENTS), where=[REPEAT_BUYERS]
            )
    assert _rows(over_graphql) == _rows(cached)


def test_exact_rewrites_equal_metricflow(service: SemanticLayerService) -> None:
    # additive metrics summed over a dropped dimension
    by_visitor = QueryRequest(
        metrics=("sessions_with_checkout", "sessions_with_page_view"), group_by=SEGMENTS[:1]
    )
    assert _served_from_export(service, by_visitor).num_rows == 2
    # and over all of them, filtered on the dropped one
    total = QueryRequest(metrics=("sessions_with_checkout",), where=(REPEAT_BUYERS,))
    assert _served_from_export(service, total).num_rows == 1
    # a ratio with the export's own group-by, a subset of its same-rows metrics
    assert _served_from_export(service, QueryRequest(metrics=("view_to_cart_rate",), group_by=SEGMENTS))
    # the saved query itself, ordered and limited as MetricFlow orders and limits
    ordered = QueryRequest(saved_query="funnel_by_product", order_by=("-product__product_name",), limit=5)
    assert _served_from_export(service, ordered).num_rows == 5
    weeks = QueryRequest(saved_query="funnel_by_week", order_by=("metric_time__week",))
    assert _served_from_export(service, weeks).num_rows == 2  # the course data's two weeks


def test_a_limit_of_0_answers_the_same_with_or_without_the_cache(service: SemanticLayerService) -> None:
    """MetricFlow leaves out a limit of 0, so the export table's SQL does too."""
    unlimited = _served_from_export(service, DASHBOARD)
    assert _rows(_served_from_export(service, replace(DASHBOARD, limit=0))) == _rows(unlimited)


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (
            QueryRequest(metrics=("view_to_cart_rate",), group_by=SEGMENTS[:1]),
            "a ratio over fewer dimensions",
        ),
        (
            QueryRequest(metrics=SEGMENT_METRICS, group_by=SEGMENTS, where=(IN_CALIFORNIA,)),
            "a filter on a dimension the export lacks",
        ),
        (
            QueryRequest(
                saved_query="funnel_by_week",
                where=("{{ TimeDimension('metric_time', 'week') }} >= '2021-02-08'",),
            ),
            "a filter under a week-over-week offset",
        ),
        (
            QueryRequest(metrics=("session_view_to_checkout_conversion",)),
            "a conversion metric apart from its saved query's other metrics",
        ),
        (
            QueryRequest(metrics=SEGMENT_METRICS, group_by=("session__visitor_type", "metric_time__week")),
            "a dimension the export lacks",
        ),
    ],
)
def test_queries_an_export_cannot_answer_exactly_run_on_the_marts(
    service: SemanticLayerService, request_: QueryRequest, why: str
) -> None:
    sql, table = _answer(service, request_, read_cache=True)
    assert not sql.startswith(CACHE_MARK), why
    assert table.num_rows > 0
    assert CACHE_MARK not in service.compile_sql(request_)


def test_count_distinct_is_never_summed_over_dropped_dimensions(exported: Path) -> None:
    """An export of distinct sessions by day and visitor type: by visitor type alone it would
    count a session once per day — so only the export's own group-by is answered from it."""
    metric, group_by = "page_view_sessions", ("session__visitor_type", "metric_time__day")
    with SemanticLayer(exported, read_only=False) as writer:
        con = writer.client.connection
        con.execute(
            f"create table exports.distinct_sessions as {writer.compile(metrics=[metric], group_by=group_by)}"
        )
    with SemanticLayer(exported) as layer:
        cache = ExportCache(layer.client.connection, layer.lookup.semantic_manifest, layer.manifest_sha256)
        described = layer.client.connection.sql("select * from exports.distinct_sessions")
        columns = {c: str(t) for c, t in zip(described.columns, described.types, strict=True)}
        cache.exports[:] = [
            ExportTable(
                '"greenery"."exports"."distinct_sessions"',
                "synthetic",
                (metric,),
                group_by,
                columns,
                str(cache.build_id),
            )
        ]

        def rewrite(group: tuple[str, ...]) -> str | None:
            query = MetricQuery(metrics=(metric,), group_by=group)
            found = cache.rewrite(query, layer.compile(**query._asdict()))
            return found.sql if found else None

        full = rewrite(group_by)
        assert full is not None and "distinct_sessions" in full
        assert _rows(layer.run(full)) == _rows(layer.query(metrics=[metric], group_by=group_by).table)
        assert rewrite(group_by[:1]) is None
        assert rewrite(()) is None


def _wait_for_version(service: SemanticLayerService, version: str) -> None:
    deadline = time.monotonic() + 30
    while service.health()["published_version"] != version:
        assert time.monotonic() < deadline, "the service did not switch to the new publish"
        time.sleep(CHECK_EVERY_S / 4)


def test_a_rebuild_published_without_new_exports_is_never_answered_from_them(
    exported: Path, service: SemanticLayerService
) -> None:
    before = _served_from_export(service, DASHBOARD)
    # different data: the checkouts of a third of the sessions are gone, fct_sessions rebuilt
    raw = duckdb.connect(str(store.raw_path(exported)))
    raw.execute("delete from public.events where event_type = 'checkout' and hash(session_id) % 3 = 0")
    raw.close()
    run_dbt(["run", "--select", "+fct_sessions", "--full-refresh"], warehouse_file=exported)
    _wait_for_version(service, publish(exported).name)

    stale_sql, after = _answer(service, DASHBOARD, read_cache=True)
    assert not stale_sql.startswith(CACHE_MARK)  # the exports were computed from the previous build
    assert _rows(after) == _rows(_answer(service, DASHBOARD, read_cache=False)[1])
    assert sum(after["sessions_with_checkout"].to_pylist()) < sum(
        before["sessions_with_checkout"].to_pylist()
    )

    run_exports(exported)  # exports of this build, published: the cache is back, with the new rows
    _wait_for_version(service, publish(exported).name)
    assert _rows(_served_from_export(service, DASHBOARD)) == _rows(after)
