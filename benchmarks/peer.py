"""Every saved query against the open peer: sidemantic 0.13 on the same warehouse, same metrics.

For each saved query at scale 1000, round-robin, medians of:
- sidemantic: the project's MetricFlow YAML loaded by benchmarks.sidemantic_adapter, queried
  in-process on a read-only DuckDB connection to the published copy;
- the warm MetricFlow engine (greenery.semantic.layer, in-process, compile cache warm);
- the server uncached: GraphQL createQuery + query poll (readCache false), Flight SQL
  (read_cache=False), both over loopback to `greenery serve` in its own process;
- hand-written SQL on the marts (DuckDB in-process, same published copy);
then the ratios ours / sidemantic and ours / hand SQL, and whether the values agree.

Same metrics on both sides: funnel_by_week is asked without its week-over-week metric
(sidemantic has no offset metric from this YAML); funnel_overall's conversion metric is
compared with sidemantic's own conversion metric over the same events (a second query on
its side, timed together with the first).

    python -m benchmarks.peer [WAREHOUSE_FILE] [--runs N] [--only q1,q2]
    # WAREHOUSE_FILE built and published; default: build scale 1000 in /tmp
"""

from __future__ import annotations

import argparse
import base64
import datetime
import http.client
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from benchmarks import sidemantic_adapter
from benchmarks.flight import FlightClient, build_scale_1000
from benchmarks.server import GraphQLClient, ServerProcess
from greenery.semantic.layer import SemanticLayer
from greenery.warehouse import store
from greenery.warehouse.publish import current_published

RUNS = 10
FUNNEL = [
    "sessions_with_page_view",
    "sessions_with_add_to_cart",
    "sessions_with_checkout",
    "view_to_cart_rate",
    "cart_to_checkout_rate",
    "view_to_checkout_rate",
]
OVERALL = [
    *FUNNEL,
    "view_to_cart_drop_off_rate",
    "cart_to_checkout_drop_off_rate",
    "view_to_checkout_drop_off_rate",
    "sessions_lost_before_add_to_cart",
    "sessions_lost_before_checkout",
]
PRODUCT = [
    "product_sessions_viewed",
    "product_sessions_added_to_cart",
    "product_sessions_purchased",
    "product_view_to_cart_rate",
    "product_view_to_purchase_rate",
]
ON_HAND = ["inventory_on_hand", "out_of_stock_products"]
CHANGES = ["inventory_changes", "units_moved", "net_inventory_change", "stockouts", "restocks"]

_STEPS = """
    sum(case when has_page_view then 1 else 0 end) as sessions_with_page_view,
    sum(case when has_add_to_cart then 1 else 0 end) as sessions_with_add_to_cart,
    sum(case when has_checkout then 1 else 0 end) as sessions_with_checkout"""
_RATES = """
    sessions_with_add_to_cart / nullif(sessions_with_page_view, 0) as view_to_cart_rate,
    sessions_with_checkout / nullif(sessions_with_add_to_cart, 0) as cart_to_checkout_rate,
    sessions_with_checkout / nullif(sessions_with_page_view, 0) as view_to_checkout_rate"""
