"""The funnel's conversion metrics: ratios over fct_page_views instead of MetricFlow's conversion
join over every event, with the same answers.

Three definitions are compared on the course data and on generated scale-10 data, overall and by
every grouping the saved queries and clients use (metric_time day and week, product, visitor type
× buyer segment):
- today's metrics (ratios over fct_page_views), through MetricFlow;
- an independent pandas recomputation of MetricFlow's conversion semantics from the raw events
  (tests/oracle.py: each conversion credits the latest page view at or before it);
- the conversion metrics they replace (tests/fixtures/legacy_conversion_metrics.yml), run by
  MetricFlow on the session events, as they were (event_at at minute grain) and with event_at
  at second grain (exact times).
The legacy metrics compared minute-truncated times: a checkout seconds before the session's first
page view, in the same minute, counted as converted. A constructed session shows it, and that
today's metrics do not count it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import oracle
import pandas as pd
import pytest
import yaml

from greenery.semantic.layer import SemanticLayer
from greenery.warehouse import store
from greenery.warehouse.build import copy_warehouse
from greenery.warehouse.dbt import MANIFEST_PATH, run_dbt

LEGACY_YAML = Path(__file__).parent / "fixtures" / "legacy_conversion_metrics.yml"
METRICS = [
    "session_view_to_checkout_conversion",
    "session_view_to_add_to_cart_conversion",
    "user_view_to_checkout_conversion_7d",
]
LEGACY = [f"legacy_{name}" for name in METRICS]
GROUPINGS = [
    [],
    ["metric_time__day"],
    ["metric_time__week"],
    ["product__product_name"],
    ["session__visitor_type", "user__buyer_segment"],
]
# where the legacy metric's answer depends on nothing but the data: every page view tied at the
# latest time before a conversion (same second, same session or user) falls in the same group
DETERMINISTIC = [g for g in GROUPINGS if "product__product_name" not in g]


def _measure_input(spec: dict[str, str]) -> dict[str, object]:
    where = spec.get("filter")
    return {
        "name": spec["name"],
        "filter": {"where_filters": [{"where_sql_template": where}]} if where else None,
    }


def _manifest_metric(metric: dict[str, object]) -> dict[str, object]:
    """A conversion metric of the legacy YAML, as `dbt parse` writes it into the semantic manifest."""
    params = metric["type_params"]["conversion_type_params"]  # type: ignore[index]
    base, conversion = _measure_input(params["base_measure"]), _measure_input(params["conversion_measure"])
    window = None
    if params.get("window"):
        count, unit = params["window"].split()
        window = {"count": int(count), "granularity": unit.removesuffix("s")}
    return {
        "name": f"legacy_{metric['name']}",
        "label": f"{metric['label']} (legacy)",
        "description": metric["description"],
        "type": "conversion",
        "type_params": {
            "conversion_type_params": {
                "base_measure": base,
                "conversion_measure": conversion,
                "entity": params["entity"],
                "calculation": params["calculation"],
                "window": window,
            },
            "input_measures": [base, conversion],
        },
    }


def legacy_manifest(folder: Path, event_grain: str) -> Path:
    """The project's semantic manifest plus the legacy conversion metrics, with the session
    events' event_at at `event_grain` ('minute' as it was, 'second' for exact times)."""
    manifest = json.loads(MANIFEST_PATH.read_text())
    legacy = yaml.safe_load(LEGACY_YAML.read_text())["metrics"]
    manifest["metrics"] += [_manifest_metric(metric) for metric in legacy]
    (events,) = [m for m in manifest["semantic_models"] if m["name"] == "session_events"]
    (event_at,) = [d for d in events["dimensions"] if d["name"] == "event_at"]
    event_at["type_params"]["time_granularity"] = event_grain
    path = folder / f"semantic_manifest_{event_grain}.json"
    path.write_text(json.dumps(manifest))
    return path


