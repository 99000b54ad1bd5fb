"""Apache Superset against the Postgres endpoint: `make check-superset`, not `make test`.

Superset lives in its own venv ($GREENERY_SUPERSET_PYTHON, made by `make check-superset` from
tests/clients/superset-requirements.txt); tests/clients/superset_check.py lists the
semantic_layer tables with Superset's `Database`, makes a dataset, asks Superset's chart
builder for the SQL of a weekly time-series of SUM(view_to_checkout_rate), runs it, and
prints what it got. Without that venv the test is skipped.
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

SCRIPT = Path(__file__).with_name("clients") / "superset_check.py"
PYTHON_ENV = "GREENERY_SUPERSET_PYTHON"


@pytest.fixture(scope="module")
def superset(served: Served) -> dict[str, Any]:
    python = os.environ.get(PYTHON_ENV)
    if not python or not Path(python).is_file():
        pytest.skip(f"${PYTHON_ENV} names no Superset venv: run `make check-superset`")
    done = subprocess.run(
        [python, str(SCRIPT), "127.0.0.1", str(served.pg_port)],
        env={**os.environ, TOKEN_ENV: TOKEN},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr.replace(TOKEN, "<token>")[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # after Superset's own log lines


def test_superset_lists_the_semantic_layer(superset: dict[str, Any], course_sl: SemanticLayer) -> None:
    assert "semantic_layer" in superset["schemas"]
    assert set(course_sl.saved_query_names) <= set(superset["tables"])
    columns = superset["columns"]
    assert columns["metric_time__week"]["is_dttm"] is True
    assert columns["view_to_checkout_rate"]["type"] == "DOUBLE PRECISION"


def test_a_superset_time_series_chart(superset: dict[str, Any], course_sl: SemanticLayer) -> None:
    """Superset's own SQL (DATE_TRUNC, SUM around the rate, ORDER BY, LIMIT) gets MetricFlow's rate."""
    assert "DATE_TRUNC('week', metric_time__week)" in superset["sql"]
    assert "sum(view_to_checkout_rate)" in superset["sql"].lower()
    expected = course_sl.query(metrics=["view_to_checkout_rate"], group_by=["metric_time__week"]).table
    weekly = {str(w): r for w, r in zip(*expected.to_pydict().values(), strict=True) if r is not None}
    got = {r["week"]: r["SUM(view_to_checkout_rate)"] for r in superset["rows"]}
    assert got == pytest.approx(weekly)


def test_a_superset_chart_of_a_daily_column_over_a_time_range(
    superset: dict[str, Any], course_sl: SemanticLayer
) -> None:
    """Weeks of the day column `metric_time__day` of `sessions`, bounded by Superset's
    TO_TIMESTAMP('…', 'YYYY-MM-DD HH24:MI:SS.US'): MetricFlow's weekly rate of those days only."""
    assert "TO_TIMESTAMP('2021-02-10 00:00:00.000000'" in superset["ranged_sql"]
    day = "{{ TimeDimension('metric_time', 'day') }}"
    in_range = _weekly_rates(course_sl, [f"{day} >= '2021-02-10'", f"{day} < '2021-02-11'"])
    assert in_range != pytest.approx(_weekly_rates(course_sl, []))  # the range changes the rate
    got = {r["week"]: r["SUM(view_to_checkout_rate)"] for r in superset["ranged_rows"]}
    assert got == pytest.approx(in_range)


def _weekly_rates(course_sl: SemanticLayer, where: list[str]) -> dict[str, float]:
    weekly = course_sl.query(metrics=["view_to_checkout_rate"], group_by=["metric_time__week"], where=where)
    return {str(w): r for w, r in zip(*weekly.table.to_pydict().values(), strict=True) if r is not None}