# Hand-written SQL on the marts, one per saved query (the answer MetricFlow gives).
HAND_SQL = {
    "funnel_overall": f"""
with steps as (select {_STEPS} from marts.fct_sessions),
per_session as (
    select
        session_id,
        min(case when event_type = 'page_view' then event_at end) as first_view,
        max(case when event_type = 'checkout' then event_at end) as last_checkout
    from marts.fct_session_events
    where event_type in ('page_view', 'checkout')
    group by session_id
),
conversion as (
    select count(case when last_checkout >= first_view then 1 end) / nullif(count(first_view), 0)
        as session_view_to_checkout_conversion
    from per_session
)
select
    *,
    1 - view_to_cart_rate as view_to_cart_drop_off_rate,
    1 - cart_to_checkout_rate as cart_to_checkout_drop_off_rate,
    1 - view_to_checkout_rate as view_to_checkout_drop_off_rate,
    sessions_with_page_view - sessions_with_add_to_cart as sessions_lost_before_add_to_cart,
    sessions_with_add_to_cart - sessions_with_checkout as sessions_lost_before_checkout
from (select *, {_RATES} from steps) cross join conversion
""",
    "funnel_by_day": f"""
select *, {_RATES}
from (
    select date_trunc('day', session_started_at) as metric_time__day, {_STEPS}
    from marts.fct_sessions group by 1
)
""",
    "funnel_by_week": f"""
select *, {_RATES}
from (
    select date_trunc('week', session_started_at) as metric_time__week, {_STEPS}
    from marts.fct_sessions group by 1
)
""",
    "funnel_by_product": """
select
    *,
    product_sessions_added_to_cart / nullif(product_sessions_viewed, 0) as product_view_to_cart_rate,
    product_sessions_purchased / nullif(product_sessions_viewed, 0) as product_view_to_purchase_rate
from (
    select
        p.product_name as product__product_name,
        p.price_band as product__price_band,
        sum(case when s.has_viewed then 1 else 0 end) as product_sessions_viewed,
        sum(case when s.has_added_to_cart then 1 else 0 end) as product_sessions_added_to_cart,
        sum(case when s.has_purchased then 1 else 0 end) as product_sessions_purchased
    from marts.fct_product_sessions as s
    left join marts.dim_products as p on s.product_id = p.product_id
    group by 1, 2
)
""",
    "funnel_by_user_segment": f"""
select *, {_RATES}
from (
    select s.visitor_type as session__visitor_type, u.buyer_segment as user__buyer_segment, {_STEPS}
    from marts.fct_sessions as s
    left join marts.dim_users as u on s.user_id = u.user_id
    group by 1, 2
)
""",
    "inventory_on_hand_by_product_by_week": """
with days as (
    select
        *,
        date_trunc('week', inventory_date) as week,
        max(inventory_date) over (partition by date_trunc('week', inventory_date)) as last_day
    from marts.fct_product_inventory_daily
)
select
    p.product_name as product__product_name,
    d.week as metric_time__week,
    sum(d.inventory_on_hand) as inventory_on_hand,
    sum(case when d.is_out_of_stock then 1 else 0 end) as out_of_stock_products
from days as d
left join marts.dim_products as p on d.product_id = p.product_id
where d.inventory_date = d.last_day
group by 1, 2
""",
    "inventory_changes_by_product_by_week": """
select
    p.product_name as product__product_name,
    date_trunc('week', c.changed_at) as metric_time__week,
    count(c.inventory_change_id) as inventory_changes,
    sum(c.units_moved) as units_moved,
    sum(c.inventory_delta) as net_inventory_change,
    sum(case when c.went_out_of_stock then 1 else 0 end) as stockouts,
    sum(case when c.was_restocked then 1 else 0 end) as restocks
from marts.fct_inventory_changes as c
left join marts.dim_products as p on c.product_id = p.product_id
group by 1, 2
""",
}


@dataclass(frozen=True)
class PeerQuery:
    metrics: list[str]
    dimensions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    """One saved query: what we ask, what sidemantic is asked, how its columns map to ours."""

    saved_query: str
    keys: list[str]  # our group-by columns (the rows' identity)
    peer: list[PeerQuery]
    peer_columns: dict[str, str]  # sidemantic's dimension column → ours
    metrics: list[str] | None = None  # ask these by metric_time, not the saved query (same metrics)

    def request(self) -> dict[str, Any]:
        if self.metrics is None:
            return {"saved_query": self.saved_query}
        return {"metrics": self.metrics, "group_by": self.keys}


CASES = [
    Case(
        "funnel_overall",
        [],
        [
            PeerQuery(OVERALL),
            PeerQuery(["session_events.session_view_to_checkout_conversion"]),
        ],
        {},
    ),
    Case(
        "funnel_by_day",
        ["metric_time__day"],
        [PeerQuery(FUNNEL, ["sessions.session_started_at__day"])],
        {"session_started_at__day": "metric_time__day"},
    ),
    Case(
        "funnel_by_week",
        ["metric_time__week"],
        [PeerQuery(FUNNEL, ["sessions.session_started_at__week"])],
        {"session_started_at__week": "metric_time__week"},
        metrics=FUNNEL,
    ),
    Case(
        "funnel_by_product",
        ["product__product_name", "product__price_band"],
        [PeerQuery(PRODUCT, ["products.product_name", "products.price_band"])],
        {"product_name": "product__product_name", "price_band": "product__price_band"},
    ),
    Case(
        "funnel_by_user_segment",
        ["session__visitor_type", "user__buyer_segment"],
        [PeerQuery(FUNNEL, ["sessions.visitor_type", "users.buyer_segment"])],
        {"visitor_type": "session__visitor_type", "buyer_segment": "user__buyer_segment"},
    ),
    Case(
        "inventory_on_hand_by_product_by_week",
        ["product__product_name", "metric_time__week"],
        [PeerQuery(ON_HAND, ["product_inventory_daily.inventory_date__week", "products.product_name"])],
        {"product_name": "product__product_name", "inventory_date__week": "metric_time__week"},
    ),
    Case(
        "inventory_changes_by_product_by_week",
        ["product__product_name", "metric_time__week"],
        [PeerQuery(CHANGES, ["inventory_changes.changed_at__week", "products.product_name"])],
        {"product_name": "product__product_name", "changed_at__week": "metric_time__week"},
    ),
]
CONTENDERS = ("sidemantic", "engine", "graphql", "flight", "hand SQL")