class Definitions:
    """Today's metrics and the legacy ones (minute, second) over one copy of a warehouse."""

    def __init__(self, warehouse_file: Path, folder: Path) -> None:
        copy = copy_warehouse(warehouse_file, folder / warehouse_file.name)
        self.raw = oracle.raw_frames(copy)
        self.today = SemanticLayer(copy)
        self.minute = SemanticLayer(copy, legacy_manifest(folder, "minute"))
        self.second = SemanticLayer(copy, legacy_manifest(folder, "second"))

    def close(self) -> None:
        for layer in (self.today, self.minute, self.second):
            layer.close()


def _rates(layer: SemanticLayer, metrics: list[str], group_by: list[str]) -> pd.DataFrame:
    frame = layer.query(metrics=metrics, group_by=group_by).table.to_pandas()
    frame.columns = [c.removeprefix("legacy_") for c in frame.columns]
    return frame.set_index(group_by).sort_index() if group_by else frame


def _expected(raw: dict[str, pd.DataFrame], group_by: list[str], *, to_minute: bool = False) -> pd.DataFrame:
    frame = oracle.conversion_rates(raw, group_by, to_minute=to_minute)
    return frame.set_index(group_by).sort_index() if group_by else frame


def _assert_same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert actual.index.equals(expected.index), actual.index.symmetric_difference(expected.index)[:5]
    for metric in METRICS:
        assert actual[metric].astype(float).tolist() == pytest.approx(expected[metric].tolist()), metric


@pytest.fixture(scope="module", params=["course", "generated"])
def definitions(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Definitions]:
    warehouse = request.getfixturevalue(f"{request.param}_warehouse")
    defs = Definitions(warehouse, tmp_path_factory.mktemp(f"conversion-{request.param}"))
    yield defs
    defs.close()


@pytest.mark.parametrize("group_by", GROUPINGS, ids=lambda g: "×".join(g) or "overall")
def test_todays_metrics_equal_the_pandas_recomputation(definitions: Definitions, group_by: list[str]) -> None:
    actual = _rates(definitions.today, METRICS, group_by)
    _assert_same(actual, _expected(definitions.raw, group_by))
    assert actual[METRICS].notna().all().all()


@pytest.mark.parametrize("group_by", DETERMINISTIC, ids=lambda g: "×".join(g) or "overall")
def test_legacy_metrics_at_second_grain_equal_todays(definitions: Definitions, group_by: list[str]) -> None:
    _assert_same(_rates(definitions.second, LEGACY, group_by), _rates(definitions.today, METRICS, group_by))


@pytest.mark.parametrize("group_by", DETERMINISTIC, ids=lambda g: "×".join(g) or "overall")
def test_legacy_metrics_as_they_were_equal_the_minute_truncated_recomputation(
    definitions: Definitions, group_by: list[str]
) -> None:
    """The legacy answers are the minute-truncated ones; where those differ from exact times,
    the sessions that make the difference are named."""
    legacy = _rates(definitions.minute, LEGACY, group_by)
    _assert_same(legacy, _expected(definitions.raw, group_by, to_minute=True))
    exact = oracle.credited_page_views(definitions.raw)
    truncated = oracle.credited_page_views(definitions.raw, to_minute=True)
    flag = "is_credited_with_checkout"
    converted = {
        kind: set(frame[frame[flag]]["session_id"])
        for kind, frame in (("exact", exact), ("minute", truncated))
    }
    # only ever more conversions at minute grain: checkouts before the first page view of their minute
    assert converted["exact"] <= converted["minute"]
    events = definitions.raw["events"]
    first_view = events[events["event_type"] == "page_view"].groupby("session_id")["created_at"].min()
    checkout = events[events["event_type"] == "checkout"].groupby("session_id")["created_at"].max()
    early = checkout[checkout < first_view.reindex(checkout.index)].index
    assert converted["minute"] - converted["exact"] == set(early) & converted["minute"]


