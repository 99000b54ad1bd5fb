"""Every metric, dimension and entity the server lists is queryable, through GraphQL and Flight SQL.

The combinations come from the server's own metadata (``metrics { dimensions entities }`` and
``dimensions``): each metric alone, each metric by each of its dimensions at each of their
grains and by each of its entities, and each dimension alone (a dimension-only query). Both
protocols must give the same answer; what MetricFlow cannot answer must fail on both with
MetricFlow's reason — never a warehouse (DuckDB) error. The counts are printed.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pytest
import requests
from adbc_driver_manager import ProgrammingError

from conftest import TOKEN, Served, fetch

WAREHOUSE_ERRORS = (
    "Parser Error",
    "Binder Error",
    "Catalog Error",
    "Conversion Error",
    "the warehouse rejected",
)
# Why MetricFlow refuses a combination the metadata lists (checked against every refusal).
MEANINGFUL_REFUSALS = (
    "group-by-items do not include 'metric_time'",
    "requires a time spine with granularity",
)


@dataclass(frozen=True)
class Combination:
    metrics: tuple[str, ...]
    group_by: tuple[str, ...]

    @property
    def graphql_arguments(self) -> str:
        metrics = ", ".join(f'{{name: "{m}"}}' for m in self.metrics)
        group_by = ", ".join(f'{{name: "{g}"}}' for g in self.group_by)
        return f"metrics: [{metrics}], groupBy: [{group_by}]"

    @property
    def statement(self) -> str:
        return f"{{{{ semantic_layer.query(metrics={list(self.metrics)}, group_by={list(self.group_by)}) }}}}"


def _graphql(served: Served, query: str) -> dict[str, Any]:
    answer = requests.post(
        f"http://{served.http_host}/api/graphql",
        json={"query": query},
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=120,
    ).json()
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]


def combinations(served: Served) -> list[Combination]:
    listed = _graphql(
        served,
        "{ metrics(environmentId: 1) { name dimensions { name queryableTimeGranularities } "
        "entities { name } } dimensions(environmentId: 1) { name queryableTimeGranularities } }",
    )

    def names(dimension: dict[str, Any]) -> list[str]:
        grains = dimension["queryableTimeGranularities"]
        return [f"{dimension['name']}__{g}" for g in grains] if grains else [dimension["name"]]

    found: list[Combination] = []
    for metric in listed["metrics"]:
        found.append(Combination((metric["name"],), ()))
        for dimension in metric["dimensions"]:
            found += [Combination((metric["name"],), (name,)) for name in names(dimension)]
        found += [Combination((metric["name"],), (e["name"],)) for e in metric["entities"]]
    for dimension in listed["dimensions"]:
        found += [Combination((), (name,)) for name in names(dimension)]
    return found


def over_graphql(served: Served, combination: Combination) -> pa.Table | str:
    """The answer, or the error message."""
    created = _graphql(
        served, f"mutation {{ createQuery(environmentId: 1, {combination.graphql_arguments}) {{ queryId }} }}"
    )
    query_id = created["createQuery"]["queryId"]
    while True:
        result = _graphql(
            served,
            f'{{ query(environmentId: 1, queryId: "{query_id}") {{ status error totalPages arrowResult }} }}',
        )["query"]
        if result["status"] in ("SUCCESSFUL", "FAILED"):
            break
        # dbt-sl-sdk waits 500 ms and more between polls; polling without a pause took the GIL
        # from the server answering it in this process (81 s for the test, 71 s with this)
        time.sleep(0.005)
    if result["status"] == "FAILED":
        return result["error"]
    pages = [pa.ipc.open_stream(base64.b64decode(result["arrowResult"])).read_all()]
    for number in range(2, result["totalPages"] + 1):
        page = _graphql(
            served,
            f'{{ query(environmentId: 1, queryId: "{query_id}", pageNum: {number}) {{ arrowResult }} }}',
        )
        pages.append(pa.ipc.open_stream(base64.b64decode(page["query"]["arrowResult"])).read_all())
    return pa.concat_tables(pages)


def over_flight(adbc: flightsql.Connection, combination: Combination) -> pa.Table | str:
    try:
        return fetch(adbc, combination.statement)
    except ProgrammingError as exc:
        return str(exc)


def _sorted(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=repr)


def test_every_metric_dimension_and_entity_is_queryable(
    served: Served, adbc: flightsql.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    tried = combinations(served)
    assert len(tried) > 1000
    answered, refused = 0, []
    for combination in tried:
        graphql, flight = over_graphql(served, combination), over_flight(adbc, combination)
        if isinstance(graphql, str):
            assert isinstance(flight, str), f"{combination}: Flight answered where GraphQL failed: {graphql}"
            assert not any(e in graphql or e in flight for e in WAREHOUSE_ERRORS), (combination, graphql)
            assert any(reason in graphql for reason in MEANINGFUL_REFUSALS), (combination, graphql)
            refused.append(combination)
            continue
        assert not isinstance(flight, str), f"{combination}: Flight failed where GraphQL answered: {flight}"
        assert graphql.column_names == flight.column_names == [*combination.group_by, *combination.metrics]
        assert _sorted(graphql) == _sorted(flight), combination
        answered += 1
    with capsys.disabled():  # shown in every run's output, not only on failure
        print(
            f"\n{len(tried)} (metric, dimension, grain) combinations tried over GraphQL and Flight SQL: "
            f"{answered} answered, {len(refused)} refused with MetricFlow's reason"
        )
    assert answered > 0.95 * len(tried)
