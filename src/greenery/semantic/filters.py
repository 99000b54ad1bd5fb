"""Where filters from API clients: only predicates over the semantic layer, nothing else.

A filter is MetricFlow Jinja such as ``{{ Dimension('user__state') }} = 'CA'``. MetricFlow
pastes the text around the templates into the SQL it writes, so a filter could smuggle in a
statement, a subquery or a table function (``read_csv('/etc/passwd')``). `normalize_where`
lets through only a predicate: comparisons, boolean logic, IN / BETWEEN / LIKE / IS NULL,
literals, a few scalar functions, and references to dimensions, time dimensions, entities
and metrics written as templates. It returns the filter re-written from its parse tree, so
what reaches MetricFlow is exactly what was checked.

Used by the GraphQL API and the Flight SQL endpoint alike.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from greenery.semantic.shape import TooComplex, check_brackets

MAX_FILTER_CHARS = 4000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PLACEHOLDER = "sl_ref_{}_z"
_PLACEHOLDER_PATTERN = re.compile(r"\bsl_ref_(\d+)_z\b")
_FORBIDDEN_TEXT = {
    ";": "';' is not allowed (a filter is one predicate, not statements)",
    "--": "SQL comments ('--') are not allowed",
    "/*": "SQL comments ('/*') are not allowed",
    "*/": "SQL comments ('*/') are not allowed",
    "{%": "Jinja statements ('{%') are not allowed",
    "{#": "Jinja comments ('{#') are not allowed",
    "\x00": "NUL characters are not allowed",
}

# Template callables MetricFlow understands, with the keyword arguments each accepts.
_TEMPLATE_KEYWORDS: dict[str, frozenset[str]] = {
    "Dimension": frozenset({"entity_path"}),
    "TimeDimension": frozenset({"time_granularity_name", "entity_path", "date_part_name"}),
    "Entity": frozenset({"entity_path"}),
    "Metric": frozenset({"group_by"}),
}
_TEMPLATE_POSITIONAL: dict[str, tuple[str, ...]] = {
    "Dimension": ("name", "entity_path"),
    "TimeDimension": ("time_dimension_name", "time_granularity_name", "entity_path"),
    "Entity": ("entity_name", "entity_path"),
    "Metric": ("metric_name", "group_by"),
}
_TEMPLATE_MAX_POSITIONAL = {kind: len(names) for kind, names in _TEMPLATE_POSITIONAL.items()}
_TEMPLATE_METHODS = frozenset({"grain", "date_part"})

# The SQL a filter may contain (sqlglot expression types).
_STRUCTURE: tuple[type[exp.Expression], ...] = (
    exp.And,
    exp.Or,
    exp.Not,
    exp.Paren,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.NullSafeEQ,
    exp.NullSafeNEQ,
    exp.Is,
    exp.In,
    exp.Between,
    exp.Like,
    exp.ILike,
    exp.Escape,
    exp.Literal,
    exp.RawString,
    exp.Boolean,
    exp.Null,
    exp.Neg,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.DPipe,
    exp.Cast,
    exp.TryCast,
    exp.DataType,
    exp.DataTypeParam,
    exp.Interval,
    exp.Var,
    exp.Case,
    exp.If,
)
# Scalar functions a filter may call, by the name users write.
ALLOWED_FUNCTIONS: dict[str, type[exp.Expression]] = {
    "abs": exp.Abs,
    "ceil": exp.Ceil,
    "coalesce": exp.Coalesce,
    "concat": exp.Concat,
    "current_date": exp.CurrentDate,
    "current_timestamp": exp.CurrentTimestamp,
    "date_trunc": exp.TimestampTrunc,
    "extract": exp.Extract,
    "floor": exp.Floor,
    "length": exp.Length,
    "lower": exp.Lower,
    "round": exp.Round,
    "substring": exp.Substring,
    "trim": exp.Trim,
    "upper": exp.Upper,
}
_FUNCTIONS = (*ALLOWED_FUNCTIONS.values(), exp.DateTrunc)


class FilterRejected(ValueError):
    """A where filter that is not a plain predicate over the semantic layer."""

    def __init__(self, where: str, reason: str) -> None:
        shown = where if len(where) <= 200 else where[:200] + "…"
        super().__init__(f"where filter rejected: {reason} — in {shown!r}")
        self.reason = reason


@dataclass(frozen=True)
class Reference:
    """One reference to the semantic layer, e.g. ``TimeDimension('metric_time', 'week')``.

    `name` is the dunder name MetricFlow queries by (``user__state``, ``metric_time``);
    `text` is the reference re-written as a ``{{ … }}`` template in canonical form.
    """

    kind: str
    name: str
    grain: str | None
    date_part: str | None
    text: str


def sub_templates(function: Callable[[re.Match[str]], str], text: str) -> str:
    """Each ``{{ … }}`` in `text` replaced by `function` of its match. Only the text up to the
    last ``}}`` is searched: there, every ``{{`` ends at the next ``}}``; past it, each ``{{``
    would scan to the end for nothing (quadratic: 2 s for 10,000 of them)."""
    last = text.rfind("}}")
    if last < 0:
        return text
    return _TEMPLATE.sub(function, text[: last + 2]) + text[last + 2 :]


def check_name(name: str, what: str) -> str:
    """A metric, dimension, entity or saved-query name: letters, digits and underscores only."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid {what} name {name!r}: use letters, digits and underscores")
    return name


def normalize_where(where: str) -> str:
    """The filter re-written from its parse tree, or FilterRejected naming what is not allowed."""
    if not where or not where.strip():
        raise FilterRejected(where, "the filter is empty")
    if len(where) > MAX_FILTER_CHARS:
        raise FilterRejected(where, f"the filter is longer than {MAX_FILTER_CHARS} characters")
    for text, what in _FORBIDDEN_TEXT.items():
        if text in where:
            raise FilterRejected(where, what)
    if _PLACEHOLDER_PATTERN.search(where):
        raise FilterRejected(where, "identifiers named like sl_ref_<n>_z are reserved")
    references: list[Reference] = []

    def placeholder(match: re.Match[str]) -> str:
        try:
            references.append(parse_reference(match.group(1)))
        except ValueError as exc:
            raise FilterRejected(where, f"in {{{{{match.group(1)}}}}}: {exc}") from None
        return _PLACEHOLDER.format(len(references) - 1)

    sql = sub_templates(placeholder, where)
    if "{{" in sql or "}}" in sql:
        raise FilterRejected(where, "an unbalanced '{{' or '}}'")
    try:
        check_brackets(sql)
    except TooComplex as exc:
        raise FilterRejected(where, str(exc)) from None
    tree = _parse_sql(where, sql)
    for node in tree.walk():
        _check_node(where, node, len(references))
    canonical = tree.sql(dialect="duckdb")
    return _PLACEHOLDER_PATTERN.sub(lambda m: references[int(m.group(1))].text, canonical)


def normalize_wheres(wheres: Sequence[str]) -> list[str]:
    return [normalize_where(w) for w in wheres]


def _parse_sql(where: str, sql: str) -> exp.Expression:
    try:
        trees = sqlglot.parse(sql, read="duckdb")
    except SqlglotError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FilterRejected(where, f"not a SQL predicate ({first})") from None
    if len(trees) != 1 or trees[0] is None:
        raise FilterRejected(where, "a filter must be exactly one predicate")
    return trees[0]


def _check_node(where: str, node: exp.Expression, n_refs: int) -> None:
    if isinstance(node, exp.Column):
        match = _PLACEHOLDER_PATTERN.fullmatch(node.name)
        if (
            node.table
            or match is None
            or int(match.group(1)) >= n_refs
            or not isinstance(node.this, exp.Identifier)
        ):
            raise FilterRejected(
                where,
                f"the bare identifier {node.sql()!r}: refer to the semantic layer with "
                "{{ Dimension('entity__name') }}, {{ TimeDimension('metric_time', 'day') }}, "
                "{{ Entity('name') }} or {{ Metric('name', group_by=['entity']) }}, and quote strings",
            )
        return
    if isinstance(node, exp.Identifier):
        if isinstance(node.parent, exp.Column):
            return
        raise FilterRejected(where, f"the identifier {node.sql()!r} is not allowed")
    if isinstance(node, (exp.Select, exp.Subquery, exp.Union, exp.Exists, exp.Query)):
        raise FilterRejected(where, "subqueries (SELECT …) are not allowed")
    if isinstance(node, _FUNCTIONS):
        return
    if isinstance(node, exp.Func) and not isinstance(node, _STRUCTURE):
        name = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
        allowed = ", ".join(sorted(ALLOWED_FUNCTIONS))
        raise FilterRejected(where, f"the function {name.lower()}() is not allowed (allowed: {allowed})")
    if not isinstance(node, _STRUCTURE):
        snippet = node.sql(dialect="duckdb")[:60]
        raise FilterRejected(where, f"{type(node).__name__} ({snippet!r}) is not allowed")


def parse_reference(call: str) -> Reference:
    """``Dimension('user__state').grain('month')`` and the like, checked with `ast` (never eval).

    Raises ValueError naming what is wrong; also used for the group-by items of saved queries.
    """
    try:
        node = ast.parse(call.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(f"{call.strip()!r} is not a Dimension/TimeDimension/Entity/Metric call") from None
    methods: dict[str, str] = {}
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        method = node.func.attr
        if method not in _TEMPLATE_METHODS or node.keywords or len(node.args) != 1:
            raise ValueError(
                f"the template method .{method}() is not allowed (only .grain(x), .date_part(x))"
            )
        if method in methods:
            raise ValueError(f".{method}() is given twice")
        methods[method] = _string(node.args[0])
        node = node.func.value
    if not (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _TEMPLATE_KEYWORDS
    ):
        raise ValueError(f"{call.strip()!r} is not a call of {', '.join(_TEMPLATE_KEYWORDS)}")
    kind = node.func.id
    if not node.args or len(node.args) > _TEMPLATE_MAX_POSITIONAL[kind]:
        raise ValueError(
            f"{kind}() takes a name and at most {_TEMPLATE_MAX_POSITIONAL[kind] - 1} more arguments"
        )
    arguments = dict(zip(_TEMPLATE_POSITIONAL[kind], node.args, strict=False))
    for keyword in node.keywords:
        if keyword.arg not in _TEMPLATE_KEYWORDS[kind] or keyword.arg in arguments:
            raise ValueError(f"{kind}() does not take the argument {keyword.arg!r} here")
        arguments[keyword.arg] = keyword.value
    values = {key: _argument(value) for key, value in arguments.items()}
    element = values[_TEMPLATE_POSITIONAL[kind][0]]
    path = values.get("entity_path", [])
    if not isinstance(element, str) or not isinstance(path, list):
        raise ValueError(f"{kind}() takes a quoted name first and entity_path as a list of names")
    grain = methods.get("grain") or values.get("time_granularity_name")
    date_part = methods.get("date_part") or values.get("date_part_name")
    rendered = ", ".join(repr(v) if i == 0 else f"{k}={v!r}" for i, (k, v) in enumerate(values.items()))
    suffix = "".join(f".{m}({v!r})" for m, v in methods.items())
    return Reference(
        kind=kind,
        name="__".join([*path, element]),
        grain=grain if isinstance(grain, str) else None,
        date_part=date_part if isinstance(date_part, str) else None,
        text=f"{{{{ {kind}({rendered}){suffix} }}}}",
    )


def _argument(node: ast.expr) -> str | list[str]:
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_string(e) for e in node.elts]
    return _string(node)


def _string(node: ast.expr) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and _NAME.match(node.value):
        return node.value
    raise ValueError(
        f"template arguments must be quoted names (letters, digits, underscores), not {ast.unparse(node)!r}"
    )
