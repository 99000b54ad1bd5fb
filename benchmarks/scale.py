"""`make bench-scale SCALE=N`: the whole pipeline at one scale, each step timed and measured.

Every step is one `greenery` command in a child process against a warehouse in a temporary
folder: generate (and write raw) → replay weeks 1–4 → build (full) → exports → publish → the
next day, then the day after (each generated, appended, built incrementally: the first
daily build after a full build, then an ordinary one). Per step: wall time, CPU time (the
child and every process it waited for, dbt included) and how much of it the kernel spent
(system time: page faults, memory reclaim and compaction, I/O), the peak resident memory of
the largest process (wait4's ru_maxrss) and of the whole process tree (sampled from /proc
every 0.2 s), what it read from and wrote to disk (wait4's block counts: reads the page
cache served are not counted, so a step that reads the warehouse cold shows it), and the
load average of the machine while it ran (other work competes for the same cores).
The exports step also reports each saved query's export time as `greenery export` prints it,
and each build step the dbt nodes that took longest (from the run_results.json dbt wrote).

With --check-incremental, the exports are then run on the warehouse the daily builds made,
a copy of it is rebuilt with one full refresh (and its exports run) in a folder beside it,
and the two are compared table by table (benchmarks.compare): every staging, intermediate,
mart, snapshot and export table should hold the same rows. Those steps are printed, but not
counted in the figures above.

Printed as a table and as JSON, which is also written to a file (--json, default
output/bench-scale-<N>.json). Figures, never assertions: the targets are printed beside them.

    python -m benchmarks.scale --scale 1000 [--keep DIR] [--json PATH] [--check-incremental]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.compare import TableDiff, compare_warehouses
from greenery.warehouse import store
from greenery.warehouse.build import copy_warehouse
from greenery.warehouse.dbt import TARGET_DIR

SAMPLE_SECONDS = 0.2
SLOWEST_NODES = 8  # per build step: the dbt nodes that took longest, from its run_results.json
MIB = 2**20
BLOCK_BYTES = 512  # the unit of getrusage's ru_inblock and ru_oublock on Linux
TARGETS = {
    "end to end": "≤ 300 s",
    "peak RSS per step": "≤ 4 GiB",
    "generate + write raw": "≤ 90 s, ≤ 1 GiB",
    "daily incremental build": "≤ 10 % of the full build",
    "funnel_overall export": "≤ 10 s",
}
_EXPORT_LINE = re.compile(r"^\s+(\S+)\s+→ .*?([\d,]+) rows\s+(\d+) ms$")


@dataclass
class Step:
    name: str
    command: list[str]
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    system_cpu_seconds: float = 0.0  # of cpu_seconds, spent in the kernel (ru_stime)
    peak_process_mib: float = 0.0  # the largest single process (wait4 ru_maxrss)
    peak_tree_mib: float = 0.0  # the process tree's sum, sampled
    disk_read_mib: float = 0.0  # blocks read from disk (wait4's ru_inblock), not from the page cache
    disk_written_mib: float = 0.0  # blocks written (ru_oublock)
    load_before: float = 0.0  # 1-minute load average when the step started
    load_after: float = 0.0
    exports_ms: dict[str, int] = field(default_factory=dict)
    slowest_nodes_s: dict[str, float] = field(default_factory=dict)  # dbt node -> seconds
    node_seconds_by_kind: dict[str, float] = field(default_factory=dict)  # model, test… -> seconds
    output: str = ""


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc/<pid>/task/*/children."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as file:
                found += [int(child) for child in file.read().split()]
        except OSError:
            continue
    return found


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants now."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        total += _rss_bytes(current)
        pending += _children(current)
    return total


def run_step(step: Step, env: dict[str, str]) -> Step:
    """Run the step's command as a child; fill in its figures. Raises when it fails."""
    step.load_before = os.getloadavg()[0]
    start, start_time = time.perf_counter(), time.time()
    child = subprocess.Popen(
        step.command,
        env=env,
        cwd=store.PROJECT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_SECONDS):
            peak[0] = max(peak[0], tree_rss(child.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    step.seconds = time.perf_counter() - start
    step.cpu_seconds = usage.ru_utime + usage.ru_stime
    step.system_cpu_seconds = usage.ru_stime
    step.peak_process_mib = usage.ru_maxrss / 1024  # KiB on Linux
    step.peak_tree_mib = max(peak[0], usage.ru_maxrss * 1024) / MIB
    step.disk_read_mib = usage.ru_inblock * BLOCK_BYTES / MIB
    step.disk_written_mib = usage.ru_oublock * BLOCK_BYTES / MIB
    step.load_after = os.getloadavg()[0]
    step.output = output
    if child.returncode != 0:
        raise RuntimeError(f"step {step.name!r} failed (exit {child.returncode}):\n{output}")
    if step.name == "exports":
        for line in output.splitlines():
            if match := _EXPORT_LINE.match(line):
                step.exports_ms[match.group(1)] = int(match.group(3))
    if step.command[1:2] == ["build"]:
        results = run_results(TARGET_DIR / "run_results.json", started=start_time)
        step.slowest_nodes_s = slowest_nodes(results)
        step.node_seconds_by_kind = seconds_by_kind(results)
    return step


def run_results(path: Path, started: float) -> list[dict[str, Any]]:
    """The nodes of dbt's `run_results.json` at `path`, if dbt wrote it after `started` (a Unix
    time); else none."""
    try:
        if path.stat().st_mtime < started:
            return []
        return list(json.loads(path.read_text())["results"])
    except (OSError, ValueError, KeyError):
        return []


def slowest_nodes(results: list[dict[str, Any]]) -> dict[str, float]:
    """The SLOWEST_NODES nodes that took longest (name -> seconds)."""
    timed = sorted(results, key=lambda node: node["execution_time"], reverse=True)[:SLOWEST_NODES]
    return {node["unique_id"].split(".", 2)[-1]: round(node["execution_time"], 1) for node in timed}


def seconds_by_kind(results: list[dict[str, Any]]) -> dict[str, float]:
    """The nodes' seconds summed per kind (model, test, unit_test, snapshot) that took any: a
    build runs one node at a time (the dbt profile's threads: 1), an incremental build two."""
    totals: dict[str, float] = {}
    for node in results:
        kind = node["unique_id"].split(".", 1)[0]
        totals[kind] = totals.get(kind, 0.0) + node["execution_time"]
    return {kind: round(seconds, 1) for kind, seconds in sorted(totals.items()) if round(seconds, 1)}


DAYS = ("next day", "second day")  # the daily runs after the full build, in order
CHECK = "check: full refresh"  # --check-incremental's steps, not counted in the figures
GREENERY = str(Path(sys.executable).with_name("greenery"))


def pipeline(scale: int, folder: Path) -> list[Step]:
    """The steps, in order, as `greenery` commands."""
    steps = [
        Step("generate + write raw", [GREENERY, "generate", "--scale", str(scale)]),
        Step("replay weeks 1-4", [GREENERY, "replay", "--weeks", "1-4", "--from-scratch"]),
        Step("build (full)", [GREENERY, "build", "--full-refresh"]),
        Step("exports", [GREENERY, "export"]),
        Step("publish", [GREENERY, "publish"]),
    ]
    for label in DAYS:
        day = folder / label.replace(" ", "-")
        steps += [
            Step(f"{label}: generate", [GREENERY, "generate", "--next-days", "1", "--out", str(day)]),
            Step(f"{label}: load --append", [GREENERY, "load", "--append", "--from-csv", str(day)]),
            Step(f"{label}: build (incremental)", [GREENERY, "build"]),
        ]
    return steps


def summary(steps: list[Step]) -> dict[str, float]:
    """The figures beside the targets. The first daily build follows the full build; the
    second, another daily build, is what an ordinary day costs. --check-incremental's steps
    are left out."""
    steps = [s for s in steps if not s.name.startswith(CHECK)]
    by_name = {s.name: s for s in steps}
    full = by_name["build (full)"].seconds
    first, second = (by_name[f"{label}: build (incremental)"].seconds for label in DAYS)
    return {
        "end_to_end_seconds": sum(s.seconds for s in steps if not s.name.startswith(DAYS)),
        "daily_run_seconds": sum(s.seconds for s in steps if s.name.startswith(DAYS[0])),
        "incremental_build_share_of_full": first / full if full else float("nan"),
        "second_day_run_seconds": sum(s.seconds for s in steps if s.name.startswith(DAYS[1])),
        "second_incremental_build_share_of_full": second / full if full else float("nan"),
        "peak_tree_mib": max(s.peak_tree_mib for s in steps),
        "funnel_overall_export_seconds": by_name["exports"].exports_ms.get("funnel_overall", -1) / 1000,
    }


def table(scale: int, steps: list[Step], totals: dict[str, float]) -> str:
    lines = [
        f"bench-scale at scale {scale} ({os.cpu_count()} cores; load = 1-min load average before → after)",
        f"  {'step':<32} {'wall s':>8} {'cpu s':>8} {'sys s':>7} {'RSS max proc':>13} {'RSS tree':>10}"
        f" {'disk read':>10} {'written':>10}  load",
    ]
    for s in steps:
        lines.append(
            f"  {s.name:<32} {s.seconds:>8.1f} {s.cpu_seconds:>8.1f} {s.system_cpu_seconds:>7.1f}"
            f" {s.peak_process_mib:>9.0f} MiB"
            f" {s.peak_tree_mib:>6.0f} MiB {s.disk_read_mib:>6.0f} MiB {s.disk_written_mib:>6.0f} MiB"
            f"  {s.load_before:.1f} → {s.load_after:.1f}"
        )
        for name, ms in s.exports_ms.items():
            lines.append(f"      export {name:<36} {ms / 1000:>8.1f} s")
        if s.node_seconds_by_kind:
            kinds = ", ".join(f"{kind} {seconds:.1f} s" for kind, seconds in s.node_seconds_by_kind.items())
            lines.append(f"      dbt node time: {kinds}")
        for name, seconds in s.slowest_nodes_s.items():
            lines.append(f"      dbt {name[:60]:<60} {seconds:>6.1f} s")
    lines += [
        f"  end to end (generate → publish): {totals['end_to_end_seconds']:.1f} s"
        f"   (target {TARGETS['end to end']})",
        f"  daily run (next day generated, appended, built): {totals['daily_run_seconds']:.1f} s;"
        f" incremental build = {100 * totals['incremental_build_share_of_full']:.1f} % of the full build"
        f"   (target {TARGETS['daily incremental build']})",
        f"  second daily run: {totals['second_day_run_seconds']:.1f} s; incremental build ="
        f" {100 * totals['second_incremental_build_share_of_full']:.1f} % of the full build",
        f"  largest process tree: {totals['peak_tree_mib']:.0f} MiB"
        f"   (target {TARGETS['peak RSS per step']})",
        f"  funnel_overall export: {totals['funnel_overall_export_seconds']:.1f} s"
        f"   (target {TARGETS['funnel_overall export']})",
    ]
    return "\n".join(lines)


def _run_and_say(step: Step, warehouse: Path) -> Step:
    """Run the step against `warehouse`; say on stderr what it took."""
    run_step(step, {**os.environ, store.ENV_VAR: str(warehouse)})
    print(
        f"  done: {step.name} in {step.seconds:.1f} s (cpu {step.cpu_seconds:.1f} s,"
        f" {step.system_cpu_seconds:.1f} of it in the kernel; peak RSS"
        f" {step.peak_process_mib:.0f} MiB largest process, {step.peak_tree_mib:.0f} MiB tree,"
        f" load {step.load_before:.1f} → {step.load_after:.1f})",
        file=sys.stderr,
        flush=True,
    )
    return step


def comparison(diffs: list[TableDiff], seconds: float) -> str:
    """--check-incremental's answer: how many tables are identical, and each that is not."""
    same = sum(d.identical for d in diffs)
    lines = [
        f"  incremental builds against one full refresh of the same data: {same} of {len(diffs)}"
        f" tables identical ({sum(d.rows for d in diffs):,} rows compared in {seconds:.1f} s)"
    ]
    for d in diffs:
        if not d.identical:
            what = (
                f"{d.only_incremental:,} rows only incremental, {d.only_full_refresh:,} only full refresh"
                if d.same_columns
                else "not in both, or other columns"
            )
            lines.append(f"      differs: {d.relation:<50} {what}")
    return "\n".join(lines)


def check_against_full_refresh(
    warehouse: Path, folder: Path, steps: list[Step]
) -> tuple[list[TableDiff], float]:
    """--check-incremental: the exports of the daily builds' data, a copy of the warehouse in
    `folder` rebuilt with one full refresh and exported, then the two compared table by table.
    The steps are added to `steps`; returns the comparison and the seconds it took."""
    steps.append(_run_and_say(Step(f"{CHECK}: exports before it", [GREENERY, "export"]), warehouse))
    copy = copy_warehouse(warehouse, folder / warehouse.name)
    for step in (
        Step(f"{CHECK}: build", [GREENERY, "build", "--full-refresh"]),
        Step(f"{CHECK}: exports", [GREENERY, "export"]),
    ):
        steps.append(_run_and_say(step, copy))
    started = time.perf_counter()
    diffs = compare_warehouses(warehouse, copy)
    return diffs, time.perf_counter() - started


def run(
    scale: int, json_path: Path, keep: Path | None = None, check_incremental: bool = False
) -> dict[str, object]:
    folder = keep or Path(tempfile.mkdtemp(prefix=f"greenery-scale{scale}-"))
    folder.mkdir(parents=True, exist_ok=True)
    warehouse = folder / "warehouse" / "greenery.duckdb"
    steps: list[Step] = []
    check: tuple[list[TableDiff], float] | None = None
    try:
        for step in pipeline(scale, folder):
            steps.append(_run_and_say(step, warehouse))
        if check_incremental:
            check = check_against_full_refresh(warehouse, folder / "full-refresh", steps)
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    totals = summary(steps)
    print(table(scale, steps, totals))
    report = {
        "scale": scale,
        "cores": os.cpu_count(),
        "steps": [{k: v for k, v in asdict(s).items() if k != "output"} for s in steps],
        "totals": totals,
        "targets": TARGETS,
    }
    if check is not None:
        diffs, seconds = check
        print(comparison(diffs, seconds))
        report["incremental_vs_full_refresh"] = [asdict(d) for d in diffs]
        report["incremental_vs_full_refresh_seconds"] = seconds
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    print(f"(JSON written to {json_path})")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=1000, help="generator scale (default 1000)")
    parser.add_argument(
        "--json", type=Path, help="where to write the JSON (default output/bench-scale-<N>.json)"
    )
    parser.add_argument(
        "--keep", type=Path, help="build in this folder and keep it (default: a temporary one)"
    )
    parser.add_argument(
        "--check-incremental",
        action="store_true",
        help="then rebuild a copy with one full refresh and compare every table with it",
    )
    args = parser.parse_args()
    json_path = args.json or store.OUTPUT_DIR / f"bench-scale-{args.scale}.json"
    run(args.scale, json_path, args.keep, args.check_incremental)


if __name__ == "__main__":
    main()