def _graphql_variables(case: Case) -> tuple[str, dict[str, Any]]:
    if case.metrics is None:
        query = (
            "mutation($s: String!) { createQuery(environmentId: 1, savedQuery: $s, readCache: false) "
            "{ queryId } }"
        )
        return query, {"s": case.saved_query}
    query = (
        "mutation($m: [MetricInput!], $g: [GroupByInput!]) { createQuery(environmentId: 1, "
        "metrics: $m, groupBy: $g, readCache: false) { queryId } }"
    )
    return query, {"m": [{"name": m} for m in case.metrics], "g": [{"name": g} for g in case.keys]}


def _flight_statement(case: Case) -> str:
    if case.metrics is None:
        return f"{{{{ semantic_layer.query(saved_query='{case.saved_query}', read_cache=False) }}}}"
    return (
        f"{{{{ semantic_layer.query(metrics={case.metrics!r}, group_by={case.keys!r}, read_cache=False) }}}}"
    )


class GraphQL(GraphQLClient):
    """createQuery (any arguments) + polls, Arrow pages decoded: benchmarks.server's client, generalized."""

    def _post(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Once more on a fresh connection when the server closed an idle keep-alive one (after 5 s
        idle, as between two rounds of the slowest queries)."""
        try:
            return super()._post(query, variables)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            self._connection.close()
            return super()._post(query, variables)

    def ask(self, query: str, variables: dict[str, Any]) -> pa.Table:
        query_id = self._post(query, variables)["createQuery"]["queryId"]
        page = self._poll(query_id)
        pages = [page] + [self._page(query_id, n) for n in range(2, page["totalPages"] + 1)]
        return pa.concat_tables(_decode(p["arrowResult"]) for p in pages)


def _decode(arrow_result: str) -> pa.Table:
    return pa.ipc.open_stream(base64.b64decode(arrow_result)).read_all()


def _peer_answer(layer: Any, queries: list[PeerQuery], rename: dict[str, str]) -> pa.Table:
    """sidemantic's rows (one table; funnel_overall's two single-row answers side by side).

    sidemantic starts its joins from the model of the first dimension: a fact's own dimension
    comes first where there is one, or it would list every product, with changes or not."""
    warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")  # small answers
    tables = [layer.query(metrics=q.metrics, dimensions=q.dimensions).to_arrow_table() for q in queries]
    table = tables[0]
    for extra in tables[1:]:
        for name in extra.column_names:
            table = table.append_column(name, extra[name])
    return table.rename_columns([rename.get(n, n) for n in table.column_names])


def _value(value: Any) -> Any:
    """Decimals as floats, days as dates (a week is a DATE on one side, a TIMESTAMP on the other)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        return value.date()
    return value


def _agree(ours: pa.Table, theirs: pa.Table, keys: list[str], rel: float = 1e-6) -> str:
    """'yes', or the first difference between the columns both answers have."""
    common = [c for c in ours.column_names if c in theirs.column_names]
    if ours.num_rows != theirs.num_rows:
        return f"NO: {ours.num_rows} rows vs {theirs.num_rows}"
    order = [(k, "ascending") for k in keys]
    left = ours.select(common).sort_by(order).to_pylist() if keys else ours.select(common).to_pylist()
    right = theirs.select(common).sort_by(order).to_pylist() if keys else theirs.select(common).to_pylist()
    for a, b in zip(left, right, strict=True):
        for column in common:
            x, y = _value(a[column]), _value(b[column])
            same = (
                math.isclose(x, y, rel_tol=rel, abs_tol=1e-9)
                if isinstance(x, float | int) and isinstance(y, float | int)
                else x == y
            )
            if not same:
                return f"NO: {column} {x!r} vs {y!r} at {[a[k] for k in keys]}"
    return f"yes ({len(common)} columns)"


