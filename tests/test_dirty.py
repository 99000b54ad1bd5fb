"""Dirty data: a delisted product keeps its history, and `greenery generate --dirty` builds,
counts every anomaly it injected, and answers exactly what the same seed's clean data answers.

The clean and the dirty warehouse of one seed are built side by side (scale 1: the course's
shape), their exports compared table by table.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import oracle
import pandas as pd
import pytest

from conftest import read_sql
from greenery.cli import main
from greenery.data.dirty import ANOMALY_KINDS, DELIST_WEEK, DirtyData, gather, inject
from greenery.data.generate import DEFAULT_SEED, generate
from greenery.data.load import WEEKLY_FILE, LoadError, read_folder
from greenery.report.render import ReportPaths, write_report
from greenery.semantic.layer import SemanticLayer
from greenery.warehouse import store
from greenery.warehouse.replay import REPLAY_WEEKS

QUALITY = "select anomaly_kind, anomaly_count from marts.data_quality_anomalies order by kind_order"


@dataclass(frozen=True)
class Scenario:
    clean: Path
    dirty: Path
    injected: DirtyData


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """Seed DEFAULT_SEED at scale 1, clean and dirty (the dirty one through the CLI), each
    replayed weeks 1–4, built and exported."""
    clean = tmp_path_factory.mktemp("clean") / "greenery.duckdb"
    dirty = tmp_path_factory.mktemp("dirty") / "greenery.duckdb"
    for warehouse_file, generate_args in ((clean, []), (dirty, ["--dirty"])):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(store.ENV_VAR, str(warehouse_file))
            assert main(["generate", "--seed", str(DEFAULT_SEED), *generate_args]) == 0
            assert main(["replay", "--weeks", "1-4"]) == 0
            assert main(["build"]) == 0
            assert main(["export"]) == 0
    return Scenario(clean, dirty, inject(gather(generate(1, DEFAULT_SEED)), DEFAULT_SEED))


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_every_anomaly_is_counted_as_injected(scenario: Scenario) -> None:
    injected = scenario.injected.injected
    assert list(injected) == list(ANOMALY_KINDS)
    assert min(injected.values()) >= 1
    dirty = read_sql(scenario.dirty, QUALITY)
    assert dict(zip(dirty["anomaly_kind"], dirty["anomaly_count"], strict=True)) == injected
    clean = read_sql(scenario.clean, QUALITY)
    assert clean["anomaly_kind"].tolist() == list(ANOMALY_KINDS)
    assert clean["anomaly_count"].tolist() == [0] * len(ANOMALY_KINDS)
    # the raw layer kept every row the injector added (nothing was rejected at load)
    raw_events = oracle.raw_frames(scenario.dirty)["events"]
    clean_events = oracle.raw_frames(scenario.clean)["events"]
    added = sum(injected[k] for k in ANOMALY_KINDS[:7])
    assert len(raw_events) == len(clean_events) + added


def test_the_answers_equal_the_clean_datas(scenario: Scenario) -> None:
    """Every export table (the saved queries' answers) is the same, except the delisted
    product's inventory from the week it left, and the data-quality table itself."""
    delisted = scenario.injected.delisted_product_id
    names = oracle.raw_frames(scenario.clean)["products"].set_index("product_id")["name"]
    weeks = oracle.raw_frames(scenario.clean)["product_inventory_by_week"]
    left_at = oracle.week_start(weeks.loc[weeks["week"] == DELIST_WEEK, "recorded_at"]).iloc[0]
    relations = read_sql(
        scenario.clean,
        "select table_name from information_schema.tables where table_schema = 'exports' order by 1",
    )["table_name"].tolist()
    assert "funnel_overall" in relations and "inventory_on_hand_by_product_by_week" in relations
    compared = []
    for name in relations:
        if name == "data_quality_anomalies":
            continue
        clean = read_sql(scenario.clean, f"select * from exports.{name}")
        dirty = read_sql(scenario.dirty, f"select * from exports.{name}")
        if "metric_time__week" in clean.columns and "product__product_name" in clean.columns:

            def keep(frame: pd.DataFrame) -> pd.DataFrame:
                gone = (frame["product__product_name"] == names[delisted]) & (
                    pd.to_datetime(frame["metric_time__week"]) >= left_at
                )
                return frame[~gone]

            clean, dirty = keep(clean), keep(dirty)
        pd.testing.assert_frame_equal(_sorted(dirty), _sorted(clean), obj=name)
        compared.append(name)
    assert len(compared) >= 7, compared
    funnel = read_sql(scenario.dirty, "select * from exports.funnel_overall")
    assert funnel.loc[0, "sessions_with_page_view"] == 578  # the course's funnel at scale 1


def test_the_delisted_product_keeps_its_history(scenario: Scenario) -> None:
    delisted = scenario.injected.delisted_product_id
    products = read_sql(scenario.dirty, "select * from marts.dim_products").set_index("product_id")
    assert products["is_delisted"].sum() == 1 and products.at[delisted, "is_delisted"]
    assert not products.at[delisted, "is_current"] and not products.at[delisted, "is_out_of_stock"]
    assert products.at[delisted, "current_inventory"] == 0
    clean_products = read_sql(scenario.clean, "select * from marts.dim_products").set_index("product_id")
    assert len(products) == len(clean_products) == 30  # every product ever seen
    daily = "select inventory_date, inventory_on_hand, is_out_of_stock, is_delisted"
    daily += " from marts.fct_product_inventory_daily"
    where = f" where product_id = '{delisted}' order by inventory_date"
    before, after = read_sql(scenario.clean, daily + where), read_sql(scenario.dirty, daily + where)
    weeks = oracle.raw_frames(scenario.clean)["product_inventory_by_week"]
    left = pd.Timestamp(weeks.loc[weeks["week"] == DELIST_WEEK, "recorded_at"].iloc[0]).normalize()
    kept = before["inventory_date"] < left
    assert kept.sum() >= 7 * (DELIST_WEEK - 1)  # the weeks before it left, day by day
    pd.testing.assert_frame_equal(after[kept], before[kept])
    gone = after[~kept]
    assert len(gone) >= 1
    assert (gone["inventory_on_hand"] == 0).all() and gone["is_delisted"].all()
    assert not gone["is_out_of_stock"].any()


def test_the_policies_leave_the_session_facts_whole(scenario: Scenario) -> None:
    """Session by session, the facts are the clean ones, but for the late events (kept, in
    their session) and orders without items (kept, flagged, no buyer)."""
    sessions = "select session_id, user_id, has_page_view, has_add_to_cart, has_checkout, order_id,"
    sessions += " session_started_at from marts.fct_sessions"
    pd.testing.assert_frame_equal(
        _sorted(read_sql(scenario.dirty, sessions)), _sorted(read_sql(scenario.clean, sessions))
    )
    users = "select user_id, orders, buyer_segment, lifetime_revenue from marts.dim_users"
    pd.testing.assert_frame_equal(
        _sorted(read_sql(scenario.dirty, users)), _sorted(read_sql(scenario.clean, users))
    )
    flagged = read_sql(scenario.dirty, "select count_if(not has_items) as n from marts.fct_orders").at[0, "n"]
    assert flagged == scenario.injected.injected["orders_without_items"]
    events = "select count(*) as n from marts.fct_session_events"
    late = scenario.injected.injected["late_events"]
    assert read_sql(scenario.dirty, events).at[0, "n"] == read_sql(scenario.clean, events).at[0, "n"] + late


def test_the_loader_takes_the_dirty_export_and_still_rejects_what_cannot_be_right(
    scenario: Scenario, tmp_path: Path
) -> None:
    tables = scenario.injected.tables
    folder = tmp_path / "export"
    folder.mkdir()
    for name, frame in tables.items():
        if name == "product_inventory_by_week":
            frame[["week", "product_id", "inventory"]].to_csv(folder / WEEKLY_FILE, index=False)
        else:
            frame.to_csv(folder / f"{name}.csv", index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    loaded = read_folder(folder)
    assert {name: len(loaded[name]) for name in tables} == {name: len(f) for name, f in tables.items()}
    assert (
        loaded["events"]["created_at"].isna().sum() == scenario.injected.injected["events_without_timestamp"]
    )

    events = (folder / "events.csv").read_text().splitlines()
    changed = events[1].split(",")
    changed[5] = "add_to_cart" if changed[5] != "add_to_cart" else "page_view"  # same event_id, other values
    (folder / "events.csv").write_text("\n".join([*events, ",".join(changed)]) + "\n")
    with pytest.raises(
        LoadError, match=rf"events.csv, column event_id, line {len(events) + 1}: duplicate primary key"
    ):
        read_folder(folder)


def test_the_report_shows_the_anomalies(scenario: Scenario, tmp_path: Path) -> None:
    answers = tmp_path / "answers.md"
    paths = ReportPaths(
        headline=answers, answers=answers, images=tmp_path / "images", html=tmp_path / "r.html", whole=True
    )
    with SemanticLayer(scenario.dirty) as layer:
        write_report(layer, paths)
    text = answers.read_text()
    injected = scenario.injected.injected
    for kind, count in injected.items():
        assert (
            f"| {kind} | " in text and f" | {count:,} | " in text.split(f"| {kind} | ")[1].splitlines()[0]
        ), kind
    total = sum(injected.values())
    assert f"**Data quality:** {total:,} anomalies, each handled by its policy" in text
    assert f"duplicate events ({injected['duplicate_events']})" in text
    assert "<td>delisted_products</td>" in paths.html.read_text()


def test_a_product_missing_from_the_last_replayed_week_keeps_its_history(
    course_data: Path, tmp_path: Path, warehouse_file: Path
) -> None:
    """#18: Pothos dropped from week 4 of the course's weekly file: `greenery build` passes
    (every relationship to dim_products holds), Pothos is flagged delisted, and the inventory
    answers keep its weeks 1–3."""
    folder = tmp_path / "course"
    shutil.copytree(course_data, folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    weekly = pd.read_csv(folder / WEEKLY_FILE)
    pothos = weekly.loc[weekly["name"] == "Pothos", "product_id"].iloc[0]
    weekly[~((weekly["week"] == REPLAY_WEEKS[-1]) & (weekly["product_id"] == pothos))].to_csv(
        folder / WEEKLY_FILE, index=False
    )
    assert main(["load", "--from-csv", str(folder)]) == 0
    assert main(["replay", "--weeks", "1-4"]) == 0
    assert main(["build"]) == 0
    products = read_sql(warehouse_file, "select * from marts.dim_products").set_index("product_name")
    assert len(products) == 30
    assert products["is_delisted"].tolist().count(True) == 1 and products.at["Pothos", "is_delisted"]
    assert products.at["Pothos", "delisted_at"] == store.replay_clock(warehouse_file)
    quality = read_sql(warehouse_file, QUALITY).set_index("anomaly_kind")["anomaly_count"]
    assert quality["delisted_products"] == 1 and quality.drop("delisted_products").sum() == 0
    with SemanticLayer(warehouse_file) as layer:
        on_hand = layer.query(saved_query="inventory_on_hand_by_product_by_week").table.to_pandas()
    pothos_weeks = on_hand[on_hand["product__product_name"] == "Pothos"].sort_values("metric_time__week")
    assert pothos_weeks["inventory_on_hand"].tolist() == [40, 20, 0, 0]  # weeks 1–3, then delisted
    assert pothos_weeks["out_of_stock_products"].tolist() == [0, 0, 1, 0]  # out of stock in week 3 only
