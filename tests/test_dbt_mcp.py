"""dbt-mcp 2.8.0, dbt Labs' MCP server for AI agents, against `greenery serve` on the course data.

dbt-mcp needs Python ≥ 3.12 and this machine has 3.11, so it is not run: its wheel (downloaded
by `make test`, path in $GREENERY_DBT_MCP_WHEEL) ships its GraphQL documents, and each
discovery tool's document is replayed here byte for byte, posted the way dbt-mcp posts it in
local mode (to `/`, with its headers and variables). The tools that go through dbt-sl-sdk
(query_metrics, get_dimension_values, get_metrics_compiled_sql) make the SDK calls dbt-mcp
makes (dbt_mcp/semantic_layer/client.py), over Arrow Flight SQL as dbt-mcp does.
"""

from __future__ import annotations

import ast
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dbtsl import SemanticLayerClient
from dbtsl.api.shared.query_params import GroupByParam, GroupByType, OrderByGroupBy

from conftest import TOKEN, Served
from greenery.semantic.layer import SemanticLayer
from greenery.serve.run import dbt_mcp_recipe

WHEEL_ENV = "GREENERY_DBT_MCP_WHEEL"
DOCUMENTS_PATH = "dbt_mcp/semantic_layer/gql/gql.py"
FUNNEL = ["sessions_with_page_view", "sessions_with_add_to_cart", "sessions_with_checkout"]


@pytest.fixture(scope="module")
def documents() -> dict[str, str]:
    """GRAPHQL_QUERIES from dbt-mcp's wheel, read as a literal (never executed)."""
    wheel = os.environ.get(WHEEL_ENV)
    if not wheel or not Path(wheel).is_file():
        pytest.fail(f"${WHEEL_ENV} names no dbt-mcp wheel ({wheel!r}): run the tests with `make test`")
    assert Path(wheel).name == "dbt_mcp-2.8.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        module = ast.parse(archive.read(DOCUMENTS_PATH).decode("utf-8"))
    (assignment,) = [n for n in module.body if isinstance(n, ast.Assign)]
    return ast.literal_eval(assignment.value)


@pytest.fixture(scope="module")
def submit(served: Served) -> Any:
    """dbt-mcp's submit_request in local mode: POST http://{DBT_HOST} with its headers."""

    def post(query: str, variables: dict[str, Any]) -> dict[str, Any]:
        payload = {"query": query, "variables": {**variables, "environmentId": 1}}
        headers = {
            "Authorization": f"Bearer {TOKEN}",
            "x-dbt-partner-source": "dbt-mcp",
            "Accept-Encoding": "gzip, deflate",
        }
        response = requests.post(f"http://{served.http_host}", json=payload, headers=headers, timeout=30)
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    return post


@pytest.fixture(scope="module")
def sdk(served: Served) -> Iterator[SemanticLayerClient]:
    """The client dbt-mcp makes: SyncSemanticLayerClient, queries over Flight SQL."""
    client = SemanticLayerClient(environment_id=1, auth_token=TOKEN, host=served.http_host)
    yield client


def _manifest_meta(course_sl: SemanticLayer) -> dict[str, dict[str, Any]]:
    return {m.name: dict(m.config.meta or {}) for m in course_sl.lookup.semantic_manifest.metrics}


def test_the_wheel_ships_every_semantic_layer_document(documents: dict[str, str]) -> None:
    assert set(documents) == {
        "metrics",
        "dimensions",
        "entities",
        "metrics_with_related",
        "saved_queries",
        "saved_queries_with_params",
    }


def test_list_metrics(documents: dict[str, str], submit: Any, course_sl: SemanticLayer) -> None:
    variables = {"search": None, "pageNum": 1, "pageSize": 50}
    page = submit(documents["metrics"], variables)["metricsPaginated"]
    listed = sorted(m.name for m in course_sl.engine.list_metrics())  # what MetricFlow lists
    assert sorted(m["name"] for m in page["items"]) == listed
    assert page["totalItems"] == len(listed) and page["totalPages"] == 1
    meta = _manifest_meta(course_sl)
    assert {m["name"]: m["config"]["meta"] for m in page["items"]} == {name: meta[name] for name in listed}
    assert meta["view_to_checkout_rate"] == {
        "owner": "product analytics",
        "headline": True,
    }  # the YAML's meta:
    related = submit(documents["metrics_with_related"], variables)["metricsPaginated"]["items"]
    by_name = {m["name"]: m for m in related}
    assert "metric_time" in [d["name"] for d in by_name["sessions_with_page_view"]["dimensions"]]
    assert "session" in [e["name"] for e in by_name["sessions_with_page_view"]["entities"]]


