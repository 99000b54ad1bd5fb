"""The dbt project on real and generated data: funnel marts, snapshot replay, inventory marts.

Every mart is compared with an independent pandas computation from the raw tables
(tests/oracle.py).
"""

from __future__ import annotations

from pathlib import Path

import oracle
import pandas as pd
import pytest

from conftest import read_sql
from greenery.warehouse.dbt import run_dbt
from greenery.warehouse.replay import REPLAY_WEEKS, parse_weeks, replay

WAREHOUSES = ["course_warehouse", "generated_warehouse"]


def test_course_funnel_counts(course_warehouse: Path) -> None:
    funnel = read_sql(
        course_warehouse,
        "select count_if(has_page_view) as viewed, count_if(has_add_to_cart) as added,"
        " count_if(has_checkout) as checked_out from marts.fct_sessions",
    )
    assert funnel.iloc[0].tolist() == [578, 467, 361]


@pytest.mark.parametrize("wh_fixture", WAREHOUSES)
def test_fct_sessions_matches_pandas(wh_fixture: str, request: pytest.FixtureRequest) -> None:
    warehouse_file = request.getfixturevalue(wh_fixture)
    expected = oracle.sessions(oracle.raw_frames(warehouse_file)).set_index("session_id").sort_index()
    actual = read_sql(warehouse_file, "select * from marts.fct_sessions").set_index("session_id").sort_index()
    assert actual.index.equals(expected.index)
    for column in [
        "user_id",
        "events",
        "page_view_events",
        "add_to_cart_events",
        "checkout_events",
        "package_shipped_events",
        "has_page_view",
        "has_add_to_cart",
        "has_checkout",
        "has_package_shipped",
        "is_first_session",
        "session_started_at",
        "session_ended_at",
    ]:
        assert actual[column].tolist() == expected[column].tolist(), column
    assert actual["order_id"].fillna("").tolist() == expected["order_id"].fillna("").tolist()
    assert actual["revenue"].astype(float).round(2).tolist() == expected["revenue"].tolist()


@pytest.mark.parametrize("wh_fixture", WAREHOUSES)
def test_fct_product_sessions_matches_pandas(wh_fixture: str, request: pytest.FixtureRequest) -> None:
    warehouse_file = request.getfixturevalue(wh_fixture)
    key = ["session_id", "product_id"]
    columns = ["has_viewed", "has_added_to_cart", "has_purchased", "units_purchased"]
    expected = oracle.product_sessions(oracle.raw_frames(warehouse_file)).set_index(key).sort_index()[columns]
    actual = (
        read_sql(warehouse_file, "select * from marts.fct_product_sessions")
        .set_index(key)
        .sort_index()[columns]
    )
    pd.testing.assert_frame_equal(actual.astype(expected.dtypes.to_dict()), expected)


@pytest.mark.parametrize("wh_fixture", WAREHOUSES)
def test_fct_session_events_matches_pandas(wh_fixture: str, request: pytest.FixtureRequest) -> None:
    warehouse_file = request.getfixturevalue(wh_fixture)
    events = oracle.raw_frames(warehouse_file)["events"].sort_values(["session_id", "created_at", "event_id"])
    events["position"] = events.groupby("session_id").cumcount() + 1
    expected = events.set_index("event_id").sort_index()
    actual = (
        read_sql(warehouse_file, "select * from marts.fct_session_events").set_index("event_id").sort_index()
    )
    assert actual.index.equals(expected.index)
    assert actual["position_in_session"].tolist() == expected["position"].tolist()
    assert actual["event_type"].tolist() == expected["event_type"].tolist()
    assert actual["page_type"].tolist() == expected["page_url"].str.split("/").str[3].tolist()
    assert actual["page_url"].tolist() == expected["page_url"].tolist()


