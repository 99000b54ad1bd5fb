"""One rewrite of MetricFlow's SQL that DuckDB does not do itself: twin aggregations merged.

A query that mixes simple and ratio metrics of the same semantic model (every funnel saved
query: step counts and their rates) is planned by MetricFlow 0.213 as two subqueries that
aggregate the same rows by the same keys, one per kind of metric, full-outer-joined on those
keys and grouped again by ``COALESCE(left.key, right.key)`` with ``MAX`` of each column:

    SELECT COALESCE(a.k, b.k) AS k, MAX(a.steps) AS steps, MAX(b.n / b.d) AS rate
    FROM (SELECT k, SUM(x) AS steps FROM t GROUP BY k) a
    FULL OUTER JOIN (SELECT k, SUM(x) AS n, SUM(y) AS d FROM t GROUP BY k) b ON a.k = b.k
    GROUP BY COALESCE(a.k, b.k)

DuckDB runs both scans, joins and aggregates twice (twice the hand-written SQL's time on
funnel_by_user_segment). `merge_twin_aggregations` computes every column in the first
subquery and drops the second and the join. The answer is the same: both sides hold one row
per key; a key with a NULL part, which `=` does not match, made two rows that the outer
``GROUP BY COALESCE`` put back together and ``MAX`` / ``MIN`` (the only aggregates allowed
here) took each side's value from, as it now takes them from the one row. Anything else is
left exactly as MetricFlow wrote it.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

DIALECT = "duckdb"
_SAFE_OUTER_AGGREGATES = (exp.Max, exp.Min)


def merge_twin_aggregations(sql: str) -> str:
    """`sql` with every twin aggregation (module docstring) merged; unchanged when there is none."""
    try:
        tree = sqlglot.parse_one(sql, read=DIALECT)
    except SqlglotError:
        return sql
    merged = [select for select in list(tree.find_all(exp.Select)) if _merge(select)]
    return tree.sql(dialect=DIALECT, pretty=True) if merged else sql


def _merge(outer: exp.Select) -> bool:
    """Merge the twin subqueries `outer` reads from, if it has that shape; whether it did."""
    twins = _twins(outer)
    if twins is None:
        return False
    (left, left_alias), (right, right_alias) = twins
    if not _joined_on_group_keys(outer, left, right, left_alias, right_alias):
        return False
    left_columns = {_key(expression): name for name, expression in _outputs(left).items()}
    right_outputs = _outputs(right)
    # the right side's inner subqueries are the left's under other names (subq_42 for subq_31)
    renamed = dict(zip(_inner_subqueries(_bare(right)), _inner_subqueries(_bare(left)), strict=True))
    read = [c for c in outer.find_all(exp.Column) if c.table == right_alias and c.name in right_outputs]
    for column in read:  # each right-side column the outer query reads, computed on the left
        expression = _requalified(right_outputs[column.name], renamed)
        if _key(expression) not in left_columns:
            name = f"{column.name}__{right_alias}"
            left.append("expressions", exp.alias_(expression, name))
            left_columns[_key(expression)] = name
        column.replace(exp.column(left_columns[_key(expression)], table=left_alias))
    outer.set("joins", None)
    return True


def _twins(outer: exp.Select) -> tuple[tuple[exp.Select, str], tuple[exp.Select, str]] | None:
    """The two subqueries (and aliases) of ``FROM (…) a FULL OUTER JOIN (…) b ON …`` when they
    aggregate the same rows by the same keys and `outer` only groups and takes MAX / MIN."""
    joins = outer.args.get("joins") or []
    source = outer.args.get("from_")
    if len(joins) != 1 or source is None or joins[0].side != "FULL" or not outer.args.get("group"):
        return None
    left, right = source.this, joins[0].this
    if not all(
        isinstance(side, exp.Subquery) and isinstance(side.this, exp.Select) for side in (left, right)
    ):
        return None
    if not left.alias or not right.alias or left.alias == right.alias:
        return None
    if _without_projections(left.this) != _without_projections(right.this) or not left.this.args.get("group"):
        return None
    if not _only_safe_aggregates(outer):
        return None
    return (left.this, left.alias), (right.this, right.alias)


def _without_projections(select: exp.Select) -> str:
    """The subquery's FROM, joins, WHERE and GROUP BY (what must be identical), as SQL, its
    inner subqueries named by position."""
    bare = _bare(select)
    # MetricFlow numbers its inner subqueries (subq_5, subq_14): compare them by position
    names = {alias: f"_subquery_{i}" for i, alias in enumerate(_inner_subqueries(bare))}
    for subquery in bare.find_all(exp.Subquery):
        if subquery.alias in names:
            subquery.set("alias", exp.TableAlias(this=exp.to_identifier(names[subquery.alias])))
    return _requalified(bare, names).sql(dialect=DIALECT)


def _bare(select: exp.Select) -> exp.Select:
    """A copy of the select with ``*`` for its projections."""
    bare = select.copy()
    bare.set("expressions", [exp.Star()])
    return bare


def _inner_subqueries(bare: exp.Select) -> list[str]:
    """The aliases of a bare select's subqueries, in order."""
    return [subquery.alias for subquery in bare.find_all(exp.Subquery) if subquery.alias]


