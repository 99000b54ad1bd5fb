"""Statements in dbt's semantic-layer dialect, as Flight SQL and JDBC clients send them.

A statement is one template, optionally wrapped in ``select * from``::

    {{ semantic_layer.query(metrics=["orders"], group_by=[Dimension("metric_time").grain("week")]) }}
    select * from {{ semantic_layer.dimension_values(group_by="user__state", metrics=["orders"]) }}
    {{ semantic_layer.metrics() }}

The template is cut out with a quote-aware scanner (where filters carry their own ``{{ }}``
inside strings), then read with `ast` and walked node by node: only keyword arguments whose
values are literals, lists, and the reference objects ``Dimension``, ``TimeDimension``,
``Entity`` and ``Metric`` are accepted. Nothing is ever evaluated.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Literal

from metricflow_semantic_interfaces.type_enums.time_granularity import TimeGranularity

from greenery.semantic import filters
from greenery.serve.service import MAX_ITEMS, QueryRequest

MAX_STATEMENT_CHARS = 100_000
_PREFIX = re.compile(r"\s*(?:select\s+\*\s+from\s+)?\{\{", re.IGNORECASE)
_OPENING = {"(": ")", "[": "]", "{": "}"}
_CLOSING = {v: k for k, v in _OPENING.items()}
_GRAINS = frozenset(g.value for g in TimeGranularity)

MetadataKind = Literal[
    "metrics",
    "dimensions",
    "entities",
    "measures",
    "saved_queries",
    "queryable_granularities",
    "metrics_for_dimensions",
]
_PAGING = ("search", "page_size", "page_number")
# The functions a statement may call, with the keyword arguments each takes (dbt's JDBC docs).
_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "query": ("metrics", "group_by", "where", "order_by", "limit", "saved_query", "compile", "read_cache"),
    "dimension_values": ("group_by", "metrics"),
    "metrics": _PAGING,
    "dimensions": ("metrics", *_PAGING),
    "entities": ("metrics", *_PAGING),
    "measures": ("metrics", *_PAGING),
    "saved_queries": _PAGING,
    "queryable_granularities": ("metrics",),
    "metrics_for_dimensions": ("group_by", *_PAGING),
}


FUNCTIONS = frozenset(_ARGUMENTS)


class StatementError(ValueError):
    """A statement that is not a well-formed semantic-layer call (the message says what is wrong)."""


@dataclass(frozen=True)
class QueryStatement:
    """``semantic_layer.query(…)`` or ``semantic_layer.dimension_values(…)``."""

    request: QueryRequest
    read_cache: bool = True
    compile_only: bool = False


@dataclass(frozen=True)
class MetadataStatement:
    """``semantic_layer.metrics()``, ``dimensions(metrics=[…])`` and the like."""

    kind: MetadataKind
    metrics: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()  # metrics_for_dimensions
    search: str | None = None
    page_size: int | None = None  # None: every item
    page_number: int = 1


Statement = QueryStatement | MetadataStatement


@dataclass(frozen=True)
class _Reference:
    """A ``Dimension(…)``/``TimeDimension(…)``/``Entity(…)``/``Metric(…)`` value, maybe ``.descending()``."""

    kind: str
    name: str  # the dunder name without grain, e.g. ``metric_time`` or ``user__state``
    grain: str | None
    date_part: str | None
    descending: bool

    @property
    def query_name(self) -> str:
        """The name MetricFlow queries by: ``metric_time__week``, ``order__ordered_at__extract_dow``."""
        name = self.name + (f"__{self.grain.lower()}" if self.grain else "")
        return name + (f"__extract_{self.date_part.lower()}" if self.date_part else "")


Value = str | int | bool | None | _Reference | list["Value"]


# ---- the scanner ---------------------------------------------------------------------------


def extract_call(statement: str) -> str:
    """The expression inside the statement's one ``{{ … }}`` (StatementError when there is none)."""
    if len(statement) > MAX_STATEMENT_CHARS:
        raise StatementError(f"the statement is longer than {MAX_STATEMENT_CHARS} characters")
    opening = _PREFIX.match(statement)
    if opening is None:
        raise StatementError(
            "a statement is {{ semantic_layer.<function>(…) }}, optionally inside select * from …; "
            f"got {_shown(statement)}"
        )
    end = template_end(statement, opening.end())
    rest = statement[end + 2 :].strip()
    if rest not in ("", ";"):
        raise StatementError(f"unexpected text after the closing '}}}}': {_shown(rest)}")
    return statement[opening.end() : end]


def is_bare_template(statement: str) -> bool:
    """Whether the statement is one template (maybe inside ``select * from``) and nothing else."""
    opening = _PREFIX.match(statement)
    if opening is None:
        return False
    try:
        end = template_end(statement, opening.end())
    except StatementError:
        return True  # a broken template: parse_statement says what is wrong with it
    return statement[end + 2 :].strip() in ("", ";")


