"""The SQL API: SQL over the semantic layer, every number computed by MetricFlow.

What clients that speak SQL send (BI tools over Flight SQL or JDBC, Postgres drivers):

1. dbt's templates inside SQL, e.g. ``select * from {{ semantic_layer.query(…) }} where … limit 10``
   (also written without braces: ``select * from semantic_layer.saved_queries()``): each
   template is answered by the query service, the SQL around it runs over the answer;
2. SQL on the ``semantic_layer`` schema (greenery.serve.tables), e.g.
   ``select metric_time__week, view_to_checkout_rate from semantic_layer.sessions
   where metric_time__week >= '2021-02-08' group by 1 order by 1``: translated into one
   MetricFlow query (metrics, group-by, filters, order, limit), never a scan of marts, so a
   ratio is computed at the grain asked for, not summed by the client's SQL;
3. SQL without tables, such as the ``select 1`` a connection pool pings with.

Before anything runs the SQL is parsed with sqlglot and checked: one SELECT, tables only
from templates or ``semantic_layer``, no table functions. Where it is exact, the SQL's filter,
order and limit go into MetricFlow's query, so a BI tool's wrapped query costs no more than
the bare one. What runs over the answers runs in a fresh in-memory DuckDB that cannot reach
files or the network and whose configuration is locked.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from greenery.semantic.filters import FilterRejected, normalize_where
from greenery.semantic.shape import TooComplex, check_brackets
from greenery.semantic.watchdog import WATCHDOG
from greenery.serve.metadata import metadata_table
from greenery.serve.service import (
    PublishedLayer,
    QueryJob,
    QueryRequest,
    QueryTimedOut,
    SemanticLayerService,
    query_timeout_s,
)
from greenery.serve.statements import (
    FUNCTIONS,
    MetadataStatement,
    QueryStatement,
    Statement,
    StatementError,
    call_end,
    is_bare_template,
    parse_statement,
    template_end,
)
from greenery.serve.tables import SCHEMA, TABLE_GRAINS, SqlColumn, SqlTable

MAX_SQL_CHARS = 100_000
MAX_PARAMETERS = 65_535  # the highest $n, as in PostgreSQL (its Bind message counts them in 16 bits)
MAX_FOLDS = 16  # computed constants in one condition worked out for MetricFlow (a sandbox query each)
MAX_PARAMETER_REFERENCES = 2_000  # ? and $n in one statement (binding each costs its list's length)
MAX_TEMPLATES = 16
SANDBOX_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "threads": 1,
    "memory_limit": "512MB",
}
_SOURCE = "__sl_source_"  # + the template's number: where the SQL reads a template's answer
_BARE_CALL = re.compile(r"semantic_layer\s*\.\s*(\w+)\s*\(", re.IGNORECASE)
_MEASURE = "measure"  # Cube's MEASURE(x): the metric x, as it is
# aggregates whose value over one row is that row's (and MEASURE, an Anonymous function to
# sqlglot): around a metric, the metric as it is
_VALUE_AGGREGATES = (exp.Sum, exp.Avg, exp.Min, exp.Max, exp.AnyValue, exp.Anonymous)


class SqlError(ValueError):
    """SQL the API cannot answer; the message says what and why."""


# What kind of refusal, for transports that report one (the Postgres endpoint's SQLSTATE).
class SqlSyntaxError(SqlError):
    """SQL that does not parse, or more than one statement."""


class SqlTooLarge(SqlError):
    """A statement over the size limits."""


class UnknownTable(SqlError):
    """A table outside the semantic_layer schema and the templates."""


class UnknownColumn(SqlError):
    """A column the semantic_layer table does not have."""


class ReadOnlySql(SqlError):
    """A statement that would write (the semantic layer is read-only)."""


class UnsupportedSql(SqlError):
    """Valid SQL the translation into MetricFlow queries does not cover."""


# ---- cutting the templates out -----------------------------------------------------------


def cut_templates(sql: str, functions: frozenset[str]) -> tuple[str, list[str]]:
    """The SQL with each ``{{ … }}`` template (or bare ``semantic_layer.f(…)`` call of a known
    function) replaced by a placeholder table name, and the templates in order."""
    out: list[str] = []
    templates: list[str] = []
    i = 0
    while i < len(sql):
        char = sql[i]
        if char in "'\"":  # a SQL string or quoted identifier: copied as is
            end = _quoted_end(sql, i)
            out.append(sql[i:end])
            i = end
            continue
        call = _BARE_CALL.match(sql, i)
        if sql.startswith("{{", i):
            end = template_end(sql, i + 2) + 2
            templates.append(sql[i:end])
        elif (
            call
            and call[1].lower() in functions
            and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_"))
        ):
            end = call_end(sql, call.end() - 1) + 1
            templates.append("{{ " + sql[i:end] + " }}")
        else:
            out.append(char)
            i += 1
            continue
        if len(templates) > MAX_TEMPLATES:
            raise SqlTooLarge(f"at most {MAX_TEMPLATES} semantic_layer templates in one statement")
        out.append(f"{_SOURCE}{len(templates) - 1}")
        i = end
    return "".join(out), templates


def _quoted_end(sql: str, start: int) -> int:
    """Index just past the SQL string or quoted identifier at `start` (quotes doubled inside)."""
    quote = sql[start]
    i = start + 1
    while i < len(sql):
        if sql[i] == quote:
            if sql.startswith(quote * 2, i):
                i += 2
                continue
            return i + 1
        i += 1
    raise SqlSyntaxError(f"unbalanced quotes: the {quote} opened at position {start} is never closed")


# ---- the API --------------------------------------------------------------------------------


@dataclass
class _Plan:
    """What one SELECT over a source asks MetricFlow for (the rest stays for DuckDB)."""

    metrics: list[str] = field(default_factory=list)
    group_by: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    order_by: list[str] = field(default_factory=list)
    limit: int | None = None


def whole_intervals(text: str, read: str | None) -> str:
    """``interval '1 day 02:00'`` written ``cast('1 day 02:00' as interval)``, which every dialect
    reads whole: sqlglot reads such a literal, one ``N unit`` and more, as its first part alone
    (one day; ``'1 day ago'`` as plus one day). A literal it reads whole stays as written."""
    if "interval" not in text.lower():
        return text
    try:
        tokens = sqlglot.tokenize(text, read=read)
    except SqlglotError:
        return text  # the parser says what is wrong
    pieces, at = [], 0
    for keyword, literal in itertools.pairwise(tokens):
        if keyword.token_type != TokenType.INTERVAL or literal.token_type != TokenType.STRING:
            continue
        parts = exp.INTERVAL_STRING_RE.findall(literal.text)
        if len(parts) == 1 and not exp.INTERVAL_STRING_RE.fullmatch(literal.text):
            written = text[literal.start : literal.end + 1]  # quoted, as the client wrote it
            pieces.append(f"{text[at : keyword.start]}cast({written} as interval)")
            at = literal.end + 1
    return "".join(pieces) + text[at:]


class SqlApi:
    """Answers SQL and semantic-layer statements through one query service."""

    def __init__(self, service: SemanticLayerService, *, transport: str, read: str = "duckdb") -> None:
        self._service = service
        self._transport = transport
        self._read = read  # the sqlglot dialect clients write in

    def run(self, text: str, parameters: Sequence[exp.Expression] = ()) -> QueryJob:
        """Any statement a client sends: a template or SQL; the finished job holding its answer.

        A bare query template runs as the service's query job (cached, logged); anything else
        is answered here and kept as a finished job, so a transport can hand out its rows later.
        `parameters` are the literals bound to the SQL's ``?`` placeholders, in order.
        """
        start = time.perf_counter()
        if is_bare_template(text):
            if parameters:
                raise UnsupportedSql("bind parameters inside semantic_layer templates are not supported")
            try:
                statement = parse_statement(text)
            except StatementError as exc:
                raise SqlError(str(exc)) from None
            if isinstance(statement, QueryStatement) and not statement.compile_only:
                return self._service.run_query(
                    statement.request, read_cache=statement.read_cache, transport=self._transport
                )
            table = self.answer(statement)
        else:
            table = self.execute(text, parameters)
        millis = (time.perf_counter() - start) * 1000
        return self._service.keep(table, statement=text, transport=self._transport, millis=millis)

    # -- templates on their own --

    def answer(self, statement: Statement) -> pa.Table:
        """A statement's answer: a query's rows, compiled SQL, or a metadata table."""
        if isinstance(statement, MetadataStatement):
            with self._service.layers.use() as layer:
                return metadata_table(statement, layer.catalog)
        if statement.compile_only:
            sql = self._service.compile_sql(statement.request, read_cache=statement.read_cache)
            return pa.table({"SQL": [sql]})
        return self._run(statement.request, read_cache=statement.read_cache)

    def _run(self, request: QueryRequest, *, read_cache: bool = True) -> pa.Table:
        job = self._service.run_query(request, read_cache=read_cache, transport=self._transport)
        assert job.table is not None
        return job.table

    # -- SQL --

    def execute(self, sql: str, parameters: Sequence[exp.Expression] = ()) -> pa.Table:
        """Answer one SELECT (see the module's docstring), its ``?`` placeholders bound to
        `parameters`; SqlError or the service's errors otherwise."""
        tree, statements = self._parse_with_templates(sql)
        count = _parameter_count(tree)
        if count != len(parameters):
            raise SqlError(f"the statement has {count} parameters; {len(parameters)} were bound")
        tree = bind_parameters(tree, parameters)
        with self._service.layers.use() as layer:
            sources = dict(self._sources(tree, statements, layer))
        return _run_sandboxed(clock_calls(tree).sql(dialect="duckdb"), sources)

    def parameter_count(self, sql: str) -> int:
        """How many ``?`` placeholders the statement has (SqlError if it is not one statement)."""
        if is_bare_template(sql):
            return 0
        return _parameter_count(self._parse_with_templates(sql)[0])

    def _parse_with_templates(self, sql: str) -> tuple[exp.Expression, list[Statement]]:
        """The SQL parsed, each template in it cut out (see `cut_templates`) and parsed."""
        if len(sql) > MAX_SQL_CHARS:
            raise SqlTooLarge(f"the statement is longer than {MAX_SQL_CHARS} characters")
        try:
            check_brackets(sql)
        except TooComplex as exc:
            raise SqlTooLarge(f"the statement is too complex to read: {exc}") from None
        try:
            text, templates = cut_templates(sql, FUNCTIONS)
            statements = [parse_statement(t) for t in templates]
        except StatementError as exc:
            raise SqlError(str(exc)) from None
        return self._parse(whole_intervals(self._numbered_placeholders(text), self._read)), statements

    def _numbered_placeholders(self, text: str) -> str:
        """Each ``?`` as ``$1``, ``$2``… in the order written, which a parsed tree does not keep."""
        try:
            tokens = sqlglot.tokenize(text, read=self._read)
        except SqlglotError:
            return text  # the parser says what is wrong
        marks = [t for t in tokens if t.token_type == TokenType.PLACEHOLDER and t.text == "?"]
        if len(marks) > MAX_PARAMETER_REFERENCES:
            raise SqlTooLarge(
                f"the statement has {len(marks)} parameters (at most {MAX_PARAMETER_REFERENCES})"
            )
        pieces, at = [], 0
        for number, mark in enumerate(marks, 1):
            pieces.append(f"{text[at : mark.start]}${number} ")
            at = mark.end + 1
        return "".join(pieces) + text[at:]

    def _parse(self, text: str) -> exp.Expression:
        try:
            parsed = [e for e in sqlglot.parse(text, read=self._read) if e is not None]
        except SqlglotError as exc:
            raise SqlSyntaxError(f"SQL syntax error: {_first_line(str(exc))}") from None
        if len(parsed) != 1:
            raise SqlSyntaxError(f"send one statement at a time (got {len(parsed)})")
        tree = parsed[0]
        if not isinstance(tree, exp.Query):
            kind = tree.key.upper()
            raise ReadOnlySql(
                f"only SELECT statements are answered (the semantic layer is read-only), not {kind}"
            )
        return tree

    def _sources(
        self, tree: exp.Expression, statements: list[Statement], layer: PublishedLayer
    ) -> Iterator[tuple[str, pa.Table]]:
        """Each table the SQL reads, answered, under the name the SQL now gives it."""
        ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
        for number, table in enumerate(list(tree.find_all(exp.Table))):
            if not isinstance(table.this, exp.Identifier):
                raise UnsupportedSql(f"table functions are not allowed ({table.sql()})")
            name, schema = table.name, table.db
            if not schema and name.startswith(_SOURCE):
                statement = statements[int(name.removeprefix(_SOURCE))]
                yield name, self._template_source(table, statement, layer)
            elif schema.lower() == SCHEMA and not table.catalog:
                placeholder = f"__sl_table_{number}"
                sql_table = layer.tables.tables.get(name.lower())
                if sql_table is None:
                    known = ", ".join(layer.tables.tables)
                    raise UnknownTable(f"unknown table {SCHEMA}.{name} (tables: {known})")
                answer = self._table_source(table, sql_table, layer)
                table.replace(exp.Table(this=exp.to_identifier(placeholder), alias=table.args.get("alias")))
                yield placeholder, answer
            elif not schema and name.lower() in ctes:
                continue  # a WITH query of the statement itself
            else:
                known = ", ".join(f"{SCHEMA}.{t}" for t in layer.tables.tables)
                raise UnknownTable(
                    f"unknown table {table.sql()}: SQL here reads the {SCHEMA} schema ({known}) "
                    "or {{ semantic_layer.query(…) }} templates"
                )

    # -- a template inside SQL --

    def _template_source(self, table: exp.Table, statement: Statement, layer: PublishedLayer) -> pa.Table:
        """A template's answer; for a plain query, with the SQL's filter, order and limit pushed in."""
        select = table.parent_select
        if not (
            isinstance(statement, QueryStatement)
            and not statement.compile_only
            and not statement.request.dimension_values
            and statement.request.saved_query is None
            and statement.request.limit is None
            and not statement.request.order_by
            and select is not None
            and _only_source(select, table)
        ):
            return self.answer(statement)
        request = statement.request
        plan = _Plan(list(request.metrics), list(request.group_by))
        references = {name: SqlColumn(name, layer.tables.role_of(name)).template for name in request.group_by}
        self._push(select, plan, references, layer)
        pushed = QueryRequest(
            metrics=request.metrics,
            group_by=request.group_by,
            where=(*request.where, *plan.where),
            order_by=tuple(plan.order_by),
            limit=plan.limit,
        )
        return self._run(pushed, read_cache=statement.read_cache)

    # -- a semantic_layer table --

    def _table_source(self, table: exp.Table, sql_table: SqlTable, layer: PublishedLayer) -> pa.Table:
        """Translate the SELECT over a semantic_layer table into one MetricFlow query."""
        select = table.parent_select
        if select is None or not _only_source(select, table):
            raise UnsupportedSql(
                f"{SCHEMA}.{sql_table.name} can only be read on its own (no joins): select its "
                "metrics and dimensions, and MetricFlow joins what they need"
            )
        if any(s is not select for s in select.find_all(exp.Select)):
            raise UnsupportedSql(f"subqueries inside a query on {SCHEMA}.{sql_table.name} are not supported")
        if any(isinstance(p, exp.Star) for p in select.expressions):
            select.set("expressions", [exp.column(c.name) for c in sql_table.columns])
        plan = self._plan(select, table, sql_table)
        if not plan.metrics and not plan.group_by:
            raise SqlError(
                f"select at least one metric or dimension of {SCHEMA}.{sql_table.name} "
                f"(metrics: {', '.join(sql_table.metrics)})"
            )
        if not plan.metrics:  # the groups of the table's rows, not every value of each dimension
            if sql_table.saved_query is not None:  # a saved query's rows are its whole answer's
                plan.metrics, plan.group_by = sql_table.metrics, sql_table.group_by
            elif sql_table.row_metric is not None:
                plan.metrics = [sql_table.row_metric]
        references = {c.name: c.template for c in sql_table.columns if c.role != "metric"}
        self._push(select, plan, references, layer)
        return self._run(
            QueryRequest(
                metrics=tuple(plan.metrics),
                group_by=tuple(plan.group_by),
                where=(*sql_table.where, *plan.where),
                order_by=tuple(plan.order_by),
                limit=plan.limit,
            )
        )

    @staticmethod
    def _plan(select: exp.Select, table: exp.Table, sql_table: SqlTable) -> _Plan:
        """The metrics and group-by items a SELECT over a table asks for.

        Metrics: every metric column it names. Group-by: every other column it names outside
        WHERE (a column only filtered on is a filter, not a grain). An aggregate around a
        metric (sum, avg, MEASURE…) is taken off: MetricFlow computes the metric at this grain.
        """
        qualifiers = {table.name.lower(), table.alias_or_name.lower()}
        aliases = {p.alias.lower() for p in select.expressions if isinstance(p, exp.Alias)}
        _truncations_to_grains(select, sql_table)
        _date_parts_to_grains(select, sql_table)
        plan = _Plan()
        aggregated: set[str] = set()
        for node in select.find_all(exp.Column):
            if not node.table and node.name.lower() in aliases and node.find_ancestor(exp.Order):
                continue  # ORDER BY a projection's alias names the projection, as in PostgreSQL
            if node.table and node.table.lower() not in qualifiers:
                raise UnknownTable(f"unknown table {node.table!r} in {node.sql()}")
            if node.catalog or (node.db and node.db.lower() != SCHEMA):  # SQLAlchemy names the schema too
                qualifier = ".".join(part.name for part in node.parts[:-1])
                raise UnknownTable(f"unknown table {qualifier!r} in {node.sql()}")
            column = sql_table.column(node.name)
            if column is None:
                if node.name.lower() in aliases:
                    continue
                raise UnknownColumn(
                    f"{SCHEMA}.{sql_table.name} has no column {node.name!r} "
                    f"(columns: {', '.join(c.name for c in sql_table.columns)})"
                )
            for part in ("catalog", "db", "table"):
                node.set(part, None)
            node.set("this", exp.to_identifier(column.name))
            if column.role == "metric":
                plan.metrics.append(column.name)
            elif node.find_ancestor(exp.Where) is None:
                plan.group_by.append(column.name)
                if node.find_ancestor(exp.AggFunc) is not None:
                    aggregated.add(column.name)
        plan.metrics = list(dict.fromkeys(plan.metrics))
        plan.group_by = list(dict.fromkeys(plan.group_by))
        if aggregated and plan.metrics:
            raise UnsupportedSql(
                f"aggregating a dimension ({', '.join(sorted(aggregated))}) and asking for metrics in one "
                "query is not supported: query the metrics by that dimension instead"
            )
        _check_each_group_is_one_row(select, plan, sql_table)
        _take_off_metric_aggregates(select, set(plan.metrics))
        return plan

    # -- pushing the SQL's filter, order and limit into MetricFlow's query --

    def _push(
        self, select: exp.Select, plan: _Plan, references: dict[str, str], layer: PublishedLayer
    ) -> None:
        commute = all(layer.catalog.filter_commutes(m) for m in plan.metrics)
        narrowed = _push_where(select, plan, references, commute)
        _push_order_and_limit(select, plan, narrowed)


def _push_where(select: exp.Select, plan: _Plan, references: dict[str, str], commute: bool) -> bool:
    """Move each AND-ed condition of WHERE into the plan where that is exact; True if WHERE keeps one
    that MetricFlow's query does not apply.

    A condition on group-by columns only stays in WHERE (it is exact on the answer too) and
    also goes into the query when the metrics commute with filtering. A condition on a column
    that is not grouped by changes what is aggregated: it must go into the query, and leaves.
    A condition naming a metric stays in WHERE.
    """
    where = select.args.get("where")
    if where is None:
        return False
    kept: list[exp.Expression] = []
    narrowed = False
    for condition in _conjuncts(where.this):
        names = {c.name for c in condition.find_all(exp.Column)}
        grouped_only = names <= set(plan.group_by)
        if names & set(plan.metrics) or not names <= set(references):
            kept.append(condition)
            narrowed = True
            continue
        text = _as_filter(condition, references) if commute or not grouped_only else None
        if text is not None:
            plan.where.append(text)
        if grouped_only:
            kept.append(condition)
            narrowed = narrowed or text is None
        elif text is None:
            raise UnsupportedSql(
                f"cannot filter on {condition.sql()}: write it as plain conditions on the columns"
            )
    select.set("where", exp.Where(this=exp.and_(*kept)) if kept else None)
    return narrowed


def _push_order_and_limit(select: exp.Select, plan: _Plan, narrowed: bool) -> None:
    """LIMIT, with ORDER BY on plain columns, goes into the query when nothing else narrows the rows."""
    limit, offset = select.args.get("limit"), select.args.get("offset")
    if (
        limit is None
        or narrowed
        or select.args.get("having")
        or select.args.get("distinct")
        or select.find(exp.AggFunc, exp.Window) is not None
        or not _is_number(limit.expression)
        or (offset is not None and not _is_number(offset.expression))
    ):
        return
    columns = set(plan.metrics) | set(plan.group_by)
    order: list[str] = []
    for item in select.args["order"].expressions if select.args.get("order") else []:
        name = _projected_column(item.this, select)
        if name not in columns or item.args.get("nulls_first"):  # MetricFlow's DuckDB sorts nulls last
            return
        order.append(f"-{name}" if item.args.get("desc") else name)
    plan.order_by = order
    plan.limit = int(limit.expression.this) + (int(offset.expression.this) if offset is not None else 0)


# ---- SQL helpers ---------------------------------------------------------------------------


def _only_source(select: exp.Select, table: exp.Table) -> bool:
    """Whether the table is the SELECT's whole FROM (no joins, no other tables)."""
    source = select.args.get("from_")
    return source is not None and source.this is table and not select.args.get("joins")


def _truncations_to_grains(select: exp.Select, sql_table: SqlTable) -> None:
    """``date_trunc('week', metric_time__day)`` → ``metric_time__week``, the grain MetricFlow then
    computes each metric at (what BI tools write for a chart's time grain; Superset truncates the
    grain's own column too). Only from the day or the same grain: a month is not made of weeks."""
    for node in list(select.find_all(exp.TimestampTrunc, exp.DateTrunc)):
        column, unit = _same_grouping(node.this), node.text("unit").lower()  # Tableau casts it to a date
        if not isinstance(column, exp.Column) or unit not in TABLE_GRAINS:
            continue
        base, _, grain = column.name.lower().rpartition("__")
        target = sql_table.column(f"{base}__{unit}")
        if target is None or target.role != "time" or grain not in ("day", unit):
            continue
        node.replace(_renamed(column, target.name))


# the grains whose value a set of date parts names: the parts it takes, and those it has
_GRAINS_BY_PARTS = (
    ("day", {"year", "month", "day"}, {"year", "quarter", "month", "day"}),
    ("month", {"year", "month"}, {"year", "quarter", "month"}),
    ("quarter", {"year", "quarter"}, {"year", "quarter"}),
    ("year", {"year"}, {"year"}),
)
_GRAIN_ORDER = ("day", "month", "quarter", "year")  # each made of whole ones before it (not week)


def _date_parts_to_grains(select: exp.Select, sql_table: SqlTable) -> None:
    """GROUP BY ``extract(year from metric_time__day), extract(quarter from metric_time__day)``
    (Tableau's discrete dates) → GROUP BY ``metric_time__quarter``, the parts read from that
    column: together they name one quarter, so each group is one row of MetricFlow's answer.
    Parts that name no grain (the month alone, of any year) are left as written, and refused as
    any other expression over a dimension is."""
    group = select.args.get("group")
    if group is None:
        return
    parts: dict[str, dict[str, tuple[exp.Expression, str]]] = {}  # dimension → part → (item, grain)
    for item in group.expressions:
        found = _date_part(_resolved(item, select), sql_table)
        if found is not None:
            base, grain, part = found
            parts.setdefault(base, {})[part] = (item, grain)
    for base, items in parts.items():
        grain = next((g for g, takes, has in _GRAINS_BY_PARTS if takes <= set(items) <= has), None)
        target = sql_table.column(f"{base}__{grain}") if grain else None
        if target is None or target.role != "time":
            continue
        finer = _GRAIN_ORDER[: _GRAIN_ORDER.index(grain) + 1]
        if any(g not in finer for _, g in items.values()):
            continue
        sources = {f"{base}__{g}" for g in finer}
        for node in list(select.find_all(exp.Extract)):
            column = _same_grouping(node.expression)
            if (
                isinstance(column, exp.Column)
                and column.name.lower() in sources
                and not node.find_ancestor(exp.Where)
            ):
                node.set("expression", _renamed(column, target.name))
        replaced = [item for item, _ in items.values()]
        kept = [i for i in group.expressions if all(i is not r for r in replaced)]
        group.set("expressions", [*kept, exp.column(target.name)])


def _renamed(column: exp.Column, name: str) -> exp.Column:
    """The column, qualified as it was, under another name (another grain of its dimension)."""
    renamed = column.copy()
    renamed.set("this", exp.to_identifier(name))
    return renamed


def _date_part(item: exp.Expression, sql_table: SqlTable) -> tuple[str, str, str] | None:
    """(time dimension, its grain, part) of ``extract(part from dimension__grain)``, cast to a
    number or not."""
    item = item.unnest()
    if isinstance(item, exp.Cast) and item.to.is_type(*exp.DataType.INTEGER_TYPES):
        item = item.this.unnest()
    if not isinstance(item, exp.Extract):
        return None
    column = _same_grouping(item.expression)
    found = sql_table.column(column.name) if isinstance(column, exp.Column) else None
    if found is None or found.role != "time":
        return None
    base, _, grain = found.name.rpartition("__")
    return base, grain, item.text("this").lower()


def _resolved(item: exp.Expression, select: exp.Select) -> exp.Expression:
    """An ORDER BY or GROUP BY item as the projection it names by position or alias, else itself."""
    if _is_number(item):
        position = int(item.this) - 1
        projections = select.expressions
        return projections[position].unalias() if 0 <= position < len(projections) else exp.Null()
    if isinstance(item, exp.Column | exp.Identifier) and not getattr(item, "table", ""):
        for projection in select.expressions:
            if isinstance(projection, exp.Alias) and projection.alias.lower() == item.name.lower():
                return projection.this
    return item


def _check_each_group_is_one_row(select: exp.Select, plan: _Plan, sql_table: SqlTable) -> None:
    """With GROUP BY and metrics, every dimension the query names must be grouped by as it is, so
    that each group is one row of MetricFlow's answer: a group of several rows would need their
    metric values added up, which is wrong for a rate or a distinct count."""
    group = select.args.get("group")
    if group is None or not plan.metrics:
        return
    items = group.expressions
    if group.args.get("all"):  # GROUP BY ALL: every projection that is not an aggregate
        items = [p.unalias() for p in select.expressions if not p.find(exp.AggFunc, exp.Anonymous)]
    grouped = {_projected_column(item, select) for item in items}
    merged = [name for name in plan.group_by if name not in grouped]
    if merged:
        raise UnsupportedSql(
            f"group by the columns of {SCHEMA}.{sql_table.name} as they are, not expressions over "
            f"{', '.join(merged)}: MetricFlow computes each metric at the grain of the columns grouped "
            "by, and its values cannot be added up again (a time grain is a column of its own, such "
            "as metric_time__month)"
        )


def _same_grouping(item: exp.Expression) -> exp.Expression:
    """A GROUP BY item as the column it groups the same as, when it is one: in parentheses, or a
    time column (midnight of its day, week…) cast to a date or timestamp (Metabase's day grain)."""
    item = item.unnest()
    if isinstance(item, exp.Cast | exp.Date) and isinstance(item.this.unnest(), exp.Column):
        cast_to = item.to.this if isinstance(item, exp.Cast) else exp.DataType.Type.DATE
        if cast_to in (exp.DataType.Type.DATE, exp.DataType.Type.TIMESTAMP):
            return item.this.unnest()
    return item


def _take_off_metric_aggregates(select: exp.Select, metrics: set[str]) -> None:
    """``sum(revenue)``, ``MEASURE(revenue)`` … → the metric as MetricFlow computed it at this grain.

    With GROUP BY each group is one row of MetricFlow's answer (`_check_each_group_is_one_row`):
    a metric is then read with ``any_value`` (under its own name in the output), which keeps the
    SQL valid and exact. An expression over metrics keeps the name it was written with.
    """
    _keep_expression_names(select, metrics)
    for node in list(select.find_all(exp.AggFunc, exp.Anonymous)):
        if isinstance(node.parent, exp.Window):  # a window's aggregate reads the answer's rows
            continue
        metric = _taken_off(node, metrics)
        if metric is not None:
            node.replace(exp.column(metric))
    if select.args.get("group") is None:
        return
    for column in list(select.find_all(exp.Column)):
        if column.name in metrics and not _read_per_group(column):
            read = exp.AnyValue(this=column.copy())
            if column.parent is select:  # a projection: keep its name
                read = exp.alias_(read, column.name)
            column.replace(read)


def _read_per_group(column: exp.Column) -> bool:
    """Whether a column is read in WHERE or by an aggregate of its group, not by a window's
    (``sum(sum(sessions)) over (order by …)``, a running total: the window adds up groups)."""
    reader = column.find_ancestor(exp.AggFunc, exp.Where)
    return reader is not None and not isinstance(reader.parent, exp.Window)


def _keep_expression_names(select: exp.Select, metrics: set[str]) -> None:
    """An expression over metrics (``sum(revenue) / sum(orders)``) keeps the name it was written
    with, not its rewrite's."""
    for projection in list(select.expressions):
        if isinstance(projection, exp.Alias | exp.Column | exp.Star) or _taken_off(projection, metrics):
            continue
        if any(c.name in metrics for c in projection.find_all(exp.Column)):
            name = projection.sql(dialect="duckdb", normalize_functions="lower")
            projection.replace(exp.alias_(projection.copy(), name, quoted=True))


def _taken_off(node: exp.Expression, metrics: set[str]) -> str | None:
    """The metric an aggregate reads as it is (``sum(revenue)``, ``MEASURE(revenue)``: one value
    per group), else None; SqlError for one that would not be the metric (``count(revenue)``)."""
    if not isinstance(node, exp.AggFunc | exp.Anonymous):
        return None
    if isinstance(node, exp.Anonymous) and node.name.lower() != _MEASURE:
        return None
    arguments = [a for a in node.iter_expressions() if not isinstance(a, exp.Literal)]
    if len(arguments) != 1 or not isinstance(arguments[0], exp.Column) or arguments[0].name not in metrics:
        return None
    if not isinstance(node, _VALUE_AGGREGATES):
        raise UnsupportedSql(
            f"{node.sql()}: {arguments[0].name} is a metric, computed by MetricFlow at the grain "
            "asked for; select it as it is (sum, avg, min, max or MEASURE of it is the same value)"
        )
    return arguments[0].name


def bind_parameters(tree: exp.Expression, parameters: Sequence[exp.Expression]) -> exp.Expression:
    """The parsed statement with each positional parameter (``$n``, or a ``?`` numbered when the
    statement was parsed) replaced by its literal, in a copy (the same tree if it has none): a
    value is never text pasted into SQL."""

    def replace(node: exp.Expression) -> exp.Expression:
        number = _parameter_number(node)
        if number is None:
            return node
        if not 1 <= number <= len(parameters):
            raise SqlError(f"there is no parameter ${number}")
        return parameters[number - 1].copy()

    found = (_parameter_number(node) for node in tree.find_all(exp.Placeholder, exp.Parameter))
    numbers = [n for n in found if n is not None]
    if not numbers:  # the statement as it is: transform copies the whole tree (more than parsing it costs)
        return tree
    if len(numbers) > MAX_PARAMETER_REFERENCES:  # each replacement in a list costs the whole list
        raise SqlTooLarge(f"the statement has {len(numbers)} parameters (at most {MAX_PARAMETER_REFERENCES})")
    sizes = {n: len(parameters[n - 1].sql()) for n in set(numbers) if 1 <= n <= len(parameters)}
    if sum(sizes.get(n, 0) for n in numbers) > MAX_SQL_CHARS:  # a long value, copied for each reference
        raise SqlTooLarge(
            f"the statement with its parameters bound is longer than {MAX_SQL_CHARS} characters"
        )
    return tree.transform(replace)


def _parameter_number(node: exp.Expression) -> int | None:
    """n for the parameter ``$n`` (sqlglot: a placeholder in DuckDB's SQL, a parameter in
    PostgreSQL's); None for any other node. A named one is refused."""
    if isinstance(node, exp.Placeholder):
        if not node.name.isdigit():
            raise UnsupportedSql("only positional parameters (? or $1, $2…) can be bound")
        return _checked_number(node.name)
    if isinstance(node, exp.Parameter) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return _checked_number(node.this.this)
    return None


def _checked_number(digits: str) -> int:
    """A parameter's number, at most MAX_PARAMETERS (a client's ``$10000000`` would have the
    server allocate ten million parameter types)."""
    if len(digits) > 5 or int(digits) > MAX_PARAMETERS:
        raise SqlError(f"there is no parameter ${digits[:12]}: at most {MAX_PARAMETERS} parameters")
    return int(digits)


def _parameter_count(tree: exp.Expression) -> int:
    """The highest positional parameter of a statement (0: none)."""
    numbers = (_parameter_number(node) for node in tree.find_all(exp.Placeholder, exp.Parameter))
    return max((n for n in numbers if n is not None), default=0)


def _conjuncts(condition: exp.Expression) -> list[exp.Expression]:
    if isinstance(condition, exp.And):
        return _conjuncts(condition.left) + _conjuncts(condition.right)
    if isinstance(condition, exp.Paren):
        return _conjuncts(condition.this) if isinstance(condition.this, exp.And) else [condition]
    return [condition]


def _as_filter(condition: exp.Expression, references: dict[str, str]) -> str | None:
    """The condition as a MetricFlow where filter (columns as ``{{ Dimension(…) }}`` …), or None
    when the filter validator refuses it."""
    tokens: dict[str, str] = {}
    copy = _folded(condition)
    for number, column in enumerate(list(copy.find_all(exp.Column))):
        token = f"sl_column_{number}_z"
        tokens[token] = references[column.name]
        column.replace(exp.column(token))
    text = re.sub(
        r"\bsl_column_\d+_z\b", lambda m: tokens.get(m.group(0), m.group(0)), copy.sql(dialect="duckdb")
    )
    try:
        return normalize_where(text)
    except (FilterRejected, ValueError):
        return None


def _folded(condition: exp.Expression) -> exp.Expression:
    """The condition (a copy) with each computed constant in it (no column: Superset's
    ``TO_TIMESTAMP('…', '…')``, ``now() - interval …``) as its value, which a MetricFlow filter
    can hold. Which subtrees hold a call or a column is worked out in one pass from the leaves
    up; asking each node's subtree again took seconds on a 10,000-character sum."""
    condition = condition.copy()
    has_call: dict[int, bool] = {}
    has_column: dict[int, bool] = {}
    for node in reversed(list(condition.walk(bfs=True))):  # children before their parent
        children = list(node.iter_expressions())
        call = isinstance(node, exp.Func) and not (isinstance(node, exp.Cast) and node.this.is_string)
        column = isinstance(node, exp.Column | exp.AggFunc | exp.Placeholder | exp.Parameter)
        has_call[id(node)] = call or any(has_call[id(c)] for c in children)
        has_column[id(node)] = column or any(has_column[id(c)] for c in children)

    folds = itertools.count(1)

    def fold(node: exp.Expression) -> exp.Expression:
        if not has_call.get(id(node)) or has_column.get(id(node), True):
            return node
        if next(folds) > MAX_FOLDS:  # a query each: the rest stay as written (the sandbox computes them)
            return node
        try:
            value = _run_sandboxed(f"select {node.sql(dialect='duckdb')} as value", {})["value"][0].as_py()
        except (SqlError, QueryTimedOut):
            return node  # the filter check refuses it, saying why
        folded = literal(value)
        return folded if folded is not None else node

    return condition.transform(fold, copy=False)


def literal(value: object) -> exp.Expression | None:
    """A Python value as a SQL literal (dates and times as text, which DuckDB casts where they
    are compared); None for a value of another type."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float | decimal.Decimal):
        return exp.Literal.number(str(value))
    if isinstance(value, str | dt.date | dt.time):
        return exp.Literal.string(str(value))
    return None


def _projected_column(target: exp.Expression, select: exp.Select) -> str | None:
    """The column an ORDER BY or GROUP BY item names: by a projection's alias or position, or
    directly (`_same_grouping`: in parentheses, or cast to a date)."""
    target = _same_grouping(_resolved(_same_grouping(target), select))
    return target.name if isinstance(target, exp.Column | exp.Identifier) else None


def _is_number(node: exp.Expression | None) -> bool:
    return isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit()


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message


# DuckDB reads a bare current_date… as a column first, so a projection named after it fails
# ("Column CURRENT_DATE referenced that exists in the SELECT clause"): written as its call
_CLOCK_CALLS: dict[type[exp.Expression], str] = {
    exp.CurrentTimestamp: "get_current_timestamp",  # also now()
    exp.CurrentDate: "current_date",
    exp.CurrentTime: "get_current_time",
    exp.Localtimestamp: "current_localtimestamp",
    exp.Localtime: "current_localtime",
}


def clock_calls(tree: exp.Expression) -> exp.Expression:
    """The tree with current_date, current_timestamp, now()… as DuckDB's calls (in place)."""
    for node in list(tree.find_all(*_CLOCK_CALLS)):
        node.replace(exp.Anonymous(this=_CLOCK_CALLS[type(node)]))
    return tree


def _run_sandboxed(sql: str, sources: dict[str, pa.Table]) -> pa.Table:
    """Run the checked SQL over the answers in this thread's sandbox: no file, no network, and no
    longer than a query may run (a cross join of answers can take hours)."""
    con = _sandbox()
    limit_s = query_timeout_s()
    try:
        for name, table in sources.items():
            con.register(name, table)
        with WATCHDOG.limit(limit_s, con.interrupt):
            return con.sql(sql).to_arrow_table()
    except duckdb.InterruptException:
        raise QueryTimedOut(
            f"the SQL around the semantic layer ran longer than {limit_s:g} s and was stopped"
        ) from None
    except duckdb.Error as exc:
        raise SqlError(f"the SQL around the semantic layer failed: {_first_line(str(exc))}") from None
    finally:
        for name in sources:
            con.unregister(name)


_sandboxes = threading.local()


def _sandbox() -> duckdb.DuckDBPyConnection:
    """This thread's sandbox DuckDB, made once (about 20 ms): external access off, configuration
    locked. Only checked SELECTs run there, so nothing a query does outlives it but the answers
    registered for it, which are unregistered after."""
    con: duckdb.DuckDBPyConnection | None = getattr(_sandboxes, "connection", None)
    if con is None:
        con = _sandboxes.connection = open_sandbox()
    return con


def open_sandbox() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that reaches no file and no network, bounded, its configuration locked."""
    con = duckdb.connect(config=SANDBOX_CONFIG)
    con.execute("SET lock_configuration = true")
    return con