def _requalified(expression: exp.Expression, tables: dict[str, str]) -> exp.Expression:
    """A copy of `expression` whose columns qualified by a table in `tables` name its new name."""
    copy = expression.copy()
    for column in copy.find_all(exp.Column):
        if column.table in tables:
            column.set("table", exp.to_identifier(tables[column.table]))
    return copy


def _only_safe_aggregates(outer: exp.Select) -> bool:
    """Every aggregate of `outer` is MAX or MIN, and no window or DISTINCT changes row counts."""
    if outer.args.get("distinct") or outer.args.get("having"):
        return False
    own = outer.expressions
    if any(node for e in own for node in e.find_all(exp.Window)):
        return False
    return all(isinstance(agg, _SAFE_OUTER_AGGREGATES) for e in own for agg in e.find_all(exp.AggFunc))


def _joined_on_group_keys(
    outer: exp.Select, left: exp.Select, right: exp.Select, left_alias: str, right_alias: str
) -> bool:
    """The join condition equates, on both sides, every grouped column and nothing else."""
    condition = outer.args["joins"][0].args.get("on")
    if condition is None:
        return False
    keys = _group_aliases(left)
    if keys is None or keys != _group_aliases(right):
        return False
    compared = set()
    for part in _conjuncts(condition):
        if not isinstance(part, exp.EQ | exp.NullSafeEQ):
            return False
        sides = {
            column.table: column.name
            for column in (part.this, part.expression)
            if isinstance(column, exp.Column)
        }
        if set(sides) != {left_alias, right_alias} or sides[left_alias] != sides[right_alias]:
            return False
        compared.add(sides[left_alias])
    return compared == keys


def _group_aliases(select: exp.Select) -> set[str] | None:
    """The output names of the grouped expressions (None when one is not projected by name)."""
    projected = {_key(expression): name for name, expression in _outputs(select).items()}
    names = set()
    for expression in select.args["group"].expressions:
        name = projected.get(_key(expression))
        if name is None:
            return None
        names.add(name)
    return names


def _conjuncts(condition: exp.Expression) -> list[exp.Expression]:
    condition = condition.unnest()
    if isinstance(condition, exp.And):
        return _conjuncts(condition.left) + _conjuncts(condition.right)
    return [condition]


def _outputs(select: exp.Select) -> dict[str, exp.Expression]:
    """The subquery's output columns by name: ``expr AS name`` and bare ``name`` columns."""
    outputs: dict[str, exp.Expression] = {}
    for projection in select.expressions:
        if isinstance(projection, exp.Alias):
            outputs[projection.alias] = projection.this
        elif isinstance(projection, exp.Column):
            outputs[projection.name] = projection
    return outputs


def _key(expression: exp.Expression) -> str:
    return expression.sql(dialect=DIALECT)
