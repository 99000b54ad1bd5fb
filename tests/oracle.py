"""Independent pandas computations of the marts, straight from the raw tables.

The tests compare dbt's marts (and later the semantic layer) against these. Nothing here
reads a dbt model: only raw.public and raw.replay.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from greenery import warehouse


def raw_frames(wh: Path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(str(warehouse.raw_path(wh)), read_only=True)
    try:
        return {
            name: con.execute(f"select * from {schema}.{name}").df()
            for name, (schema, _) in warehouse.RAW_TABLES.items()
        }
    finally:
        con.close()


def sessions(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per session: funnel flags, counts, order, revenue, first-session flag."""
    events = raw["events"]
    by_type = pd.crosstab(events["session_id"], events["event_type"])
    out = pd.DataFrame(index=by_type.index)
    for event_type in ("page_view", "add_to_cart", "checkout", "package_shipped"):
        out[f"{event_type}_events"] = by_type.get(event_type, 0)
        out[f"has_{event_type}"] = out[f"{event_type}_events"] > 0
    grouped = events.groupby("session_id")
    out["user_id"] = grouped["user_id"].first()
    out["events"] = grouped.size()
    out["session_started_at"] = grouped["created_at"].min()
    out["session_ended_at"] = grouped["created_at"].max()
    checkouts = events[events["event_type"] == "checkout"].set_index("session_id")["order_id"]
    out["order_id"] = checkouts.reindex(out.index)
    totals = raw["orders"].set_index("order_id")["order_total"]
    out["revenue"] = out["order_id"].map(totals).fillna(0.0).round(2)
    first = out.sort_values(["session_started_at"]).groupby("user_id").head(1).index
    out["is_first_session"] = out.index.isin(first)
    return out.reset_index().rename(columns={"index": "session_id"})


def product_sessions(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (session, product) touched: viewed, added to cart, purchased, units."""
    events = raw["events"]
    with_product = events[events["product_id"].notna()]
    touched = with_product.groupby(["session_id", "product_id"])["event_type"].agg(set).reset_index()
    touched["has_viewed"] = touched["event_type"].map(lambda kinds: "page_view" in kinds)
    touched["has_added_to_cart"] = touched["event_type"].map(lambda kinds: "add_to_cart" in kinds)
    checkouts = events[events["event_type"] == "checkout"][["session_id", "order_id"]]
    bought = checkouts.merge(raw["order_items"], on="order_id")[["session_id", "product_id", "quantity"]]
    merged = touched.drop(columns="event_type").merge(bought, on=["session_id", "product_id"], how="outer")
    merged["has_viewed"] = merged["has_viewed"].fillna(False).astype(bool)
    merged["has_added_to_cart"] = merged["has_added_to_cart"].fillna(False).astype(bool)
    merged["has_purchased"] = merged["quantity"].notna()
    merged["units_purchased"] = merged["quantity"].fillna(0).astype(int)
    return merged.drop(columns="quantity")


def product_conversion(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per product name: sessions that viewed it, purchased it, and the ratio (course definition)."""
    ps = product_sessions(raw)
    names = raw["products"].set_index("product_id")["name"]
    per = ps.groupby("product_id").agg(viewed=("has_viewed", "sum"), purchased=("has_purchased", "sum"))
    per["conversion"] = per["purchased"] / per["viewed"]
    per.index = per.index.map(names)
    return per


def users(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per user: orders and lifetime revenue."""
    orders = (
        raw["orders"].groupby("user_id").agg(orders=("order_id", "count"), revenue=("order_total", "sum"))
    )
    out = raw["users"][["user_id"]].set_index("user_id").join(orders)
    return out.fillna({"orders": 0, "revenue": 0.0}).astype({"orders": int})


def weekly_inventory(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Inventory per product name (rows) and week (columns), as replayed."""
    weekly = raw["product_inventory_by_week"]
    return weekly.pivot(index="name", columns="week", values="inventory")


def inventory_changes(raw: dict[str, pd.DataFrame], weeks: range) -> pd.DataFrame:
    """Every (product, week) whose inventory differs from the week before."""
    pivot = weekly_inventory(raw)
    rows = [
        (name, week, int(pivot.at[name, week - 1]), int(pivot.at[name, week]))
        for week in weeks
        if week > min(weeks)
        for name in pivot.index
        if pivot.at[name, week] != pivot.at[name, week - 1]
    ]
    return pd.DataFrame(rows, columns=["product_name", "week", "previous_inventory", "new_inventory"])