@pytest.mark.parametrize("wh_fixture", WAREHOUSES)
def test_fct_orders_and_dim_products_match_pandas(wh_fixture: str, request: pytest.FixtureRequest) -> None:
    warehouse_file = request.getfixturevalue(wh_fixture)
    raw = oracle.raw_frames(warehouse_file)
    items = raw["order_items"].groupby("order_id")["quantity"].agg(["count", "sum"])
    discounts = raw["orders"]["promo_id"].map(raw["promos"].set_index("promo_id")["discount"]).fillna(0)
    expected = raw["orders"].assign(discount=discounts).set_index("order_id").join(items).sort_index()
    actual = read_sql(warehouse_file, "select * from marts.fct_orders").set_index("order_id").sort_index()
    assert actual["products_in_order"].tolist() == expected["count"].tolist()
    assert actual["units_in_order"].tolist() == expected["sum"].tolist()
    assert actual["discount_amount"].astype(float).tolist() == expected["discount"].tolist()
    assert actual["order_total"].astype(float).tolist() == pytest.approx(expected["order_total"].tolist())
    products = (
        read_sql(warehouse_file, "select * from marts.dim_products").set_index("product_id").sort_index()
    )
    current = raw["products"].set_index("product_id").sort_index()
    assert products["current_inventory"].tolist() == current["inventory"].tolist()
    assert products["price"].astype(float).tolist() == current["price"].tolist()


def test_course_product_conversion(course_warehouse: Path) -> None:
    conversion = read_sql(
        course_warehouse,
        "select p.product_name, count_if(s.has_purchased) / count_if(s.has_viewed) as conversion"
        " from marts.fct_product_sessions s join marts.dim_products p using (product_id)"
        " group by 1 order by 2 desc",
    )
    assert conversion.iloc[0].tolist() == ["String of pearls", pytest.approx(0.6094, abs=1e-4)]
    assert conversion.iloc[-1].tolist() == ["Pothos", pytest.approx(0.3443, abs=1e-4)]


@pytest.mark.parametrize("wh_fixture", WAREHOUSES)
def test_dim_users_and_fct_orders_match_pandas(wh_fixture: str, request: pytest.FixtureRequest) -> None:
    warehouse_file = request.getfixturevalue(wh_fixture)
    raw = oracle.raw_frames(warehouse_file)
    expected = oracle.users(raw).sort_index()
    actual = read_sql(warehouse_file, "select * from marts.dim_users").set_index("user_id").sort_index()
    assert actual["orders"].tolist() == expected["orders"].tolist()
    assert actual["is_repeat_buyer"].tolist() == (expected["orders"] >= 2).tolist()
    assert actual["lifetime_revenue"].astype(float).round(2).tolist() == expected["revenue"].round(2).tolist()
    revenue = read_sql(
        warehouse_file, "select sum(order_total) as revenue, count(*) as orders from marts.fct_orders"
    )
    assert float(revenue.at[0, "revenue"]) == pytest.approx(raw["orders"]["order_total"].sum())
    assert revenue.at[0, "orders"] == len(raw["orders"])


def test_course_week_3_to_4_changes(course_warehouse: Path) -> None:
    changes = read_sql(
        course_warehouse,
        "select product_name, previous_inventory, new_inventory, is_increase from marts.fct_inventory_changes"
        " where change_date = date '2021-03-05' order by product_name",
    )
    assert changes.to_records(index=False).tolist() == [
        ("Bamboo", 44, 23, False),
        ("Monstera", 50, 31, False),
        ("Philodendron", 15, 30, True),
        ("Pothos", 0, 20, True),
        ("String of pearls", 0, 10, True),
        ("ZZ Plant", 53, 41, False),
    ]
    week3_zero = read_sql(
        course_warehouse,
        "select product_name from marts.fct_product_inventory_daily"
        " where inventory_date = date '2021-02-26' and is_out_of_stock order by 1",
    )
    assert week3_zero["product_name"].tolist() == ["Pothos", "String of pearls"]


