"""Independent pandas computations of the marts, straight from the raw tables.

The tests compare dbt's marts (and later the semantic layer) against these. Nothing here
reads a dbt model: only raw.public and raw.replay.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import pandas as pd

from greenery.warehouse import store
from greenery.warehouse.replay import REPLAY_WEEKS


def raw_frames(warehouse_file: Path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(str(store.raw_path(warehouse_file)), read_only=True)
    try:
        return {
            name: as_text_ids(con.execute(f"select * from {schema}.{name}").df())
            for name, (schema, _) in store.RAW_TABLES.items()
        }
    finally:
        con.close()


def as_text_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its uuid ids (macros/id_type.sql) as text, as clients read them over Arrow."""
    for column in [name for name, dtype in frame.dtypes.items() if pd.api.types.is_object_dtype(dtype)]:
        values = frame[column].dropna()
        if len(values) and isinstance(values.iloc[0], uuid.UUID):
            frame[column] = frame[column].map(lambda cell: None if pd.isna(cell) else str(cell))
    return frame


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


def replayed(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The weekly inventory states of the replayed weeks."""
    weekly = raw["product_inventory_by_week"]
    return weekly[weekly["week"].isin(REPLAY_WEEKS)]


def weekly_inventory(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Inventory per product name (rows) and week (columns), as replayed."""
    weekly = replayed(raw)
    return weekly.pivot(index="name", columns="week", values="inventory")


def inventory_changes(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every (product, week) whose inventory differs from the week before."""
    pivot = weekly_inventory(raw)
    rows = [
        (name, week, int(pivot.at[name, week - 1]), int(pivot.at[name, week]))
        for week in REPLAY_WEEKS
        if week > min(REPLAY_WEEKS)
        for name in pivot.index
        if pivot.at[name, week] != pivot.at[name, week - 1]
    ]
    return pd.DataFrame(rows, columns=["product_name", "week", "previous_inventory", "new_inventory"])


def week_start(values: pd.Series) -> pd.Series:
    """The Monday (00:00) of each timestamp's week, as MetricFlow's week grain."""
    days = pd.to_datetime(values).dt.normalize()
    return days - pd.to_timedelta(days.dt.day_of_week, unit="D")


def grain(values: pd.Series, name: str) -> pd.Series:
    return week_start(values) if name == "week" else pd.to_datetime(values).dt.normalize()


def funnel(raw: dict[str, pd.DataFrame], by: str | None = None) -> pd.DataFrame:
    """Funnel steps and step conversion overall, or by 'day' / 'week' of session start."""
    s = sessions(raw)
    keys = [grain(s["session_started_at"], by).rename(f"metric_time__{by}")] if by else [s.assign(k=0)["k"]]
    out = s.groupby(keys).agg(
        sessions_with_page_view=("has_page_view", "sum"),
        sessions_with_add_to_cart=("has_add_to_cart", "sum"),
        sessions_with_checkout=("has_checkout", "sum"),
    )
    out["view_to_cart_rate"] = out["sessions_with_add_to_cart"] / out["sessions_with_page_view"]
    out["cart_to_checkout_rate"] = out["sessions_with_checkout"] / out["sessions_with_add_to_cart"]
    out["view_to_checkout_rate"] = out["sessions_with_checkout"] / out["sessions_with_page_view"]
    out["sessions_lost_before_add_to_cart"] = (
        out["sessions_with_page_view"] - out["sessions_with_add_to_cart"]
    )
    out["sessions_lost_before_checkout"] = out["sessions_with_add_to_cart"] - out["sessions_with_checkout"]
    return out.reset_index(drop=by is None)


def product_funnel(raw: dict[str, pd.DataFrame], by: str | None = None) -> pd.DataFrame:
    """Per product name (and day/week of session start): viewed, added, purchased, rates."""
    ps = product_sessions(raw).merge(sessions(raw)[["session_id", "session_started_at"]], on="session_id")
    ps["product__product_name"] = ps["product_id"].map(raw["products"].set_index("product_id")["name"])
    keys = ["product__product_name"]
    if by:
        ps[f"metric_time__{by}"] = grain(ps["session_started_at"], by)
        keys.append(f"metric_time__{by}")
    out = ps.groupby(keys).agg(
        product_sessions_viewed=("has_viewed", "sum"),
        product_sessions_added_to_cart=("has_added_to_cart", "sum"),
        product_sessions_purchased=("has_purchased", "sum"),
    )
    out["product_view_to_purchase_rate"] = out["product_sessions_purchased"] / out["product_sessions_viewed"]
    out["product_view_to_cart_rate"] = out["product_sessions_added_to_cart"] / out["product_sessions_viewed"]
    return out.reset_index()


def orders_by(raw: dict[str, pd.DataFrame], by: str) -> pd.DataFrame:
    orders = raw["orders"].assign(**{f"metric_time__{by}": lambda o: grain(o["created_at"], by)})
    out = orders.groupby(f"metric_time__{by}").agg(
        orders=("order_id", "count"), revenue=("order_total", "sum")
    )
    out["average_order_value"] = out["revenue"] / out["orders"]
    return out.reset_index()


def inventory_on_hand_by_week(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per product name and week: the inventory recorded in that week (one record a week)."""
    weekly = replayed(raw)
    out = pd.DataFrame(
        {
            "product__product_name": weekly["name"],
            "metric_time__week": week_start(weekly["recorded_at"]),
            "inventory_on_hand": weekly["inventory"],
            "out_of_stock_products": (weekly["inventory"] == 0).astype(int),
        }
    )
    return out.sort_values("metric_time__week").groupby(["product__product_name", "metric_time__week"]).last()


CONVERSION_KEYS = (
    "metric_time__day",
    "metric_time__week",
    "product__product_name",
    "session__visitor_type",
    "user__buyer_segment",
)
USER_WINDOW = pd.Timedelta(days=7)


def _latest_view_credited(
    views: pd.DataFrame, conversions: pd.DataFrame, entity: str, window: pd.Timedelta | None
) -> pd.Series:
    """Per page view: whether it is the latest page view of its `entity` at or before some
    conversion event (and within `window` before it): MetricFlow's conversion join, literally."""
    pairs = views.merge(conversions[[entity, "event_id", "at"]], on=entity, suffixes=("", "_conversion"))
    pairs = pairs[pairs["at"] <= pairs["at_conversion"]]
    if window is not None:
        pairs = pairs[pairs["at"] > pairs["at_conversion"] - window]
    latest = pairs.sort_values(["at", "event_id"]).groupby("event_id_conversion").tail(1)
    return views["event_id"].isin(latest["event_id"])


def credited_page_views(raw: dict[str, pd.DataFrame], *, to_minute: bool = False) -> pd.DataFrame:
    """One row per page view with the conversions credited to it: each add_to_cart and checkout
    to the latest page view at or before it in its session, each checkout to the user's latest
    page view at or before it and less than 7 days earlier. Times exact, or truncated to the
    minute as the conversion metrics compared them until fct_page_views (`to_minute`); among
    page views at the same time the larger event_id is the latest."""
    events = raw["events"].assign(at=lambda e: pd.to_datetime(e["created_at"]))
    if to_minute:
        events["at"] = events["at"].dt.floor("min")
    views = events[events["event_type"] == "page_view"][
        ["event_id", "session_id", "user_id", "product_id", "at"]
    ]
    of_type = {kind: events[events["event_type"] == kind] for kind in ("add_to_cart", "checkout")}
    return views.assign(
        is_credited_with_add_to_cart=_latest_view_credited(views, of_type["add_to_cart"], "session_id", None),
        is_credited_with_checkout=_latest_view_credited(views, of_type["checkout"], "session_id", None),
        is_credited_with_user_checkout_7d=_latest_view_credited(
            views, of_type["checkout"], "user_id", USER_WINDOW
        ),
    ).reset_index(drop=True)


def _buyer_segment(orders: int) -> str:
    return "no orders" if orders == 0 else "one-time buyer" if orders == 1 else "repeat buyer"


def conversion_rates(
    raw: dict[str, pd.DataFrame], by: list[str] | None = None, *, to_minute: bool = False
) -> pd.DataFrame:
    """The three conversion metrics, overall or grouped by some of CONVERSION_KEYS (the page
    view's day, week, product, session visitor type, user buyer segment)."""
    views = credited_page_views(raw, to_minute=to_minute)
    first_session = sessions(raw).set_index("session_id")["is_first_session"]
    segment = users(raw)["orders"].map(_buyer_segment)
    views = views.assign(
        metric_time__day=views["at"].dt.floor("D"),
        metric_time__week=week_start(views["at"]),
        product__product_name=views["product_id"].map(raw["products"].set_index("product_id")["name"]),
        session__visitor_type=views["session_id"].map(first_session).map({True: "new", False: "returning"}),
        user__buyer_segment=views["user_id"].map(segment),
        overall=0,
    )
    keys = list(by) if by else ["overall"]

    def distinct(column: str, flag: str | None = None) -> pd.Series:
        kept = views if flag is None else views[views[flag]]
        return kept.groupby(keys)[column].nunique().reindex(views.groupby(keys).size().index, fill_value=0)

    out = pd.DataFrame(
        {
            "session_view_to_checkout_conversion": distinct("session_id", "is_credited_with_checkout")
            / distinct("session_id"),
            "session_view_to_add_to_cart_conversion": distinct("session_id", "is_credited_with_add_to_cart")
            / distinct("session_id"),
            "user_view_to_checkout_conversion_7d": distinct("user_id", "is_credited_with_user_checkout_7d")
            / distinct("user_id"),
        }
    )
    return out.reset_index(drop=not by)
