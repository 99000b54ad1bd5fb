"""The synthetic data generator: course aggregates at scale 1, invariants at every scale."""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from greenery.data import course
from greenery.data.dirty import gather
from greenery.data.generate import (
    DEFAULT_SEED,
    PRODUCT_SESSIONS,
    STATUS_ORDERS,
    Generation,
    Timeline,
    as_text,
    generate,
    uuids,
)
from greenery.data.load import UUID_TEXT
from greenery.data.schema import INVENTORY_BY_WEEK, ORDER_STATUSES, TABLES, TABLES_BY_NAME
from greenery.warehouse import store
from greenery.warehouse.build import fresh_raw

LARGER = 20  # a scale with several weeks of data, still fast
ALL_TABLES = {t.name for t in TABLES} | {INVENTORY_BY_WEEK.name}
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
COURSE_DATA = Path(
    os.environ.get("GREENERY_COURSE_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "greenery-course-data"
)


def frames(scale: int, seed: int) -> dict[str, pd.DataFrame]:
    """Generator output (Arrow tables, block by block) as one pandas frame per table, ids as text."""
    return gather(generate(scale, seed))


_cached_frames = cache(frames)


def collect(scale: int = 1, seed: int = DEFAULT_SEED) -> dict[str, pd.DataFrame]:
    """Generator output as one frame per table, generated once per test run (copies, safe to modify)."""
    return {name: frame.copy() for name, frame in _cached_frames(scale, seed).items()}


def sessions_of(events: pd.DataFrame) -> pd.DataFrame:
    """Per session: how many events of each type."""
    return events.pivot_table(
        index="session_id", columns="event_type", values="event_id", aggfunc="count", fill_value=0
    )


def product_sessions(data: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per product name: sessions that viewed it, checkout sessions whose order contains it."""
    events, items = data["events"], data["order_items"]
    viewed = events[events.event_type == "page_view"].groupby("product_id").session_id.nunique()
    checkouts = events[events.event_type == "checkout"][["session_id", "order_id"]]
    bought = items.merge(checkouts, on="order_id").groupby("product_id").session_id.nunique()
    names = data["products"].set_index("product_id").name
    frame = pd.DataFrame({"viewed": viewed, "bought": bought}).fillna(0).astype(int)
    return frame.set_index(names.reindex(frame.index).to_numpy())


def course_csvs() -> dict[str, pd.DataFrame]:
    if not COURSE_DATA.is_dir():
        pytest.skip(f"course data not found at {COURSE_DATA}")
    frames = {t.name: pd.read_csv(COURSE_DATA / f"{t.name}.csv") for t in TABLES}
    for frame in frames.values():
        for column in frame.columns:
            if column.endswith("_at"):
                frame[column] = pd.to_datetime(frame[column]).dt.tz_localize(None)
    return frames


@pytest.fixture(params=[1, LARGER], ids=["scale1", f"scale{LARGER}"])
def data(request: pytest.FixtureRequest) -> dict[str, pd.DataFrame]:
    return collect(request.param)


# ---- shape and kinds -------------------------------------------------------------------


def test_yields_every_table_with_its_columns_and_value_kinds(data: dict[str, pd.DataFrame]) -> None:
    assert set(data) == ALL_TABLES
    for name, frame in data.items():
        table = TABLES_BY_NAME.get(name, INVENTORY_BY_WEEK)
        assert list(frame.columns) == table.column_names, name
        for column in table.columns:
            values = frame[column.name]
            if column.type in ("varchar", "uuid"):
                assert pd.api.types.is_string_dtype(values), (name, column.name)
                if column.type == "uuid":  # the loader's check: the models cast ids to uuids
                    assert values.dropna().str.fullmatch(UUID_TEXT).all(), (name, column.name)
            elif column.type == "integer":
                assert values.dtype == "int64", (name, column.name)
            elif column.type == "real":
                assert values.dtype == "float64", (name, column.name)
                assert np.allclose(values, values.round(2)), (name, column.name)
            else:
                assert values.dtype == "datetime64[us]", (name, column.name)
            if not column.nullable:
                assert values.notna().all(), (name, column.name)


def test_rejects_a_scale_below_one() -> None:
    with pytest.raises(ValueError):
        generate(0)


# ---- invariants at scale 1 and larger --------------------------------------------------------


def test_primary_keys_are_unique_and_ids_uuid4(data: dict[str, pd.DataFrame]) -> None:
    for table in (*TABLES, INVENTORY_BY_WEEK):
        frame = data[table.name]
        assert not frame.duplicated(list(table.primary_key)).any(), table.name
    for name, column in [("users", "user_id"), ("addresses", "address_id"), ("orders", "order_id"),
                         ("events", "event_id"), ("events", "session_id")]:  # fmt: skip
        assert data[name][column].str.fullmatch(UUID4).all(), (name, column)


def test_foreign_keys_resolve(data: dict[str, pd.DataFrame]) -> None:
    for table in TABLES:
        for fk in table.foreign_keys:
            values = data[table.name][fk.column].dropna()
            missing = ~values.isin(data[fk.table][fk.ref_column])
            assert not missing.any(), f"{table.name}.{fk.column}: {values[missing].head(3).tolist()}"


def test_money_identities_hold_to_the_cent(data: dict[str, pd.DataFrame]) -> None:
    orders, items, products = data["orders"], data["order_items"], data["products"]
    cost = (
        items.merge(products, on="product_id")
        .assign(value=lambda f: f.quantity * f.price)
        .groupby("order_id")
        .value.sum()
        .round(2)
    )
    orders = orders.set_index("order_id")
    assert (cost.reindex(orders.index) - orders.order_cost).abs().max() < 0.005
    discount = orders.promo_id.map(data["promos"].set_index("promo_id").discount).fillna(0)
    total = (orders.order_cost + orders.shipping_cost - discount).round(2)
    assert (total - orders.order_total).abs().max() < 0.005
    assert (orders.order_total > 0).all()
    assert items.quantity.between(1, 4).all()


def test_exactly_one_active_promo_with_code_like_ids(data: dict[str, pd.DataFrame]) -> None:
    promos = data["promos"]
    assert (promos.status == "active").sum() == 1
    assert set(promos.status) == {"active", "inactive"}
    assert promos.promo_id.str.contains(" ").any() and promos.promo_id.str.contains("[A-Z]").any()


def test_events_carry_the_ids_of_their_type(data: dict[str, pd.DataFrame]) -> None:
    events = data["events"]
    browse = events.event_type.isin(["page_view", "add_to_cart"])
    assert set(events.event_type) == {"page_view", "add_to_cart", "checkout", "package_shipped"}
    assert events.product_id[browse].notna().all() and events.order_id[browse].isna().all()
    assert events.order_id[~browse].notna().all() and events.product_id[~browse].isna().all()
    kind = events.event_type.map(
        {
            "page_view": "product",
            "add_to_cart": "product",
            "checkout": "checkout",
            "package_shipped": "shipping",
        }
    )
    expected = "https://greenary.com/" + kind + "/" + events.product_id.fillna(events.order_id)
    assert (events.page_url == expected).all()
    assert events.page_url.str.fullmatch(rf"https://greenary\.com/(product|checkout|shipping)/{UUID4}").all()


def test_sessions_belong_to_one_user_and_run_in_order(data: dict[str, pd.DataFrame]) -> None:
    events = data["events"]
    assert (events.groupby("session_id").user_id.nunique() == 1).all()
    rank = events.event_type.map({"page_view": 0, "add_to_cart": 0, "checkout": 1, "package_shipped": 2})
    steps = events.assign(rank=rank).groupby(["session_id", "rank"]).created_at.agg(["min", "max"]).unstack()
    browse_end, checkout_at, shipped_at = steps[("max", 0)], steps[("min", 1)], steps[("min", 2)]
    assert (browse_end[checkout_at.notna()] < checkout_at.dropna()).all()
    assert (checkout_at[shipped_at.notna()] < shipped_at.dropna()).all()
    # every add_to_cart follows a page_view of the same product in the session
    views = events[events.event_type == "page_view"].groupby(["session_id", "product_id"]).created_at.min()
    carts = events[events.event_type == "add_to_cart"].set_index(["session_id", "product_id"]).created_at
    assert (views.reindex(carts.index) < carts).all()
    # users exist before their sessions
    first = events.groupby("session_id").agg(user_id=("user_id", "first"), start=("created_at", "min"))
    signed_up = first.user_id.map(data["users"].set_index("user_id").created_at)
    assert (signed_up < first.start).all()
    assert (data["users"].updated_at >= data["users"].created_at).all()


def test_orders_follow_their_checkout_and_ship_in_the_same_session(data: dict[str, pd.DataFrame]) -> None:
    events, orders = data["events"], data["orders"].set_index("order_id")
    checkouts = events[events.event_type == "checkout"].set_index("order_id")
    assert checkouts.index.is_unique and set(checkouts.index) == set(orders.index)
    assert (orders.created_at - checkouts.created_at.reindex(orders.index) == pd.Timedelta(seconds=1)).all()
    assert (orders.user_id == checkouts.user_id.reindex(orders.index)).all()
    shipped = events[events.event_type == "package_shipped"].set_index("order_id")
    assert shipped.index.is_unique
    assert set(shipped.index) == set(orders.index[orders.status != "preparing"])
    assert (shipped.session_id == checkouts.session_id.reindex(shipped.index)).all()
    assert (shipped.created_at > orders.created_at.reindex(shipped.index)).all()


def test_order_statuses_and_shipping_fields(data: dict[str, pd.DataFrame]) -> None:
    orders = data["orders"]
    assert set(orders.status) == {"preparing", "shipped", "delivered"}
    preparing, delivered = orders.status == "preparing", orders.status == "delivered"
    shipping = ["shipping_service", "tracking_id", "estimated_delivery_at", "delivered_at"]
    assert orders.loc[preparing, shipping].isna().all().all()
    assert orders.loc[~preparing, ["shipping_service", "tracking_id"]].notna().all().all()
    assert set(orders.shipping_service.dropna()) == {"ups", "fedex", "usps", "dhl"}
    assert orders.delivered_at[delivered].notna().all() and orders.delivered_at[~delivered].isna().all()
    assert (orders.delivered_at[delivered] > orders.created_at[delivered]).all()


def test_larger_scale_statuses_keep_the_course_shares_and_recent_orders_open() -> None:
    """Drawn a block at a time by the order's age, the statuses keep the course's shares, and
    the orders still preparing are the most recent, then the shipped ones."""
    orders = collect(LARGER)["orders"]
    shares = orders.status.value_counts(normalize=True)
    for status, count in zip(ORDER_STATUSES, STATUS_ORDERS, strict=True):
        assert abs(shares[status] - count / sum(STATUS_ORDERS)) < 0.02, status
    placed = orders.groupby("status").created_at.median()
    assert placed["preparing"] > placed["shipped"] > placed["delivered"]


def test_order_items_are_the_products_the_session_carted(data: dict[str, pd.DataFrame]) -> None:
    events, items = data["events"], data["order_items"]
    checkouts = events[events.event_type == "checkout"][["session_id", "order_id"]]
    carted = events[events.event_type == "add_to_cart"][["session_id", "product_id"]].drop_duplicates()
    in_checkout = carted.merge(checkouts, on="session_id")
    bought = items.merge(checkouts, on="order_id")[["session_id", "product_id"]]
    assert set(map(tuple, bought.to_numpy())) == set(
        map(tuple, in_checkout[["session_id", "product_id"]].to_numpy())
    )


def test_addresses_users_and_zipcodes(data: dict[str, pd.DataFrame]) -> None:
    addresses, users = data["addresses"], data["users"]
    assert addresses.zipcode.between(1000, 99999).all() and (addresses.zipcode < 10000).any()
    assert (addresses.country == "United States").all()
    assert users.email.is_unique and users.phone_number.str.fullmatch(r"\d{3}-\d{3}-\d{4}").all()


def test_products_are_the_course_products(data: dict[str, pd.DataFrame]) -> None:
    products = data["products"]
    assert list(products.itertuples(index=False, name=None)) == list(course.PRODUCTS)


# ---- scale 1 reproduces the course --------------------------------------------------------------


def test_scale_1_reproduces_the_course_counts() -> None:
    data = collect(1)
    counts = {name: len(frame) for name, frame in data.items()}
    assert counts == {
        "addresses": 150, "users": 130, "promos": 6, "products": 30, "orders": 361, "order_items": 862,
        "events": 3553, "product_inventory_by_week": 120,
    }  # fmt: skip
    events, orders = data["events"], data["orders"]
    assert events.event_type.value_counts().to_dict() == {
        "page_view": 1871, "add_to_cart": 986, "checkout": 361, "package_shipped": 335,
    }  # fmt: skip
    funnel = (sessions_of(events) > 0).sum()
    assert len(sessions_of(events)) == 578
    assert (funnel["page_view"], funnel["add_to_cart"], funnel["checkout"]) == (578, 467, 361)
    assert funnel["package_shipped"] == 335
    assert orders.status.value_counts().to_dict() == {"delivered": 305, "shipped": 30, "preparing": 26}
    assert events.user_id.nunique() == 124
    buyers = orders.groupby("user_id").size().clip(upper=3).value_counts()
    assert buyers.to_dict() == {1: 25, 2: 28, 3: 71}
    promos = data["promos"].set_index("promo_id")
    assert promos.discount.to_dict() == {
        "task-force": 2, "instruction set": 13, "leverage": 10,
        "Optional": 17, "Mandatory": 20, "Digitized": 11,
    }  # fmt: skip
    assert promos.status["leverage"] == "active"


def test_scale_1_reproduces_the_course_product_conversion() -> None:
    per_product = product_sessions(collect(1))
    expected = {
        name: counts for (_, name, _, _), counts in zip(course.PRODUCTS, PRODUCT_SESSIONS, strict=True)
    }
    assert {name: (row.viewed, row.bought) for name, row in per_product.iterrows()} == expected
    conversion = (per_product.bought / per_product.viewed * 100).sort_values()
    assert (conversion.index[0], round(conversion.iloc[0], 2)) == ("Pothos", 34.43)
    assert (conversion.index[-1], round(conversion.iloc[-1], 2)) == ("String of pearls", 60.94)


def test_scale_1_spans_the_course_days() -> None:
    data = collect(1)
    orders, events = data["orders"].created_at, data["events"].created_at
    assert orders.min() >= pd.Timestamp("2021-02-10") and orders.max() < pd.Timestamp("2021-02-12")
    assert orders.dt.floor("h").nunique() == 48  # 7.52 orders per hour, as in the course
    assert pd.Timestamp("2021-02-09 23:30") <= events.min() < pd.Timestamp("2021-02-10")
    assert pd.Timestamp("2021-02-12 04:00") < events.max() < pd.Timestamp("2021-02-12 10:00")
    delivered = data["orders"][data["orders"].status == "delivered"]
    hours = (delivered.delivered_at - delivered.created_at).dt.total_seconds() / 3600
    assert round(hours.mean(), 1) == 93.4


def test_scale_1_inventory_is_the_course_weeks() -> None:
    pd.testing.assert_frame_equal(collect(1)["product_inventory_by_week"], course.inventory_by_week())


def test_scale_1_is_exact_for_any_seed() -> None:
    data = collect(1, seed=7)
    assert len(data["orders"]) == 361 and len(data["events"]) == 3553
    assert (sessions_of(data["events"]) > 0).sum()[["page_view", "add_to_cart", "checkout"]].tolist() == [
        578, 467, 361,
    ]  # fmt: skip
    per_product = product_sessions(data)
    assert per_product.loc["Pothos"].tolist() == [61, 21]


def test_scale_1_matches_the_course_csvs() -> None:
    real, ours = course_csvs(), collect(1)
    for name, frame in real.items():
        assert len(ours[name]) == len(frame), name
    for column in ("event_type",):
        assert (
            ours["events"][column].value_counts().to_dict() == real["events"][column].value_counts().to_dict()
        )
    for column in ("status", "shipping_service", "promo_id"):
        assert (
            ours["orders"][column].value_counts().to_dict() == real["orders"][column].value_counts().to_dict()
        )
    assert (
        ours["order_items"].quantity.value_counts().to_dict()
        == real["order_items"].quantity.value_counts().to_dict()
    )
    sizes = [d["order_items"].groupby("order_id").size().value_counts().to_dict() for d in (ours, real)]
    assert sizes[0] == sizes[1]
    assert product_sessions(ours).sort_index().equals(product_sessions(real).sort_index())
    assert (ours["addresses"].zipcode < 10000).sum() == (real["addresses"].zipcode < 10000).sum()
    assert (
        ours["addresses"].state.value_counts().to_dict() == real["addresses"].state.value_counts().to_dict()
    )


# ---- determinism --------------------------------------------------------------------------------


def test_same_seed_same_output_and_other_seed_other_output() -> None:
    first, again, other = frames(3, seed=11), frames(3, seed=11), frames(3, seed=12)
    for name in ALL_TABLES - {"promos", "products"}:
        pd.testing.assert_frame_equal(first[name], again[name])
        if name != INVENTORY_BY_WEEK.name:  # at scale 3 the data fits in week 1: course stock
            assert not first[name].equals(other[name]), name
    assert not collect(1)["events"].equals(collect(1, seed=7)["events"])


# ---- larger scales --------------------------------------------------------------------------------


def test_rows_grow_with_scale() -> None:
    small, large = collect(1), collect(LARGER)
    assert len(large["users"]) == LARGER * len(small["users"])
    assert len(large["addresses"]) == LARGER * len(small["addresses"])
    assert sessions_of(large["events"]).shape[0] == LARGER * 578
    assert 0.85 < len(large["events"]) / (LARGER * len(small["events"])) < 1.15
    assert 0.85 < len(large["orders"]) / (LARGER * len(small["orders"])) < 1.15


def test_time_span_grows_with_scale() -> None:
    def span(scale: int) -> pd.Timedelta:
        orders = collect(scale)["orders"].created_at
        return orders.max() - orders.min()

    assert span(1) < span(3) < span(100)
    assert Timeline.for_scale(1).days == 2 and Timeline.for_scale(1000).days >= 365
    # from scale 2: four weekly inventory records, each after a week of sales
    assert all(Timeline.for_scale(s).days >= 28 for s in (2, 3, 10))
    assert all(Timeline.for_scale(s).weeks >= 4 for s in (1, 2, 10, 100, 1000))


def test_larger_scale_has_seasonality_and_drifting_funnel() -> None:
    events = collect(LARGER)["events"]
    starts = events.groupby("session_id").agg(
        start=("created_at", "min"), checkout=("event_type", lambda t: (t == "checkout").any())
    )
    by_hour = starts.groupby(starts.start.dt.hour).size()
    assert by_hour.max() > 1.5 * by_hour.min()  # daily seasonality
    weekly = starts.groupby(starts.start.dt.to_period("W")).checkout.mean()
    assert weekly.max() - weekly.min() > 0.03  # conversion drifts week to week
    conversion = product_sessions(collect(LARGER)).pipe(lambda f: f.bought / f.viewed)
    assert conversion.max() > 1.4 * conversion.min()  # and differs by product


def test_larger_scale_inventory_sells_down_restocks_and_runs_out() -> None:
    data = collect(LARGER)
    weekly = data["product_inventory_by_week"]
    weeks = weekly.week.max()
    assert weeks >= 4 and len(weekly) == 30 * weeks
    assert (weekly.inventory >= 0).all() and (weekly.inventory == 0).any()
    first = weekly[weekly.week == 1].set_index("product_id").inventory
    assert first.to_dict() == {p[0]: p[3] for p in course.PRODUCTS}
    recorded = weekly.groupby("week").recorded_at.first()
    assert (recorded.diff().dropna() == pd.Timedelta(days=7)).all()
    assert recorded.iloc[-1] >= data["orders"].created_at.max()
    change = weekly.pivot(index="week", columns="product_id", values="inventory").diff()
    assert (change < 0).any().any() and (change > 0).any().any()


# ---- into the warehouse ---------------------------------------------------------------------------


def test_write_raw_loads_every_table_with_its_ids_as_uuids(tmp_path: Path) -> None:
    """The generator's Arrow uuids land in DuckDB uuid columns, with the text the generator's
    ids have as text."""
    path = tmp_path / "greenery.duckdb"
    counts = store.write_raw(generate(1), path)
    data = collect(1)
    assert counts == {name: len(frame) for name, frame in data.items()}
    assert store.raw_counts(path) == counts
    with duckdb.connect(str(store.raw_path(path)), read_only=True) as con:
        for name, (schema, table) in store.RAW_TABLES.items():
            for column in (c for c in table.columns if c.type == "uuid"):
                (kind,) = con.execute(
                    "select data_type from information_schema.columns"
                    " where table_schema = ? and table_name = ? and column_name = ?",
                    [schema, name, column.name],
                ).fetchone()
                stored = con.execute(f"select cast({column.name} as varchar) from {schema}.{name}").fetchall()
                assert kind == "UUID", (name, column.name)
                assert Counter(value for (value,) in stored) == Counter(
                    None if pd.isna(value) else value for value in data[name][column.name]
                ), (name, column.name)


def test_the_raw_load_records_what_generated_it(tmp_path: Path) -> None:
    """What `greenery generate --next-days` continues: the scale and seed of generated data,
    nothing for data from elsewhere or a raw catalog written before the record had them."""
    generated, loaded = tmp_path / "generated" / "greenery.duckdb", tmp_path / "loaded" / "greenery.duckdb"
    fresh_raw(generated, scale=2, seed=7)
    store.write_raw(collect(1).items(), loaded)
    assert store.raw_generation(generated) == Generation(scale=2, seed=7)
    assert store.raw_generation(loaded) is None
    with duckdb.connect(str(store.raw_path(generated))) as con:
        for column in ("generated_scale", "generated_seed"):
            con.execute(f"alter table {store.RAW_LOAD} drop column {column}")
    assert store.raw_generation(generated) is None


def test_uuid_text_is_pythons_with_nulls_kept_in_a_slice() -> None:
    ids = pa.concat_arrays([uuids(6, np.random.default_rng(3)), pa.nulls(2, pa.uuid())]).slice(3)
    expected = [None if value is None else str(value) for value in ids.to_pylist()]
    assert as_text(ids).to_pylist() == expected
    assert all(uuid.UUID(value).version == 4 for value in expected[:3])
    assert expected[3:] == [None, None]


@pytest.mark.parametrize(
    ("failure", "error", "message"),
    [("the data", RuntimeError, "generator broke"), ("a batch", ValueError, "no_such_table")],
)
def test_a_write_that_fails_midway_stops_every_writer_and_keeps_the_raw_data(
    tmp_path: Path, failure: str, error: type[Exception], message: str
) -> None:
    """The writers share one stream of batches: when making a chunk fails (the data) or writing
    a batch does (an unknown table), the error reaches the caller, every writer and the
    producer stop, and the raw catalog written before is untouched, with no leftover file."""
    path = tmp_path / "greenery.duckdb"
    before = store.write_raw(generate(1), path)
    events = pa.Table.from_pandas(collect(1)["events"], preserve_index=False)
    batch = pa.concat_tables([events] * (store.WRITE_BATCH_ROWS // len(events) + 1))
    batch = batch.slice(0, store.WRITE_BATCH_ROWS)
    made: list[str] = []

    def chunks() -> Iterator[tuple[str, pa.Table | pd.DataFrame]]:
        for number in range(1_000):
            made.append("events")
            if number == 20:
                if failure == "the data":
                    raise RuntimeError("generator broke")
                yield "no_such_table", pd.DataFrame({"x": [1]})  # a frame is written as it comes
            yield "events", batch

    with pytest.raises(error, match=message):
        store.write_raw(chunks(), path)
    assert len(made) < 40  # stopped, not run to the end
    assert not [t for t in threading.enumerate() if t.name.startswith(("raw-writer", "raw-producer"))]
    assert store.raw_counts(path) == before
    assert not list(tmp_path.glob(".*.tmp*"))


def test_raw_writes_go_in_batches_of_whole_row_groups() -> None:
    """Interleaved chunks of two tables come out as batches of exactly WRITE_BATCH_ROWS rows
    (each table's remainder last), the same rows in the same order; frames pass as they are."""
    size = store.WRITE_BATCH_ROWS
    chunks: list[tuple[str, pa.Table | pd.DataFrame]] = []
    rows = {"a": 0, "b": 0}
    for n in (size // 3, size, 7, 2 * size + 5, 1):
        for name in rows:
            chunks.append((name, pa.table({"x": np.arange(rows[name], rows[name] + n)})))
            rows[name] += n
    frame = pd.DataFrame({"x": [1]})
    chunks.insert(3, ("c", frame))
    written = list(store._batched(chunks))
    assert [chunk for name, chunk in written if name == "c"] == [frame]
    for name, total in rows.items():
        batches = [chunk for written_name, chunk in written if written_name == name]
        assert [len(b) for b in batches] == [size] * (total // size) + [total % size]
        assert pa.concat_tables(batches).column("x").to_pylist() == list(range(total))
