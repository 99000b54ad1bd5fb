"""What the report says: the answers as headings, sentences, tables and chart references.

`blocks` is the full answers (docs/answers.md's generated section and the HTML report);
`headline_blocks` is the few lines the README shows. Both read the same `Answers` through the
same helpers below, so the headline can never disagree with the full answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from greenery.report.answers import STEPS, Answers, pct, week_label, week_start


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 3


@dataclass(frozen=True)
class Text:
    text: str  # Markdown-light: **bold** and `code` only


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]  # each Markdown-light, like Text


@dataclass(frozen=True)
class Chart:
    name: str
    caption: str


Block = Heading | Text | Bullets | Table | Chart


def _names(items: Iterable[str]) -> str:
    items = list(items)
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else "".join(items)


def _top(series: pd.Series, *, by_abs: bool = False) -> tuple[list[str], str]:
    """The products with the largest value (ties all named), and that value as shown."""
    values = series.abs() if by_abs else series
    top = values.max()
    names = sorted(series.index[values == top])
    shown = series[names[0]]
    number = f"{shown:+.0f}" if by_abs else (f"{shown:.1f}" if isinstance(shown, float) else f"{shown}")
    return names, number


def _leaders(series: pd.Series, *, by_abs: bool = False) -> str:
    names, number = _top(series, by_abs=by_abs)
    return f"{_names(names)} ({number})"


def _compared_weeks(a: Answers) -> tuple[int, int]:
    """Week 3 against week 4 (the course's question), else the last two weeks replayed."""
    weeks = list(a.inventory.columns)
    return (3, 4) if {3, 4} <= set(weeks) else (weeks[-2], weeks[-1])


def _week_changes(a: Answers) -> pd.DataFrame:
    """Products whose inventory differs between the compared weeks, with the change."""
    first, last = _compared_weeks(a)
    moved = a.inventory[a.inventory[first] != a.inventory[last]]
    return pd.DataFrame(
        {
            "product": moved.index,
            f"week {first}": moved[first].to_numpy(),
            f"week {last}": moved[last].to_numpy(),
            "change": [f"{d:+d}" for d in (moved[last] - moved[first])],
            "direction": ["restocked" if d > 0 else "down" for d in (moved[last] - moved[first])],
        }
    ).sort_values(["direction", "product"])


def _fluctuation(a: Answers) -> pd.DataFrame:
    """Per product that changed: changes, units moved, net change and the weekly values' std. dev."""
    fluct = a.changes.join(a.inventory.std(axis=1, ddof=1).rename("weekly_stddev"))
    return fluct[fluct["inventory_changes"] > 0].sort_values(
        ["units_moved", "inventory_changes"], ascending=False
    )


def _stockouts(a: Answers) -> list[tuple[str, list[int], int | None]]:
    """Each product that hit 0: the weeks it was at 0, and the first week it was back (or None)."""
    weeks = list(a.inventory.columns)
    zero = a.inventory == 0
    found = []
    for product in sorted(a.inventory.index[zero.any(axis=1)]):
        out = [w for w in weeks if zero.at[product, w]]
        back = [w for w in weeks if w > out[0] and not zero.at[product, w]]
        found.append((product, out, back[0] if back else None))
    return found


def inventory_blocks(a: Answers) -> list[Block]:
    first, last = _compared_weeks(a)
    change_rows = _week_changes(a)
    fluct = _fluctuation(a)
    ranking = pd.DataFrame(
        {
            "product": fluct.index,
            "changes": fluct["inventory_changes"].to_numpy(),
            "units moved": fluct["units_moved"].astype(int).to_numpy(),
            "std. dev. of weekly values": [f"{v:.1f}" for v in fluct["weekly_stddev"]],
            "net change": [f"{v:+d}" for v in fluct["net_inventory_change"].astype(int)],
        }
    )
    stockouts = []
    for product, out, back in _stockouts(a):
        restocked = (
            f"restocked in {week_label(a, back)} ({a.inventory.at[product, back]} units)"
            if back is not None
            else "not restocked yet"
        )
        stockouts.append(
            f"**{product}** was out of stock in {_names(week_label(a, w) for w in out)}; {restocked}."
        )
    return [
        Heading(f"What changed from week {first} to week {last}"),
        Text(
            f"{len(change_rows)} products changed between {week_label(a, first)} and {week_label(a, last)} "
            "(metric `inventory_on_hand` by `product__product_name` × `metric_time__week`, saved query "
            "`inventory_on_hand_by_product_by_week`, from the `products_snapshot`):"
        ),
        Table(change_rows),
        Heading("Which products fluctuated most"),
        Text(
            '"Most" depends on the measure. Most changes: '
            f"{_leaders(fluct['inventory_changes'])}; "
            f"most units moved: {_leaders(fluct['units_moved'].astype(int))}; "
            f"highest standard deviation of the weekly values: {_leaders(fluct['weekly_stddev'].round(1))}; "
            f"largest net change: {_leaders(fluct['net_inventory_change'].astype(int), by_abs=True)}. "
            "(Metrics `inventory_changes`, `units_moved`, `net_inventory_change` by product; the standard "
            "deviation is over the weekly `inventory_on_hand` values, as in the mart "
            "`agg_product_inventory_fluctuation`.)"
        ),
        Table(ranking),
        Heading("Which products went out of stock"),
        Text(
            " ".join(stockouts) + " (Metric `out_of_stock_products` by product and week; "
            "`restocks` from `fct_inventory_changes`.)"
            if stockouts
            else "No product ran out of stock in the weeks replayed."
        ),
        Chart(
            "inventory_by_week", "Inventory on hand by week for the products that changed; ✕ marks a stockout"
        ),
    ]


def _step_rates(a: Answers) -> tuple[list[int], list[float], list[int]]:
    """Sessions per funnel step, conversion from the previous step, and sessions lost before it."""
    f = a.funnel
    counts = [int(f[m]) for _, m in STEPS]
    rates = [f["view_to_cart_rate"], f["cart_to_checkout_rate"]]
    lost = [int(f["sessions_lost_before_add_to_cart"]), int(f["sessions_lost_before_checkout"])]
    return counts, rates, lost


def _worst_steps(rates: list[float], lost: list[int]) -> tuple[str, str]:
    """The step with the largest drop-off by rate, and the one that loses the most sessions."""
    worst_rate = "view → add to cart" if rates[0] < rates[1] else "add to cart → checkout"
    worst_lost = "view → add to cart" if lost[0] > lost[1] else "add to cart → checkout"
    return worst_rate, worst_lost


def funnel_blocks(a: Answers) -> list[Block]:
    f = a.funnel
    counts, rates, lost = _step_rates(a)
    rows = [("page_view", counts[0], "—", "—", "—")]
    for (step, _), count, rate, gone in zip(STEPS[1:], counts[1:], rates, lost, strict=True):
        rows.append((step, count, pct(rate), pct(1 - rate), f"{gone:,}"))
    steps = pd.DataFrame(
        rows,
        columns=[
            "step (sessions with any …)",
            "sessions",
            "conversion from previous step",
            "drop-off",
            "sessions lost",
        ],
    )
    worst_rate, worst_lost = _worst_steps(rates, lost)
    top, bottom = a.products.head(5), a.products.tail(5).iloc[::-1]
    best, worst = top.iloc[0], bottom.iloc[0]

    def product_table(frame: pd.DataFrame) -> Table:
        return Table(
            pd.DataFrame(
                {
                    "product": frame["product__product_name"],
                    "sessions viewing": frame["product_sessions_viewed"].astype(int),
                    "sessions purchasing": frame["product_sessions_purchased"].astype(int),
                    "view → purchase": [pct(v, 2) for v in frame["product_view_to_purchase_rate"]],
                    "view → cart": [pct(v) for v in frame["product_view_to_cart_rate"]],
                }
            )
        )

    segments = pd.DataFrame(
        {
            "visitor type": a.segments["session__visitor_type"],
            "buyer segment": a.segments["user__buyer_segment"],
            "sessions viewing": a.segments["sessions_with_page_view"].astype(int),
            "view → cart": [pct(v) for v in a.segments["view_to_cart_rate"]],
            "cart → checkout": [pct(v) for v in a.segments["cart_to_checkout_rate"]],
            "view → checkout": [pct(v) for v in a.segments["view_to_checkout_rate"]],
        }
    )
    weekly = pd.DataFrame(
        {
            "week of": [f"{w:%Y-%m-%d}" for w in pd.to_datetime(a.by_week["metric_time__week"])],
            "page_view": a.by_week["sessions_with_page_view"].astype(int),
            "add_to_cart": a.by_week["sessions_with_add_to_cart"].astype(int),
            "checkout": a.by_week["sessions_with_checkout"].astype(int),
            "view → checkout": [pct(v) for v in a.by_week["view_to_checkout_rate"]],
        }
    ).tail(12)
    return [
        Heading("How sessions move through the funnel"),
        Text(
            f"Of **{counts[0]:,}** sessions with a page view, **{counts[1]:,}** added to cart and "
            f"**{counts[2]:,}** checked out: an overall conversion of "
            f"**{pct(f['view_to_checkout_rate'], 2)}** "
            "(saved query `funnel_overall`; metrics `view_to_cart_rate`, `cart_to_checkout_rate`, "
            "`view_to_checkout_rate`, `sessions_lost_before_*`). The conversion metric on the page "
            "views, `session_view_to_checkout_conversion` (a checkout at or after a page view of its "
            "session), agrees: "
            f"{pct(f['session_view_to_checkout_conversion'], 2)}."
        ),
        Table(steps),
        Text(f"The largest drop-off by rate is **{worst_rate}** and by sessions lost **{worst_lost}**."),
        Chart("funnel", "The funnel: sessions per step with step conversion"),
        Heading("Product funnel"),
        Text(
            "Product conversion (sessions whose order contains the product ÷ sessions that viewed it; "
            "metric `product_view_to_purchase_rate`, saved query `funnel_by_product`) ranges from "
            f"**{pct(best['product_view_to_purchase_rate'], 2)}** ({best['product__product_name']}) "
            f"to **{pct(worst['product_view_to_purchase_rate'], 2)}** ({worst['product__product_name']}). "
            "Top five:"
        ),
        product_table(top),
        Text("Bottom five:"),
        product_table(bottom),
        Chart("product_conversion", "Product conversion (view → purchase), all products"),
        Heading("By user segment"),
        Text("Saved query `funnel_by_user_segment` (a session is *new* when it is the user's first):"),
        Table(segments),
        Heading("Over time"),
        Text(
            f"Saved queries `funnel_by_day` ({len(a.by_day)} days) and `funnel_by_week` (with "
            "`view_to_checkout_rate_wow_change`); the last weeks:"
        ),
        Table(weekly),
        Chart("funnel_over_time", "Sessions per funnel step by day, and the overall conversion rate"),
    ]


def _anomalies_found(a: Answers) -> str:
    found = a.quality[a.quality["data_quality_anomalies"] > 0]
    if found.empty:
        return "no anomaly in the raw data."
    listed = ", ".join(
        f"{r.anomaly__anomaly_kind.replace('_', ' ')} ({r.data_quality_anomalies:,})"
        for r in found.itertuples()
    )
    return f"{int(found['data_quality_anomalies'].sum()):,} anomalies, each handled by its policy: {listed}."


def quality_blocks(a: Answers) -> list[Block]:
    table = pd.DataFrame(
        {
            "anomaly": a.quality["anomaly__anomaly_kind"],
            "in table": a.quality["anomaly__source_table"],
            "found": a.quality["data_quality_anomalies"].astype(int),
            "policy": a.quality["anomaly__anomaly_policy"],
        }
    )
    return [
        Heading("Data quality: what the raw data carried"),
        Text(
            f"The build found {_anomalies_found(a)} (Metric `data_quality_anomalies` by "
            "`anomaly__anomaly_kind`, saved query `data_quality_anomalies`, from the mart "
            "`data_quality_anomalies`.) Each kind has a stated policy, chosen so that the answers above "
            "stand on the data that can be trusted and do not move when anomalies are added:"
        ),
        Table(table),
    ]


def blocks(a: Answers) -> list[Block]:
    return [
        Heading("Part 1 — Inventory history: the products snapshot", 2),
        *inventory_blocks(a),
        Heading("Part 2 — The product funnel", 2),
        *funnel_blocks(a),
        Heading("Part 3 — Data quality", 2),
        *quality_blocks(a),
    ]


def _fluctuated_most(a: Answers) -> str:
    fluct = _fluctuation(a)
    if fluct.empty:
        return "no product's inventory changed in the weeks replayed."
    moved, moved_by = _top(fluct["units_moved"].astype(int))
    spread, spread_by = _top(fluct["weekly_stddev"].round(1))
    if moved == spread:
        return (
            f"{_names(moved)}, by units moved ({moved_by}) and by the standard deviation of the "
            f"weekly values ({spread_by})."
        )
    return (
        f"{_names(moved)} by units moved ({moved_by}); {_names(spread)} by the standard deviation "
        f"of the weekly values ({spread_by})."
    )


def _out_of_stock(a: Answers) -> str:
    found = _stockouts(a)
    if not found:
        return "no product ran out of stock in the weeks replayed."
    return (
        "; ".join(
            f"{product} in {_names(f'week {w}' for w in out)}, "
            + (
                f"back in week {back} ({a.inventory.at[product, back]} units)"
                if back is not None
                else "not back yet"
            )
            for product, out, back in found
        )
        + "."
    )


def _week_to_week(a: Answers) -> str:
    first, last = _compared_weeks(a)
    changed = _week_changes(a)
    lead = f"**Week {first} → week {last}** (weeks of {week_start(a, first)} and {week_start(a, last)}):"
    if changed.empty:
        return f"{lead} no product changed."
    groups = []
    for direction in ("down", "restocked"):
        rows = changed[changed["direction"] == direction]
        if not rows.empty:
            products = ", ".join(f"{r.product} ({r.change})" for r in rows.itertuples())
            groups.append(f"{direction}: {products}")
    listed = "; ".join(groups)
    return f"{lead} {len(changed)} products changed. {listed[0].upper()}{listed[1:]}."


def headline_blocks(a: Answers) -> list[Block]:
    """The few lines the README shows: the full answers in brief, from the same `Answers`."""
    counts, rates, lost = _step_rates(a)
    worst_rate, worst_lost = _worst_steps(rates, lost)
    best, worst = a.products.iloc[0], a.products.iloc[-1]
    return [
        Bullets(
            (
                f"**Funnel:** {' → '.join(f'{c:,}' for c in counts)} sessions (page view → add to cart → "
                f"checkout): {pct(rates[0])} of viewing sessions added to cart, {pct(rates[1])} of those "
                f"checked out, **{pct(a.funnel['view_to_checkout_rate'], 2)}** overall. The largest "
                f"drop-off by rate is {worst_rate}; by sessions lost, {worst_lost}.",
                _week_to_week(a),
                f"**Fluctuated most:** {_fluctuated_most(a)}",
                f"**Out of stock:** {_out_of_stock(a)}",
                "**Product conversion** (view → purchase) ranges from "
                f"{pct(best['product_view_to_purchase_rate'], 2)} ({best['product__product_name']}) to "
                f"{pct(worst['product_view_to_purchase_rate'], 2)} ({worst['product__product_name']}).",
                f"**Data quality:** {_anomalies_found(a)}",
            )
        )
    ]