def test_legacy_metrics_by_product_differ_only_where_page_views_tie(definitions: Definitions) -> None:
    """By product the legacy answer credits one of the page views tied at the latest second
    before a conversion, whichever FIRST_VALUE meets first; elsewhere it equals today's."""
    group_by = ["product__product_name"]
    today = _rates(definitions.today, METRICS, group_by)
    legacy = _rates(definitions.second, LEGACY, group_by)
    views = oracle.credited_page_views(definitions.raw)
    per_instant = views.groupby(["session_id", "at"])["product_id"].nunique()
    tied_sessions = set(per_instant[per_instant > 1].index.get_level_values("session_id"))
    names = definitions.raw["products"].set_index("product_id")["name"]
    tied_products = set(views[views["session_id"].isin(tied_sessions)]["product_id"].map(names))
    untied = today.index.difference(sorted(tied_products))
    assert len(untied) > 0
    session_metrics = METRICS[:2]
    assert (
        today.loc[untied, session_metrics] - legacy.loc[untied, session_metrics]
    ).abs().max().max() < 1e-12


# ---- the minute-truncation defect, on a constructed session ------------------------------

ID_COLUMNS = ("event_id", "session_id", "user_id", "product_id", "order_id")


def fixture_id(name: str) -> str:
    """The uuid a fixture's id is spelled as from its name: its ASCII bytes in hex, left-aligned
    (the dbt unit tests' convention)."""
    return str(uuid.UUID(name.encode().hex().ljust(32, "0")))


EVENTS_SQL = f"""
create schema marts;
create table marts.fct_session_events as
select
    -- ids as uuids (macros/id_type.sql), spelled from their names as fixture_id does
    {", ".join(f"cast(rpad(hex({name}), 32, '0') as uuid) as {name}" for name in ID_COLUMNS)},
    event_type, page_type, '/' || page_type as page_url,
    cast(position_in_session as integer) as position_in_session,
    cast(event_at as timestamp) as event_at, cast(cast(event_at as timestamp) as date) as event_date
from (values
    -- s_early: checks out 20 s before its first page view, in the same minute
    ('e1', 's_early', 'u1', null, 'o1', 'checkout', 'checkout', 1, '2021-02-10 10:00:10'),
    ('e2', 's_early', 'u1', 'p1', null, 'page_view', 'product', 2, '2021-02-10 10:00:30'),
    -- s_after: a page view, then the checkout 5 s later in the same minute
    ('e3', 's_after', 'u2', 'p1', null, 'page_view', 'product', 1, '2021-02-10 11:00:05'),
    ('e4', 's_after', 'u2', null, 'o2', 'checkout', 'checkout', 2, '2021-02-10 11:00:10')
) as events (event_id, session_id, user_id, product_id, order_id, event_type, page_type,
    position_in_session, event_at)
"""


@pytest.fixture(scope="module")
def constructed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse holding only the constructed events, and fct_page_views built from them by dbt."""
    warehouse = tmp_path_factory.mktemp("constructed") / "greenery.duckdb"
    duckdb.connect(str(store.raw_path(warehouse))).close()  # the raw catalog dbt attaches
    con = duckdb.connect(str(warehouse))
    con.execute(EVENTS_SQL)
    con.close()
    run_dbt(["run", "--select", "fct_page_views", "--full-refresh"], warehouse_file=warehouse)
    return warehouse


def test_a_checkout_before_the_first_page_view_in_the_same_minute_is_not_a_conversion(
    constructed: Path, tmp_path: Path
) -> None:
    with (
        SemanticLayer(constructed) as today,
        SemanticLayer(constructed, legacy_manifest(tmp_path, "minute")) as legacy,
    ):
        session = METRICS[0]
        assert today.query(metrics=[session, "page_view_sessions"]).table.to_pylist() == [
            {session: 0.5, "page_view_sessions": 2}
        ]
        # the legacy metric counted s_early as converted: both events fall in minute 10:00
        assert legacy.query(metrics=[f"legacy_{session}"]).table.to_pylist() == [{f"legacy_{session}": 1.0}]
        by_session = today.query(
            metrics=["page_view_sessions_then_checkout"], group_by=["session"]
        ).table.to_pylist()
        # the session entity's values reach the client as text (Arrow)
        assert sorted((r["session"], r["page_view_sessions_then_checkout"]) for r in by_session) == [
            (fixture_id("s_after"), 1),
            (fixture_id("s_early"), 0),
        ]
