"""What dbt puts in a model's Jinja context beyond sqlfluff's dbt builtins, for `make lint`.

sqlfluff's jinja templater (see .sqlfluff) knows `ref`, `source`, `var`, `config`, `this`
and `return`; the models also call dbt's cross-database macros (`dbt.type_string()`,
`dbt.date_trunc(...)`…) and `adapter`. Every name here becomes a variable of the template
context (sqlfluff's `library_path` loads this package), and each macro renders the SQL
dbt-duckdb writes, close enough to parse. Only what templated code yields is stubbed: the
SQL a model writes itself is linted as written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace


def _date_spine(datepart: str, start_date: str, end_date: str) -> str:
    return (
        f"select cast(range as timestamp) as date_{datepart}"
        f" from range({start_date}, {end_date}, interval 1 {datepart})"
    )


dbt = SimpleNamespace(
    type_string=lambda: "varchar",
    type_timestamp=lambda: "timestamp",
    type_int=lambda: "integer",
    date_trunc=lambda datepart, date: f"date_trunc('{datepart}', {date})",
    dateadd=lambda datepart, interval, date: f"date_add({date}, interval ({interval}) {datepart})",
    datediff=lambda first, second, datepart: f"date_diff('{datepart}', {first}, {second})",
    concat=lambda fields: " || ".join(fields),
    split_part=lambda string, delimiter, part: f"split_part({string}, {delimiter}, {part})",
    length=lambda expression: f"length({expression})",
    date_spine=_date_spine,
    current_timestamp=lambda: "now()",
)

# `adapter.get_relation(...)` finds nothing: the templates take their no-warehouse branch.
# sqlfluff's `is_incremental()` is true: join_touched_by_changes compares one stand-in column.
adapter = SimpleNamespace(
    get_relation=lambda *args, **kwargs: None,
    get_columns_in_relation=lambda *args, **kwargs: [SimpleNamespace(name="compared_column")],
)

# the embedded default target (macros/not_materialized.sql writes DuckDB's hint)
target = SimpleNamespace(type="duckdb")

# dbt's parse phase: macros that query the warehouse return early.
execute = False

# a --full-refresh run: the data tests read every row (macros/incremental_lookback.sql)
flags = SimpleNamespace(FULL_REFRESH=True)

# when the run started: each row's built_at (macros/incremental_lookback.sql)
run_started_at = datetime(2021, 2, 1, tzinfo=UTC)
