"""The semantic layer through MetricFlow's Python API (not by re-reading the marts).

On the course data the answers are the course's; on generated scale-10 data every metric, at
day and week grain and by product, equals an independent pandas computation (tests/oracle.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import oracle
import pandas as pd
import pytest

from greenery.semantic import prepared
from greenery.semantic.layer import SemanticLayer, SemanticLayerError
from greenery.warehouse import store
from greenery.warehouse.dbt import TARGET_DIR, run_tool

FUNNEL = ["sessions_with_page_view", "sessions_with_add_to_cart", "sessions_with_checkout"]
RATES = ["view_to_cart_rate", "cart_to_checkout_rate", "view_to_checkout_rate"]
LOST = ["sessions_lost_before_add_to_cart", "sessions_lost_before_checkout"]


@pytest.fixture(scope="module")
def generated_sl(generated_warehouse: Path) -> Iterator[SemanticLayer]:
    with SemanticLayer(generated_warehouse) as layer:
        yield layer


def _frame(layer: SemanticLayer, **request: object) -> pd.DataFrame:
    return layer.query(**request).table.to_pandas()


def _assert_matches(actual: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    """Same keys, same values (counts exactly, ratios to 1e-9)."""
    actual = actual.set_index(keys).sort_index()
    expected = expected.set_index(keys).sort_index()[actual.columns]
    assert actual.index.equals(expected.index), actual.index.difference(expected.index)[:5]
    for column in actual.columns:
        assert actual[column].astype(float).tolist() == pytest.approx(
            expected[column].astype(float).tolist()
        ), column


def test_course_funnel(course_sl: SemanticLayer) -> None:
    overall = _frame(course_sl, saved_query="funnel_overall").iloc[0]
    assert overall[FUNNEL].tolist() == [578, 467, 361]
    assert round(overall["view_to_cart_rate"], 3) == 0.808
    assert round(overall["cart_to_checkout_rate"], 3) == 0.773
    assert round(overall["view_to_checkout_rate"], 4) == 0.6246
    assert overall[LOST].tolist() == [111, 106]
    assert overall["view_to_checkout_drop_off_rate"] == pytest.approx(1 - 361 / 578)
    # the conversion metric over the page views (fct_page_views) agrees with the session flags
    assert overall["session_view_to_checkout_conversion"] == pytest.approx(361 / 578)


def test_course_product_conversion(course_sl: SemanticLayer) -> None:
    products = _frame(course_sl, saved_query="funnel_by_product").sort_values(
        "product_view_to_purchase_rate", ascending=False
    )
    top, bottom = products.iloc[0], products.iloc[-1]
    assert (top["product__product_name"], round(top["product_view_to_purchase_rate"], 4)) == (
        "String of pearls",
        0.6094,
    )
    assert (bottom["product__product_name"], round(bottom["product_view_to_purchase_rate"], 4)) == (
        "Pothos",
        0.3443,
    )


def test_course_inventory_by_week_equals_the_weekly_facts(
    course_sl: SemanticLayer, course_warehouse: Path
) -> None:
    actual = _frame(course_sl, saved_query="inventory_on_hand_by_product_by_week")
    expected = oracle.inventory_on_hand_by_week(oracle.raw_frames(course_warehouse)).reset_index()
    _assert_matches(actual, expected, ["product__product_name", "metric_time__week"])
    week3 = actual[
        (actual["metric_time__week"] == pd.Timestamp("2021-02-22")) & (actual["out_of_stock_products"] == 1)
    ]
    assert sorted(week3["product__product_name"]) == ["Pothos", "String of pearls"]


def test_course_inventory_changes_week_3_to_4(course_sl: SemanticLayer) -> None:
    changes = _frame(
        course_sl,
        saved_query="inventory_changes_by_product_by_week",
        where=["{{ TimeDimension('metric_time', 'week') }} = '2021-03-01'"],
    ).set_index("product__product_name")
    assert changes["net_inventory_change"].to_dict() == {
        "Bamboo": -21,
        "Monstera": -19,
        "Philodendron": 15,
        "Pothos": 20,
        "String of pearls": 10,
        "ZZ Plant": -12,
    }
    assert changes["restocks"][lambda s: s > 0].index.sort_values().tolist() == ["Pothos", "String of pearls"]


@pytest.mark.parametrize("by", ["day", "week"])
def test_generated_funnel_by_time_matches_pandas(
    generated_sl: SemanticLayer, generated_warehouse: Path, by: str
) -> None:
    actual = _frame(generated_sl, metrics=FUNNEL + RATES + LOST, group_by=[f"metric_time__{by}"])
    expected = oracle.funnel(oracle.raw_frames(generated_warehouse), by=by)
    assert len(actual) > (1 if by == "week" else 7)
    _assert_matches(actual, expected, [f"metric_time__{by}"])


@pytest.mark.parametrize("by", [None, "day", "week"])
def test_generated_product_funnel_matches_pandas(
    generated_sl: SemanticLayer, generated_warehouse: Path, by: str | None
) -> None:
    metrics = [
        "product_sessions_viewed",
        "product_sessions_added_to_cart",
        "product_sessions_purchased",
        "product_view_to_purchase_rate",
        "product_view_to_cart_rate",
    ]
    group_by = ["product__product_name"] + ([f"metric_time__{by}"] if by else [])
    actual = _frame(generated_sl, metrics=metrics, group_by=group_by)
    expected = oracle.product_funnel(oracle.raw_frames(generated_warehouse), by=by)
    _assert_matches(actual, expected, group_by)


@pytest.mark.parametrize("by", ["day", "week"])
def test_generated_orders_and_revenue_match_pandas(
    generated_sl: SemanticLayer, generated_warehouse: Path, by: str
) -> None:
    actual = _frame(
        generated_sl, metrics=["orders", "revenue", "average_order_value"], group_by=[f"metric_time__{by}"]
    )
    _assert_matches(
        actual, oracle.orders_by(oracle.raw_frames(generated_warehouse), by), [f"metric_time__{by}"]
    )


def test_generated_inventory_matches_pandas(generated_sl: SemanticLayer, generated_warehouse: Path) -> None:
    raw = oracle.raw_frames(generated_warehouse)
    actual = _frame(generated_sl, saved_query="inventory_on_hand_by_product_by_week")
    _assert_matches(
        actual,
        oracle.inventory_on_hand_by_week(raw).reset_index(),
        ["product__product_name", "metric_time__week"],
    )
    changes = _frame(
        generated_sl, metrics=["inventory_changes", "units_moved"], group_by=["product__product_name"]
    )
    expected = oracle.inventory_changes(raw)
    expected["units_moved"] = (expected["new_inventory"] - expected["previous_inventory"]).abs()
    expected = expected.groupby("product_name").agg(
        inventory_changes=("week", "count"), units_moved=("units_moved", "sum")
    )
    expected = expected.rename_axis("product__product_name").reset_index()
    _assert_matches(changes, expected, ["product__product_name"])


@pytest.mark.parametrize("wh_fixture", ["course_sl", "generated_sl"])
def test_conversion_metric_agrees_with_session_flags(wh_fixture: str, request: pytest.FixtureRequest) -> None:
    layer: SemanticLayer = request.getfixturevalue(wh_fixture)
    row = _frame(layer, metrics=["session_view_to_checkout_conversion", "view_to_checkout_rate"]).iloc[0]
    assert row["session_view_to_checkout_conversion"] == pytest.approx(row["view_to_checkout_rate"])


def test_unknown_metric_names_metricflows_message(course_sl: SemanticLayer) -> None:
    with pytest.raises(SemanticLayerError, match="no_such_metric"):
        course_sl.query(metrics=["no_such_metric"])
    with pytest.raises(SemanticLayerError, match="unknown saved query 'nope'"):
        course_sl.query(saved_query="nope")


def test_every_metric_has_a_label_and_description(course_warehouse: Path) -> None:
    manifest = json.loads((TARGET_DIR / "manifest.json").read_text())
    metrics = manifest["metrics"].values()
    assert len(metrics) >= 30
    for metric in metrics:
        assert metric["label"] and metric["description"], metric["name"]


def test_exposure_lists_exactly_the_saved_queries(course_warehouse: Path) -> None:
    manifest = json.loads((TARGET_DIR / "manifest.json").read_text())
    saved = {q["name"] for q in manifest["saved_queries"].values()}
    listed = {name for e in manifest["exposures"].values() for name in e["meta"].get("saved_queries", [])}
    assert listed - saved == set(), "an exposure lists a saved query that does not exist"
    assert saved - listed == set(), "a saved query is read by no exposure"
    dashboard = manifest["exposures"]["exposure.greenery.product_funnel_dashboard"]
    assert "metric.greenery.view_to_checkout_rate" in dashboard["depends_on"]["nodes"]
    for query in manifest["saved_queries"].values():
        assert [e["config"]["export_as"] for e in query["exports"]] == ["table"], query["name"]


def _mf(args: list[str], warehouse_file: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `mf` from the repo root on a copy of the warehouse (the module's engine holds the original)."""
    copy = tmp_path / warehouse_file.name
    shutil.copy(warehouse_file, copy)
    shutil.copy(store.raw_path(warehouse_file), store.raw_path(copy))
    return run_tool("mf", args, warehouse_file=copy)


