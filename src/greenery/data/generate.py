"""Synthetic Greenery source data of the course's shape, at any scale.

Scale 1 reproduces the course dataset's published aggregates exactly, for any seed: every
count is fixed up front (the course's own numbers, embedded below) and the random
generator only decides which rows get which value and when. Scale N makes N times the
users and sessions over a longer timeline (about 3 * N**0.7 days) with daily, weekly and
yearly seasonality, funnel rates that drift over time and differ by product, and weekly
inventory that sales draw down and restocks bring back.

Nothing is held for the whole dataset but what every block draws on (sessions per hour, the
funnel's daily drift, 16 bytes per user) and the weekly sales: the plan (every number: sessions,
visits, orders, items) is made a block of about BLOCK_SESSIONS sessions at a time, from the
block's own random stream, and turned into Arrow tables (ids as Arrow uuids, which DuckDB
stores as its 16-byte uuid type, and urls as text, both from bytes, never as Python objects)
before the next. So what generating holds grows with the users alone, 16 bytes each (without
writing: 200, 229 and 301 MiB at scales 1000, 10000 and 30000); the weekly inventory, which
the sales draw down, comes last.
"""

from __future__ import annotations

import itertools
import math
import operator
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from greenery.data import course
from greenery.data.schema import EVENT_TYPES, ORDER_STATUSES, PAGE_URL_PREFIX, SHIPPING_SERVICES

DEFAULT_SEED: int = 2021


@dataclass(frozen=True)
class Generation:
    """What generated data was made with: its next days (`next_days`) need the same."""

    scale: int = 1
    seed: int = DEFAULT_SEED

    @classmethod
    def given(cls, scale: int | None = None, seed: int | None = None) -> Generation:
        """The given scale and seed, with the defaults for those not given."""
        default = cls()
        return cls(default.scale if scale is None else scale, default.seed if seed is None else seed)


START = np.datetime64("2021-02-10T00:00:00", "s")  # the course's first order day
DAY, HOUR = 86_400, 3_600
BLOCK_SESSIONS = 20_000  # sessions per yielded block of events, orders and order items
MIN_DAYS = 28  # from scale 2: weeks 1-4 of inventory each recorded after a week of sales

# ---- facts of the course dataset (computed once from its CSVs) -------------------------
USERS, ADDRESSES, COURSE_DAYS = 130, 150, 2
ACTIVE_USERS = 124
# Sessions by shape: (checkout, carted products, other viewed products, repeated page
# view, repeated add_to_cart, number of sessions). Order items = the carted products.
SESSION_SHAPES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (0, 0, 1, 0, 0, 53), (0, 0, 2, 0, 0, 32), (0, 0, 2, 1, 0, 5), (0, 0, 3, 0, 0, 21),
    (0, 1, 0, 0, 0, 26), (0, 1, 1, 0, 0, 29), (0, 1, 1, 1, 0, 2), (0, 1, 2, 0, 0, 32),
    (0, 2, 0, 0, 0, 6), (0, 2, 0, 1, 0, 1), (0, 2, 0, 1, 1, 1), (0, 2, 1, 0, 0, 9),
    (1, 1, 0, 0, 0, 25), (1, 1, 1, 0, 0, 10), (1, 1, 1, 1, 0, 2), (1, 1, 2, 0, 0, 26),
    (1, 1, 2, 1, 0, 6), (1, 1, 3, 0, 0, 20), (1, 2, 0, 0, 0, 22), (1, 2, 1, 0, 0, 37),
    (1, 2, 1, 1, 0, 2), (1, 2, 2, 0, 0, 30), (1, 2, 2, 1, 0, 3), (1, 2, 3, 0, 0, 39),
    (1, 3, 0, 0, 0, 17), (1, 3, 1, 0, 0, 24), (1, 3, 2, 0, 0, 17), (1, 3, 2, 1, 0, 2),
    (1, 3, 3, 0, 0, 20), (1, 4, 0, 0, 0, 10), (1, 4, 1, 0, 0, 11), (1, 4, 1, 1, 0, 1),
    (1, 4, 2, 0, 0, 5), (1, 4, 2, 1, 0, 1), (1, 4, 3, 0, 0, 10), (1, 5, 0, 0, 0, 3),
    (1, 5, 1, 0, 0, 6), (1, 5, 2, 0, 0, 2), (1, 5, 3, 0, 0, 3), (1, 6, 0, 0, 0, 1),
    (1, 6, 1, 0, 0, 1), (1, 6, 3, 0, 0, 2), (1, 7, 1, 0, 0, 1), (1, 7, 2, 0, 0, 1),
    (1, 7, 3, 0, 0, 1),
)  # fmt: skip
# Per product, in course.PRODUCTS order: (sessions that viewed it, checkout sessions that bought it).
PRODUCT_SESSIONS: tuple[tuple[int, int], ...] = (
    (61, 21), (67, 36), (62, 30), (49, 25), (64, 39), (63, 34), (73, 29), (75, 34), (78, 33), (53, 27),
    (66, 27), (60, 27), (56, 28), (68, 29), (59, 28), (61, 24), (46, 22), (63, 35), (67, 33), (59, 28),
    (56, 26), (55, 30), (45, 22), (51, 21), (74, 31), (62, 29), (65, 32), (54, 28), (70, 28), (63, 26),
)  # fmt: skip
ORDERS_PER_BUYER = (25, 28, 34, 20, 10, 2, 4, 1)  # buyers with 1, 2, ..., 8 orders
PROMOS: tuple[tuple[str, int, str], ...] = (
    ("task-force", 2, "inactive"), ("instruction set", 13, "inactive"), ("leverage", 10, "active"),
    ("Optional", 17, "inactive"), ("Mandatory", 20, "inactive"), ("Digitized", 11, "inactive"),
)  # fmt: skip
PROMO_ORDERS = (4, 11, 9, 6, 7, 3, 321)  # orders per promo above, then orders without one
STATUS_ORDERS = (26, 30, 305)  # preparing, shipped, delivered (schema.ORDER_STATUSES order)
SERVICE_ORDERS = (169, 96, 60, 10)  # ups, fedex, usps, dhl (schema.SHIPPING_SERVICES order)
ESTIMATE_DAYS = (59, 78, 59, 61, 57, 21)  # sent orders estimated 1..5 days out, then NULL
DELIVERY_DAYS = (46, 47, 44, 46, 38, 47, 37)  # delivered orders 1..7 days after the order
QUANTITIES = (212, 215, 217, 218)  # order items of quantity 1..4
SHIP_HOURS = (2, 9)  # package_shipped this many whole hours after the order
# (state, course addresses, lowest zip, highest zip); zips below 10000 lost their leading 0.
STATES: tuple[tuple[str, int, int, int], ...] = (
    ("Texas", 23, 75001, 79999), ("California", 17, 90001, 96162), ("Virginia", 9, 22001, 24658),
    ("Florida", 8, 32003, 34997), ("New York", 7, 10001, 14925), ("District of Columbia", 7, 20001, 20599),
    ("Alabama", 5, 35004, 36925), ("Indiana", 5, 46001, 47997), ("Arizona", 4, 85001, 86556),
    ("Pennsylvania", 4, 15001, 19640), ("Colorado", 4, 80001, 81658), ("Ohio", 4, 43001, 45999),
    ("Massachusetts", 4, 1001, 2791), ("Missouri", 4, 63001, 65899), ("Minnesota", 4, 55001, 56763),
    ("Maryland", 3, 20601, 21930), ("Washington", 3, 98001, 99403), ("North Carolina", 3, 27006, 28909),
    ("Nevada", 3, 88901, 89883), ("Georgia", 3, 30001, 31999), ("Kansas", 3, 66002, 67954),
    ("Illinois", 2, 60001, 62999), ("Iowa", 2, 50001, 52809), ("Michigan", 2, 48001, 49971),
    ("Oklahoma", 2, 73001, 74966), ("Oregon", 2, 97001, 97920), ("South Carolina", 2, 29001, 29948),
    ("West Virginia", 1, 24701, 26886), ("Connecticut", 1, 6001, 6928), ("Montana", 1, 59001, 59937),
    ("Nebraska", 1, 68001, 69367), ("New Mexico", 1, 87001, 88439), ("Louisiana", 1, 70001, 71497),
    ("Wisconsin", 1, 53001, 54990), ("Kentucky", 1, 40003, 42788), ("New Hampshire", 1, 3031, 3897),
    ("Mississippi", 1, 38601, 39776), ("Delaware", 1, 19701, 19980),
)  # fmt: skip
FIRST_NAMES: tuple[str, ...] = (
    "Keslie", "Gerhard", "Edithe", "Danella", "Timoteo", "Lorelle", "Reg", "Betsey", "Maris", "Johnath",
    "Ardith", "Bevin", "Cacilia", "Dorian", "Elbertine", "Fidel", "Gratia", "Hamil", "Iolande", "Jarib",
    "Kalie", "Lindon", "Merola", "Nevins", "Orelia", "Pavel", "Quinta", "Rab", "Sibella", "Tadeas", "Ulla",
    "Vasili", "Wenona", "Xymenes", "Yolanthe", "Zebadiah", "Alvera", "Brok", "Corissa", "Dov"
)  # fmt: skip
LAST_NAMES: tuple[str, ...] = (
    "Hearmon", "Kernan", "Petricek", "Wrankmore", "Labrenz", "Diego", "Harrop", "Mylan", "Sperski", "Oliva",
    "Abrahamoff", "Bellew", "Cuerda", "Dwelly", "Esmead", "Fairholme", "Gookes", "Hannent", "Iacovozzo",
    "Jessard", "Kilmurry", "Ledwitch", "Mcasparan", "Noor", "Ommanney", "Pinnick", "Quilty", "Rawling",
    "Semble", "Tumilson", "Upwood", "Vanyutin", "Wackett", "Yurkiewicz", "Zanetti"
)  # fmt: skip
DOMAINS: tuple[str, ...] = (
    "netvibes.com", "51.la", "purevolume.com", "europa.eu", "cisco.com", "nps.gov", "naver.com",
    "cbslocal.com", "comsenz.com", "taobao.com", "yolasite.com", "google.nl", "flickr.com", "samsung.com",
    "marketwatch.com", "altervista.org"
)  # fmt: skip
STREETS: tuple[str, ...] = (
    "Artisan", "Carberry", "Tennyson", "Sutherland", "Sherman", "Chive", "Red Cloud", "Brown", "Miller",
    "Harbort", "Farragut", "Donald", "Evergreen", "Victoria", "Meadow Ridge", "Pierstorff", "Bluejay",
    "Kipling", "Sullivan", "Pankratz", "Oakridge", "Hoard", "Lunder", "Mallard", "Nancy", "Ronald Regan",
    "Service", "Stang", "Thackeray", "Vera", "Warner", "Anhalt"
)  # fmt: skip
SUFFIXES: tuple[str, ...] = (
    "Park", "Street", "Alley", "Pass", "Point", "Lane", "Hill", "Crossing", "Road", "Drive", "Trail",
    "Parkway", "Plaza", "Terrace", "Way", "Court"
)  # fmt: skip


