"""The report's charts (matplotlib, rendered off-screen as PNG for docs/answers.md and SVG for HTML)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from greenery.report.answers import STEPS, Answers, pct, week_label


def _figure_funnel(a: Answers) -> Figure:
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


def _figure_over_time(a: Answers) -> Figure:
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


def _figure_products(a: Answers) -> Figure:
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


def _figure_inventory(a: Answers) -> Figure:
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
    fig = FIGURES[name](a)
    fig.tight_layout()
    buffer = io.BytesIO()
    metadata = {"Software": None} if fmt == "png" else {"Date": None}
    fig.savefig(buffer, format=fmt, dpi=110, metadata=metadata)
    plt.close(fig)
    return buffer.getvalue()
