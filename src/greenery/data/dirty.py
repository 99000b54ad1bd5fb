"""Dirty data: the clean generated tables with the anomalies of the course's original dirty export.

`inject` takes the clean tables (what `generate` yields, gathered whole) and returns them
with anomalies added, and how many of each it added, so the same seed can be built clean
and dirty and compared. Every anomaly is *added* beside the clean rows (new events, new
orders) or is one the models undo exactly (a session's later event carrying a second user,
attributed back to the first), except the delisted product, which changes that product's
inventory from the delisting week on. The models' policy for each kind (docs/dbt-project.md,
"Dirty data") keeps the answers on the clean part unchanged, and the mart
`data_quality_anomalies` counts each kind: the counts equal what `inject` returns.

Each kind touches its own sessions (drawn without replacement), so no row is two anomalies
at once and the counts add up exactly. The tables are held in memory: a scenario for tests
and demos at small scales, not for the streaming scale runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from greenery.data.generate import uuid_strings, with_text_ids
from greenery.data.schema import PAGE_URL_PREFIX

# The kinds the mart `data_quality_anomalies` counts, in its order (one row each).
ANOMALY_KINDS: tuple[str, ...] = (
    "duplicate_events",
    "events_without_timestamp",
    "events_in_future",
    "unknown_event_types",
    "late_events",
    "orphan_product_events",
    "orphan_user_events",
    "sessions_with_two_users",
    "orders_without_items",
    "delisted_products",
)
# The week the delisted product leaves the catalog: the last of the weeks `greenery replay`
# replays by default (warehouse.replay.REPLAY_WEEKS, 1–4), so a default replay sees it go.
DELIST_WEEK = 4
UNKNOWN_EVENT_TYPES = ("page_scroll", "wishlist_add")  # what trackers send that the funnel does not know
FUTURE_YEARS = 100  # a year typed as 2121 for 2021
LATE_DAYS = (2, 7)  # a late event arrives this many days after its session (at least, less than)
SEED_STREAM = 7  # the dirty scenario's random stream, apart from the generator's


@dataclass(frozen=True)
class DirtyData:
    tables: dict[str, pd.DataFrame]
    injected: dict[str, int]  # per anomaly kind (ANOMALY_KINDS), how many were injected
    delisted_product_id: str


def per_kind(events: int) -> int:
    """How many anomalies of each event kind to inject: one per 500 events, at least 3."""
    return max(3, events // 500)


def gather(chunks: Iterable[tuple[str, pa.Table | pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """The generator's chunks (Arrow tables or frames) as one frame per table, ids as text."""
    parts: dict[str, list[pd.DataFrame]] = {}
    for name, chunk in chunks:
        frame = with_text_ids(chunk).to_pandas() if isinstance(chunk, pa.Table) else chunk
        parts.setdefault(name, []).append(frame)
    return {name: pd.concat(frames, ignore_index=True) for name, frames in parts.items()}


def _one_event_per_session(events: pd.DataFrame, sessions: np.ndarray) -> pd.DataFrame:
    """For each session given, its first page_view event (every session has one)."""
    views = events[(events["event_type"] == "page_view") & events["session_id"].isin(sessions)]
    return views.sort_values(["session_id", "created_at", "event_id"]).drop_duplicates("session_id")


def _copies(rows: pd.DataFrame, rng: np.random.Generator, **changes: object) -> pd.DataFrame:
    """The rows again under new event ids, with `changes` applied."""
    return rows.assign(event_id=uuid_strings(len(rows), rng).to_pylist(), **changes)


def _second_user(events: pd.DataFrame, sessions: np.ndarray, users: pd.Series) -> pd.DataFrame:
    """Each session's last event (strictly after its first) with another existing user's id."""
    in_sessions = events[events["session_id"].isin(sessions)].sort_values(
        ["session_id", "created_at", "event_id"]
    )
    last = in_sessions.drop_duplicates("session_id", keep="last")
    known = users.to_numpy()
    position = {u: i for i, u in enumerate(known)}
    other = [known[(position[u] + 1) % len(known)] for u in last["user_id"]]
    return last.assign(user_id=other)