# ---- small helpers ----------------------------------------------------------------------


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator for one stream of one seed."""
    return np.random.default_rng([seed % 2**63, *stream])


def _allocate(total: int, weights: Sequence[int]) -> np.ndarray:
    """Split `total` in proportion to integer `weights` (largest remainder; exact at the course's total)."""
    w = np.asarray(weights, dtype=np.int64)
    scaled = total * w
    counts = scaled // w.sum()
    remainder = scaled % w.sum()
    counts[np.argsort(-remainder, kind="stable")[: total - counts.sum()]] += 1
    return counts


def _deal(total: int, weights: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """`total` category codes in proportion to `weights`, in random order."""
    return rng.permutation(np.repeat(np.arange(len(weights)), _allocate(total, weights)))


def _top(keys: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Mask of the k[i] largest keys of each row i."""
    ordered = -np.sort(-keys, axis=1)
    threshold = ordered[np.arange(len(keys)), np.clip(k - 1, 0, keys.shape[1] - 1)]
    return (keys >= threshold[:, None]) & (k[:, None] > 0)


def _pick_one(pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random column of each row among the True entries of `pool`."""
    return np.argmax(np.where(pool, rng.random(pool.shape), -1.0), axis=1)


def _segment_offsets(sizes: np.ndarray) -> np.ndarray:
    """Where each segment starts, and the end: 32-bit (190 M visits at MAX_SCALE)."""
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)


# each byte's two hex digits, as one little-endian 16-bit code (high digit first in memory)
_HEX_PAIRS = np.array([ord(a) | ord(b) << 8 for a in "0123456789abcdef" for b in "0123456789abcdef"], "<u2")
_UUID_GROUPS = ((0, 8), (9, 13), (14, 18), (19, 23), (24, 36))  # where the hex digits go: 8-4-4-4-12


def _fixed_strings(chars: np.ndarray) -> pa.Array:
    """Arrow strings from a (n, width) array of ASCII codes."""
    n, width = chars.shape
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _uuid4(raw: np.ndarray) -> np.ndarray:
    """(n, 16) random bytes as uuid4s: a copy with the version and variant bits set over them."""
    raw = raw.copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    return raw


def _random_uuid4(n: int, rng: np.random.Generator) -> np.ndarray:
    return _uuid4(np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16))


def _uuid_array(raw: np.ndarray) -> pa.Array:
    """Arrow uuids (`pa.uuid()`, which DuckDB reads as its 16-byte uuid type) of (n, 16) bytes."""
    data = pa.py_buffer(np.ascontiguousarray(raw, dtype=np.uint8))
    return pa.ExtensionArray.from_storage(
        pa.uuid(), pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(raw), [None, data])
    )


def uuids(n: int, rng: np.random.Generator) -> pa.Array:
    """n random uuid4s from the generator's bytes, as Arrow uuids."""
    return _uuid_array(_random_uuid4(n, rng))


def uuid_strings(n: int, rng: np.random.Generator) -> pa.Array:
    """n random uuid4s as text: for text columns (tracking ids) and the dirty scenario's frames."""
    return _uuid_text(_random_uuid4(n, rng))


def as_text(ids: pa.Array) -> pa.Array:
    """Arrow uuids as their lowercase, hyphenated text (nulls kept)."""
    storage = ids.storage
    data = np.frombuffer(storage.buffers()[1], dtype=np.uint8).reshape(-1, 16)
    text = _uuid_text(data[storage.offset : storage.offset + len(storage)])
    return text if ids.null_count == 0 else pc.if_else(ids.is_valid(), text, pa.scalar(None, pa.string()))


def with_text_ids(table: pa.Table) -> pa.Table:
    """`table` with its uuid columns as text (for CSV files and pandas frames)."""
    for i, column in enumerate(table.schema):
        if column.type == pa.uuid():
            table = table.set_column(i, column.name, as_text(table.column(i).combine_chunks()))
    return table


