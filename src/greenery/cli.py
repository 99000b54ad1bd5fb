"""`greenery`: the command line. Parses arguments, makes one call per command, prints the outcome.

All logic lives in the rooms below (data, warehouse, semantic, serve, report); nothing
imports this module.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb

from greenery.data.dirty import gather, inject
from greenery.data.generate import DEFAULT_SEED, MAX_SCALE, Generation, generate
from greenery.demo import DemoError, run_demo
from greenery.report.render import ReportPaths, write_report
from greenery.semantic.exports import run_exports
from greenery.semantic.layer import SemanticLayer
from greenery.serve.run import serve
from greenery.warehouse import store
from greenery.warehouse.arrivals import write_next_days
from greenery.warehouse.build import append_csv, build, fresh_raw
from greenery.warehouse.dbt import DbtError
from greenery.warehouse.lock import WarehouseBusy, exclusive
from greenery.warehouse.publish import publish
from greenery.warehouse.replay import parse_weeks, replay

MAX_LOOKBACK_DAYS = 3650
MAX_PORT = 65535
MAX_DIRTY_SCALE = 100  # the dirty scenario gathers the generated tables in memory
MAX_NEXT_DAYS = 366


class UserError(Exception):
    """A problem the user can fix; printed without a traceback."""


# What a user can cause and fix (bad input, a busy or missing warehouse, a failed dbt step, a
# file that cannot be written, a DuckDB file another program holds): one message, no traceback.
USER_ERRORS = (UserError, ValueError, OSError, DbtError, DemoError, WarehouseBusy, duckdb.IOException)


def _print_counts(counts: dict[str, int], seconds: float) -> None:
    for name, rows in counts.items():
        schema, _ = store.RAW_TABLES[name]
        print(f"  {store.RAW_CATALOG}.{schema}.{name:<28} {rows:>12,} rows")
    print(f"done in {seconds:.1f} s → {store.raw_path()}")


def cmd_load(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    if args.append:
        counts = append_csv(Path(args.from_csv))
        print("appended:")
    else:
        counts = fresh_raw(course_data=Path(args.from_csv))
    _print_counts(counts, time.perf_counter() - start)


def cmd_generate(args: argparse.Namespace) -> None:
    if args.scale is not None and not 1 <= args.scale <= MAX_SCALE:
        raise UserError(f"--scale must be a whole number from 1 to {MAX_SCALE:,} (got {args.scale})")
    if args.next_days is not None:
        _generate_next_days(args)
        return
    made = Generation.given(args.scale, args.seed)
    if args.dirty and made.scale > MAX_DIRTY_SCALE:
        raise UserError(
            f"--dirty holds the tables in memory: --scale from 1 to {MAX_DIRTY_SCALE} (got {made.scale})"
        )
    start = time.perf_counter()
    if not args.dirty:
        counts = fresh_raw(scale=made.scale, seed=made.seed)
        _print_counts(counts, time.perf_counter() - start)
        return
    dirty = inject(gather(generate(scale=made.scale, seed=made.seed)), made.seed)
    counts = store.write_raw(dirty.tables.items(), generation=made)
    _print_counts(counts, time.perf_counter() - start)
    print("anomalies injected (counted by marts.data_quality_anomalies after `greenery build`):")
    for kind, injected in dirty.injected.items():
        print(f"  {kind:<28} {injected:>8,}")


def _generate_next_days(args: argparse.Namespace) -> None:
    if args.dirty:
        raise UserError("--dirty makes a whole warehouse: --next-days continues one, without it")
    if not args.out:
        raise UserError("--next-days needs --out DIR: the folder to write the new days' CSVs into")
    if not 1 <= args.next_days <= MAX_NEXT_DAYS:
        raise UserError(
            f"--next-days must be a whole number from 1 to {MAX_NEXT_DAYS} (got {args.next_days})"
        )
    out = Path(args.out)
    first_day, made, counts = write_next_days(out, args.next_days, scale=args.scale, seed=args.seed)
    print(
        f"the {args.next_days} day(s) from {first_day} (and some late events of the day before),"
        f" at scale {made.scale} with seed {made.seed}:"
    )
    for name, rows in counts.items():
        print(f"  {out / (name + '.csv')!s:<60} {rows:>10,} rows")
    print(f"append them with: greenery load --append --from-csv {out}")


def cmd_replay(args: argparse.Namespace) -> None:
    for result in replay(parse_weeks(args.weeks), from_scratch=args.from_scratch):
        done = "snapshot taken" if result.replayed else "already in the snapshot, skipped"
        print(f"  week {result.week} ({result.recorded_at:%Y-%m-%d}): {done}")


def cmd_build(args: argparse.Namespace) -> None:
    if args.lookback_days is not None and not 0 <= args.lookback_days <= MAX_LOOKBACK_DAYS:
        raise UserError(
            f"--lookback-days must be a number of days from 0 to {MAX_LOOKBACK_DAYS}"
            f" (got {args.lookback_days})"
        )
    start = time.perf_counter()
    full = build(full_refresh=args.full_refresh, lookback_days=args.lookback_days)
    how = "every model from scratch" if full else "models (session facts incrementally)"
    print(f"built in {time.perf_counter() - start:.1f} s: {how}, the products snapshot, every test")


def cmd_export(args: argparse.Namespace) -> None:
    parquet = Path(args.parquet) if args.parquet else None
    results = run_exports(select=args.select or (), parquet_dir=parquet)
    for r in results:
        where = f"{r.spec.schema}.{r.spec.alias} ({r.spec.export_as})"
        if r.error:
            print(f"  FAILED {r.spec.saved_query} → {where}: {r.error}", file=sys.stderr)
        else:
            print(f"  {r.spec.saved_query:<40} → {where:<55} {r.rows:>9,} rows {r.seconds * 1000:>7.0f} ms")
    failed = [r.spec.saved_query for r in results if r.error]
    if failed:
        raise UserError(f"{len(failed)} export(s) failed, previous contents kept: {', '.join(failed)}")


def cmd_publish(args: argparse.Namespace) -> None:
    print(f"published {publish()}")


def cmd_report(args: argparse.Namespace) -> None:
    with exclusive(store.resolve(), "report"):  # its reads would block a writer
        paths = ReportPaths.for_warehouse()
        with SemanticLayer() as layer:
            write_report(layer, paths)
    print(
        f"wrote the answers into {paths.answers}, their headline into {paths.headline},"
        f" charts into {paths.images}, and {paths.html}"
    )


def cmd_demo(args: argparse.Namespace) -> None:
    run_demo()


def cmd_serve(args: argparse.Namespace) -> None:
    serve(args.host, args.port, args.flight_port, args.pg_port, access_log=args.access_log)


def port_number(text: str) -> int:
    """An argparse type: a TCP port (0 lets the system pick one)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"a port goes from 0 to {MAX_PORT} (got {text})")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenery",
        description="Greenery's analytics project: load or generate data, replay snapshots, build, answer.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    load = sub.add_parser("load", help="load the seven course tables from a folder of CSVs")
    load.add_argument(
        "--from-csv", required=True, metavar="DIR", help="folder with addresses.csv … users.csv"
    )
    load.add_argument(
        "--append",
        action="store_true",
        help="append DIR's new rows (any of the seven CSVs) to what is loaded, all or nothing",
    )
    load.set_defaults(func=cmd_load)

    gen = sub.add_parser("generate", help="generate synthetic source data of the course's shape")
    gen.add_argument(
        "--scale",
        type=int,
        help="1 reproduces the course's aggregates (default 1; with --next-days, the warehouse's)",
    )
    gen.add_argument(
        "--seed", type=int, help=f"random seed (default {DEFAULT_SEED}; with --next-days, the warehouse's)"
    )
    gen.add_argument(
        "--dirty",
        action="store_true",
        help="inject the anomalies of the course's dirty export (duplicate, untimed, future, unknown, late"
        " and orphan events, two-user sessions, orders without items, a product delisted in week 4)",
    )
    gen.add_argument(
        "--next-days",
        type=int,
        metavar="K",
        help="instead: the K days after the warehouse's latest event (at the scale and seed it was"
        " generated with), as CSVs in --out for `greenery load --append`",
    )
    gen.add_argument("--out", metavar="DIR", help="with --next-days: the folder for the new days' CSVs")
    gen.set_defaults(func=cmd_generate)

    rep = sub.add_parser("replay", help="replay weekly inventory into the products snapshot")
    rep.add_argument("--weeks", default="1-4", help="weeks to replay, e.g. 1-4 (default)")
    rep.add_argument("--from-scratch", action="store_true", help="drop the snapshot's history first")
    rep.set_defaults(func=cmd_replay)

    bld = sub.add_parser(
        "build", help="dbt build: models, the products snapshot (at the replayed time) and every test"
    )
    bld.add_argument(
        "--full-refresh", action="store_true", help="rebuild the incremental session facts from every event"
    )
    bld.add_argument(
        "--lookback-days",
        type=float,
        metavar="DAYS",
        help="recompute the sessions of users with events this many days before the latest built"
        " (default: the project's incremental_lookback_days, 3)",
    )
    bld.set_defaults(func=cmd_build)

    exp = sub.add_parser("export", help="run the saved queries' exports into the warehouse")
    exp.add_argument("--select", nargs="+", metavar="NAME", help="only these saved queries")
    exp.add_argument("--parquet", metavar="DIR", help="also write each export as DIR/<alias>.parquet")
    exp.set_defaults(func=cmd_export)

    sub.add_parser("publish", help="publish a copy of the warehouse for readers").set_defaults(
        func=cmd_publish
    )
    sub.add_parser(
        "report",
        help="write the answers into docs/answers.md, their headline into README.md, charts into"
        " docs/images and output/report.html (for generated data: output/answers.md, output/images)",
    ).set_defaults(func=cmd_report)
    srv = sub.add_parser(
        "serve", help="serve the semantic layer (GraphQL, Arrow Flight SQL, Postgres) and the dashboard"
    )
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    srv.add_argument(
        "--port", type=port_number, default=8000, help="HTTP port: GraphQL and dashboard (default 8000)"
    )
    srv.add_argument(
        "--flight-port", type=port_number, default=None, help="Arrow Flight SQL port (default: off)"
    )
    srv.add_argument(
        "--pg-port",
        type=port_number,
        default=None,
        help="Postgres wire protocol port (default: off; password: the token)",
    )
    srv.add_argument(
        "--access-log",
        action="store_true",
        help="log every HTTP request too (the query log already has a line per query)",
    )
    srv.set_defaults(func=cmd_serve)
    sub.add_parser("demo", help="the main job end to end (what `make demo` runs)").set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except USER_ERRORS as exc:
        print(f"greenery {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"greenery {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