def template_end(text: str, start: int) -> int:
    """Index of the ``}}`` that closes the template opened before `start`, outside strings and brackets."""
    return _balanced_end(text, start, until_braces=True)


def call_end(text: str, opening: int) -> int:
    """Index of the bracket that closes the one at `opening`, outside strings."""
    return _balanced_end(text, opening, until_braces=False)


def _balanced_end(text: str, start: int, *, until_braces: bool) -> int:
    """Scan from `start`, skipping strings and balancing brackets, to the closing ``}}`` (until_braces)
    or to the bracket that closes the one at `start`."""
    brackets: list[tuple[str, int]] = []
    i = start
    while i < len(text):
        char = text[i]
        if char in "'\"":
            i = _string_end(text, i)
            continue
        if until_braces and char == "}" and not brackets and text.startswith("}}", i):
            return i
        if char in _OPENING:
            brackets.append((char, i))
        elif char in _CLOSING:
            if not brackets or brackets[-1][0] != _CLOSING[char]:
                raise StatementError(f"unbalanced brackets: {char!r} at position {i} closes nothing")
            brackets.pop()
            if not until_braces and not brackets:
                return i
        i += 1
    if brackets:
        char, position = brackets[-1]
        raise StatementError(f"unbalanced brackets: {char!r} at position {position} is never closed")
    raise StatementError("the template is not closed: '{{' without a matching '}}'")


def _string_end(text: str, start: int) -> int:
    """Index just past the string literal starting at `start` (single, double or triple quotes)."""
    quote = text[start] * 3 if text.startswith(text[start] * 3, start) else text[start]
    i = start + len(quote)
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(quote, i):
            return i + len(quote)
        if len(quote) == 1 and text[i] == "\n":
            break
        i += 1
    raise StatementError(f"unbalanced quotes: the string opened at position {start} is never closed")


def _shown(text: str, limit: int = 120) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "…")


# ---- the parser ----------------------------------------------------------------------------


def parse_statement(statement: str) -> Statement:
    """The statement as a QueryStatement or MetadataStatement (StatementError naming what is wrong)."""
    call = extract_call(statement)
    try:
        node = ast.parse(call.strip(), mode="eval").body
    except SyntaxError as exc:
        raise StatementError(f"not a semantic_layer call ({exc.msg}): {_shown(call)}") from None
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "semantic_layer"
    ):
        raise StatementError(f"only semantic_layer.<function>(…) calls are allowed, not {_shown(call)}")
    function = node.func.attr
    if function not in _ARGUMENTS:
        raise StatementError(
            f"unknown function semantic_layer.{function}(); known: "
            + ", ".join(f"{name}()" for name in _ARGUMENTS)
        )
    arguments = _keyword_arguments(function, node)
    if function == "query":
        return _query(arguments)
    if function == "dimension_values":
        return _dimension_values(arguments)
    return _metadata(function, arguments)


def _keyword_arguments(function: str, call: ast.Call) -> dict[str, Value]:
    if call.args:
        raise StatementError(f"semantic_layer.{function}() takes keyword arguments only (name=value)")
    allowed = _ARGUMENTS[function]
    arguments: dict[str, Value] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise StatementError(f"semantic_layer.{function}() does not take **arguments")
        if keyword.arg not in allowed:
            known = ", ".join(allowed) or "none"
            raise StatementError(
                f"semantic_layer.{function}() has no argument {keyword.arg!r} (arguments: {known})"
            )
        arguments[keyword.arg] = _value(keyword.value)
    return arguments


def _value(node: ast.expr) -> Value:
    """A literal, a list of values, or a reference object; anything else is refused."""
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (str, int, bool))):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(element) for element in node.elts]
    if isinstance(node, ast.Call):
        return _reference(node)
    raise StatementError(
        "argument values must be strings, numbers, True/False/None, lists, or "
        f"Dimension/TimeDimension/Entity/Metric(…), not {_shown(ast.unparse(node), 80)}"
    )


def _reference(node: ast.Call) -> _Reference:
    """``Metric("m").descending(True)``, ``Dimension("d").grain("week")``, ``TimeDimension("t", "day")``…"""
    descending = False
    if isinstance(node.func, ast.Attribute) and node.func.attr == "descending":
        if node.keywords or len(node.args) > 1:
            raise StatementError(".descending() takes one True/False")
        if node.args:
            flag = node.args[0]
            if not (isinstance(flag, ast.Constant) and isinstance(flag.value, bool)):
                shown = _shown(ast.unparse(flag), 40)
                raise StatementError(f".descending() takes True or False, not {shown}")
            descending = flag.value
        else:
            descending = True
        if not isinstance(node.func.value, ast.Call):
            raise StatementError(f"{_shown(ast.unparse(node), 80)} is not a reference object")
        node = node.func.value
    try:
        reference = filters.parse_reference(ast.unparse(node))
    except ValueError as exc:
        raise StatementError(str(exc)) from None
    grain = reference.grain if reference.grain and reference.grain.lower() != "none" else None
    return _Reference(reference.kind, reference.name, grain, reference.date_part, descending)