def _median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _case_lines(case: Case, calls: dict[str, Callable[[], pa.Table]], runs: int) -> list[str]:
    """One query: each contender once (its answer, checked), then `runs` rounds, round-robin."""
    answers = {name: call() for name, call in calls.items()}
    timings: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for _ in range(runs):
        for name, call in calls.items():
            timings[name].append(_timed(call))
    ms = {name: _median_ms(timings[name]) for name in CONTENDERS}
    vs_peer = " ".join(f"{ms[n] / ms['sidemantic']:5.2f}" for n in ("engine", "graphql", "flight"))
    vs_hand = " ".join(f"{ms[n] / ms['hand SQL']:5.2f}" for n in ("graphql", "flight"))
    others = (n for n in CONTENDERS if n != "engine")
    verdicts = (f"{n} {_agree(answers['engine'], answers[n], case.keys)}" for n in others)
    return [
        f"  {case.saved_query:<38}"
        + "".join(f"{ms[name]:11.1f}" for name in CONTENDERS)
        + f"   {vs_peer}          {vs_hand}",
        "      same answer as the engine: " + "; ".join(verdicts),
    ]


def run(warehouse_file: Path, runs: int = RUNS, only: Sequence[str] = ()) -> Iterator[str]:
    """The printed lines, each query's as soon as it is measured."""
    folder = current_published(warehouse_file)
    if folder is None:
        raise SystemExit(f"nothing published next to {warehouse_file}: build and publish first")
    copy = folder / store.resolve(warehouse_file).name
    engine = SemanticLayer.published(warehouse_file)
    peer = sidemantic_adapter.load(copy)
    hand = duckdb.connect(str(copy), read_only=True)
    server = ServerProcess(warehouse_file, flight=True)
    graphql = GraphQL(server.port, server.token, read_cache=False)
    flight = FlightClient(server.flight_uri, server.token)
    try:
        yield f"== saved queries vs sidemantic 0.13 at {warehouse_file.parent.name} (median of {runs}, ms)"
        header = f"  {'saved query':<38}" + "".join(f"{name:>11}" for name in CONTENDERS)
        header += "   ours/peer (engine graphql flight)   ours/hand (graphql flight)"
        yield header
        yield "  " + "-" * len(header)
        for case in CASES:
            if only and case.saved_query not in only:
                continue
            gql_query, gql_variables = _graphql_variables(case)
            statement = _flight_statement(case)
            sql = HAND_SQL[case.saved_query]
            calls: dict[str, Callable[[], pa.Table]] = {
                "sidemantic": lambda c=case: _peer_answer(peer, c.peer, c.peer_columns),
                "engine": lambda c=case: engine.query(**c.request()).table,
                "graphql": lambda q=gql_query, v=gql_variables: graphql.ask(q, v),
                "flight": lambda s=statement: flight.run(s),
                "hand SQL": lambda s=sql: hand.cursor().sql(s).to_arrow_table(),
            }
            yield from _case_lines(case, calls, runs)
        stats = engine.compile_stats
        yield (
            f"  compile cache (warm engine): {stats.compiled} compiled in {stats.seconds * 1000:.0f} ms,"
            f" {stats.hits} hits, ≈ {stats.saved_seconds * 1000:.0f} ms of compiling saved"
        )
    finally:
        graphql.close()
        flight.close()
        server.stop()
        hand.close()
        engine.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer", description=__doc__.splitlines()[0])
    parser.add_argument("warehouse", nargs="?", type=Path, help="a built and published warehouse file")
    parser.add_argument("--runs", type=int, default=RUNS, help=f"rounds per query (default {RUNS})")
    parser.add_argument("--only", default="", help="comma-separated saved queries (default: all)")
    args = parser.parse_args(argv)
    only = [name for name in args.only.split(",") if name]
    if args.warehouse is not None:
        for line in run(args.warehouse.resolve(), args.runs, only):
            print(line, flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench-peer-1000-") as tmp:
        start = time.perf_counter()
        warehouse_file = build_scale_1000(Path(tmp) / "scale1000")
        print(f"built and published scale 1000 in {time.perf_counter() - start:.0f} s", flush=True)
        for line in run(warehouse_file, args.runs, only):
            print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