def test_mf_validate_configs_passes_with_warehouse_checks(course_warehouse: Path, tmp_path: Path) -> None:
    done = _mf(["validate-configs"], course_warehouse, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Successfully validated metrics against data warehouse" in done.stdout
    assert "ERRORS: 0" in done.stdout


def test_mf_query_answers_from_the_repo_root(course_warehouse: Path, tmp_path: Path) -> None:
    done = _mf(
        ["query", "--saved-query", "funnel_overall", "--csv", "/dev/stdout"], course_warehouse, tmp_path
    )
    assert done.returncode == 0, done.stderr
    header, values = [line for line in done.stdout.splitlines() if "," in line][:2]
    row = dict(zip(header.split(","), values.split(","), strict=True))
    assert [row[m] for m in FUNNEL] == ["578", "467", "361"]


ESCAPES = [
    "select * from read_text('/etc/passwd')",
    "select * from read_csv('/etc/hosts')",
    "copy (select 1) to '/tmp/greenery-escape.csv'",
    "attach '/tmp/greenery-escape.duckdb' as escape",
    "install httpfs",
    "set enable_external_access = true",
    "set memory_limit = '100GB'",
]
REFUSED = r"Permission Error|Cannot change configuration option"


@pytest.mark.parametrize("sql", ESCAPES)
def test_the_serving_engine_reaches_no_file_and_changes_no_setting(
    course_sl: SemanticLayer, sql: str
) -> None:
    with pytest.raises(SemanticLayerError, match=REFUSED):
        course_sl.run(sql)
    assert not Path("/tmp/greenery-escape.csv").exists()
    assert course_sl.query(metrics=["sessions_with_checkout"]).table.to_pylist() == [
        {"sessions_with_checkout": 361}
    ]


def test_the_smallest_queries_run_on_a_single_threaded_reader_held_to_the_same_settings(
    course_sl: SemanticLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = course_sl.client._single_threaded
    assert single is not None
    assert single.execute("select current_setting('threads')").fetchone() == (1,)
    for sql in ESCAPES:
        with pytest.raises(duckdb.Error, match=REFUSED):
            single.execute(sql)
    monkeypatch.setattr(prepared, "SINGLE_THREAD_RUN_S", 60.0)  # every run counts as quick
    request = {"metrics": ["inventory_changes"], "group_by": ["product__product_name"]}
    answers = [course_sl.query(**request).table.sort_by("product__product_name") for _ in range(3)]
    assert answers[0].num_rows > 0 and answers[1:] == answers[:2]
    runner = course_sl.client._statements
    assert runner._single is not None
    assert course_sl.compile(**request) in [s for c in runner._single._idle for s in c._prepared]


def test_each_distinct_query_is_compiled_once(
    course_sl: SemanticLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    explain = course_sl.engine.explain
    monkeypatch.setattr(
        course_sl.engine, "explain", lambda request: calls.append(request) or explain(request)
    )
    request = {"metrics": ["sessions_with_checkout"], "group_by": ["user__buyer_segment"], "limit": 7}
    first = course_sl.compile(**request)
    assert course_sl.compile(**request) == first and len(calls) == 1
    course_sl.compile(**{**request, "limit": 8})  # another query: compiled
    assert len(calls) == 2
