"""The answers for the Director of Product, generated from the warehouse through the semantic layer.

`collect` asks the saved queries (MetricFlow engine); `blocks` turns the answers into
headings, sentences, tables and charts; the same blocks render as the README's generated
section (Markdown between markers) and as a standalone interactive HTML report. No number
in either is typed by hand.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from greenery.semantic import SemanticLayer

BEGIN = "<!-- BEGIN GENERATED ANSWERS: `greenery report` writes this section; do not edit by hand -->"
END = "<!-- END GENERATED ANSWERS -->"
STEPS = [
    ("page_view", "sessions_with_page_view"),
    ("add_to_cart", "sessions_with_add_to_cart"),
    ("checkout", "sessions_with_checkout"),
]


# ---- answers ------------------------------------------------------------------------------


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
    )


# ---- blocks -------------------------------------------------------------------------------


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
class Chart:
    name: str
    caption: str


Block = Heading | Text | Table | Chart


def pct(value: float, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f} %"


def _names(items: Iterable[str]) -> str:
    items = list(items)
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else "".join(items)


def _leaders(series: pd.Series, *, by_abs: bool = False) -> str:
    values = series.abs() if by_abs else series
    top = values.max()
    names = sorted(series.index[values == top])
    shown = series[names[0]]
    number = f"{shown:+.0f}" if by_abs else (f"{shown:.1f}" if isinstance(shown, float) else f"{shown}")
    return f"{_names(names)} ({number})"


def week_label(answers: Answers, week: int) -> str:
    return f"week {week} (week of {answers.week_starts[week - 1]:%b %-d})"


def inventory_blocks(a: Answers) -> list[Block]:
    weeks = list(a.inventory.columns)
    first, last = (3, 4) if {3, 4} <= set(weeks) else (weeks[-2], weeks[-1])
    moved = a.inventory[a.inventory[first] != a.inventory[last]]
    change_rows = pd.DataFrame(
        {
            "product": moved.index,
            f"week {first}": moved[first].to_numpy(),
            f"week {last}": moved[last].to_numpy(),
            "change": [f"{d:+d}" for d in (moved[last] - moved[first])],
            "direction": ["restocked" if d > 0 else "down" for d in (moved[last] - moved[first])],
        }
    ).sort_values(["direction", "product"])
    fluct = a.changes.join(a.inventory.std(axis=1, ddof=1).rename("weekly_stddev"))
    fluct = fluct[fluct["inventory_changes"] > 0].sort_values(
        ["units_moved", "inventory_changes"], ascending=False
    )
    ranking = pd.DataFrame(
        {
            "product": fluct.index,
            "changes": fluct["inventory_changes"].to_numpy(),
            "units moved": fluct["units_moved"].astype(int).to_numpy(),
            "std. dev. of weekly values": [f"{v:.1f}" for v in fluct["weekly_stddev"]],
            "net change": [f"{v:+d}" for v in fluct["net_inventory_change"].astype(int)],
        }
    )
    zero = a.inventory == 0
    stockouts = []
    for product in sorted(a.inventory.index[zero.any(axis=1)]):
        out = [w for w in weeks if zero.at[product, w]]
        back = [w for w in weeks if w > out[0] and not zero.at[product, w]]
        restocked = (
            f"restocked in {week_label(a, back[0])} ({a.inventory.at[product, back[0]]} units)"
            if back
            else "not restocked yet"
        )
        stockouts.append(
            f"**{product}** was out of stock in {_names(week_label(a, w) for w in out)}; {restocked}."
        )
    return [
        Heading(f"What changed from week {first} to week {last}"),
        Text(
            f"{len(moved)} products changed between {week_label(a, first)} and {week_label(a, last)} "
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
            "`product_inventory_fluctuation`.)"
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


def funnel_blocks(a: Answers) -> list[Block]:
    f = a.funnel
    counts = [int(f[m]) for _, m in STEPS]
    rows = [("page_view", counts[0], "—", "—", "—")]
    rates = [f["view_to_cart_rate"], f["cart_to_checkout_rate"]]
    lost = [int(f["sessions_lost_before_add_to_cart"]), int(f["sessions_lost_before_checkout"])]
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
    worst_rate = "view → add to cart" if rates[0] < rates[1] else "add to cart → checkout"
    worst_lost = "view → add to cart" if lost[0] > lost[1] else "add to cart → checkout"
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
            "`view_to_checkout_rate`, `sessions_lost_before_*`). MetricFlow's conversion metric on the event "
            "stream, `session_view_to_checkout_conversion`, agrees: "
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


def blocks(a: Answers) -> list[Block]:
    return [
        Heading("Part 1 — Inventory history: the products snapshot", 2),
        *inventory_blocks(a),
        Heading("Part 2 — The product funnel", 2),
        *funnel_blocks(a),
    ]


# ---- charts -------------------------------------------------------------------------------


def _figure_funnel(a: Answers):
    import matplotlib.pyplot as plt

    counts = [int(a.funnel[m]) for _, m in STEPS]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bars = ax.bar([s for s, _ in STEPS], counts, color=["#2e7d32", "#66bb6a", "#a5d6a7"])
    for bar, count in zip(bars, counts, strict=True):
        ax.annotate(f"{count:,}", (bar.get_x() + bar.get_width() / 2, count), ha="center", va="bottom")
    for i, rate in enumerate([a.funnel["view_to_cart_rate"], a.funnel["cart_to_checkout_rate"]]):
        ax.annotate(
            f"{pct(rate)} →",
            (i + 0.5, counts[0] * 1.02),
            ha="center",
            color="#333",
            bbox={"boxstyle": "round", "fc": "white", "ec": "#999"},
        )
    ax.set_ylabel("sessions")
    ax.set_title("Sessions per funnel step")
    ax.set_ylim(0, counts[0] * 1.15)
    return fig


def _figure_over_time(a: Answers):
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    daily = a.by_day
    days = pd.to_datetime(daily["metric_time__day"])
    fig, ax = plt.subplots(figsize=(8, 3.6))
    colors = ["#2e7d32", "#66bb6a", "#a5d6a7"]
    if len(days) <= 14:  # a few days: grouped bars read better than lines
        width = 0.27
        for i, ((step, metric), color) in enumerate(zip(STEPS, colors, strict=True)):
            offsets = mdates.date2num(days) + (i - 1) * width
            ax.bar(offsets, daily[metric].astype(float), width=width, color=color, label=step)
        ax.set_xticks(mdates.date2num(days))
    else:
        for (step, metric), color in zip(STEPS, colors, strict=True):
            ax.plot(days, daily[metric].astype(float), label=step, color=color, linewidth=1)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
    ax.set_ylabel("sessions per day")
    rate = ax.twinx()
    rate.plot(days, daily["view_to_checkout_rate"].astype(float), color="#6a1b9a", linestyle="--", marker=".")
    rate.set_ylabel("view → checkout (dashed)")
    rate.set_ylim(0, 1.05)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("The funnel over time: sessions per step by day, and overall conversion")
    fig.autofmt_xdate()
    return fig


def _figure_products(a: Answers):
    import matplotlib.pyplot as plt

    ranked = a.products.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(ranked) + 1))
    ax.barh(
        ranked["product__product_name"],
        ranked["product_view_to_purchase_rate"].astype(float),
        color="#43a047",
    )
    ax.set_xlabel("sessions purchasing ÷ sessions viewing")
    ax.set_xlim(0, 1)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title("Product conversion (view → purchase)")
    return fig


def _figure_inventory(a: Answers):
    import matplotlib.pyplot as plt

    changed = a.inventory[a.inventory.nunique(axis=1) > 1]
    fig, ax = plt.subplots(figsize=(8, 4))
    weeks = list(changed.columns)
    for product, values in changed.iterrows():
        ax.plot(weeks, values, marker="o", label=product)
        zeros = [w for w in weeks if values[w] == 0]
        ax.scatter(zeros, [0] * len(zeros), marker="x", s=90, color="red", zorder=3)
    ax.set_xticks(weeks, [week_label(a, w) for w in weeks], fontsize=8)
    ax.set_ylabel("units on hand (end of week)")
    ax.set_title("Inventory by week (products that changed; ✕ = out of stock)")
    ax.legend(fontsize=7, ncol=2)
    return fig


FIGURES = {
    "funnel": _figure_funnel,
    "funnel_over_time": _figure_over_time,
    "product_conversion": _figure_products,
    "inventory_by_week": _figure_inventory,
}


def render_chart(a: Answers, name: str, fmt: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = FIGURES[name](a)
    fig.tight_layout()
    buffer = io.BytesIO()
    metadata = {"Software": None} if fmt == "png" else {"Date": None}
    fig.savefig(buffer, format=fmt, dpi=110, metadata=metadata)
    plt.close(fig)
    return buffer.getvalue()


# ---- Markdown and HTML --------------------------------------------------------------------


def _cell(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _md_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = (
        "|"
        + "|".join("---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---" for c in frame.columns)
        + "|"
    )
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def to_markdown(items: list[Block], image_dir: str) -> str:
    out = []
    for b in items:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Text):
            out.append(b.text)
        elif isinstance(b, Table):
            out.append(_md_table(b.frame))
        else:
            out.append(f"![{b.caption}]({image_dir}/{b.name}.png)")
    return "\n\n".join(out)


def _inline(text: str) -> str:
    """**bold** and `code` to HTML (the only Markdown the blocks use)."""
    parts = html.escape(text).split("`")
    text = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


TEMPLATE = Path(__file__).with_name("templates") / "report.html"
BODY_MARKER = "<!-- REPORT BODY -->"


def to_html(items: list[Block], a: Answers) -> str:
    out = []
    for b in items:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Text):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in b.frame.columns)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                for row in b.frame.itertuples(index=False)
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        else:
            svg = base64.b64encode(render_chart(a, b.name, "svg")).decode()
            out.append(
                f'<figure><img alt="{html.escape(b.caption)}" src="data:image/svg+xml;base64,{svg}">'
                f"<figcaption>{html.escape(b.caption)}</figcaption></figure>"
            )
    return TEMPLATE.read_text().replace(BODY_MARKER, "\n".join(out))


def replace_generated(readme: str, section: str) -> str:
    """README text with the generated section replaced (the rest left exactly as it was)."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README.md has no generated-section markers ({BEGIN} … {END})")
    before, rest = readme.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    return f"{before}{BEGIN}\n\n{section}\n\n{END}{after}"


@dataclass(frozen=True)
class ReportPaths:
    readme: Path
    images: Path
    html: Path


def write_report(layer: SemanticLayer, paths: ReportPaths) -> Answers:
    """Write the README's generated section, its PNG charts and the standalone HTML report."""
    answers = collect(layer)
    items = blocks(answers)
    paths.images.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:
        (paths.images / f"{name}.png").write_bytes(render_chart(answers, name, "png"))
    image_dir = paths.images.relative_to(paths.readme.parent).as_posix()
    current = paths.readme.read_text() if paths.readme.exists() else f"# Greenery answers\n\n{BEGIN}\n{END}\n"
    readme = replace_generated(current, to_markdown(items, image_dir))
    paths.readme.write_text(readme)
    paths.html.parent.mkdir(parents=True, exist_ok=True)
    paths.html.write_text(to_html(items, answers))
    return answers
