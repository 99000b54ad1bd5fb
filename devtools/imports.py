"""The package's import graph, printed; fails on a cycle, an upward import or a hidden import.

    python -m devtools.imports            # from the repo root (make lint runs it)

Rules, from the layout in README.md ("Map of the code"):
- rooms have floors; a module may import its own room and rooms on lower floors only;
- the protocol adapters in ``greenery.serve`` never import each other (``http`` hosts
  GraphQL, ``run`` wires every transport onto one service);
- a ``greenery`` import sits at the top of its module, never inside a function or class
  (an import hidden there would hide a cycle);
- no cycles between modules.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "greenery"
SRC = Path(__file__).resolve().parents[1] / "src"
# Floor of each room: imports point from a higher floor to a lower one, or within a room.
FLOORS = {
    "greenery.data": 1,
    "greenery.warehouse": 2,
    "greenery.semantic": 3,
    "greenery.serve": 4,
    "greenery.report": 4,
    "greenery.snowflake": 4,
    "greenery.demo": 5,
    "greenery.cli": 6,
    "greenery.orchestration": 6,  # the Dagster code location, beside the cli
}
# Protocol adapters on the query service; `http` hosts GraphQL, `run` wires them all.
ADAPTERS = {"greenery.serve.graphql", "greenery.serve.flight", "greenery.serve.postgres"}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    top_level: bool


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom, known: dict[str, Path], package: str) -> Iterator[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative import: `from .x import y` in package a.b is a.b.x
            parents = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parents, base]).strip(".")
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name.startswith(PACKAGE + ".") or name == PACKAGE:
            yield name


def edges(known: dict[str, Path]) -> list[Edge]:
    found: list[Edge] = []
    for source, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in dict.fromkeys(_targets(node, known, package)):
                    if target != source:
                        found.append(Edge(source, target, node.lineno, id(node) in top))
    return found


def room(module: str) -> str | None:
    """The room (a key of FLOORS) a module belongs to."""
    rooms = sorted(FLOORS, key=len, reverse=True)
    return next((r for r in rooms if module == r or module.startswith(r + ".")), None)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def problems(found: list[Edge], known: dict[str, Path]) -> list[str]:
    out: list[str] = []
    for edge in found:
        where = f"{known[edge.source].relative_to(SRC.parent)}:{edge.line}"
        if not edge.top_level:
            out.append(f"{where}: {edge.source} imports {edge.target} inside a function or class")
        source_room, target_room = room(edge.source), room(edge.target)
        if source_room is None or target_room is None:
            unplaced = edge.source if source_room is None else edge.target
            if unplaced != PACKAGE:
                out.append(f"{where}: {unplaced} is in no room (add it to FLOORS in devtools/imports.py)")
        elif source_room != target_room and FLOORS[target_room] >= FLOORS[source_room]:
            out.append(
                f"{where}: {edge.source} (floor {FLOORS[source_room]}) imports {edge.target} "
                f"(floor {FLOORS[target_room]}): imports point down"
            )
        if edge.source in ADAPTERS and edge.target in ADAPTERS:
            out.append(f"{where}: protocol adapters never import each other ({edge.source} → {edge.target})")
    graph: dict[str, set[str]] = {}
    for edge in found:
        graph.setdefault(edge.source, set()).add(edge.target)
    out.extend(f"import cycle: {' → '.join(c)}" for c in cycles(graph))
    return out


def main() -> int:
    known = modules()
    found = edges(known)
    targets: dict[str, list[str]] = {}
    for edge in found:
        targets.setdefault(edge.source, []).append(edge.target)
    for floor in sorted(set(FLOORS.values()), reverse=True):
        for module in sorted(m for m in known if (r := room(m)) and FLOORS[r] == floor):
            imported = ", ".join(t.removeprefix("greenery.") for t in sorted(set(targets.get(module, []))))
            print(f"{floor}  {module:<32} → {imported or '-'}")
    found_problems = problems(found, known)
    for problem in found_problems:
        print(problem, file=sys.stderr)
    print(f"{len(known)} modules, {len(found)} imports, {len(found_problems)} problem(s)")
    return 1 if found_problems else 0


if __name__ == "__main__":
    sys.exit(main())