def _uuid_text(raw: np.ndarray) -> pa.Array:
    """The text of (n, 16) uuid bytes: one lookup of each byte's two digits, copied group by
    group (twice as fast as a lookup per digit scattered over the 32 digit columns)."""
    digits = _HEX_PAIRS[raw].view(np.uint8)
    chars = np.full((len(raw), 36), ord("-"), dtype=np.uint8)
    done = 0
    for lo, hi in _UUID_GROUPS:
        chars[:, lo:hi] = digits[:, done : done + hi - lo]
        done += hi - lo
    return _fixed_strings(chars)


def _labels(codes: np.ndarray, values: Sequence[str]) -> pa.Array:
    """Arrow strings values[code]; code -1 is NULL."""
    codes = np.asarray(codes, dtype=np.int32)
    indices = pa.array(codes, mask=codes < 0)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(values), pa.string())).dictionary_decode()


def _take(strings: pa.Array, index: np.ndarray) -> pa.Array:
    """strings[index]; index -1 is NULL."""
    index = np.asarray(index, dtype=np.int64)
    return strings.take(pa.array(index, mask=index < 0))


def _timestamps(seconds: np.ndarray, null: np.ndarray | None = None) -> np.ndarray:
    """Seconds since START as datetime64[us] (NaT where `null`)."""
    stamps = (START + seconds.astype("timedelta64[s]")).astype("datetime64[us]")
    if null is not None:
        stamps[null] = np.datetime64("NaT")
    return stamps


def _frame(columns: dict[str, pa.Array | np.ndarray]) -> pa.Table:
    """An Arrow table of the columns (numpy numbers and timestamps converted without copies)."""
    return pa.table(
        {name: pa.array(col) if isinstance(col, np.ndarray) else col for name, col in columns.items()}
    )


# ---- the plan: every number of the dataset, block by block -------------------------------


@dataclass(frozen=True)
class Timeline:
    """Days of data and the weekly inventory records."""

    days: int
    weeks: int
    first_week_days: int

    @classmethod
    def for_scale(cls, scale: int) -> Timeline:
        """The course's 2 days at scale 1, about 3 * scale**0.7 days beyond; from scale 2 at least
        MIN_DAYS, so that every weekly inventory record follows a week of sales and the sessions
        span several calendar weeks (week-over-week answers, inventory changes in weeks 1-4)."""
        days = round(COURSE_DAYS + 3 * (scale**0.7 - 1))
        return cls.of_days(days if scale == 1 else max(days, MIN_DAYS))

    @classmethod
    def of_days(cls, days: int) -> Timeline:
        """`days` of data: week 1 recorded after the first (up to) 7 days, then every 7 days."""
        first = min(7, days)
        return cls(days, max(4, 1 + math.ceil((days - first) / 7)), first)

    def recorded_at(self) -> np.ndarray:
        """Seconds since START of each week's inventory record (week 1 at the first week's end)."""
        return (self.first_week_days + 7 * np.arange(self.weeks)) * DAY


@dataclass(frozen=True)
class People:
    """Users (sorted by created_at): what sessions and orders need of them, 16 bytes a user."""

    created: np.ndarray  # seconds since START, 32-bit
    address: np.ndarray  # their own address (index), 32-bit
    n_addresses: int
    cumulative_weight: np.ndarray  # running sum of how often each visits (a weight of 0: never)


@dataclass(frozen=True)
class Sessions:
    """Sessions sorted by time and their product visits (flat, in browsing order)."""

    end: np.ndarray  # seconds of the last funnel event (the checkout, if any); 32-bit
    user: np.ndarray
    checkout: np.ndarray
    visit_start: np.ndarray  # offsets into the visit arrays, one more than sessions
    product: np.ndarray
    carted: np.ndarray
    repeat: np.ndarray  # a second visit of a product already seen in the session


@dataclass(frozen=True)
class Orders:
    """One order per checkout session, in session order, with its items."""

    created: np.ndarray
    address: np.ndarray
    promo: np.ndarray  # -1: none
    status: np.ndarray  # index into ORDER_STATUSES
    service: np.ndarray  # index into SHIPPING_SERVICES, -1 while preparing
    ship_hours: np.ndarray
    estimate_days: np.ndarray  # -1: NULL
    delivery_days: np.ndarray  # -1: not delivered
    shipping_cents: np.ndarray
    cost_cents: np.ndarray
    item_start: np.ndarray
    item_product: np.ndarray
    item_quantity: np.ndarray

    def total_cents(self) -> np.ndarray:
        """order_cost + shipping_cost - promo discount, in cents."""
        discount = np.array([0] + [d for _, d, _ in PROMOS], dtype=np.int64) * 100
        return self.cost_cents + self.shipping_cents - discount[self.promo + 1]


@dataclass(frozen=True)
class Part:
    """One block of the plan: sessions (about BLOCK_SESSIONS, in time order) and their orders."""

    sessions: Sessions
    orders: Orders


Statuses = Callable[[np.ndarray, np.random.Generator], np.ndarray]  # order times -> status codes


def _shapes() -> np.ndarray:
    """SESSION_SHAPES without the counts: checkout, carted, other viewed, repeat view, repeat cart."""
    return np.array([s[:5] for s in SESSION_SHAPES], dtype=np.int8)


def _shape_kinds() -> tuple[np.ndarray, np.ndarray]:
    """Kind of each shape (0 view only, 1 cart only, 2 checkout) and its course sessions."""
    shapes = _shapes()
    kind = np.where(shapes[:, 0] == 1, 2, (shapes[:, 1] > 0).astype(np.int64))
    return kind, np.array([s[5] for s in SESSION_SHAPES], dtype=float)


def _hourly_weights(timeline: Timeline, rng: np.random.Generator) -> np.ndarray:
    """Traffic per hour: evening peak (UTC), weekends, a spring season, growth and daily noise."""
    hours = np.arange(timeline.days * 24)
    day = hours // 24
    daily = 1 + 0.35 * np.cos(2 * np.pi * (hours % 24 - 1) / 24)
    weekly = np.where((2 + day) % 7 >= 5, 1.2, 1.0)  # 2021-02-10 was a Wednesday
    yearly = 1 + 0.2 * np.sin(2 * np.pi * (41 + day - 30) / 365)  # day of year 41 = Feb 10; peak May 1
    growth = np.exp(0.5 * day / 365)
    noise = np.exp(rng.normal(0, 0.1, timeline.days))[day]
    return daily * weekly * yearly * growth * noise


def _spread(n: int, weights: np.ndarray, rng: np.random.Generator, at_least: int = 0) -> np.ndarray:
    """n times (seconds) over the hours of `weights`, at least `at_least` in each hour."""
    counts = at_least + rng.multinomial(n - at_least * len(weights), weights / weights.sum())
    return _within_hours(np.arange(len(weights)), counts, rng)