def test_list_metrics_searches_and_pages(documents: dict[str, str], submit: Any) -> None:
    found = submit(documents["metrics"], {"search": "Checkout", "pageNum": 1, "pageSize": 2})[
        "metricsPaginated"
    ]
    assert found["pageSize"] == 2 and len(found["items"]) == 2
    assert found["totalPages"] == -(-found["totalItems"] // 2) >= 2
    everything = []
    for number in range(1, found["totalPages"] + 1):
        page = submit(documents["metrics"], {"search": "checkout", "pageNum": number, "pageSize": 2})
        everything += page["metricsPaginated"]["items"]
    assert len(everything) == found["totalItems"]
    assert all("checkout" in f"{m['name']} {m['label']} {m['description']}".lower() for m in everything)
    terms = submit(
        documents["metrics"], {"searchTerms": ["page_view", "add_to_cart"], "pageNum": 1, "pageSize": 50}
    )["metricsPaginated"]["items"]
    assert {"sessions_with_page_view", "sessions_with_add_to_cart"} <= {m["name"] for m in terms}


def test_list_saved_queries(documents: dict[str, str], submit: Any, course_sl: SemanticLayer) -> None:
    variables = {"pageNum": 1, "pageSize": 50}
    simple = submit(documents["saved_queries"], variables)["savedQueriesPaginated"]
    assert sorted(q["name"] for q in simple["items"]) == course_sl.saved_query_names
    full = submit(documents["saved_queries_with_params"], variables)["savedQueriesPaginated"]["items"]
    by_week = next(q for q in full if q["name"] == "funnel_by_week")
    assert [m["name"] for m in by_week["queryParams"]["metrics"]][:3] == FUNNEL
    assert [g["name"] for g in by_week["queryParams"]["groupBy"]] == ["metric_time"]


def test_get_dimensions(documents: dict[str, str], submit: Any) -> None:
    variables = {
        "metrics": [{"name": "sessions_with_page_view"}],
        "search": None,
        "pageNum": 1,
        "pageSize": 50,
    }
    items = submit(documents["dimensions"], variables)["dimensionsPaginated"]["items"]
    by_name = {d["name"]: d for d in items}
    assert "WEEK" in by_name["metric_time"]["queryableGranularities"]
    assert "week" in by_name["metric_time"]["queryableTimeGranularities"]
    assert by_name["session__visitor_type"]["type"] == "CATEGORICAL"
    assert by_name["session__visitor_type"]["config"]["meta"] == {"values": ["new", "returning"]}
    searched = submit(documents["dimensions"], {**variables, "search": "visitor"})["dimensionsPaginated"]
    assert [d["name"] for d in searched["items"]] == ["session__visitor_type"]


def test_get_entities(documents: dict[str, str], submit: Any) -> None:
    variables = {"metrics": [{"name": "orders"}], "search": None, "pageNum": 1, "pageSize": 50}
    items = submit(documents["entities"], variables)["entitiesPaginated"]["items"]
    assert {"order", "user"} <= {e["name"] for e in items}
    assert {e["type"] for e in items} <= {"PRIMARY", "FOREIGN", "UNIQUE", "NATURAL"}


def test_query_metrics(sdk: SemanticLayerClient) -> None:
    with sdk.session():
        table = sdk.query(metrics=FUNNEL, group_by=None, order_by=[], where=None, limit=None)
    row = {k.lower(): v for k, v in table.to_pylist()[0].items()}
    assert [row[m] for m in FUNNEL] == [578, 467, 361]


def test_query_metrics_by_week_with_a_where_and_order(sdk: SemanticLayerClient) -> None:
    group_by = [GroupByParam(name="metric_time", grain="week", type=GroupByType.TIME_DIMENSION)]
    with sdk.session():
        table = sdk.query(
            metrics=FUNNEL,
            group_by=group_by,
            order_by=[OrderByGroupBy(name="metric_time", grain="week", descending=False)],
            where=["{{ Dimension('session__visitor_type') }} = 'new'"],
            limit=10,
        )
    assert table.num_rows >= 1
    assert sum(r for r in table.column(table.schema.names[1]).to_pylist() if r is not None) > 0


def test_get_dimension_values(sdk: SemanticLayerClient, course_sl: SemanticLayer) -> None:
    with sdk.session():
        table = sdk.dimension_values(metrics=["sessions"], group_by="session__visitor_type")
    column = next(n for n in table.schema.names if n.lower() == "session__visitor_type")
    expected = course_sl.query(metrics=["sessions"], group_by=["session__visitor_type"]).table
    assert sorted(str(v) for v in table.column(column).to_pylist() if v is not None) == sorted(
        str(v) for v in expected.column("session__visitor_type").to_pylist() if v is not None
    )


def test_get_metrics_compiled_sql(sdk: SemanticLayerClient, course_sl: SemanticLayer) -> None:
    with sdk.session():
        sql = sdk.compile_sql(
            metrics=FUNNEL, group_by=None, order_by=[], where=None, limit=None, read_cache=True
        )
    assert sql == course_sl.compile(metrics=FUNNEL)


def test_the_serve_command_prints_the_dbt_mcp_recipe() -> None:
    recipe = dbt_mcp_recipe("127.0.0.1", 8000, 8815)
    settings = dict(line.split("=", 1) for line in recipe.splitlines() if "=" in line)
    assert settings["DBT_HOST"] == "localhost:8000"
    assert settings["DBT_SL_ADBC_URL_FORMAT"] == "grpc://127.0.0.1:8815"
    assert settings["DBT_TOKEN"] == "$GREENERY_API_TOKEN"  # named, never printed
    assert json.dumps(settings)  # plain strings
