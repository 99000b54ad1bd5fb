"""flightsql-dbapi, the SQLAlchemy dialect catalog browsers and BI tools build on, against Flight SQL.

It needs SQLAlchemy < 2, so it runs in its own venv ($GREENERY_FLIGHTSQL_PYTHON, made by
`make test` from tests/clients/flightsql-requirements.txt): tests/clients/flightsql_sqlalchemy.py
browses with SQLAlchemy's inspector and reads SQL with pandas.read_sql, and prints what it got.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import TOKEN, Served
from greenery.semantic.layer import SemanticLayer
from greenery.serve.auth import TOKEN_ENV

SCRIPT = Path(__file__).with_name("clients") / "flightsql_sqlalchemy.py"
PYTHON_ENV = "GREENERY_FLIGHTSQL_PYTHON"
STATEMENTS = [
    "select * from {{ semantic_layer.query(metrics=['sessions_with_page_view', 'sessions_with_checkout'], "
    "group_by=['user__state']) }} where user__state = 'Georgia'",
    "select metric_time__week, view_to_checkout_rate from semantic_layer.sessions group by 1 order by 1",
    "select sessions_with_page_view, sessions_with_add_to_cart, sessions_with_checkout "
    "from semantic_layer.funnel_overall",
    # every other shape a BI tool or dbt's JDBC docs use
    "SELECT 1",
    "select s.user__state from ( select * from {{ semantic_layer.query(metrics=['sessions'], "
    "group_by=['user__state']) }} ) as s order by s.sessions desc limit 1",
    "select NAME, WHERE_FILTER from semantic_layer.saved_queries() order by NAME limit 2",
    "select NAME from {{ semantic_layer.metrics(search='checkout', page_size=3, page_number=1) }}",
    "select NAME from {{ semantic_layer.queryable_granularities(metrics=['sessions']) }}",
    "select NAME from {{ semantic_layer.metrics_for_dimensions(group_by=['session__visitor_type']) }}",
    "select * from {{ semantic_layer.query(group_by=['session__visitor_type']) }} order by 1",
    "select * from {{ semantic_layer.query(metrics=['sessions'], group_by=['metric_time__extract_dow']) }} "
    "order by 1",
    "select count(*) as orders from {{ semantic_layer.query(metrics=['orders'], group_by=['order']) }}",
]


@pytest.fixture(scope="module")
def browsed(served: Served) -> dict[str, Any]:
    python = os.environ.get(PYTHON_ENV)
    if not python or not Path(python).is_file():
        pytest.fail(
            f"${PYTHON_ENV} names no flightsql-dbapi venv ({python!r}): run the tests with `make test`"
        )
    done = subprocess.run(
        [python, str(SCRIPT), "127.0.0.1", str(served.flight_port)],
        input="\n".join(STATEMENTS),
        env={**os.environ, TOKEN_ENV: TOKEN},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_the_inspector_lists_schemas_tables_and_columns(
    browsed: dict[str, Any], course_sl: SemanticLayer
) -> None:
    assert browsed["schemas"] == ["semantic_layer"]
    tables = browsed["tables"]["semantic_layer"]
    assert set(course_sl.saved_query_names) <= set(tables)
    assert {"sessions", "orders", "product_sessions", "page_views"} <= set(tables)
    week = dict(browsed["columns"]["semantic_layer.funnel_by_week"])
    assert week["metric_time__week"] == "TIMESTAMP" and week["view_to_checkout_rate"] == "FLOAT"
    sessions = dict(browsed["columns"]["semantic_layer.sessions"])
    assert {"metric_time__day", "metric_time__week", "user__state", "sessions_with_page_view"} <= set(
        sessions
    )


def test_pandas_read_sql_of_a_wrapped_template_and_of_tables(
    browsed: dict[str, Any], course_sl: SemanticLayer
) -> None:
    georgia, weekly, overall = browsed["answers"][:3]
    expected = course_sl.query(
        metrics=["sessions_with_page_view", "sessions_with_checkout"],
        group_by=["user__state"],
        where=["{{ Dimension('user__state') }} = 'Georgia'"],
    ).table.to_pylist()
    assert georgia == [{k: float(v) if k != "user__state" else v for k, v in r.items()} for r in expected]
    rate = course_sl.query(metrics=["view_to_checkout_rate"], group_by=["metric_time__week"]).table
    assert [r["view_to_checkout_rate"] for r in weekly] == pytest.approx(
        rate["view_to_checkout_rate"].to_pylist()
    )
    assert overall == [
        {"sessions_with_page_view": 578, "sessions_with_add_to_cart": 467, "sessions_with_checkout": 361}
    ]


def test_every_statement_shape_through_the_dbapi(browsed: dict[str, Any], course_sl: SemanticLayer) -> None:
    ping, top_state, saved, searched, grains, for_visitor, visitors, dow, orders = browsed["answers"][3:]
    assert ping == [{"1": 1}]
    by_state = course_sl.query(metrics=["sessions"], group_by=["user__state"]).table.to_pylist()
    assert top_state == [{"user__state": max(by_state, key=lambda r: r["sessions"])["user__state"]}]
    assert [q["NAME"] for q in saved] == sorted(course_sl.saved_query_names)[:2]
    assert len(searched) == 3 and all("checkout" in m["NAME"] for m in searched)
    assert {"day", "week", "month"} <= {g["NAME"] for g in grains}
    assert "sessions" in {m["NAME"] for m in for_visitor}
    assert visitors == [{"session__visitor_type": "new"}, {"session__visitor_type": "returning"}]
    assert sum(r["sessions"] for r in dow) == sum(r["sessions"] for r in by_state)
    assert orders == [{"orders": 361}]
