"""The answers the report gives, asked through the semantic layer (no number typed by hand)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from greenery.data.dirty import ANOMALY_KINDS
from greenery.semantic.layer import SemanticLayer

STEPS = [
    ("page_view", "sessions_with_page_view"),
    ("add_to_cart", "sessions_with_add_to_cart"),
    ("checkout", "sessions_with_checkout"),
]


@dataclass(frozen=True)
class Answers:
    funnel: pd.Series
    by_day: pd.DataFrame
    by_week: pd.DataFrame
    products: pd.DataFrame
    segments: pd.DataFrame
    inventory: pd.DataFrame  # product × week number: inventory on hand at the end of the week
    week_starts: list[pd.Timestamp]
    changes: pd.DataFrame  # per product: changes, units moved, net change, stockouts, restocks
    quality: pd.DataFrame  # per anomaly kind (ANOMALY_KINDS order): source table, count found, policy


def _saved(layer: SemanticLayer, name: str) -> pd.DataFrame:
    return layer.query(saved_query=name).table.to_pandas()


def collect(layer: SemanticLayer) -> Answers:
    """Ask the semantic layer every question the report answers."""
    by_week = _saved(layer, "funnel_by_week").dropna(subset=["sessions_with_page_view"])
    on_hand = _saved(layer, "inventory_on_hand_by_product_by_week")
    week_starts = sorted(pd.to_datetime(on_hand["metric_time__week"]).unique())
    on_hand["week"] = pd.to_datetime(on_hand["metric_time__week"]).map(
        {w: i + 1 for i, w in enumerate(week_starts)}
    )
    inventory = on_hand.pivot(index="product__product_name", columns="week", values="inventory_on_hand")
    changes = layer.query(
        metrics=["inventory_changes", "units_moved", "net_inventory_change", "stockouts", "restocks"],
        group_by=["product__product_name"],
    ).table.to_pandas()
    quality = _saved(layer, "data_quality_anomalies")
    order = {kind: i for i, kind in enumerate(ANOMALY_KINDS)}
    quality = quality.sort_values(
        "anomaly__anomaly_kind", key=lambda kinds: kinds.map(lambda k: order.get(k, len(order)))
    ).reset_index(drop=True)
    return Answers(
        funnel=_saved(layer, "funnel_overall").iloc[0],
        by_day=_saved(layer, "funnel_by_day").sort_values("metric_time__day").reset_index(drop=True),
        by_week=by_week.sort_values("metric_time__week").reset_index(drop=True),
        products=_saved(layer, "funnel_by_product")
        .sort_values(["product_view_to_purchase_rate", "product__product_name"], ascending=[False, True])
        .reset_index(drop=True),
        segments=_saved(layer, "funnel_by_user_segment")
        .sort_values(["session__visitor_type", "user__buyer_segment"])
        .reset_index(drop=True),
        inventory=inventory.astype(int),
        week_starts=[pd.Timestamp(w) for w in week_starts],
        changes=changes.set_index("product__product_name").fillna(0).astype({"inventory_changes": int}),
        quality=quality.astype({"data_quality_anomalies": int}),
    )


def pct(value: float, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f} %"


def week_start(answers: Answers, week: int) -> str:
    return f"{answers.week_starts[week - 1]:%b %-d}"


def week_label(answers: Answers, week: int) -> str:
    return f"week {week} (week of {week_start(answers, week)})"