def _query(arguments: dict[str, Value]) -> QueryStatement:
    group_by = [_group_by(item) for item in _items(arguments.get("group_by"))]
    order_items = _items(arguments.get("order_by"))
    if max(len(group_by), len(order_items)) > MAX_ITEMS:  # before matching each order-by to each group-by
        raise StatementError(f"at most {MAX_ITEMS} group_by and {MAX_ITEMS} order_by items")
    order_by = tuple(_order_by(item, group_by) for item in order_items)
    saved_query = arguments.get("saved_query")
    if saved_query is not None and not isinstance(saved_query, str):
        raise StatementError("saved_query takes a quoted name")
    request = QueryRequest(
        metrics=_names(arguments.get("metrics"), "metrics"),
        group_by=tuple(g.query_name for g in group_by),
        where=tuple(_where(item) for item in _items(arguments.get("where"))),
        order_by=order_by,
        limit=_limit(arguments.get("limit")),
        saved_query=saved_query,
    )
    return QueryStatement(
        request=request,
        read_cache=_flag(arguments.get("read_cache"), "read_cache", default=True),
        compile_only=_flag(arguments.get("compile"), "compile", default=False),
    )


def _dimension_values(arguments: dict[str, Value]) -> QueryStatement:
    items = _items(arguments.get("group_by"))
    if len(items) != 1:
        raise StatementError("dimension_values() takes one group_by: a name or Dimension(…)")
    request = QueryRequest(
        metrics=_names(arguments.get("metrics"), "metrics"),
        group_by=(_group_by(items[0]).query_name,),
        dimension_values=True,
    )
    return QueryStatement(request=request)


def _metadata(function: str, arguments: dict[str, Value]) -> MetadataStatement:
    search = arguments.get("search")
    if search is not None and not isinstance(search, str):
        raise StatementError("search takes a quoted text")
    page_size = _limit(arguments.get("page_size"), "page_size")
    page_number = _limit(arguments.get("page_number"), "page_number")
    return MetadataStatement(
        kind=function,  # type: ignore[arg-type]
        metrics=_names(arguments.get("metrics"), "metrics"),
        group_by=tuple(_group_by(item).query_name for item in _items(arguments.get("group_by"))),
        search=search,
        page_size=page_size,
        page_number=page_number or 1,
    )


def _items(value: Value) -> list[Value]:
    """A list argument; one bare item counts as a list of one."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _names(value: Value, argument: str) -> tuple[str, ...]:
    names = []
    for item in _items(value):
        if isinstance(item, _Reference) and item.kind == "Metric" and argument == "metrics":
            item = item.name
        if not isinstance(item, str):
            raise StatementError(f"{argument} takes a list of quoted names")
        names.append(item)
    return tuple(names)


def _group_by(item: Value) -> _Reference:
    if isinstance(item, str):
        return _Reference("Dimension", item, None, None, False)
    if isinstance(item, _Reference) and item.kind != "Metric" and not item.descending:
        return item
    raise StatementError(
        "group_by items are names or Dimension(…)/TimeDimension(…)/Entity(…) (no Metric, no .descending())"
    )


def _order_by(item: Value, group_by: list[_Reference]) -> str:
    """``-name`` for descending; a grain-less time dimension takes the grain it is grouped by."""
    if isinstance(item, str):
        return item
    if not isinstance(item, _Reference):
        raise StatementError("order_by items are names ('-name' for descending) or Metric/Dimension(…)")
    name = item.query_name
    if item.kind != "Metric" and item.grain is None and item.date_part is None:
        grouped = [g.query_name for g in group_by if _grouped_as(g, item.name)]
        if len(grouped) == 1:
            name = grouped[0]
    return f"-{name}" if item.descending else name


def _grouped_as(group_by: _Reference, name: str) -> bool:
    """Whether the group-by item is `name` at some grain (``metric_time__week`` is metric_time)."""
    if group_by.name == name:
        return True
    base, _, grain = group_by.name.rpartition("__")
    return base == name and grain in _GRAINS


def _where(item: Value) -> str:
    if not isinstance(item, str):
        raise StatementError(
            "where takes a list of quoted filters, e.g. [\"{{ Dimension('user__state') }} = 'CA'\"]"
        )
    return item


def _limit(value: Value, argument: str = "limit") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StatementError(f"{argument} takes a whole number ≥ 0, not {value!r}")
    return value


def _flag(value: Value, argument: str, *, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise StatementError(f"{argument} takes True or False, not {value!r}")
    return value