@pytest.mark.parametrize("wh_fixture", WAREHOUSES)
def test_inventory_marts_match_the_weekly_facts(wh_fixture: str, request: pytest.FixtureRequest) -> None:
    warehouse_file = request.getfixturevalue(wh_fixture)
    raw = oracle.raw_frames(warehouse_file)
    expected = oracle.inventory_changes(raw).sort_values(["product_name", "week"])
    weeks = oracle.replayed(raw).drop_duplicates("week").set_index("recorded_at")["week"]
    actual = read_sql(warehouse_file, "select * from marts.fct_inventory_changes")
    actual["week"] = actual["changed_at"].map(weeks)
    actual = actual.sort_values(["product_name", "week"])[expected.columns]
    assert actual.to_records(index=False).tolist() == expected.to_records(index=False).tolist()

    # snapshot versions per product: the first week plus one per change
    versions = read_sql(
        warehouse_file, "select name, count(*) as versions from snapshots.products_snapshot group by name"
    )
    changes_per_product = expected.groupby("product_name").size()
    for name, count in versions.itertuples(index=False):
        assert count == 1 + changes_per_product.get(name, 0), name

    # the daily table holds each week's value on its recorded day
    on_hand = read_sql(
        warehouse_file,
        "select product_name, inventory_date, inventory_on_hand from marts.fct_product_inventory_daily",
    )
    pivot = oracle.weekly_inventory(raw)
    for recorded_at, week in weeks.items():
        day = on_hand[on_hand["inventory_date"] == pd.Timestamp(recorded_at).normalize()]
        assert dict(zip(day["product_name"], day["inventory_on_hand"], strict=True)) == pivot[week].to_dict()


def test_fluctuation_summary(course_warehouse: Path) -> None:
    summary = read_sql(course_warehouse, "select * from marts.agg_product_inventory_fluctuation").set_index(
        "product_name"
    )
    pivot = oracle.weekly_inventory(oracle.raw_frames(course_warehouse))
    moved = pivot.diff(axis=1).abs().sum(axis=1)
    assert summary["units_moved"].sort_index().tolist() == moved.sort_index().astype(int).tolist()
    stddev = pivot.std(axis=1, ddof=1)
    assert summary["weekly_inventory_stddev"].sort_index().tolist() == pytest.approx(
        stddev.sort_index().tolist()
    )
    assert summary.at["Pothos", "net_change"] == -20
    assert summary.at["Pothos", "weeks_at_zero"] == 1
    assert summary.loc[summary["has_been_out_of_stock"]].index.sort_values().tolist() == [
        "Pothos",
        "String of pearls",
    ]


def test_replay_is_idempotent(course_warehouse: Path) -> None:
    query = "select * from snapshots.products_snapshot order by product_id, dbt_valid_from"
    before = read_sql(course_warehouse, query)
    assert [r.replayed for r in replay([3, 4], warehouse_file=course_warehouse)] == [False, False]
    run_dbt(["snapshot", "--vars", '{snapshot_at: "2021-03-05 00:00:00"}'], warehouse_file=course_warehouse)
    pd.testing.assert_frame_equal(read_sql(course_warehouse, query), before)
    replay(REPLAY_WEEKS, from_scratch=True, warehouse_file=course_warehouse)
    pd.testing.assert_frame_equal(read_sql(course_warehouse, query), before)


def test_replay_rejects_unknown_weeks(course_warehouse: Path) -> None:
    with pytest.raises(
        ValueError, match=r"week\(s\) 7 not in the weekly inventory \(the loaded data has weeks 1–4\)"
    ):
        replay([7], warehouse_file=course_warehouse)
    assert parse_weeks("1-3,5") == [1, 2, 3, 5]
    with pytest.raises(ValueError, match="expected a week or a range"):
        parse_weeks("one")
    with pytest.raises(ValueError, match="weeks go from 1 to 520"):
        parse_weeks("1-99999999999999")  # refused before any list is built
    with pytest.raises(ValueError, match="weeks go from 1 to 520"):
        parse_weeks("0-2")
