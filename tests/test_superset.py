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
    got = {r["metric_time__week"]: r["SUM(view_to_checkout_rate)"] for r in superset["rows"]}
    assert got == pytest.approx(weekly)
