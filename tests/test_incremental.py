"""Daily arrival: raw rows appended batch by batch, some events late, each batch built
incrementally, end with exactly the marts and exports of one build of all the data.

The course data spans three days, so a "day" here is half a day of events and the lookback is
half a day too (`greenery build --lookback-days 0.5`): every incremental run leaves most
sessions alone, and an event is late by at most one batch, the promise the lookback keeps.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from benchmarks.compare import compare_warehouses
from conftest import as_built_before_irregular_page_url, data_test_results, read_sql
from greenery.cli import main
from greenery.data.load import read_folder
from greenery.data.schema import INVENTORY_BY_WEEK, TABLES
from greenery.semantic.exports import run_exports
from greenery.semantic.layer import SemanticLayer
from greenery.warehouse import store
from greenery.warehouse.build import build, copy_warehouse, fresh_raw, rebuild
from greenery.warehouse.dbt import DbtError, run_dbt
from greenery.warehouse.replay import REPLAY_WEEKS, SNAPSHOT_RUNS, replay

PERIOD = pd.Timedelta(hours=12)  # one batch of arrivals
LOOKBACK_DAYS = PERIOD / pd.Timedelta(days=1)
BATCHES = 4  # after the initial part
LATE_EVENT_EVERY, LATE_SESSION_EVERY = 3, 7  # of the sessions that can arrive late


def split_arrivals(frames: dict[str, pd.DataFrame]) -> list[dict[str, pd.DataFrame]]:
    """The course tables as an initial part (batch 0) and BATCHES later batches of PERIOD.

    Events go in the batch of their time, except that the last event of every
    LATE_EVENT_EVERY-th session and every event of every LATE_SESSION_EVERY-th session
    arrive one batch late (only sessions whose batch is not the last, and whose events are at
    most one PERIOD before their batch's end, so that the lookback covers them). An order
    arrives no later than the first event naming it, its items with it; a user no later than
    their first order or event. Addresses, promos and products are all in the initial part.
    """
    events = frames["events"]
    last_cut = events["created_at"].max().ceil("h")
    first_cut = last_cut - BATCHES * PERIOD  # end of the initial part

    def batch_of(times: pd.Series) -> pd.Series:
        steps = ((times - first_cut) / PERIOD).apply(lambda x: int(x // 1) + 1)
        return steps.clip(lower=0, upper=BATCHES)

    event_batch = batch_of(events["created_at"])
    window_start = first_cut + (event_batch - 1) * PERIOD
    can_be_late = (event_batch < BATCHES) & (events["created_at"] >= window_start)
    sessions = sorted(events.loc[can_be_late, "session_id"].unique())
    late_last = set(sessions[::LATE_EVENT_EVERY])
    late_whole = set(sessions[1::LATE_SESSION_EVERY]) - late_last
    ordered = events.sort_values(["created_at", "event_id"])
    is_last = ~ordered.duplicated("session_id", keep="last").reindex(events.index)
    late = can_be_late & (
        events["session_id"].isin(late_whole) | (events["session_id"].isin(late_last) & is_last)
    )
    event_batch = event_batch + late.astype(int)

    orders = frames["orders"]
    first_named = event_batch.groupby(events["order_id"]).min()
    order_batch = (
        pd.concat([batch_of(orders["created_at"]), orders["order_id"].map(first_named)], axis=1)
        .min(axis=1)
        .astype(int)
    )
    by_order = dict(zip(orders["order_id"], order_batch, strict=True))

    users = frames["users"]
    first_use = (
        pd.concat(
            [event_batch.groupby(events["user_id"]).min(), order_batch.groupby(orders["user_id"]).min()]
        )
        .groupby(level=0)
        .min()
    )
    user_batch = (
        pd.concat([batch_of(users["created_at"]), users["user_id"].map(first_use)], axis=1)
        .min(axis=1)
        .astype(int)
    )

    batch_by_table = {
        "events": event_batch,
        "orders": order_batch,
        "order_items": frames["order_items"]["order_id"].map(by_order),
        "users": user_batch,
    }
    split = []
    for batch in range(BATCHES + 1):
        part = {}
        for table in TABLES:
            frame = frames[table.name]
            if table.name in batch_by_table:
                part[table.name] = frame[batch_by_table[table.name] == batch].reset_index(drop=True)
            elif batch == 0:
                part[table.name] = frame
        split.append(part)
    split[0][INVENTORY_BY_WEEK.name] = frames[INVENTORY_BY_WEEK.name]
    return split


def write_csvs(part: dict[str, pd.DataFrame], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, frame in part.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def relations(database: Path, schema: str) -> dict[str, pd.DataFrame]:
    """Every table and view of `schema`, its rows in order of every column (the primary key first),
    but `built_at`: when the build wrote the row, which differs between two builds by design."""
    con = duckdb.connect(str(database), read_only=True)
    try:
        names = [
            row[0]
            for row in con.execute(
                "select table_name from information_schema.tables where table_schema = ? order by 1",
                [schema],
            ).fetchall()
        ]
        query = "select columns(lambda c: c <> 'built_at') from {}.\"{}\" order by all"
        return {name: con.execute(query.format(schema, name)).df() for name in names}
    finally:
        con.close()


def assert_same_relations(got: dict[str, pd.DataFrame], expected: dict[str, pd.DataFrame]) -> None:
    assert sorted(got) == sorted(expected)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(got[name], frame, check_exact=True, obj=name)


def test_split_sends_late_events_and_sessions_in_later_batches(course_data: Path) -> None:
    frames = read_folder(course_data)
    split = split_arrivals(frames)
    assert len(split) == BATCHES + 1
    for table in TABLES:  # every row in exactly one batch
        total = pd.concat([part[table.name] for part in split if table.name in part])
        assert len(total) == len(frames[table.name])
        assert not total.duplicated(list(table.primary_key)).any()
    late = 0
    for batch, part in enumerate(split[1:], start=1):
        events = part["events"]
        assert len(events) > 0
        # events of sessions whose other events came in an earlier batch
        earlier = pd.concat([p["events"] for p in split[:batch]])
        late += events["session_id"].isin(earlier["session_id"]).sum()
        assert (events["created_at"] >= earlier["created_at"].max() - PERIOD).all()
    assert late >= 10


@pytest.fixture(scope="module")
def full_build(course_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the course warehouse (all the data built at once) with its exports run."""
    copy = copy_warehouse(course_warehouse, tmp_path_factory.mktemp("full") / course_warehouse.name)
    results = run_exports(copy)
    assert [r.error for r in results if r.error] == []
    return copy


def test_daily_arrivals_built_incrementally_equal_one_full_build(
    course_data: Path,
    full_build: Path,
    warehouse_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    frames = read_folder(course_data)
    initial, *days = split_arrivals(frames)
    store.write_raw(initial.items(), warehouse_file)
    replay(REPLAY_WEEKS, from_scratch=True, warehouse_file=warehouse_file)
    build(warehouse_file, lookback_days=LOOKBACK_DAYS)
    sessions_before = read_sql(warehouse_file, "select count(*) as n from marts.fct_sessions")["n"][0]
    assert 0 < sessions_before < frames["events"]["session_id"].nunique()

    for number, day in enumerate(days, start=1):
        folder = write_csvs(day, tmp_path / f"day-{number}")
        assert main(["load", "--append", "--from-csv", str(folder)]) == 0
        assert main(["build", "--lookback-days", str(LOOKBACK_DAYS)]) == 0
        assert "session facts incrementally" in capsys.readouterr().out
    assert main(["export"]) == 0

    marts, exports = relations(warehouse_file, "marts"), relations(warehouse_file, "exports")
    assert {"fct_sessions", "fct_session_events", "fct_product_sessions"} <= set(marts)
    assert len(marts["fct_session_events"]) == len(frames["events"])
    assert len(exports) >= 3 and all(len(frame) for frame in exports.values())
    assert_same_relations(marts, relations(full_build, "marts"))
    assert_same_relations(exports, relations(full_build, "exports"))


def test_an_event_later_than_the_lookback_waits_for_a_full_refresh(
    course_data: Path, course_warehouse: Path, warehouse_file: Path
) -> None:
    """The lookback is a promise about lateness: an event older than it is missed by the
    incremental build until `greenery build --full-refresh`."""
    copy_warehouse(course_warehouse, warehouse_file, built_from=True)
    first = read_sql(
        warehouse_file,
        "select session_id, events from marts.fct_sessions order by session_started_at, session_id limit 1",
    )
    session_id, events = first["session_id"][0], int(first["events"][0])
    source = read_folder(course_data)["events"]
    last = source[source["session_id"] == session_id].sort_values("created_at").iloc[[-1]]
    very_late = last.assign(
        event_id=str(uuid.UUID(int=1)), created_at=last["created_at"] + pd.Timedelta(seconds=1)
    )
    store.append_raw([("events", very_late.reset_index(drop=True))], warehouse_file)

    query = f"select events from marts.fct_sessions where session_id = '{session_id}'"
    assert not build(warehouse_file, lookback_days=LOOKBACK_DAYS)  # incremental
    assert int(read_sql(warehouse_file, query)["events"][0]) == events  # older than the lookback
    assert build(warehouse_file, full_refresh=True)
    assert int(read_sql(warehouse_file, query)["events"][0]) == events + 1

    # raw data replaced (the very late event gone): the next build is a full refresh by itself
    fresh_raw(warehouse_file, course_data=course_data)
    assert build(warehouse_file, lookback_days=LOOKBACK_DAYS)
    assert int(read_sql(warehouse_file, query)["events"][0]) == events


def test_a_model_whose_columns_changed_asks_for_a_full_refresh(
    course_warehouse: Path, warehouse_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A warehouse built before the project changed an incremental model's columns (here
    stg_greenery__event_rows as it was when it stored every page_url): the incremental build
    stops without a traceback and says which command rebuilds it, and that command does."""
    as_built_before_irregular_page_url(copy_warehouse(course_warehouse, warehouse_file, built_from=True))

    assert main(["build"]) == 1
    error = capsys.readouterr().err
    assert "stg_greenery__event_rows" in error
    assert "rebuild them with `greenery build --full-refresh`" in error
    assert "Traceback" not in error
    assert main(["build", "--full-refresh"]) == 0


def test_orders_changed_in_place_are_rebuilt_by_an_incremental_build(
    course_warehouse: Path, warehouse_file: Path
) -> None:
    """Raw orders carry no update time: an order placed long before the lookback that is
    delivered now, and the address another old order ships to moving state, reach fct_orders
    and dim_users on the next incremental build (fct_orders compares every order with its
    row), exactly as a full refresh gives them."""
    copy_warehouse(course_warehouse, warehouse_file, built_from=True)
    with duckdb.connect(str(store.raw_path(warehouse_file))) as raw:
        shipped, moved = (
            row[0]
            for row in raw.execute(
                "select cast(order_id as varchar) from public.orders where status = 'shipped'"
                " order by created_at, order_id limit 2"
            ).fetchall()
        )
        raw.execute(
            "update public.orders set status = 'delivered', delivered_at = estimated_delivery_at"
            " where order_id = ?",
            [shipped],
        )
        address = "(select address_id from public.orders where order_id = ?)"
        state = raw.execute(f"select state from public.addresses where address_id = {address}", [moved])
        new_state = "Maine" if state.fetchone() == ("Vermont",) else "Vermont"
        raw.execute(f"update public.addresses set state = ? where address_id = {address}", [new_state, moved])
    query = f"select * from marts.fct_orders where order_id in ('{shipped}', '{moved}')"

    assert not build(warehouse_file, lookback_days=LOOKBACK_DAYS)  # incremental
    orders = read_sql(warehouse_file, query).set_index("order_id")
    assert orders.loc[shipped, "order_status"] == "delivered"
    assert orders.loc[moved, "shipping_state"] == new_state
    incremental = relations(warehouse_file, "marts")
    assert build(warehouse_file, full_refresh=True)
    assert_same_relations(incremental, relations(warehouse_file, "marts"))


def test_an_incremental_runs_tests_read_the_rows_it_wrote_and_the_raw_rows_that_arrived(
    course_warehouse: Path, warehouse_file: Path
) -> None:
    """On an incremental run a test on an incremental model reads the rows the build wrote (the
    latest `built_at`), whatever their time: here the last build wrote only the oldest session
    of fct_sessions, and a bad value in the newest, written before, waits for the next full
    refresh. A test on the raw events or orders reads the rows whose id arrived in the window,
    one on the order items the items of those orders. A written session with no user, an event
    arriving again under an old id, an item of a new order repeated, or a product session
    stored twice (int_product_sessions' key is the pair (session, product), tested by
    unique_combination), is caught at once."""
    copy_warehouse(course_warehouse, warehouse_file, built_from=True)
    with duckdb.connect(str(warehouse_file)) as con:
        by_end = "select session_id from marts.fct_sessions order by session_ended_at {}, session_id limit 1"
        (oldest,), (newest,) = (con.execute(by_end.format(way)).fetchone() for way in ("asc", "desc"))
        written_before = "update marts.fct_sessions set built_at = built_at - interval 1 day"
        con.execute(f"{written_before} where session_id <> ?", [oldest])
        con.execute("update marts.fct_sessions set visitor_type = 'bogus' where session_id = ?", [newest])
        con.execute("update marts.fct_sessions set user_id = null where session_id = ?", [oldest])
        con.execute(
            "insert into intermediate.int_product_sessions select * from intermediate.int_product_sessions"
            " order by session_started_at desc, session_id, product_id limit 1"
        )
    with duckdb.connect(str(store.raw_path(warehouse_file))) as raw:
        oldest_event, second = (row[0] for row in raw.execute(OLDEST_EVENTS).fetchall())
        raw.execute(
            "insert into public.events select * replace ((select max(created_at) from public.events)"
            " as created_at) from public.events where event_id = ?",
            [oldest_event],
        )
        raw.execute("update public.events set event_type = 'bogus' where event_id = ?", [second])
        raw.execute(f"update public.orders set status = 'bogus' where order_id = ({OLDEST_ORDER})")
        _repeat_an_item_of_the_oldest_and_the_newest_order(raw)
    with pytest.raises(DbtError):
        run_dbt(["test", "--select", *WINDOWED_TESTS, "--vars", WINDOW_VARS], warehouse_file=warehouse_file)
    tests = data_test_results()
    assert {name: result["status"] for name, result in tests.items()} == WINDOWED_TESTS
    assert tests[UNIQUE_ORDER_ITEMS]["failures"] == 1  # the newest order's item: the oldest's is outside
    assert tests[UNIQUE_PRODUCT_SESSIONS]["failures"] == 1


def test_a_raw_tables_tests_read_the_window_the_last_build_recorded(
    course_warehouse: Path, warehouse_file: Path
) -> None:
    """A test on the raw events reads the lookback before the latest time when the last build
    ended (greenery_meta.test_windows), where that build's models looked back from, not before
    the latest time now. Here an event arriving a lookback after the build moves the latest on:
    a bad event the build read, outside the lookback before the new latest, is still found."""
    copy_warehouse(course_warehouse, warehouse_file, built_from=True)
    hours = int(LOOKBACK_DAYS * 24)
    with duckdb.connect(str(store.raw_path(warehouse_file))) as raw:
        (bogus,) = raw.execute(
            "select event_id from public.events, (select max(created_at) as latest from public.events)"
            f" where created_at between latest - interval {hours} hour"
            f" and latest - interval {hours // 2} hour order by event_id limit 1"
        ).fetchone()
        raw.execute("update public.events set event_type = 'bogus' where event_id = ?", [bogus])
        raw.execute(
            "insert into public.events select * replace (uuid() as event_id,"
            f" created_at + interval {hours} hour as created_at)"
            " from public.events order by created_at desc limit 1"
        )
    run_dbt(["test", "--select", EVENT_TYPES_TEST, "--vars", WINDOW_VARS], warehouse_file=warehouse_file)
    result = data_test_results()[EVENT_TYPES_TEST]
    assert (result["status"], result["failures"]) == ("warn", 1)  # its severity: staging sets it aside


def test_a_build_of_a_view_alone_tests_the_rows_its_table_last_wrote(
    course_warehouse: Path, warehouse_file: Path
) -> None:
    """fct_session_events is a view: a `dbt build` of it alone writes none of its rows, so its
    tests read the rows its table (stg_greenery__event_rows) last wrote, not those of this run
    (none), and an event stored twice there is caught."""
    copy_warehouse(course_warehouse, warehouse_file, built_from=True)
    with duckdb.connect(str(warehouse_file)) as con:
        con.execute(
            "insert into staging.stg_greenery__event_rows select * from staging.stg_greenery__event_rows"
            " where anomaly is null order by event_id limit 1"
        )
    with pytest.raises(DbtError):
        run_dbt(["build", "--select", "fct_session_events"], warehouse_file=warehouse_file)
    assert data_test_results()["unique_fct_session_events_event_id"]["failures"] == 1


def test_an_order_items_test_reads_every_row_while_its_orders_relation_does_not_exist(
    course_warehouse: Path, warehouse_file: Path
) -> None:
    """The order items' window is their orders' time, in a relation dbt does not know the test
    reads: without it (a first build may test the items first) the test reads every row."""
    copy_warehouse(course_warehouse, warehouse_file, built_from=True)
    with duckdb.connect(str(store.raw_path(warehouse_file))) as raw:
        _repeat_an_item_of_the_oldest_and_the_newest_order(raw)
    with duckdb.connect(str(warehouse_file)) as con:
        con.execute("drop view staging.stg_greenery__orders")
    args = ["test", "--select", UNIQUE_ORDER_ITEMS, "--vars", WINDOW_VARS]
    with pytest.raises(DbtError):
        run_dbt(args, warehouse_file=warehouse_file)
    assert data_test_results()[UNIQUE_ORDER_ITEMS]["failures"] == 2


def _repeat_an_item_of_the_oldest_and_the_newest_order(raw: duckdb.DuckDBPyConnection) -> None:
    raw.execute(
        "insert into public.order_items select * from public.order_items where order_id in"
        f" (({OLDEST_ORDER}), ({NEWEST_ORDER}))"
        " qualify row_number() over (partition by order_id order by product_id) = 1"
    )


OLDEST_EVENTS = "select event_id from public.events order by created_at, event_id limit 2"
OLDEST_ORDER = "select order_id from public.orders order by created_at, order_id limit 1"
NEWEST_ORDER = "select order_id from public.orders order by created_at desc, order_id limit 1"
UNIQUE_ORDER_ITEMS = "unique_stg_greenery__order_items_order_item_id"
EVENT_TYPES_TEST = (
    "source_accepted_values_greenery_events_event_type__page_view__add_to_cart__checkout__package_shipped"
)
UNIQUE_PRODUCT_SESSIONS = "unique_combination_int_product_sessions_session_id__product_id"
WINDOW_VARS = json.dumps({"incremental_lookback_days": LOOKBACK_DAYS})  # an incremental run's window
WINDOWED_TESTS = {  # each test's outcome on the incremental run above
    "accepted_values_fct_sessions_visitor_type__new__returning": "pass",  # the bad row: not written
    "not_null_fct_sessions_user_id": "fail",
    EVENT_TYPES_TEST: "pass",  # the bad event: outside
    "source_unique_greenery_events_event_id": "warn",  # its severity (staging keeps one copy)
    "source_accepted_values_greenery_orders_status__preparing__shipped__delivered": "pass",  # outside
    UNIQUE_ORDER_ITEMS: "fail",  # the newest order's item repeated
    UNIQUE_PRODUCT_SESSIONS: "fail",  # the newest product session stored twice
}

# ---- generated data: the next days, appended and built incrementally -----------------------

GENERATED_SCALE = 2  # the smallest generated data that answers every question
NEXT_DAYS = 2


@pytest.fixture(scope="module")
def small_generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated data at GENERATED_SCALE, weeks 1-4 replayed, built."""
    path = tmp_path_factory.mktemp("generated") / "greenery.duckdb"
    rebuild(path, scale=GENERATED_SCALE)
    return path


def test_small_generated_data_answers_week_over_week_and_inventory_changes(small_generated: Path) -> None:
    with SemanticLayer(small_generated) as layer:
        by_week = layer.query(saved_query="funnel_by_week").table.to_pandas()
        changes = layer.query(saved_query="inventory_changes_by_product_by_week").table.to_pandas()
    assert by_week["view_to_checkout_rate_wow_change"].notna().sum() >= 3  # five calendar weeks
    changed = changes[changes["inventory_changes"] > 0]
    assert changed["metric_time__week"].nunique() >= 3  # every replayed week after the first
    assert changed["product__product_name"].nunique() >= 10


def test_generated_next_days_built_incrementally_equal_a_full_refresh(
    small_generated: Path, warehouse_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy_warehouse(small_generated, warehouse_file, built_from=True)
    events_before = store.raw_counts(warehouse_file)["events"]
    late = 0
    for day in range(1, NEXT_DAYS + 1):
        folder = tmp_path / f"day-{day}"
        assert main(["generate", "--next-days", "1", "--out", str(folder)]) == 0
        first_day = pd.Timestamp(capsys.readouterr().out.split(" from ")[1].split()[0])
        events = pd.read_csv(folder / "events.csv", parse_dates=["created_at"])
        late += int((events["created_at"] < first_day).sum())
        browsing = events[events["event_type"] != "package_shipped"]
        assert (browsing["created_at"] < first_day + pd.Timedelta(days=1)).all()
        assert main(["load", "--append", "--from-csv", str(folder)]) == 0
        assert main(["build"]) == 0
        assert "session facts incrementally" in capsys.readouterr().out
    assert late >= 10  # late sessions and late page views of sessions already built
    assert store.raw_counts(warehouse_file)["events"] > events_before
    assert main(["export"]) == 0
    marts, exports = relations(warehouse_file, "marts"), relations(warehouse_file, "exports")

    assert build(warehouse_file, full_refresh=True)
    assert main(["export"]) == 0
    assert_same_relations(marts, relations(warehouse_file, "marts"))
    assert_same_relations(exports, relations(warehouse_file, "exports"))


def test_the_benchs_comparison_finds_each_difference(course_warehouse: Path, tmp_path: Path) -> None:
    """benchmarks.compare, what `make bench-scale … --check-incremental` says "identical" by:
    a changed row, a repeated row and a changed column set are found; a build time and the
    snapshot's run log are not differences."""
    copy = copy_warehouse(course_warehouse, tmp_path / "copy" / "greenery.duckdb")
    diffs = compare_warehouses(course_warehouse, copy)
    assert {d.relation for d in diffs} >= {"marts.fct_orders", "staging.stg_greenery__event_rows"}
    assert SNAPSHOT_RUNS not in {d.relation for d in diffs}
    assert all(d.identical for d in diffs) and sum(d.rows for d in diffs) > 10_000
    with duckdb.connect(str(copy)) as con:
        con.execute(
            "update marts.fct_orders set order_total = order_total + 1"
            " where order_id = (select min(order_id) from marts.fct_orders)"
        )
        con.execute("insert into marts.dim_products select * from marts.dim_products limit 1")
        con.execute("alter table marts.fct_sessions add column extra integer")
        con.execute("update marts.fct_page_views set built_at = built_at + interval 1 day")
        con.execute(f"insert into {SNAPSHOT_RUNS} select * from {SNAPSHOT_RUNS} limit 1")
    diffs = {d.relation: d for d in compare_warehouses(course_warehouse, copy)}
    changed = {
        relation: (d.only_incremental, d.only_full_refresh)
        for relation, d in diffs.items()
        if not d.identical
    }
    assert changed == {"marts.fct_orders": (1, 1), "marts.dim_products": (0, 1), "marts.fct_sessions": (0, 0)}
    assert not diffs["marts.fct_sessions"].same_columns
