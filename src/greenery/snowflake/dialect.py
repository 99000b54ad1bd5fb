"""Would Snowflake accept this SQL? A static check of what dbt compiles for the `snowflake` target.

Each statement is parsed with sqlglot's Snowflake dialect (syntax errors are reported), then
searched for what parses but that Snowflake does not have:

- functions sqlglot does not know (``exp.Anonymous``, e.g. DuckDB's ``list_value``,
  ``epoch_ms``, ``strftime``), unless they are real Snowflake functions sqlglot merely does not
  model (``SNOWFLAKE_FUNCTIONS``);
- functions of other dialects that sqlglot maps onto a Snowflake equivalent and would silently
  rewrite (``NOT_IN_SNOWFLAKE``, found by the name as written);
- data types Snowflake lacks (``NOT_SNOWFLAKE_TYPES``).

``check_sql`` is the unit: the emulated Snowflake run calls it on every statement dbt sends,
and other checks (e.g. MetricFlow's generated SQL) can call it on theirs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, TokenError
from sqlglot.tokens import TokenType

DIALECT = "snowflake"

# Real Snowflake functions that sqlglot 30 parses as exp.Anonymous. Add one here only after
# checking it in the Snowflake function reference.
SNOWFLAKE_FUNCTIONS = frozenset(
    {
        "AS_VARCHAR",
        "CONDITIONAL_CHANGE_EVENT",
        "CONDITIONAL_TRUE_EVENT",
        "GETVARIABLE",
        "GET_DDL",
        "HASH",
        "HAVERSINE",
        "HLL_ESTIMATE",
        "INFER_SCHEMA",
        "IS_BOOLEAN",
        "IS_DATE",
        "IS_INTEGER",
        "LAST_QUERY_ID",
        "NORMAL",
        "OBJECT_DELETE",
        "OBJECT_PICK",
        "RANDSTR",
        "RATIO_TO_REPORT",
        "STRTOK_SPLIT_TO_TABLE",
        "TO_OBJECT",
        "TO_TIMESTAMP",
        "TO_TIMESTAMP_LTZ",
        "TO_TIMESTAMP_NTZ",
        "TO_TIMESTAMP_TZ",
        "TRY_TO_TIMESTAMP",
        "UNIFORM",
        "ZIPF",
    }
)
# SYSTEM$… functions (SYSTEM$TYPEOF, SYSTEM$CLUSTERING_INFORMATION, …) are Snowflake's own.
SNOWFLAKE_FUNCTION_PREFIXES = ("SYSTEM$",)

# Functions of DuckDB/Postgres that Snowflake does not have but sqlglot's Snowflake parser
# still understands (it would transpile them), with what to write instead.
NOT_IN_SNOWFLAKE: dict[str, str] = {
    "ARG_MAX": "MAX_BY",
    "ARG_MIN": "MIN_BY",
    "GENERATE_SERIES": "dbt.date_spine or ARRAY_GENERATE_RANGE",
    "GEN_RANDOM_UUID": "UUID_STRING",
    "LIST": "ARRAY_AGG",
    "REGEXP_FULL_MATCH": "REGEXP_LIKE",
    "STRING_AGG": "LISTAGG (dbt.listagg)",
}

# Data types sqlglot parses that Snowflake does not have (DuckDB's HUGEINT, unsigned integers,
# LIST, UUID, Postgres' BPCHAR).
NOT_SNOWFLAKE_TYPES = frozenset(
    {
        exp.DataType.Type.INT128,
        exp.DataType.Type.INT256,
        exp.DataType.Type.UINT128,
        exp.DataType.Type.UINT256,
        exp.DataType.Type.LIST,
        exp.DataType.Type.UUID,
        exp.DataType.Type.BPCHAR,
    }
)


def _first_line(message: str) -> str:
    return " ".join(str(message).split())[:300]


def _names_as_written(sql: str) -> list[str]:
    """Upper-cased names written right before an opening parenthesis (function calls)."""
    tokens = sqlglot.tokenize(sql, read=DIALECT)
    return [
        token.text.upper()
        for token, following in itertools.pairwise(tokens)
        if following.token_type == TokenType.L_PAREN and token.token_type != TokenType.STRING
    ]


def check_sql(sql: str, source: str) -> list[str]:
    """Problems Snowflake would reject in ``sql`` (one or more statements), as "source: message".

    An empty list means every statement parses as Snowflake SQL and uses only functions and
    types Snowflake has. ``source`` names where the SQL came from (a file, a node, a query).
    """
    try:
        statements = sqlglot.parse(sql, read=DIALECT, error_level=ErrorLevel.RAISE)
    except (ParseError, TokenError) as error:
        return [f"{source}: not valid Snowflake SQL: {_first_line(str(error))}"]
    problems: list[str] = []
    for statement in statements:
        if statement is None or isinstance(statement, exp.Command):
            # SHOW/DESCRIBE/… that sqlglot keeps as raw commands: nothing to look into
            continue
        for function in statement.find_all(exp.Anonymous):
            name = str(function.name).upper()
            if name not in SNOWFLAKE_FUNCTIONS and not name.startswith(SNOWFLAKE_FUNCTION_PREFIXES):
                problems.append(f"{source}: unknown function {name} (Snowflake has no such function)")
        for data_type in statement.find_all(exp.DataType):
            if data_type.this in NOT_SNOWFLAKE_TYPES:
                problems.append(f"{source}: data type {data_type.sql()} does not exist in Snowflake")
    for name in _names_as_written(sql):
        if name in NOT_IN_SNOWFLAKE:
            problems.append(
                f"{source}: unknown function {name} (Snowflake has no such function;"
                f" use {NOT_IN_SNOWFLAKE[name]})"
            )
    return list(dict.fromkeys(problems))


def sql_files(target_path: Path) -> list[Path]:
    """What dbt wrote for the target: compiled/**.sql (every node) and run/**.sql (DDL, DML)."""
    return sorted(p for sub in ("compiled", "run") for p in (target_path / sub).rglob("*.sql"))


def check_files(files: Iterable[Path], root: Path | None = None) -> list[str]:
    problems: list[str] = []
    for path in files:
        source = str(path.relative_to(root)) if root is not None else str(path)
        problems.extend(check_sql(path.read_text(encoding="utf-8"), source))
    return problems


def check_target(target_path: Path) -> list[str]:
    """Check every SQL file dbt wrote under a target path; raise when there is none."""
    files = sql_files(target_path)
    if not files:
        raise FileNotFoundError(f"no compiled SQL under {target_path}: run `dbt compile` first")
    return check_files(files, target_path)