def _sessions_for(events: pd.DataFrame, n_kinds: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`n_kinds` disjoint draws of `n` sessions that have a page_view and two event times."""
    span = events.groupby("session_id")["created_at"].agg(["min", "max"])
    viewed = set(events.loc[events["event_type"] == "page_view", "session_id"])
    eligible = np.array(sorted(s for s in span.index[span["max"] > span["min"]] if s in viewed))
    if len(eligible) < n_kinds * n:
        raise ValueError(
            f"the clean data has too few sessions ({len(eligible)}) to inject {n} of each anomaly"
        )
    drawn = rng.choice(eligible, size=n_kinds * n, replace=False)
    return [drawn[k * n : (k + 1) * n] for k in range(n_kinds)]


def _orders_without_items(orders: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """New orders copied from existing ones (same user, address and time) whose items never arrived:
    being prepared, no promo, nothing shipped."""
    source = orders.iloc[np.sort(rng.choice(len(orders), size=n, replace=False))]
    empty = pd.Series([None] * n, index=source.index, dtype=object)
    return source.assign(
        order_id=uuid_strings(n, rng).to_pylist(),
        promo_id=empty,
        order_total=source["order_cost"] + source["shipping_cost"],
        tracking_id=empty,
        shipping_service=empty,
        estimated_delivery_at=pd.NaT,
        delivered_at=pd.NaT,
        status="preparing",
    )


def inject(tables: dict[str, pd.DataFrame], seed: int) -> DirtyData:
    """The clean `tables` (all eight raw tables) with every kind of anomaly injected."""
    rng = np.random.default_rng([seed % 2**63, SEED_STREAM])
    events, orders = tables["events"], tables["orders"]
    n = per_kind(len(events))
    event_kinds = ANOMALY_KINDS[:8]
    draws = dict(zip(event_kinds, _sessions_for(events, len(event_kinds), n, rng), strict=True))
    one = {kind: _one_event_per_session(events, draws[kind]) for kind in event_kinds}

    session_end = events.groupby("session_id")["created_at"].max()
    late = one["late_events"]
    late_days = rng.integers(*LATE_DAYS, size=n)
    unknown_products = uuid_strings(n, rng).to_pylist()
    added = [
        events[events["event_id"].isin(one["duplicate_events"]["event_id"])],  # delivered twice
        _copies(one["events_without_timestamp"], rng, created_at=pd.NaT),
        _copies(
            one["events_in_future"],
            rng,
            created_at=one["events_in_future"]["created_at"] + pd.DateOffset(years=FUTURE_YEARS),
        ),
        _copies(one["unknown_event_types"], rng, event_type=rng.choice(UNKNOWN_EVENT_TYPES, size=n)),
        _copies(
            late,
            rng,
            created_at=late["session_id"].map(session_end).to_numpy()
            + pd.to_timedelta(late_days, unit="D").to_numpy(),
        ),
        _copies(
            one["orphan_product_events"],
            rng,
            product_id=unknown_products,
            page_url=[f"{PAGE_URL_PREFIX}/product/{p}" for p in unknown_products],
        ),
        _copies(one["orphan_user_events"], rng, user_id=uuid_strings(n, rng).to_pylist()),
    ]
    second_user = _second_user(events, draws["sessions_with_two_users"], tables["users"]["user_id"])
    dirty_events = events.copy()
    dirty_events.loc[second_user.index, "user_id"] = second_user["user_id"]
    dirty_events = pd.concat([dirty_events, *added], ignore_index=True)

    products = tables["products"]["product_id"]
    delisted = str(products.iloc[int(rng.integers(len(products)))])
    weekly = tables["product_inventory_by_week"]
    if DELIST_WEEK not in set(weekly["week"]):
        raise ValueError(f"the weekly inventory has no week {DELIST_WEEK} to delist a product in")
    leaving = (weekly["product_id"] == delisted) & (weekly["week"] >= DELIST_WEEK)

    injected = {kind: n for kind in event_kinds}
    injected.update(orders_without_items=n, delisted_products=1)
    return DirtyData(
        tables={
            **tables,
            "events": dirty_events,
            "orders": pd.concat([orders, _orders_without_items(orders, n, rng)], ignore_index=True),
            "product_inventory_by_week": weekly[~leaving].reset_index(drop=True),
        },
        injected={kind: injected[kind] for kind in ANOMALY_KINDS},
        delisted_product_id=delisted,
    )