def _within_hours(hours: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """counts[i] random times (seconds) in hour hours[i], hour after hour."""
    return np.repeat(hours, counts) * HOUR + rng.integers(0, HOUR - 1, int(counts.sum()))


def _people(n_users: int, n_addresses: int, timeline: Timeline, rng: np.random.Generator) -> People:
    """Users created over the year before the data and during it, each with an own address."""
    span = 355 + 0.9 * (timeline.days - COURSE_DAYS)
    created = np.sort((-400 * DAY + rng.random(n_users) * span * DAY).astype(np.int32))
    n_inactive = _allocate(n_users, (ACTIVE_USERS, USERS - ACTIVE_USERS))[1]
    weight = rng.lognormal(0, 1.0, n_users)
    weight[rng.choice(n_users, n_inactive, replace=False)] = 0.0
    address = rng.permutation(n_addresses)[:n_users].astype(np.int32)
    return People(created, address, n_addresses, np.cumsum(weight))


def _updated(created: np.ndarray, timeline: Timeline, rng: np.random.Generator) -> np.ndarray:
    """When each user last changed their details: within 100 days of signing up, before the data ends."""
    room = np.clip(timeline.days * DAY - created.astype(np.int64), 0, 100 * DAY)
    return created + (rng.random(len(created)) * room).astype(np.int64)


def _greedy(
    slots: np.ndarray, degrees: np.ndarray, banned: np.ndarray, rng: np.random.Generator
) -> np.ndarray | None:
    """Rows with bans, then rows with most slots, take the allowed columns with most left (Havel-Hakimi)."""
    left = np.asarray(degrees, dtype=np.int64).copy()
    matrix = np.zeros(banned.shape, dtype=bool)
    for row in np.lexsort((rng.random(len(slots)), -slots, ~banned.any(axis=1))):
        keys = np.where(banned[row] | (left == 0), -1.0, left + rng.random(len(left)))
        chosen = np.argsort(-keys)[: slots[row]]
        if slots[row] and keys[chosen[-1]] < 0:
            return None
        matrix[row, chosen] = True
        left[chosen] -= 1
    return matrix


def _realize(
    slots: np.ndarray, degrees: np.ndarray, banned: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A random 0/1 matrix with row sums `slots` and column sums `degrees`, 0 where `banned`.

    A greedy construction, mixed by random swaps that keep every row and column sum.
    """
    for _ in range(20):
        matrix = _greedy(slots, degrees, banned, rng)
        if matrix is not None:
            break
    else:
        raise RuntimeError("cannot realize the course's per-product session counts")
    for a, b in rng.integers(0, len(slots), size=(20 * len(slots), 2)):
        only_a = np.flatnonzero(matrix[a] & ~matrix[b] & ~banned[b])
        only_b = np.flatnonzero(matrix[b] & ~matrix[a] & ~banned[a])
        if len(only_a) and len(only_b):
            p, q = only_a[rng.integers(len(only_a))], only_b[rng.integers(len(only_b))]
            matrix[a, p] = matrix[b, q] = False
            matrix[a, q] = matrix[b, p] = True
    return matrix


def _course_products(shape: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Viewed and carted products per session hitting the course's per-product session counts."""
    checkout, carts, others = shape[:, 0] == 1, shape[:, 1], shape[:, 2]
    views, buys = np.array(PRODUCT_SESSIONS).T
    n, m = len(shape), len(views)
    carted = np.zeros((n, m), dtype=bool)
    carted[checkout] = _realize(carts[checkout], buys, np.zeros((checkout.sum(), m), bool), rng)
    seen = _realize(np.where(checkout, others, carts + others), views - buys, carted, rng)
    keys = np.where(seen & ~checkout[:, None], rng.random((n, m)), -1.0)
    carted |= _top(keys, np.where(checkout, 0, carts))
    return seen | carted, carted


def _course_part(timeline: Timeline, people: People, rng: np.random.Generator) -> Part:
    """The course's 578 sessions (shapes, times with an order in every hour, buyers and
    products) and their orders, whose statuses are the course's exact counts."""
    shapes = _shapes()
    shape = shapes[rng.permutation(np.repeat(np.arange(len(shapes)), [s[5] for s in SESSION_SHAPES]))]
    checkout = shape[:, 0] == 1
    weights = _hourly_weights(timeline, rng)
    end = np.empty(len(shape), dtype=np.int64)
    end[checkout] = _spread(int(checkout.sum()), weights, rng, at_least=1)
    end[~checkout] = _spread(int((~checkout).sum()), weights, rng)
    active = np.flatnonzero(np.diff(people.cumulative_weight, prepend=0.0) > 0)
    orders = rng.permutation(np.repeat(np.arange(1, len(ORDERS_PER_BUYER) + 1), ORDERS_PER_BUYER))
    user = np.empty(len(shape), dtype=np.int64)
    user[checkout] = rng.permutation(np.repeat(active, orders))
    user[~checkout] = rng.choice(active, int((~checkout).sum()), p=orders / orders.sum())
    viewed, carted = _course_products(shape, rng)
    order = np.argsort(end, kind="stable")
    sessions = _sessions(
        end[order], user[order], shape[order], _visits(shape[order], viewed[order], carted[order], rng)
    )
    tau = _recency_days(timeline) * DAY
    return Part(
        sessions, _orders(sessions, people, lambda created, r: _course_statuses(created, tau, r), rng)
    )


def _drifts(timeline: Timeline, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per day: the cumulative shares of view-only and cart-only sessions (the rest check out),
    and the products' buy and view appeal (positive weights, the exponentials of drifting logits)."""
    day = np.arange(timeline.days)[:, None]
    frac = day / max(timeline.days - 1, 1) - 0.5
    kind, counts = _shape_kinds()
    types = np.log(np.bincount(kind, weights=counts))[None, :] + np.zeros((timeline.days, 3))
    phase = rng.uniform(0, 2 * np.pi, 2)
    types[:, 2:] += 0.3 * np.sin(2 * np.pi * day / 45 + phase[0]) + rng.normal(0, 0.4) * frac
    types[:, 2:] += np.where((2 + day) % 7 >= 5, 0.15, 0.0)
    types[:, 1:2] += 0.2 * np.sin(2 * np.pi * day / 30 + phase[1])
    views, buys = np.array(PRODUCT_SESSIONS, dtype=float).T
    m = len(views)
    period, phases = rng.uniform(20, 120, m), rng.uniform(0, 2 * np.pi, m)
    amplitude, trend = rng.uniform(0.15, 0.45, m), rng.normal(0, 0.5, m)
    buy = np.log(buys) + amplitude * np.sin(2 * np.pi * day / period + phases) + trend * frac
    view = np.log(views - buys) + 0.15 * np.sin(2 * np.pi * day / rng.uniform(20, 120, m) + phases)
    prob = np.exp(types - types.max(axis=1, keepdims=True))
    return np.cumsum(prob / prob.sum(axis=1, keepdims=True), axis=1)[:, :2], np.exp(buy), np.exp(view)


@dataclass(frozen=True)
class Traffic:
    """What every block of sessions of a timeline draws on, and nothing that grows with its
    sessions: how many end in each hour, the funnel's daily drift, the people and the order
    statuses by age."""

    hourly: np.ndarray  # sessions ending in each hour from first_hour on
    first_hour: int
    drifts: tuple[np.ndarray, np.ndarray, np.ndarray]  # `_drifts`
    people: People
    statuses: Statuses
    late_share: float = 0.0  # of the sessions, dated a day earlier (arriving late)


def _scaled_products(
    shape: np.ndarray, day: np.ndarray, buy: np.ndarray, view: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Viewed and carted products: carts by buy appeal, other views by browse appeal (Gumbel top-k,
    as appeal / Exp(1): the same order as log(appeal) + Gumbel, without two logarithms per draw)."""
    checkout, carts, others = shape[:, 0] == 1, shape[:, 1], shape[:, 2]
    buy_keys = _appeal_keys(buy, day, rng)
    view_keys = _appeal_keys(view, day, rng)
    first = _top(np.where(checkout[:, None], buy_keys, view_keys), np.where(checkout, carts, carts + others))
    second_keys = np.where(
        checkout[:, None], np.where(first, -np.inf, view_keys), np.where(first, buy_keys, -np.inf)
    )
    second = _top(second_keys, np.where(checkout, others, carts))
    carted = np.where(checkout[:, None], first, second)
    return first | second, carted


def _appeal_keys(appeal: np.ndarray, day: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random keys of each session's products: sorted by them, the products come in a Gumbel
    top-k order of the day's `appeal`. In 64 bits, so that two keys of a session practically
    never tie (`_top` would take both); a draw of 0 counts as the smallest positive number."""
    draws = rng.standard_exponential(size=(len(day), appeal.shape[1]))
    return appeal[day] / np.maximum(draws, np.finfo(np.float64).tiny)


def _hour_blocks(hourly: np.ndarray) -> Iterator[tuple[int, int]]:
    """Consecutive ranges of hours holding about BLOCK_SESSIONS sessions each (none empty)."""
    cumulative = np.cumsum(hourly)
    cuts = np.searchsorted(cumulative, np.arange(BLOCK_SESSIONS, cumulative[-1], BLOCK_SESSIONS)) + 1
    bounds = np.unique(np.r_[0, cuts, len(hourly)])
    for lo, hi in itertools.pairwise(bounds):
        if hourly[lo:hi].any():
            yield int(lo), int(hi)


def _parts(traffic: Traffic, rngs: Callable[[int], np.random.Generator]) -> Iterator[Part]:
    """The plan block after block of hours, each block from its own random stream `rngs(number)`:
    memory bounded by a block, whatever the number of sessions."""
    for number, (lo, hi) in enumerate(_hour_blocks(traffic.hourly)):
        rng = rngs(number)
        end = _within_hours(traffic.first_hour + np.arange(lo, hi), traffic.hourly[lo:hi], rng)
        if traffic.late_share:
            end = np.where(rng.random(len(end)) < traffic.late_share, end - DAY, end)
        sessions = _sessions_ending(np.sort(end), traffic, rng)
        yield Part(sessions, _orders(sessions, traffic.people, traffic.statuses, rng))


def _sessions_ending(end: np.ndarray, traffic: Traffic, rng: np.random.Generator) -> Sessions:
    """Sessions ending at `end` (sorted): the day's funnel mix, products, users already signed up."""
    n, people = len(end), traffic.people
    day = (end // DAY).astype(np.int32)
    mix, buy, view = traffic.drifts
    kind = (rng.random(n)[:, None] > mix[day]).sum(axis=1)
    shapes = _shapes()
    shape_kind, counts = _shape_kinds()
    shape = np.empty((n, 5), dtype=shapes.dtype)
    for k in range(3):
        rows = np.flatnonzero(shape_kind == k)
        picked = rng.choice(rows, int((kind == k).sum()), p=counts[rows] / counts[rows].sum())
        shape[kind == k] = shapes[picked]
    eligible = np.searchsorted(people.created, end - HOUR, side="right")
    weight = people.cumulative_weight
    user = np.searchsorted(weight, rng.random(n) * weight[eligible - 1], side="right").astype(np.int32)
    viewed, carted = _scaled_products(shape, day, buy, view, rng)
    return _sessions(end, user, shape, _visits(shape, viewed, carted, rng))


def _visits(
    shape: np.ndarray, viewed: np.ndarray, carted: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Visits per session and, flat, their product, carted and repeat flags: each viewed product
    once in random order, then the session's repeated visit (if any)."""
    rows, cols = np.nonzero(viewed)
    browse = np.lexsort((rng.random(len(rows)), rows))
    rows, cols = rows[browse], cols[browse]
    again = np.flatnonzero(shape[:, 3] > 0)
    again_cart = shape[again, 4] > 0
    again_product = _pick_one(np.where(again_cart[:, None], carted[again], viewed[again]), rng)
    layout = np.argsort(np.concatenate([rows, again]), kind="stable")
    return (
        np.bincount(rows, minlength=len(shape)) + (shape[:, 3] > 0),
        np.concatenate([cols, again_product]).astype(np.int16)[layout],
        np.concatenate([carted[rows, cols], again_cart])[layout],
        np.concatenate([np.zeros(len(rows), bool), np.ones(len(again), bool)])[layout],
    )


def _sessions(
    end: np.ndarray, user: np.ndarray, shape: np.ndarray, visits: tuple[np.ndarray, ...]
) -> Sessions:
    """Sessions (already in time order) from their visits."""
    sizes, product, carted, repeat = visits
    return Sessions(
        end.astype(np.int32), user, shape[:, 0] == 1, _segment_offsets(sizes), product, carted, repeat
    )


def _recency_days(timeline: Timeline) -> float:
    """How fast the chance that an order is still open falls with its age (days)."""
    return max(1.0, timeline.days / 8)


def _course_statuses(created: np.ndarray, tau: float, rng: np.random.Generator) -> np.ndarray:
    """The course's status counts exactly, recent orders more likely open: every order at once."""
    n = len(created)
    status = np.full(n, 2, dtype=np.int8)
    preparing, shipped, _ = _allocate(n, STATUS_ORDERS)
    status[_recent_first(preparing, created, tau, np.arange(n), rng)] = 0
    status[_recent_first(shipped, created, 2 * tau, np.flatnonzero(status == 2), rng)] = 1
    return status


def _recent_first(
    k: int, created: np.ndarray, tau: float, pool: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """k of the `pool` indices, recent orders more likely (weight exp((t - last) / tau))."""
    keys = (created[pool] - created.max()) / tau + rng.gumbel(size=len(pool))
    return pool[np.argsort(-keys)[:k]]


@dataclass(frozen=True)
class Recency:
    """Order statuses a block at a time: an order is preparing with probability
    min(1, preparing * exp(-age / tau)), else shipped with min(1, shipped * exp(-age / 2 tau)),
    else delivered. The two factors are set from the hourly traffic so that the expected
    shares are the course's: the streamed counterpart of `_course_statuses`."""

    end: int  # seconds: the end of the timeline, from which ages count
    tau: float
    preparing: float
    shipped: float

    @classmethod
    def of(cls, timeline: Timeline, hourly: np.ndarray, first_hour: int) -> Recency:
        end, tau = timeline.days * DAY, _recency_days(timeline) * DAY
        age = end - (first_hour + np.arange(len(hourly)) + 0.5) * HOUR
        share = np.array(STATUS_ORDERS) / sum(STATUS_ORDERS)
        total = hourly.sum()
        preparing = share[0] * total / (hourly * np.exp(-age / tau)).sum()
        left = hourly * (1 - np.minimum(1, preparing * np.exp(-age / tau)))
        shipped = share[1] * total / (left * np.exp(-age / (2 * tau))).sum()
        return cls(end, tau, preparing, shipped)

    def __call__(self, created: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Status codes (ORDER_STATUSES) of orders placed at `created` (seconds)."""
        age = self.end - created.astype(np.int64)
        status = np.full(len(created), 2, dtype=np.int8)
        status[rng.random(len(created)) < self.shipped * np.exp(-age / (2 * self.tau))] = 1
        status[rng.random(len(created)) < self.preparing * np.exp(-age / self.tau)] = 0
        return status


def _orders(sessions: Sessions, people: People, statuses: Statuses, rng: np.random.Generator) -> Orders:
    """Orders of the checkout sessions: items = the carted products; course proportions for the rest."""
    checkout_session = np.flatnonzero(sessions.checkout)
    n = len(checkout_session)
    visit_session = np.repeat(np.arange(len(sessions.end), dtype=np.int32), np.diff(sessions.visit_start))
    is_item = sessions.carted & ~sessions.repeat & sessions.checkout[visit_session]
    order_of_session = np.cumsum(sessions.checkout, dtype=np.int32) - 1
    item_order = order_of_session[visit_session[is_item]]
    item_product = sessions.product[is_item]
    quantity = (1 + _deal(len(item_order), QUANTITIES, rng)).astype(np.int8)
    prices = np.array([round(p[2] * 100) for p in course.PRODUCTS], dtype=np.int64)
    cost = (
        np.bincount(item_order, weights=quantity * prices[item_product], minlength=n).round().astype(np.int32)
    )
    created = sessions.end[checkout_session] + 1
    user = sessions.user[checkout_session]

    status = statuses(created, rng)
    sent = np.flatnonzero(status > 0)
    delivered = np.flatnonzero(status == 2)
    service, estimate, delivery = (np.full(n, -1, dtype=np.int8) for _ in range(3))
    service[sent] = _deal(len(sent), SERVICE_ORDERS, rng)
    estimate_code = _deal(len(sent), ESTIMATE_DAYS, rng)
    estimate[sent] = np.where(estimate_code < 5, estimate_code + 1, -1)
    delivery[delivered] = 1 + _deal(len(delivered), DELIVERY_DAYS, rng)

    promo = np.full(n, -1, dtype=np.int8)
    codes = _deal(n, PROMO_ORDERS, rng)
    codes = codes[codes < len(PROMOS)]
    eligible = np.flatnonzero(cost > 100 * max(d for _, d, _ in PROMOS))
    promo[rng.permutation(eligible)[: len(codes)]] = codes[: len(eligible)]

    elsewhere = rng.random(n) < 0.15
    address = np.where(elsewhere, rng.integers(0, people.n_addresses, n), people.address[user])
    return Orders(
        created=created,
        address=address.astype(np.int32),
        promo=promo,
        status=status,
        service=service,
        ship_hours=rng.integers(SHIP_HOURS[0], SHIP_HOURS[1] + 1, n, dtype=np.int8),
        estimate_days=estimate,
        delivery_days=delivery,
        shipping_cents=rng.integers(100, 1000, n, dtype=np.int16),
        cost_cents=cost,
        item_start=_segment_offsets(np.bincount(item_order, minlength=n)),
        item_product=item_product.astype(np.int16),
        item_quantity=quantity,
    )


# ---- inventory ----------------------------------------------------------------------------


def _weekly_sales(orders: Orders, timeline: Timeline) -> np.ndarray:
    """Units sold of each product (columns) in the week before each inventory record (rows)."""
    m, weeks = len(course.PRODUCTS), timeline.weeks
    item_created = np.repeat(orders.created, np.diff(orders.item_start))
    week = np.searchsorted(timeline.recorded_at(), item_created, side="right")
    sold = np.bincount(
        week * m + orders.item_product, weights=orders.item_quantity, minlength=(weeks + 1) * m
    )
    return sold.reshape(-1, m)[:weeks]


def _inventory(timeline: Timeline, sold: np.ndarray, rng: np.random.Generator) -> pa.Table:
    """Weekly product states: week 1 is the course's; `sold` draws stock down, restocks refill it."""
    m, weeks = len(course.PRODUCTS), timeline.weeks
    recorded = timeline.recorded_at()
    selling_weeks = max((timeline.days - timeline.first_week_days) / 7, 1.0)
    demand = sold[1:].sum(axis=0) / selling_weeks
    reorder_point = rng.uniform(1.5, 2.5, m) * demand  # weeks of demand in stock and on order
    order_up_to = reorder_point + rng.uniform(1.0, 3.0, m) * demand
    stock = np.zeros((weeks, m), dtype=np.int64)
    stock[0] = [p[3] for p in course.PRODUCTS]
    arriving = np.zeros((weeks + 3, m), dtype=np.int64)
    for k in range(weeks):
        if k:
            stock[k] = np.maximum(stock[k - 1] - sold[k], 0) + arriving[k]
        position = stock[k] + arriving[k + 1 :].sum(axis=0)
        amount = np.where(position < reorder_point, np.ceil((order_up_to - position) / 10) * 10, 0).astype(
            np.int64
        )
        lead = 1 + (rng.random(m) < 0.35).astype(np.int64)
        arriving[k + lead, np.arange(m)] += amount
    return _frame(
        {
            "week": np.repeat(np.arange(1, weeks + 1), m),
            "recorded_at": _timestamps(np.repeat(recorded, m)),
            "product_id": _take(_product_ids(), np.tile(np.arange(m), weeks)),
            "name": pa.array([p[1] for p in course.PRODUCTS] * weeks),
            "price": np.tile([p[2] for p in course.PRODUCTS], weeks).astype(float),
            "inventory": stock.reshape(-1),
        }
    )


# ---- frames -----------------------------------------------------------------------------

IdsOf = Callable[[np.ndarray], pa.Array]  # row numbers -> their ids


@dataclass(frozen=True)
class Ids:
    users: IdsOf
    addresses: IdsOf
    products: pa.Array
    promos: pa.Array


def _indexed_uuids(key: int) -> IdsOf:
    """Row i's uuid4 as a function of (key, i), so that no table's ids need be kept in memory:
    splitmix64's finalizer, a bijection of 64-bit words, of key + 2i and key + 2i + 1."""
    multipliers = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)

    def mix(x: np.ndarray) -> np.ndarray:
        x = (x ^ (x >> np.uint64(30))) * multipliers[0]
        x = (x ^ (x >> np.uint64(27))) * multipliers[1]
        return x ^ (x >> np.uint64(31))

    def ids_of(index: np.ndarray) -> pa.Array:
        words = np.uint64(key) + 2 * np.asarray(index, dtype=np.uint64)
        halves = np.stack([mix(words), mix(words + np.uint64(1))], axis=1)
        return _uuid_array(_uuid4(halves.view(np.uint8).reshape(-1, 16)))

    return ids_of


def _stored_ids(ids: pa.Array) -> IdsOf:
    """Ids already held (a loaded warehouse's), by row number."""
    return lambda index: _take(ids, index)


def _chunk_rows(n: int) -> Iterator[tuple[int, np.ndarray]]:
    """(chunk number, row numbers) of n rows, BLOCK_SESSIONS rows a chunk."""
    for number, lo in enumerate(range(0, n, BLOCK_SESSIONS)):
        yield number, np.arange(lo, min(lo + BLOCK_SESSIONS, n))


def _addresses(ids: Ids, rows: np.ndarray, rng: np.random.Generator) -> pa.Table:
    """Street addresses; states in the course's proportions, zips within the state's range."""
    n = len(rows)
    state = _deal(n, [s[1] for s in STATES], rng)
    low, high = np.array([s[2] for s in STATES]), np.array([s[3] for s in STATES])
    zipcode = low[state] + (rng.random(n) * (high[state] - low[state] + 1)).astype(np.int64)
    number = rng.integers(1, 10 ** rng.integers(1, 6, n), dtype=np.int64)
    street = pc.binary_join_element_wise(
        pa.array(number).cast(pa.string()),
        _labels(rng.integers(0, len(STREETS), n), STREETS),
        _labels(rng.integers(0, len(SUFFIXES), n), SUFFIXES),
        " ",
    )
    return _frame(
        {
            "address_id": ids.addresses(rows),
            "address": street,
            "zipcode": zipcode,
            "state": _labels(state, [s[0] for s in STATES]),
            "country": _labels(np.zeros(n), ["United States"]),
        }
    )


def _users(
    ids: Ids, people: People, timeline: Timeline, rows: np.ndarray, rng: np.random.Generator
) -> pa.Table:
    """Names, unique emails (initial + last name + row number) and phone numbers."""
    n = len(rows)
    first = _labels(rng.integers(0, len(FIRST_NAMES), n), FIRST_NAMES)
    last = _labels(rng.integers(0, len(LAST_NAMES), n), LAST_NAMES)
    local = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(first, 0, 1), last, pa.array(rows).cast(pa.string()), ""
    )
    email = pc.binary_join_element_wise(
        pc.utf8_lower(local), _labels(rng.integers(0, len(DOMAINS), n), DOMAINS), "@"
    )
    digits = (ord("0") + rng.integers(0, 10, (n, 12))).astype(np.uint8)
    digits[:, [3, 7]] = ord("-")
    created = people.created[rows]
    return _frame(
        {
            "user_id": ids.users(rows),
            "first_name": first,
            "last_name": last,
            "email": email,
            "phone_number": _fixed_strings(digits),
            "created_at": _timestamps(created),
            "updated_at": _timestamps(_updated(created, timeline, rng)),
            "address_id": ids.addresses(people.address[rows]),
        }
    )


def _reference_frames(ids: Ids) -> Iterator[tuple[str, pa.Table]]:
    yield (
        "promos",
        _frame(
            {
                "promo_id": ids.promos,
                "discount": np.array([p[1] for p in PROMOS], dtype=np.int64),
                "status": pa.array([p[2] for p in PROMOS]),
            }
        ),
    )
    yield (
        "products",
        _frame(
            {
                "product_id": ids.products,
                "name": pa.array([p[1] for p in course.PRODUCTS]),
                "price": np.array([p[2] for p in course.PRODUCTS], dtype=float),
                "inventory": np.array([p[3] for p in course.PRODUCTS], dtype=np.int64),
            }
        ),
    )


def _url(kind: str, ids: pa.Array) -> pa.Array:
    """https://greenary.com/<kind>/<id>"""
    return pc.binary_join_element_wise(f"{PAGE_URL_PREFIX}/{kind}/", ids, "")


def _block(part: Part, ids: Ids, rng: np.random.Generator) -> Iterator[tuple[str, pa.Table]]:
    """Orders, order items and events of one part of the plan, with new session and order ids."""
    s, o = part.sessions, part.orders
    n = len(o.created)
    session_ids, order_bytes = uuids(len(s.end), rng), _random_uuid4(n, rng)
    order_ids = _uuid_array(order_bytes)
    users, user_of_session = np.unique(s.user, return_inverse=True)  # each user's id made once
    user_ids = _take(ids.users(users), user_of_session)  # of each session
    yield (
        "orders",
        _frame(
            {
                "order_id": order_ids,
                "user_id": user_ids.filter(pa.array(s.checkout)),
                "promo_id": _take(ids.promos, o.promo),
                "address_id": ids.addresses(o.address),
                "created_at": _timestamps(o.created),
                "order_cost": o.cost_cents / 100,
                "shipping_cost": o.shipping_cents / 100,
                "order_total": o.total_cents() / 100,
                "tracking_id": pc.if_else(
                    pa.array(o.status > 0), uuid_strings(n, rng), pa.nulls(n, pa.string())
                ),
                "shipping_service": _labels(o.service, SHIPPING_SERVICES),
                "estimated_delivery_at": _after_days(o.created, o.estimate_days),
                "delivered_at": _after_days(o.created, o.delivery_days),
                "status": _labels(o.status, ORDER_STATUSES),
            }
        ),
    )
    yield (
        "order_items",
        _frame(
            {
                "order_id": _take(order_ids, np.repeat(np.arange(n), np.diff(o.item_start))),
                "product_id": _take(ids.products, o.item_product),
                "quantity": o.item_quantity.astype(np.int64),
            }
        ),
    )
    yield "events", _events(part, ids, session_ids, user_ids, order_ids, _uuid_text(order_bytes), rng)


def _after_days(created: np.ndarray, days: np.ndarray) -> np.ndarray:
    """created + days (whole days); NaT where days is -1."""
    return _timestamps(created + np.maximum(days, 0).astype(np.int64) * DAY, days < 0)


def _browse_times(
    sessions: Sessions, is_cart: np.ndarray, session: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Seconds of the page_view/add_to_cart events: seconds to minutes apart, ending at the session's end."""
    gap = np.where(is_cart, rng.integers(5, 100, len(session)), rng.integers(15, 150, len(session)))
    first = np.r_[True, session[1:] != session[:-1]]
    gap[first] = 0
    elapsed = np.cumsum(gap)
    starts = np.flatnonzero(first)
    elapsed -= np.repeat(elapsed[starts], np.diff(np.r_[starts, len(session)]))
    duration = elapsed[np.r_[starts[1:] - 1, len(session) - 1]]
    last_step = sessions.end - np.where(sessions.checkout, rng.integers(10, 60, len(sessions.end)), 0)
    return (last_step - duration)[session] + elapsed


def _events(
    part: Part,
    ids: Ids,
    session_ids: pa.Array,
    user_ids: pa.Array,
    order_ids: pa.Array,
    order_texts: pa.Array,
    rng: np.random.Generator,
) -> pa.Table:
    """page_view (and add_to_cart) per visit, then checkout, then package_shipped hours later
    (`order_texts`: the orders' ids as the text their pages' urls end with)."""
    s, o = part.sessions, part.orders
    per_visit = 1 + s.carted.astype(np.int64)
    visit = np.repeat(np.arange(len(s.carted)), per_visit)
    is_cart = np.zeros(len(visit), dtype=bool)
    is_cart[np.cumsum(per_visit)[s.carted] - 1] = True
    session = np.repeat(np.arange(len(s.end)), np.diff(s.visit_start))[visit]
    browse_time = _browse_times(s, is_cart, session, rng)

    checkout_session = np.flatnonzero(s.checkout)
    sent = np.flatnonzero(o.status > 0)
    shipped_at = o.created[sent] + o.ship_hours[sent].astype(np.int64) * HOUR
    n_browse, n_checkout, n_sent = len(visit), len(checkout_session), len(sent)
    event_session = np.concatenate([session, checkout_session, checkout_session[sent]])
    sent_order_ids = _take(order_ids, sent)
    kind = np.concatenate([is_cart.astype(np.int64), np.full(n_checkout, 2), np.full(n_sent, 3)])
    return _frame(
        {
            "event_id": uuids(len(event_session), rng),
            "session_id": _take(session_ids, event_session),
            "user_id": _take(user_ids, event_session),
            "page_url": pa.concat_arrays(
                [
                    _take(_product_pages(), s.product[visit]),
                    _url("checkout", order_texts),
                    _url("shipping", _take(order_texts, sent)),
                ]
            ),
            "created_at": _timestamps(np.concatenate([browse_time, s.end[checkout_session], shipped_at])),
            "event_type": _labels(kind, EVENT_TYPES),
            "order_id": pa.concat_arrays([pa.nulls(n_browse, pa.uuid()), order_ids, sent_order_ids]),
            "product_id": pa.concat_arrays(
                [_take(ids.products, s.product[visit]), pa.nulls(n_checkout + n_sent, pa.uuid())]
            ),
        }
    )


MAX_SCALE = 100_000  # about 360 M events: beyond it the timeline and ids no longer fit the plan


def generate(scale: int = 1, seed: int = DEFAULT_SEED) -> Iterator[tuple[str, pa.Table]]:
    """Yields (table_name, Arrow table) chunks for the seven raw tables plus 'product_inventory_by_week'."""
    try:
        scale = operator.index(scale)
    except TypeError:
        scale = 0
    if scale < 1:
        raise ValueError("scale must be a whole number >= 1")
    return _chunks(scale, int(seed))


def _chunks(scale: int, seed: int) -> Iterator[tuple[str, pa.Table]]:
    """Addresses, users, promos and products; then block after block of sessions with their
    orders and events; last the weekly inventory, which the blocks' sales draw down.

    Random streams: 0 the people and the timeline's traffic, 1 the keys of the user and address
    ids, (1, 0, i) and (1, 1, i) chunk i of addresses and of users, (2, i) block i's plan and
    (5, i) its rows, 6 the inventory."""
    # Arrow's buffers from the C library's allocator, as numpy's are: pyarrow's default,
    # mimalloc, keeps more of the pages that each block's strings free (`greenery generate
    # --scale 10000` peaked at 952 MiB with it, 885 MiB without, in the same time)
    pa.set_memory_pool(pa.system_memory_pool())
    rng = _rng(seed, 0)
    timeline = Timeline.for_scale(scale)
    people = _people(USERS * scale, ADDRESSES * scale, timeline, rng)
    user_key, address_key = (int(key) for key in _rng(seed, 1).integers(0, 2**63, 2))
    ids = Ids(
        users=_indexed_uuids(user_key),
        addresses=_indexed_uuids(address_key),
        products=_product_ids(),
        promos=pa.array([p[0] for p in PROMOS]),
    )
    for number, rows in _chunk_rows(people.n_addresses):
        yield "addresses", _addresses(ids, rows, _rng(seed, 1, 0, number))
    for number, rows in _chunk_rows(len(people.created)):
        yield "users", _users(ids, people, timeline, rows, _rng(seed, 1, 1, number))
    yield from _reference_frames(ids)
    if scale == 1:
        parts: Iterator[Part] = iter([_course_part(timeline, people, rng)])
    else:
        parts = _parts(_traffic(scale, timeline, people, rng), lambda number: _rng(seed, 2, number))
    sold = np.zeros((timeline.weeks, len(course.PRODUCTS)))
    for number, part in enumerate(parts):
        sold += _weekly_sales(part.orders, timeline)
        yield from _block(part, ids, _rng(seed, 5, number))
    if scale == 1:
        yield (
            "product_inventory_by_week",
            pa.Table.from_pandas(course.inventory_by_week(), preserve_index=False),
        )
    else:
        yield "product_inventory_by_week", _inventory(timeline, sold, _rng(seed, 6))


def _traffic(scale: int, timeline: Timeline, people: People, rng: np.random.Generator) -> Traffic:
    """578 * scale sessions over the timeline's hours (seasonal), with a drifting funnel."""
    weights = _hourly_weights(timeline, rng)
    hourly = rng.multinomial(578 * scale, weights / weights.sum())
    return Traffic(hourly, 0, _drifts(timeline, rng), people, Recency.of(timeline, hourly, 0))


@cache
def _product_ids() -> pa.Array:
    """The course's products' ids, as Arrow uuids (made once: every block takes from them)."""
    return _uuid_array(np.array([list(uuid.UUID(p[0]).bytes) for p in course.PRODUCTS], dtype=np.uint8))


@cache
def _product_pages() -> pa.Array:
    """The products' page urls, in the products' order (made once: every block takes from them)."""
    return _url("product", pa.array([p[0] for p in course.PRODUCTS]))


# ---- the next days of an existing warehouse ------------------------------------------------

LATE_SESSION_SHARE = 0.05  # of a new day's sessions, arriving a day late (dated the day before)
LATE_EVENT_SHARE = 0.1  # of the last day's sessions without a checkout, given one more page view


@dataclass(frozen=True)
class Loaded:
    """What a warehouse already holds, for `next_days` to continue (times in seconds since START)."""

    user_ids: pa.Array  # in order of creation
    user_created: np.ndarray  # ascending
    user_address: np.ndarray  # index into address_ids
    address_ids: pa.Array
    last_event: int  # the latest event's time, shipping aside (it comes hours after its day)
    open_sessions: pa.Array  # sessions of the last day without a checkout (late events go there)
    open_users: pa.Array
    open_last: np.ndarray  # their last event's time
    generation: Generation | None  # what the data was generated with (None: loaded from CSVs)


def first_new_day(loaded: Loaded) -> int:
    """The day after the latest event (days since START)."""
    return int(loaded.last_event // DAY) + 1


def next_days(
    loaded: Loaded, days: int, scale: int = 1, seed: int = DEFAULT_SEED
) -> Iterator[tuple[str, pa.Table]]:
    """Orders, order items and events of the `days` days after the warehouse's latest event.

    The same seed and the warehouse's state give the same rows. Traffic continues the scale's
    rate and seasonality (`_hourly_weights` over the extended timeline) and the funnel its
    drift; sessions belong to the loaded users. Some arrive late: LATE_SESSION_SHARE of the
    sessions are dated a day earlier, and LATE_EVENT_SHARE of the last loaded day's sessions
    without a checkout get one more page view, a little after their last event.
    """
    if days < 1:
        raise ValueError("days must be a whole number >= 1")
    first = first_new_day(loaded)
    rng = _rng(seed, 3, first)
    timeline = Timeline.of_days(first + days)
    base = Timeline.for_scale(scale)
    weights = _hourly_weights(Timeline.of_days(max(first + days, base.days)), rng)
    rate = 578 * scale / weights[: base.days * 24].sum()
    expected = rate * weights[first * 24 : (first + days) * 24]  # sessions per hour
    people = People(
        created=loaded.user_created,
        address=loaded.user_address,
        n_addresses=len(loaded.address_ids),
        cumulative_weight=np.cumsum(rng.lognormal(0, 1.0, len(loaded.user_created))),
    )
    traffic = Traffic(
        rng.poisson(expected),
        first * 24,
        _drifts(timeline, rng),
        people,
        Recency.of(timeline, expected, first * 24),
        LATE_SESSION_SHARE,
    )
    ids = Ids(
        users=_stored_ids(loaded.user_ids),
        addresses=_stored_ids(loaded.address_ids),
        products=_product_ids(),
        promos=pa.array([p[0] for p in PROMOS]),
    )
    for number, part in enumerate(_parts(traffic, lambda number: _rng(seed, 4, first, 0, number))):
        yield from _block(part, ids, _rng(seed, 4, first, 1, number))
    yield "events", _late_page_views(loaded, rng)


def _late_page_views(loaded: Loaded, rng: np.random.Generator) -> pa.Table:
    """One more page view for LATE_EVENT_SHARE of the open sessions, 15 s to 2.5 min after their last."""
    late = np.flatnonzero(rng.random(len(loaded.open_sessions)) < LATE_EVENT_SHARE)
    product = rng.integers(0, len(course.PRODUCTS), len(late))
    return _frame(
        {
            "event_id": uuids(len(late), rng),
            "session_id": _take(loaded.open_sessions, late),
            "user_id": _take(loaded.open_users, late),
            "page_url": _take(_product_pages(), product),
            "created_at": _timestamps(loaded.open_last[late] + rng.integers(15, 150, len(late))),
            "event_type": _labels(np.zeros(len(late)), EVENT_TYPES),
            "order_id": pa.nulls(len(late), pa.uuid()),
            "product_id": _take(_product_ids(), product),
        }
    )
