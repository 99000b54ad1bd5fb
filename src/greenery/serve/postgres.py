"""The semantic layer over the Postgres wire protocol: psql, psycopg, JDBC, SQLAlchemy, BI tools.

`greenery serve --pg-port N` starts this next to the GraphQL API and Arrow Flight SQL, on the
same `SemanticLayerService` and the same token (sent as the password, with SCRAM-SHA-256;
any user name, any database name). What a client sends:

- SQL on the ``semantic_layer`` schema and dbt's ``{{ semantic_layer.query(…) }}`` templates:
  answered by the SQL API (greenery.serve.sql), every number computed by MetricFlow;
- catalog queries (``pg_catalog``, ``information_schema``, ``version()``, ``current_schema()``):
  answered by the emulated catalog (greenery.serve.postgres_catalog);
- session commands (``SET``, ``SHOW``, ``RESET``, ``BEGIN``/``COMMIT``/``ROLLBACK``, ``DISCARD``…):
  answered as PostgreSQL 15 answers them, with nothing to commit;
- anything that would write (DDL, DML, ``COPY … FROM``): refused, SQLSTATE 25006.

The wire protocol itself (framing, message codecs, connection phases) is pygwire's; the
password is the token, checked with SCRAM-SHA-256 (greenery.serve.auth). Both the simple and
the extended query protocol (Parse/Bind/Describe/Execute, pipelined until Sync) are served;
bind parameters become SQL literals in the parsed tree, never text pasted into SQL. Errors
are ``ErrorResponse`` messages with a SQLSTATE, and the connection stays usable after one
(inside a transaction block, until ROLLBACK, as in Postgres).
"""

from __future__ import annotations

import contextlib
import decimal
import hmac
import itertools
import logging
import re
import secrets
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import pyarrow as pa
import sqlglot
from pygwire import BackendConnection, PygwireError, TransactionStatus
from pygwire import messages as wire
from sqlglot import exp
from sqlglot.errors import SqlglotError

from greenery.semantic.layer import SemanticLayerError
from greenery.semantic.shape import TooComplex, check_brackets
from greenery.semantic.watchdog import WATCHDOG, Cancellable, RunningWork, running
from greenery.serve.auth import ScramRefused, ScramSha256, bind_refusal
from greenery.serve.postgres_catalog import (
    DEFAULT_SETTINGS,
    REPORTED_SETTINGS,
    TERMINATING,
    PgError,
    PostgresCatalog,
    SessionFacts,
    array_type,
    element_type,
    name_projections,
    type_oid,
)
from greenery.serve.postgres_copy import CopyRequest, copy_data, copy_request
from greenery.serve.postgres_cursors import Declaration, close_target, declaration, fetch_request, fetched
from greenery.serve.postgres_values import (
    array_items,
    binary_parameter,
    encode_rows,
    result_formats,
    row_description,
)
from greenery.serve.scheduler import as_client
from greenery.serve.service import (
    SHUTTING_DOWN,
    TOO_COMPLEX,
    QueryFailed,
    QueryTimedOut,
    QueryTooBig,
    SemanticLayerService,
    ServerConfigError,
)
from greenery.serve.sql import (
    MAX_PARAMETERS,
    MAX_SQL_CHARS,
    ReadOnlySql,
    SqlApi,
    SqlError,
    SqlSyntaxError,
    SqlTooLarge,
    UnknownColumn,
    UnknownTable,
    UnsupportedSql,
    bind_parameters,
    whole_intervals,
)
from greenery.serve.statements import FUNCTIONS
from greenery.serve.tables import SCHEMA

log = logging.getLogger("greenery.serve")

MAX_MESSAGE_BYTES = 4 * MAX_SQL_CHARS  # a message still incomplete past this many bytes ends the connection
MAX_RESULT_ROWS = 1_000_000  # larger answers are refused (54000): aggregate or add a LIMIT
MAX_CONNECTIONS = 64  # clients past their startup message …
MAX_SOCKETS = 2 * MAX_CONNECTIONS  # … and open sockets (a thread each): more are closed at once
SHUTDOWN_WAIT_S = 10.0  # at shutdown, for the connections' threads to end their stopped statements
STARTUP_TIMEOUT_S = 10.0  # from connecting to authenticated: a client slower than this is closed
MAX_PREPARED = 512  # named statements and portals per connection …
MAX_PREPARED_CHARS = 4 * MAX_SQL_CHARS  # … and characters of prepared statements per connection
MAX_STATEMENTS = 1000  # statements in one simple-query message
MAX_SETTING_CHARS = 4096  # a setting's value
MAX_CUSTOM_SETTINGS = 100  # settings a connection SETs besides PostgreSQL's own (DEFAULT_SETTINGS)
SCRAM = "SCRAM-SHA-256"
RECV_BYTES = 64 * 1024
_TEMPLATE = re.compile(r"\{\{|\bsemantic_layer\s*\.\s*(\w+)\s*\(", re.I)
# First words of statements that would write or touch the server: refused, as a read-only server does.
_WRITES = frozenset(
    {
        *("insert", "update", "delete", "merge", "create", "drop", "alter", "truncate", "grant", "revoke"),
        *("comment", "vacuum", "analyze", "cluster", "reindex", "lock", "call", "do", "refresh", "import"),
        *("security", "reassign", "load", "install", "attach", "detach", "pragma", "checkpoint", "export"),
        *("notify", "prepare", "execute"),
    }
)
_QUERIES = frozenset({"select", "with", "values", "table", "(", "{{"})
_ENDS_FAILED_TRANSACTION = frozenset({"rollback", "abort", "commit", "end"})


# ---- one statement's outcome ---------------------------------------------------------------


@dataclass
class Outcome:
    """What a statement answered: rows (a table) or a command tag, and what to tell the client first."""

    tag: str
    table: pa.Table | None = None
    notices: list[tuple[str, str]] = field(default_factory=list)  # (SQLSTATE, message) warnings
    reported: dict[str, str] = field(default_factory=dict)  # settings changed, sent as ParameterStatus
    empty: bool = False  # an empty query string
    copy: CopyRequest | None = None  # COPY … TO STDOUT: the table is sent as COPY data


def _error_for(exc: Exception) -> PgError:
    """A user error as Postgres reports it (SQLSTATE and message); unexpected failures are XX000."""
    if isinstance(exc, PgError):
        return exc
    if isinstance(exc, RecursionError):  # input nested too deeply: Postgres's "stack depth limit exceeded"
        return PgError("54001", TOO_COMPLEX)
    if isinstance(exc, MemoryError):
        return PgError("53200", TOO_COMPLEX)
    codes: list[tuple[type[Exception], str]] = [
        (SqlSyntaxError, "42601"),
        (SqlTooLarge, "54000"),
        (UnknownTable, "42P01"),
        (UnknownColumn, "42703"),
        (ReadOnlySql, "25006"),
        (UnsupportedSql, "0A000"),
        (QueryTimedOut, "57014"),
        (QueryTooBig, "53200"),
        (SqlError, "42000"),
        (QueryFailed, "42000"),
        (SemanticLayerError, "42000"),
        (ValueError, "22023"),
    ]
    for kind, sqlstate in codes:
        if isinstance(exc, kind):
            return PgError(sqlstate, str(exc))
    log.exception("postgres statement failed unexpectedly")
    return PgError("XX000", f"internal error ({type(exc).__name__}): {exc}")


# ---- statements: splitting, first words, bind parameters ------------------------------------


def split_statements(text: str) -> list[str]:
    """A simple-query string cut at its top-level semicolons (quotes, comments, templates respected)."""
    try:
        tokens = sqlglot.tokenize(text, read="postgres")
    except SqlglotError:
        return [text]
    cuts = [t.start for t in tokens if t.token_type == sqlglot.TokenType.SEMICOLON]
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(text[start:cut])
        start = cut + 1
    pieces.append(text[start:])
    return [p for p in pieces if p.strip()] or [""]


def first_word(text: str) -> str:
    """The statement's first keyword, lower case ('' for an empty statement)."""
    stripped = re.sub(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/)*", "", text, flags=re.S)
    for opening in ("(", "{{"):
        if stripped.startswith(opening):
            return opening
    match = re.match(r"[A-Za-z_]+", stripped)
    return match.group(0).lower() if match else ""


def is_template(text: str) -> bool:
    """dbt's ``{{ semantic_layer.query(…) }}`` or a brace-less ``semantic_layer.f(…)`` call."""
    return any(m.group(1) is None or m.group(1).lower() in FUNCTIONS for m in _TEMPLATE.finditer(text))


def parameter_count(text: str) -> int:
    """The highest ``$n`` placeholder a statement uses."""
    try:
        tokens = sqlglot.tokenize(text, read="postgres")
    except SqlglotError:
        return 0
    numbers = [
        int(b.text)
        for a, b in itertools.pairwise(tokens)
        if a.text == "$" and b.token_type == sqlglot.TokenType.NUMBER and b.start == a.end + 1
    ]
    dollar = [int(t.text[1:]) for t in tokens if re.fullmatch(r"\$\d+", t.text)]
    return max(numbers + dollar, default=0)


# Outside strings, quoted names, comments and dollar-quoted strings: a `$n` directly followed by
# something (`$1,$2`), which sqlglot's tokenizer takes for a dollar-quote tag ("1,"), though
# PostgreSQL's tags never start with a digit.
_READABLE = re.compile(
    r"'(?:[^']|'')*'"  # a string
    r'|"(?:[^"]|"")*"'  # a quoted name
    r"|--[^\n]*"  # a line comment
    r"|(?P<open>/\*|\$(?:[A-Za-z_]\w*)?\$)"  # a block comment or a dollar-quoted string begins
    r"|(?P<parameter>\$\d+)(?=[^\s\d])"  # a parameter with no space after it
    r"|(?P<oid>::\s*oid\s*\[\s*\])",  # a cast to oid[] (asyncpg's type lookups), which sqlglot cannot read
    re.IGNORECASE,
)


def sqlglot_readable(text: str) -> str:
    """The statement as sqlglot reads it: a space after each ``$n`` that lacks one (else
    ``$1,`` reads as a dollar quote), ``::int8[]`` for ``::oid[]``; strings and comments as they
    are. One pass: a block comment or dollar quote is skipped to its end with str.find (a regex
    scanning for it from every unclosed ``$tag$`` took 9 s on 100,000 characters)."""
    parts: list[str] = []
    at = 0
    while (match := _READABLE.search(text, at)) is not None:
        start, end = match.span()
        if match.group("open"):
            close = "*/" if match.group("open") == "/*" else match.group("open")
            found = text.find(close, end)
            end = len(text) if found < 0 else found + len(close)
            parts.append(text[at:end])
        elif match.group("parameter"):
            parts.append(text[at:end] + " ")
        elif match.group("oid"):
            parts.append(text[at:start] + "::int8[]")
        else:
            parts.append(text[at:end])
        at = end
    parts.append(text[at:])
    return "".join(parts)


_INTEGERS = {type_oid(n) for n in ("int2", "int4", "int8", "oid")}
_NUMBERS = {type_oid(n) for n in ("float4", "float8", "numeric")}
_BOOL = type_oid("bool")
_TIMES = {type_oid(name): name for name in ("date", "timestamp", "timestamptz")}


# a parameter cast in the statement ($1::int) has the cast's type, as PostgreSQL infers
_PARAMETER_CAST_TYPES = {
    exp.DataType.Type.SMALLINT: "int2",
    exp.DataType.Type.INT: "int4",
    exp.DataType.Type.BIGINT: "int8",
    exp.DataType.Type.FLOAT: "float4",
    exp.DataType.Type.DOUBLE: "float8",
    exp.DataType.Type.DECIMAL: "numeric",
    exp.DataType.Type.BOOLEAN: "bool",
    exp.DataType.Type.DATE: "date",
    exp.DataType.Type.TIMESTAMP: "timestamp",
    exp.DataType.Type.TIMESTAMPTZ: "timestamptz",
}


def inferred_parameter_types(text: str, count: int) -> list[int]:
    """Each parameter's type OID as PostgreSQL infers it where that is plain: a cast's type
    (``$1::int``), ``int8`` for LIMIT and OFFSET; 0 (unknown: described as text) elsewhere. A
    driver such as asyncpg encodes each value by the type described."""
    types = [0] * count
    for number in re.findall(r"\$(\d+)\s*::\s*oid\s*\[\s*\]", text, re.I):  # unreadable to sqlglot
        if 1 <= int(number) <= count:
            types[int(number) - 1] = array_type(type_oid("oid"))
    try:
        check_brackets(text)
        parsed = [e for e in sqlglot.parse(sqlglot_readable(text), read="postgres") if e is not None]
    except (SqlglotError, TooComplex):  # running it says what is wrong
        return types
    for tree in parsed:
        for parameter in tree.find_all(exp.Parameter):
            number, parent = parameter.name, parameter.parent
            while isinstance(parent, exp.Paren):
                parent = parent.parent
            if not number.isdigit() or not 1 <= int(number) <= count or types[int(number) - 1]:
                continue
            if isinstance(parent, exp.Cast):
                types[int(number) - 1] = _cast_type(parent.to)
            elif isinstance(parent, exp.Limit | exp.Offset):
                types[int(number) - 1] = type_oid("int8")
            elif _quantifier(parent):  # x = any($1): an array, of text where nothing says
                types[int(number) - 1] = array_type(type_oid("text"))
    return types


def _quantifier(node: exp.Expression | None) -> bool:
    """ANY or ALL around a list (sqlglot reads ``<> all(…)`` as a function call)."""
    return isinstance(node, exp.Any | exp.All) or (
        isinstance(node, exp.Anonymous) and node.name.lower() == "all"
    )


def _array_literals(tree: exp.Expression) -> exp.Expression:
    """``x = any('{Texas,"New York"}')`` and ``'{1,2}'::int[]``: PostgreSQL reads a string given to
    ANY or ALL, or cast to an array type, as an array literal (text[] where nothing says
    otherwise), as it reads an array parameter; replaced by that array where it stands."""
    for cast in list(tree.find_all(exp.Cast)):
        literal, type_ = cast.this, _cast_type(cast.to)
        if isinstance(literal, exp.Literal) and literal.is_string and element_type(type_):
            literal.replace(parameter_literal(literal.this.encode(), type_, False))
    for node in list(tree.find_all(exp.Any, exp.All, exp.Anonymous)):
        if not _quantifier(node):
            continue
        argument = node.expressions[0] if isinstance(node, exp.Anonymous) and node.expressions else node.this
        literal = argument.unnest() if isinstance(argument, exp.Expression) else None
        if isinstance(literal, exp.Literal) and literal.is_string:
            literal.replace(parameter_literal(literal.this.encode(), array_type(type_oid("text")), False))
    return tree


def _cast_type(to: exp.DataType) -> int:
    """The type OID of a cast's target type, an array of one too; 0 for others."""
    if to.this == exp.DataType.Type.ARRAY and to.expressions:
        return array_type(_cast_type(to.expressions[0]))
    if to.this in (exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR):
        return type_oid("text")
    return type_oid(_PARAMETER_CAST_TYPES[to.this]) if to.this in _PARAMETER_CAST_TYPES else 0


def parameter_literal(value: bytes | None, type_: int, binary: bool) -> exp.Expression:
    """One bind parameter as a SQL literal node (never as text pasted into SQL)."""
    if value is None:
        return exp.Null()
    if element := element_type(type_):  # x = any($1) with a list (psycopg, asyncpg)
        literals = [parameter_literal(item, element, binary) for item in array_items(value, binary)]
        if element in _TIMES:  # typed: DuckDB compares a list of text with no time
            literals = [exp.cast(v, _TIMES[element]) if isinstance(v, exp.Literal) else v for v in literals]
        return exp.Array(expressions=literals)
    if binary:
        decoded = binary_parameter(value, type_)
        text = str(decoded).lower() if isinstance(decoded, bool) else str(decoded)
    else:
        text = value.decode("utf-8")
    if type_ in _INTEGERS:
        if not re.fullmatch(r"\s*[-+]?\d+\s*", text):
            raise PgError("22P02", f'invalid input syntax for type integer: "{text}"')
        return exp.Literal.number(int(text))
    if type_ in _NUMBERS:
        try:
            number = decimal.Decimal(text.strip())
        except decimal.InvalidOperation:
            raise PgError("22P02", f'invalid input syntax for type numeric: "{text}"') from None
        return exp.Literal.number(str(number)) if number.is_finite() else exp.Literal.string(text.strip())
    if type_ == _BOOL:
        truth = text.strip().lower()
        if truth not in ("t", "true", "1", "f", "false", "0", "yes", "no", "on", "off", "y", "n"):
            raise PgError("22P02", f'invalid input syntax for type boolean: "{text}"')
        return exp.Boolean(this=truth in ("t", "true", "1", "yes", "on", "y"))
    return exp.Literal.string(text)


# ---- the session: settings, transactions, statements ----------------------------------------


@dataclass
class Prepared:
    text: str
    parameter_types: list[int]


@dataclass
class Portal:
    """A bound statement (Bind), or a cursor DECLAREd in SQL: PostgreSQL's portals are both."""

    text: str
    literals: list[exp.Expression]
    result_formats: list[int]
    outcome: Outcome | None = None
    # rows already sent (Execute with a row limit); a cursor's position (see postgres_cursors)
    position: int = 0
    cursor: Declaration | None = None  # how a DECLAREd cursor may be read


class Session:
    """One client connection's state and statements, over the server's shared pieces."""

    def __init__(self, server: PostgresServer, user: str, database: str, params: dict[str, str]) -> None:
        self._server = server
        self.user, self.database = user, database
        self.pid = secrets.randbelow(2**31 - 1) + 1
        self.secret = secrets.token_bytes(4)
        self.settings = dict(DEFAULT_SETTINGS)
        given = {**startup_options(params.get("options", "")), **params}  # a parameter overrides options
        for name, value in given.items():
            canonical = self._canonical(name)
            if canonical is not None and canonical not in ("client_encoding", "server_version"):
                self.settings[canonical] = checked_setting(canonical, value)
        self.status = TransactionStatus.IDLE
        self.prepared: dict[str, Prepared] = {}
        self.portals: dict[str, Portal] = {}
        self.current_statement: Cancellable | None = None  # the statement running now, for a cancel request
        self._describing = False  # running a statement only to learn its columns (columns_of)
        self._before_transaction: dict[str, str] = {}  # the settings at BEGIN, back on ROLLBACK
        self._after_transaction: dict[str, str | None] = {}  # what SET LOCAL changed, back at the end

    @property
    def facts(self) -> SessionFacts:
        return SessionFacts(self.user, self.database, dict(self.settings), self.pid)

    def _canonical(self, name: str) -> str | None:
        lowered = name.lower()
        return next((k for k in self.settings if k.lower() == lowered), None)

    # -- running one statement --

    def run(self, text: str, literals: list[exp.Expression] | None = None) -> Outcome:
        """One statement; a PgError for what Postgres would refuse (the transaction fails with it)."""
        try:
            return self._run_stoppable(text, literals or [])
        except Exception as exc:
            if self.status == TransactionStatus.IN_TRANSACTION:
                self.status = TransactionStatus.ERROR_TRANSACTION
            raise _error_for(exc) from None

    def _run_stoppable(self, text: str, literals: list[exp.Expression]) -> Outcome:
        """One statement, stopped by a cancel request or at the session's statement_timeout, as in
        Postgres: 57014, whether the stop interrupted a query or came between two of its steps."""
        statement = Cancellable()
        timeout_ms = setting_ms("statement_timeout", self.settings["statement_timeout"])
        self.current_statement = statement
        try:
            with (
                self._server.statements.track(statement),
                WATCHDOG.limit(timeout_ms / 1000 or None, lambda: statement.stop("statement timeout")),
                running(statement),
            ):
                outcome = self._run(text, literals)
        except Exception:
            if statement.stopped_for is None:
                raise
            outcome = None
        finally:
            self.current_statement = None
        if statement.stopped_for == SHUTTING_DOWN:
            raise PgError("57P01", TERMINATING)
        if statement.stopped_for is not None:
            raise PgError("57014", f"canceling statement due to {statement.stopped_for}")
        assert outcome is not None
        return outcome

    def columns_of(self, text: str, literals: list[exp.Expression]) -> Outcome | None:
        """A statement run only to learn its columns (Describe of a statement), changing nothing
        in the session: None if it fails."""
        if first_word(text) not in _QUERIES or self.status == TransactionStatus.ERROR_TRANSACTION:
            return None
        self._describing = True
        try:
            return self._run_stoppable(text, literals)
        except PgError as error:
            if error.sqlstate in ("57014", "57P01"):  # stopped: so would the Execute be
                raise
            return None
        except Exception:
            return None
        finally:
            self._describing = False

    def cancel(self) -> None:
        """A cancel request for this session: stop the statement running now, if one is."""
        statement = self.current_statement
        if statement is not None:
            statement.stop("user request")

    def _run(self, text: str, literals: list[exp.Expression]) -> Outcome:
        if len(text) > MAX_SQL_CHARS:
            raise PgError("54000", f"the statement is longer than {MAX_SQL_CHARS} characters")
        word = first_word(text)
        if self.status == TransactionStatus.ERROR_TRANSACTION and word not in _ENDS_FAILED_TRANSACTION:
            raise PgError(
                "25P02", "current transaction is aborted, commands ignored until end of transaction block"
            )
        if not word:
            return Outcome("", empty=True)
        command = _COMMANDS.get(word)
        if command is not None:
            return command(self, text)
        if word in _WRITES:
            raise PgError("25006", f"cannot execute {word.upper()} in a read-only transaction")
        if word == "copy":
            return self._copy(text, literals)
        if word == "declare":
            return self._declare(text, literals)
        if word == "explain":
            raise PgError("0A000", "EXPLAIN is not supported: the semantic layer compiles its own SQL")
        if word not in _QUERIES and not is_template(text):
            raise PgError("42601", f'syntax error at or near "{word}"')
        table = self._select(text, literals)
        if table.num_rows > MAX_RESULT_ROWS:
            raise PgError(
                "54000",
                f"the answer has {table.num_rows} rows, over {MAX_RESULT_ROWS}: aggregate or add a LIMIT",
            )
        return Outcome(f"SELECT {table.num_rows}", table)

    def _select(self, text: str, literals: list[exp.Expression]) -> pa.Table:
        """A query: on the semantic layer through the SQL API; on the system catalog through its emulation."""
        if is_template(text):  # its parameters are bound by the SQL API, outside the templates
            return self._server.sql_api.run(text, literals).table
        try:
            check_brackets(text)
        except TooComplex as exc:
            raise PgError("54001", f"the statement is too complex to read: {exc}") from None
        try:
            readable = whole_intervals(text, "postgres")
            parsed = [e for e in sqlglot.parse(readable, read="postgres") if e is not None]
        except SqlglotError as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
            raise PgError("42601", message) from None
        if len(parsed) != 1 or not isinstance(parsed[0], exp.Query):
            raise PgError("42601", "send one SELECT at a time")
        tree = _array_literals(bind_parameters(parsed[0], literals))
        name_projections(tree)  # before set_config(…) is replaced by its value
        tree = self._set_configs(tree)
        if self._reads_semantic_layer(tree):
            return self._server.sql_api.run(tree.sql(dialect="postgres")).table
        return self._server.catalog().run(tree, self.facts)

    def _set_configs(self, tree: exp.Query) -> exp.Query:
        """``set_config(name, value, is_local)`` as in Postgres: the setting changes as SET (or SET
        LOCAL) changes it, and the call reads as its new value. Replaced where it stands: a
        transform of every statement's tree, for a call almost none has, cost more than parsing it."""
        for call in [n for n in tree.find_all(exp.Anonymous) if n.name.lower() == "set_config"]:
            call.replace(self._set_config(call.expressions))
        return tree

    def _set_config(self, args: list[exp.Expression]) -> exp.Expression:
        if self._describing:  # a text column; nothing set
            return exp.Literal.string("")
        if len(args) != 3 or not all(isinstance(a, exp.Literal) for a in args[:2]):
            raise PgError("0A000", "set_config takes a literal name and value here")
        name = self._canonical(args[0].name) or args[0].name
        local = isinstance(args[2], exp.Boolean) and args[2].this is True
        self._assign(name, args[1].name, local=local)
        return exp.Literal.string(checked_setting(name, args[1].name))

    def _reads_semantic_layer(self, tree: exp.Expression) -> bool:
        """Whether the query names a semantic_layer table (unqualified names resolved by search_path)."""
        ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
        found = False
        for table in tree.find_all(exp.Table):
            if not isinstance(table.this, exp.Identifier):
                continue
            if table.db.lower() == SCHEMA:
                found = True
            elif (
                not table.db
                and table.name.lower() not in ctes
                and not table.name.lower().startswith("pg_")
                and SCHEMA in self.facts.search_path
                and table.name.lower() in self._server.table_names()
            ):
                table.set("db", exp.to_identifier(SCHEMA))
                found = True
        return found

    # -- cursors (greenery.serve.postgres_cursors) --

    def _declare(self, text: str, literals: list[exp.Expression]) -> Outcome:
        declared = declaration(text)
        if not declared.hold and self.status == TransactionStatus.IDLE:
            raise PgError("25P01", "DECLARE CURSOR can only be used in transaction blocks")
        if declared.name in self.portals:
            raise PgError("42P03", f'cursor "{declared.name}" already exists')
        if len(self.portals) >= MAX_PREPARED:
            raise PgError("53400", f"at most {MAX_PREPARED} open portals per connection")
        table = self._query_rows(declared.query, literals, "a cursor")
        outcome = Outcome(f"SELECT {table.num_rows}", table)
        self.portals[declared.name] = Portal(declared.query, literals, [], outcome, cursor=declared)
        return Outcome("DECLARE CURSOR")

    def _fetch(self, text: str) -> Outcome:
        request = fetch_request(text)
        portal = self._cursor(request.name)
        assert portal.outcome is not None and portal.outcome.table is not None and portal.cursor is not None
        table = portal.outcome.table
        rows, portal.position = fetched(portal.position, table.num_rows, request, portal.cursor.scroll)
        if request.move:
            return Outcome(f"MOVE {len(rows)}")
        return Outcome(f"FETCH {len(rows)}", table.take(pa.array(rows, pa.int64())))

    def _close_cursor(self, text: str) -> Outcome:
        name = close_target(text)
        if name is None:
            self._drop_cursors(lambda _: True)
            return Outcome("CLOSE CURSOR ALL")
        self._cursor(name)
        del self.portals[name]
        return Outcome("CLOSE CURSOR")

    def _cursor(self, name: str) -> Portal:
        portal = self.portals.get(name)
        if portal is None or portal.cursor is None:
            raise PgError("34000", f'cursor "{name}" does not exist')
        return portal

    def _drop_cursors(self, which: Callable[[Declaration], bool]) -> None:
        self.portals = {n: p for n, p in self.portals.items() if p.cursor is None or not which(p.cursor)}

    def _end_transaction(self, *, committed: bool) -> dict[str, str]:
        """Back to no transaction: the cursors declared without WITH HOLD close, and the settings
        SET LOCAL changed (rolled back: any SET) take their values back. Returns the reported
        settings that changed, to send as ParameterStatus."""
        before = dict(self.settings)
        if self.status != TransactionStatus.IDLE and not committed:
            self.settings = self._before_transaction or self.settings
        elif self.status != TransactionStatus.IDLE:
            for name, value in self._after_transaction.items():
                if value is None:
                    self.settings.pop(name, None)
                else:
                    self.settings[name] = value
        self.status = TransactionStatus.IDLE
        self._before_transaction, self._after_transaction = {}, {}
        self._drop_cursors(lambda cursor: not cursor.hold)
        return {n: self.settings[n] for n in REPORTED_SETTINGS if before.get(n) != self.settings.get(n)}

    def _copy(self, text: str, literals: list[exp.Expression]) -> Outcome:
        """COPY (query) TO STDOUT (greenery.serve.postgres_copy); COPY FROM is refused."""
        if re.search(r"\bfrom\b", text, re.I) and not re.search(r"^\s*copy\s*\(", text, re.I):
            raise PgError("25006", "cannot execute COPY FROM in a read-only transaction")
        request = copy_request(text)
        table = self._query_rows(request.query, literals, "COPY")
        return Outcome(f"COPY {table.num_rows}", table, copy=request)

    def _query_rows(self, query: str, literals: list[exp.Expression], reader: str) -> pa.Table:
        """The rows of the query a cursor or COPY reads (42601 if it is not a query)."""
        word = first_word(query)
        if word not in _QUERIES and not is_template(query):
            raise PgError("42601", f'syntax error at or near "{word}": {reader} reads a query')
        table = self._run(query, literals).table
        assert table is not None
        return table

    # -- session commands --

    def _show(self, text: str) -> Outcome:
        name = re.sub(r"^\s*show\s+", "", text, flags=re.I).strip().rstrip(";").strip()
        aliases = {"transaction isolation level": "transaction_isolation", "time zone": "TimeZone"}
        name = aliases.get(re.sub(r"\s+", " ", name.lower()), name).strip('"')
        if name.lower() == "all":
            names = sorted(self.settings, key=str.lower)
            return Outcome(
                "SHOW",
                pa.table(
                    {
                        "name": names,
                        "setting": [self.settings[n] for n in names],
                        "description": [""] * len(names),
                    }
                ),
            )
        canonical = self._canonical(name)
        if canonical is None:
            raise PgError("42704", f'unrecognized configuration parameter "{name}"')
        return Outcome("SHOW", pa.table({canonical.lower(): [self.settings[canonical]]}))

    def _set(self, text: str) -> Outcome:
        local = re.match(r"^\s*set\s+local\s", text, re.I) is not None
        body = re.sub(r"^\s*set\s+((session|local)\s+)?", "", text, flags=re.I).strip().rstrip(";").strip()
        lowered = body.lower()
        if re.match(
            r"(transaction|characteristics|session\s+characteristics|role|session\s+authorization)\b", lowered
        ):
            return Outcome("SET")
        if lowered.startswith("time zone"):
            name, value = "TimeZone", body[len("time zone") :].strip()
        else:
            match = re.match(r'("?[\w.]+"?)\s*(=|\bto\b)\s*(.*)$', body, re.I | re.S)
            if match is None:
                raise PgError("42601", f"syntax error in SET {body[:80]}")
            name, value = match.group(1).strip('"'), match.group(3).strip()
        return self._assign(name, _setting_value(value), local=local)

    def _assign(self, name: str, value: str | None, *, local: bool = False) -> Outcome:
        """Change a setting: for the session, or with `local` until the transaction ends (as in
        Postgres, a transaction rolled back takes its session changes back too)."""
        canonical = self._canonical(name) or name
        if canonical in ("server_version", "server_encoding", "is_superuser", "integer_datetimes"):
            raise PgError("55P02", f'parameter "{canonical}" cannot be changed')
        if canonical == "client_encoding" or value is None:
            value = DEFAULT_SETTINGS.get(canonical, "")
        checked = checked_setting(canonical, value)
        if (
            canonical not in self.settings
            and len(self.settings) >= len(DEFAULT_SETTINGS) + MAX_CUSTOM_SETTINGS
        ):
            raise PgError("53400", f"at most {MAX_CUSTOM_SETTINGS} settings of other names per connection")
        if local and self.status == TransactionStatus.IDLE:
            return Outcome("SET", notices=[("25P01", "SET LOCAL can only be used in transaction blocks")])
        if local:
            self._after_transaction.setdefault(canonical, self.settings.get(canonical))
        self.settings[canonical] = checked
        return Outcome("SET", reported={canonical: checked} if canonical in REPORTED_SETTINGS else {})

    def _reset(self, text: str) -> Outcome:
        name = re.sub(r"^\s*reset\s+", "", text, flags=re.I).strip().rstrip(";").strip().strip('"')
        if name.lower() == "all":
            self.settings = dict(DEFAULT_SETTINGS)
            return Outcome("RESET", reported={k: self.settings[k] for k in REPORTED_SETTINGS})
        outcome = self._assign(name, None)
        outcome.tag = "RESET"
        return outcome

    def _begin(self, text: str) -> Outcome:
        tag = "START TRANSACTION" if first_word(text) == "start" else "BEGIN"
        if self.status != TransactionStatus.IDLE:
            return Outcome(tag, notices=[("25001", "there is already a transaction in progress")])
        self.status = TransactionStatus.IN_TRANSACTION
        self._before_transaction = dict(self.settings)
        return Outcome(tag)

    def _commit(self, text: str) -> Outcome:
        failed = self.status == TransactionStatus.ERROR_TRANSACTION
        idle = self.status == TransactionStatus.IDLE
        reported = self._end_transaction(committed=not failed)
        notices = [("25P01", "there is no transaction in progress")] if idle else []
        return Outcome("ROLLBACK" if failed else "COMMIT", notices=notices, reported=reported)

    def _rollback(self, text: str) -> Outcome:
        if re.match(r"^\s*rollback\s+(work\s+|transaction\s+)?to\b", text, re.I):
            if self.status == TransactionStatus.IDLE:
                raise PgError("25P01", "ROLLBACK TO SAVEPOINT can only be used in transaction blocks")
            self.status = TransactionStatus.IN_TRANSACTION
            return Outcome("ROLLBACK")
        idle = self.status == TransactionStatus.IDLE
        reported = self._end_transaction(committed=False)
        notices = [("25P01", "there is no transaction in progress")] if idle else []
        return Outcome("ROLLBACK", notices=notices, reported=reported)

    def _savepoint(self, text: str) -> Outcome:
        if self.status == TransactionStatus.IDLE:
            raise PgError("25P01", f"{first_word(text).upper()} can only be used in transaction blocks")
        return Outcome(first_word(text).upper())

    def _discard(self, text: str) -> Outcome:
        what = re.sub(r"^\s*discard\s+", "", text, flags=re.I).strip().rstrip(";").upper()
        if what == "ALL":
            self.settings = dict(DEFAULT_SETTINGS)
            self.prepared.clear()
            self.portals.clear()
        return Outcome(f"DISCARD {what}")

    def _deallocate(self, text: str) -> Outcome:
        name = re.sub(r"^\s*deallocate\s+(prepare\s+)?", "", text, flags=re.I).strip().rstrip(";").strip('"')
        if name.lower() == "all":
            self.prepared.clear()
            return Outcome("DEALLOCATE ALL")
        if self.prepared.pop(name, None) is None:
            raise PgError("26000", f'prepared statement "{name}" does not exist')
        return Outcome("DEALLOCATE")

    def _plain(self, text: str) -> Outcome:
        return Outcome(first_word(text).upper())


def _setting_value(value: str) -> str | None:
    """A SET value as SHOW shows it: quotes taken off, list items joined by ', '; None for DEFAULT."""
    if value.lower() == "default":
        return None
    items = [i.strip() for i in re.findall(r"'(?:[^']|'')*'|[^,]+", value)]
    return ", ".join(i[1:-1].replace("''", "'") if i.startswith("'") else i.strip('"') for i in items)


# Postgres's units of time settings, in milliseconds (statement_timeout's unit when none is given)
_TIME_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_MAX_INT = 2**31 - 1
_TIME_SETTINGS = frozenset({"statement_timeout"})


def checked_setting(name: str, value: str) -> str:
    """A setting's value as SHOW shows it, PgError 22023 when Postgres would refuse it (or it is
    longer than MAX_SETTING_CHARS: search_path is read for every table a query names)."""
    if len(value) > MAX_SETTING_CHARS:
        raise PgError("22023", f'the value of "{name}" is longer than {MAX_SETTING_CHARS} characters')
    if name not in _TIME_SETTINGS:
        return value
    ms = setting_ms(name, value)
    unit = next(u for u in ("d", "h", "min", "s", "ms") if ms % _TIME_UNITS_MS[u] == 0)
    return "0" if ms == 0 else f"{ms // int(_TIME_UNITS_MS[unit])}{unit}"


def setting_ms(name: str, value: str) -> int:
    """A time setting in milliseconds, read as Postgres reads it: '5000', '1.5s', '1 min'."""
    match = re.fullmatch(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*([a-z]*)\s*", value, re.I)
    if match is None:
        raise PgError("22023", f'invalid value for parameter "{name}": "{value}"')
    unit = match.group(2) or "ms"
    if unit not in _TIME_UNITS_MS:
        raise PgError(
            "22023",
            f'invalid value for parameter "{name}": "{value}" '
            '(valid units are "us", "ms", "s", "min", "h" and "d")',
        )
    exact = float(match.group(1)) * _TIME_UNITS_MS[unit]
    if not abs(exact) <= _MAX_INT:  # infinite and NaN too
        raise PgError("22023", f'invalid value for parameter "{name}": "{value}" (it exceeds integer range)')
    ms = round(exact)
    if ms < 0:
        raise PgError("22023", f'{ms} ms is outside the valid range for parameter "{name}" (0 .. {_MAX_INT})')
    return ms


def startup_options(options: str) -> dict[str, str]:
    """The settings a startup message's ``options`` gives: ``-c name=value`` or ``--name=value``
    (libpq's PGOPTIONS, JDBC's options); a backslash escapes a space."""
    words = iter(re.sub(r"\\(.)", r"\1", w) for w in re.findall(r"(?:\\.|[^\s\\])+", options))
    settings: dict[str, str] = {}
    for word in words:
        if word == "-c":
            item = next(words, "")
        elif word.startswith(("-c", "--")):
            item = word[2:]
        else:
            raise PgError("42601", f"invalid command-line argument for server process: {word}")
        name, equals, value = item.partition("=")
        if not equals:
            raise PgError("42601", f"-c {name} requires a value")
        settings[name.replace("-", "_")] = value
    return settings


_COMMANDS: dict[str, Callable[[Session, str], Outcome]] = {
    "show": Session._show,
    "set": Session._set,
    "reset": Session._reset,
    "begin": Session._begin,
    "start": Session._begin,
    "commit": Session._commit,
    "end": Session._commit,
    "rollback": Session._rollback,
    "abort": Session._rollback,
    "savepoint": Session._savepoint,
    "release": Session._savepoint,
    "discard": Session._discard,
    "deallocate": Session._deallocate,
    "listen": Session._plain,
    "unlisten": Session._plain,
    "fetch": Session._fetch,
    "move": Session._fetch,
    "close": Session._close_cursor,
}


# ---- the connection: pygwire messages in, messages out -------------------------------------


class _Closed(Exception):
    """The connection is over (the client left, or was refused)."""


class PgConnection:
    """One client socket: startup, authentication, then the simple and extended query protocols."""

    def __init__(self, server: PostgresServer, sock: socket.socket) -> None:
        self._server = server
        self._sock = sock
        self._wire = BackendConnection()
        self._out = bytearray()
        self._session: Session | None = None
        self._scram: ScramSha256 | None = None
        self._startup: dict[str, str] = {}
        self._skip_until_sync = False
        self._admitted = False

    def serve(self) -> None:
        try:
            self._loop()
        except _Closed:
            pass
        except PygwireError as exc:
            with contextlib.suppress(_Closed):
                self._fatal("08P01", f"invalid frontend message: {exc}")
        except OSError:
            pass
        finally:
            if self._session is not None:
                self._server.close_session(self._session)
            if self._admitted:
                self._server.leave()
            self._sock.close()

    def _loop(self) -> None:
        pending = 0
        startup_deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if self._session is None:  # not authenticated yet: only so long to get there
                remaining = startup_deadline - time.monotonic()
                if remaining <= 0:
                    self._fatal("08P01", f"not authenticated within {STARTUP_TIMEOUT_S:g} s: closing")
                self._sock.settimeout(remaining)
            else:
                self._sock.settimeout(None)
            try:
                data = self._sock.recv(RECV_BYTES)
            except TimeoutError:
                continue  # the deadline check above ends it
            if not data:
                if self._server.statements.stopped:  # the server woke the connection to end it
                    self._fatal("57P01", TERMINATING)
                raise _Closed
            pending += len(data)
            for message in self._wire.receive(data):
                pending = 0
                self._handle(message)
            if pending > MAX_MESSAGE_BYTES:
                self._fatal("54000", f"message larger than {MAX_MESSAGE_BYTES} bytes")
            self._flush()

    # -- output --

    def _send(self, message: wire.PGMessage) -> None:
        self._out += self._wire.send(message)

    def _flush(self) -> None:
        if self._out:
            self._sock.sendall(self._out)
            self._out.clear()

    def _error(self, error: PgError, severity: str = "ERROR") -> None:
        """Report an error; one that ends the connection (the server shutting down) ends it."""
        if error.sqlstate == "57P01" and severity != "FATAL":
            self._fatal(error.sqlstate, str(error))
        self._send(
            wire.ErrorResponse(fields={"S": severity, "V": severity, "C": error.sqlstate, "M": str(error)})
        )

    def _fatal(self, sqlstate: str, message: str) -> NoReturn:
        try:
            self._error(PgError(sqlstate, message), "FATAL")
            self._flush()
        except (OSError, PygwireError):
            pass
        raise _Closed

    def _ready(self) -> None:
        assert self._session is not None
        self._send(wire.ReadyForQuery(status=self._session.status))
        self._flush()

    # -- dispatch --

    def _handle(self, message: wire.PGMessage) -> None:
        handlers: dict[type[wire.PGMessage], Callable[[Any], None]] = {
            wire.SSLRequest: self._refuse_encryption,
            wire.GSSEncRequest: self._refuse_encryption,
            wire.CancelRequest: self._cancel,
            wire.StartupMessage: self._start,
            wire.SASLInitialResponse: self._scram_first,
            wire.SASLResponse: self._scram_final,
            wire.PasswordMessage: lambda _: self._fatal("28P01", "authenticate with SCRAM-SHA-256"),
            wire.Terminate: self._terminate,
            wire.Query: self._query,
            wire.Parse: self._extended(self._parse),
            wire.Bind: self._extended(self._bind),
            wire.Describe: self._extended(self._describe),
            wire.Execute: self._extended(self._execute),
            wire.Close: self._extended(self._close),
            wire.Sync: self._sync,
            wire.Flush: lambda _: self._flush(),
        }
        handler = handlers.get(type(message))
        if handler is None:
            self._fatal("0A000", f"{type(message).__name__} is not supported")
        handler(message)

    # -- startup and authentication --

    def _refuse_encryption(self, message: wire.PGMessage) -> None:
        self._send(
            wire.SSLResponse(accepted=False)
            if isinstance(message, wire.SSLRequest)
            else wire.GSSResponse(accepted=False)
        )
        self._flush()

    def _cancel(self, message: wire.CancelRequest) -> None:
        """Stop the statement another connection runs, if the key is its; never answered, as in Postgres."""
        self._server.cancel(message.process_id, message.secret_key)
        raise _Closed

    def _terminate(self, message: wire.Terminate) -> None:
        raise _Closed

    def _start(self, message: wire.StartupMessage) -> None:
        self._startup = dict(message.params)
        if message.protocol_version >> 16 != 3:
            self._fatal("0A000", "unsupported frontend protocol: use protocol 3.0")
        self._admitted = self._server.admit()
        if not self._admitted:
            self._fatal("53300", "sorry, too many clients already")
        if self._server.token is None:
            self._authenticated()
            return
        self._scram = self._server.scram()
        self._send(wire.AuthenticationSASL(mechanisms=[SCRAM]))
        self._flush()

    def _scram_first(self, message: wire.SASLInitialResponse) -> None:
        if message.mechanism != SCRAM:
            self._fatal("28000", f"SASL mechanism {message.mechanism!r} is not supported; use {SCRAM}")
        if self._scram is None:
            self._fatal("08P01", "unexpected SASL message")
        try:
            first = self._scram.first(message.data.decode("utf-8"))
        except (ScramRefused, UnicodeDecodeError):
            self._refuse_password()
        self._send(wire.AuthenticationSASLContinue(data=first.encode("utf-8")))
        self._flush()

    def _scram_final(self, message: wire.SASLResponse) -> None:
        if self._scram is None:
            self._fatal("08P01", "unexpected SASL message")
        try:
            final = self._scram.final(message.data.decode("utf-8"))
        except (ScramRefused, UnicodeDecodeError):
            self._refuse_password()
        self._send(wire.AuthenticationSASLFinal(data=final.encode("utf-8")))
        self._authenticated()

    def _refuse_password(self) -> NoReturn:
        user = self._startup.get("user", "")
        log.warning("postgres: refused a connection for user %r: wrong password", user[:64])
        self._fatal("28P01", f'password authentication failed for user "{user}"')

    def _authenticated(self) -> None:
        user = self._startup.get("user") or "greenery"
        database = self._startup.get("database") or user
        try:
            session = self._server.open_session(user, database, self._startup)
        except PgError as error:  # a setting in the startup message Postgres would refuse
            self._fatal(error.sqlstate, str(error))
        self._session = session
        self._send(wire.AuthenticationOk())
        for name in REPORTED_SETTINGS:
            self._send(wire.ParameterStatus(name=name, value=session.settings[name]))
        self._send(wire.ParameterStatus(name="session_authorization", value=user))
        self._send(wire.BackendKeyData(process_id=session.pid, secret_key=session.secret))
        self._ready()

    # -- the simple query protocol --

    def _query(self, message: wire.Query) -> None:
        session = self._active()
        statements = split_statements(message.query_string)
        if len(statements) > MAX_STATEMENTS:
            self._error(
                PgError("54000", f"{len(statements)} statements in one query (at most {MAX_STATEMENTS})")
            )
            statements = []
        for text in statements:
            try:
                outcome = session.run(text)
            except PgError as error:
                self._error(error)
                break
            try:
                self._send_outcome(outcome, result_formats([], _width(outcome)))
            except PgError as error:
                self._error(error)
                break
        self._ready()

    def _send_outcome(
        self, outcome: Outcome, formats: list[int], start: int = 0, stop: int | None = None
    ) -> None:
        """Notices, settings changed, then rows (with their description) and the tag."""
        self._notices_and_settings(outcome)
        if outcome.empty:
            self._send(wire.EmptyQueryResponse())
            return
        if outcome.copy is not None:
            self._send_copy(outcome)
            return
        if outcome.table is not None:
            self._send(row_description(outcome.table, formats))
            for columns in encode_rows(outcome.table, formats, start, stop):
                self._send(wire.DataRow(columns=columns))
        self._send(wire.CommandComplete(tag=outcome.tag))

    def _send_copy(self, outcome: Outcome) -> None:
        """COPY's answer: CopyOutResponse, its CopyData messages, CopyDone, then the tag.

        The three COPY messages are written past pygwire's state machine: after CopyDone,
        pygwire 0.2.0 returns to the simple query phase even when an Execute sent the COPY, and
        would then refuse the Sync that ends the extended exchange (as the ADBC driver and
        connectorx send every query)."""
        assert outcome.table is not None and outcome.copy is not None
        code = outcome.copy.format_code
        copy_out = wire.CopyOutResponse(overall_format=code, col_formats=[code] * outcome.table.num_columns)
        self._out += copy_out.to_wire()
        for data in copy_data(outcome.table, outcome.copy):
            self._out += wire.CopyData(data=data).to_wire()
        self._out += wire.CopyDone().to_wire()
        self._send(wire.CommandComplete(tag=outcome.tag))

    def _notices_and_settings(self, outcome: Outcome) -> None:
        for sqlstate, text in outcome.notices:
            self._send(wire.NoticeResponse(fields={"S": "WARNING", "V": "WARNING", "C": sqlstate, "M": text}))
        outcome.notices = []
        for name, value in outcome.reported.items():
            self._send(wire.ParameterStatus(name=name, value=value))
        outcome.reported = {}

    # -- the extended query protocol --

    def _extended(self, handler: Callable[[Any], None]) -> Callable[[Any], None]:
        """Run a Parse/Bind/Describe/Execute/Close; after an error, skip everything until Sync."""

        def run(message: Any) -> None:
            if self._skip_until_sync:
                return
            try:
                handler(message)
            except PgError as error:
                self._error(error)
                self._skip_until_sync = True
            except Exception as exc:  # report, keep the connection
                self._error(_error_for(exc))
                self._skip_until_sync = True

        return run

    def _sync(self, message: wire.Sync) -> None:
        self._skip_until_sync = False
        self._active().portals.pop("", None)
        self._ready()

    def _parse(self, message: wire.Parse) -> None:
        session = self._active()
        if len(split_statements(message.query)) > 1:
            raise PgError("42601", "cannot insert multiple commands into a prepared statement")
        if message.statement and message.statement in session.prepared:
            raise PgError("42P05", f'prepared statement "{message.statement}" already exists')
        if len(session.prepared) >= MAX_PREPARED:
            raise PgError("53400", f"at most {MAX_PREPARED} prepared statements per connection")
        held = sum(len(p.text) for name, p in session.prepared.items() if name) + len(message.query)
        if message.statement and held > MAX_PREPARED_CHARS:
            raise PgError(
                "53400", f"at most {MAX_PREPARED_CHARS:,} characters of prepared statements per connection"
            )
        text = sqlglot_readable(message.query)
        count = max(parameter_count(text), len(message.param_types))
        if count > MAX_PARAMETERS:
            raise PgError("54000", f"the statement has {count} parameters (at most {MAX_PARAMETERS})")
        given = [*message.param_types, *([0] * (count - len(message.param_types)))]
        inferred = inferred_parameter_types(message.query, count)
        types = [t or guess for t, guess in zip(given, inferred, strict=True)]
        session.prepared[message.statement] = Prepared(text, types)
        self._send(wire.ParseComplete())

    def _bind(self, message: wire.Bind) -> None:
        session = self._active()
        prepared = self._prepared(message.statement)
        values = message.param_values
        if len(values) != len(prepared.parameter_types):
            raise PgError(
                "08P01",
                f"bind message supplies {len(values)} parameters, "
                f"but prepared statement requires {len(prepared.parameter_types)}",
            )
        formats = message.param_formats or [0]
        literals = [
            parameter_literal(v, t, (formats[i] if len(formats) > 1 else formats[0]) == 1)
            for i, (v, t) in enumerate(zip(values, prepared.parameter_types, strict=True))
        ]
        if len(session.portals) >= MAX_PREPARED:
            raise PgError("53400", f"at most {MAX_PREPARED} open portals per connection")
        session.portals[message.portal] = Portal(prepared.text, literals, message.result_formats)
        self._send(wire.BindComplete())

    def _describe(self, message: wire.Describe) -> None:
        session = self._active()
        if message.kind == "S":
            prepared = self._prepared(message.name)
            types = [t or type_oid("text") for t in prepared.parameter_types]
            self._send(wire.ParameterDescription(type_oids=types))
            nulls: list[exp.Expression] = [exp.Null() for _ in types]
            outcome = session.columns_of(prepared.text, nulls)
            self._describe_rows(outcome, [0] * _width(outcome))
            return
        portal = self._portal(message.name)
        outcome = self._outcome(session, portal)
        self._describe_rows(outcome, result_formats(portal.result_formats, _width(outcome)))

    def _describe_rows(self, outcome: Outcome | None, formats: list[int]) -> None:
        if outcome is None or outcome.table is None or outcome.copy is not None:
            self._send(wire.NoData())
        else:
            self._send(row_description(outcome.table, formats))

    def _execute(self, message: wire.Execute) -> None:
        session = self._active()
        portal = self._portal(message.portal)
        outcome = self._outcome(session, portal)
        if outcome.table is None or outcome.copy is not None:  # no rows to send in pieces
            self._send_outcome(outcome, [])
            return
        formats = result_formats(portal.result_formats, _width(outcome))
        stop = portal.position + message.max_rows if message.max_rows > 0 else outcome.table.num_rows
        self._notices_and_settings(outcome)
        for columns in encode_rows(
            outcome.table, formats, portal.position, min(stop, outcome.table.num_rows)
        ):
            self._send(wire.DataRow(columns=columns))
        portal.position = min(stop, outcome.table.num_rows)
        if portal.position < outcome.table.num_rows:
            self._send(wire.PortalSuspended())
        else:
            self._send(wire.CommandComplete(tag=outcome.tag))

    def _outcome(self, session: Session, portal: Portal) -> Outcome:
        if portal.outcome is None:
            portal.outcome = session.run(portal.text, portal.literals)
        return portal.outcome

    def _close(self, message: wire.Close) -> None:
        session = self._active()
        (session.prepared if message.kind == "S" else session.portals).pop(message.name, None)
        self._send(wire.CloseComplete())

    # -- lookups --

    def _active(self) -> Session:
        if self._session is None:
            self._fatal("08P01", "authenticate first")
        assert self._session is not None
        return self._session

    def _prepared(self, name: str) -> Prepared:
        prepared = self._active().prepared.get(name)
        if prepared is None:
            raise PgError("26000", f'prepared statement "{name}" does not exist')
        return prepared

    def _portal(self, name: str) -> Portal:
        portal = self._active().portals.get(name)
        if portal is None:
            raise PgError("34000", f'portal "{name}" does not exist')
        return portal


def _width(outcome: Outcome | None) -> int:
    return outcome.table.num_columns if outcome is not None and outcome.table is not None else 0


# ---- the server -----------------------------------------------------------------------------


class _Handler(socketserver.BaseRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host, port = self.client_address[:2]
        with as_client(f"postgres:{host}:{port}"):  # each connection is a client of the scheduler
            PgConnection(self.server.postgres, self.request).serve()


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], postgres: PostgresServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.postgres = postgres
        self._sockets: set[socket.socket] = set()
        self._sockets_changed = threading.Condition()
        super().__init__(address, _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """At most MAX_SOCKETS open: a socket past that is closed before it gets a thread."""
        with self._sockets_changed:
            if len(self._sockets) >= MAX_SOCKETS:
                log.warning("postgres: %d sockets open, closing a new one", len(self._sockets))
                return False
            self._sockets.add(request)
            return True

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self._sockets_changed:
            self._sockets.discard(request)
            self._sockets_changed.notify_all()

    def end_connections(self, wait_s: float) -> None:
        """Wake every connection waiting for input (it reads the end of its input and ends), and
        wait up to `wait_s` seconds for their threads to finish."""
        deadline = time.monotonic() + wait_s
        with self._sockets_changed:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RD)
            while self._sockets and (remaining := deadline - time.monotonic()) > 0:
                self._sockets_changed.wait(remaining)
            if self._sockets:
                log.warning("postgres: %d connections still open at shutdown", len(self._sockets))


class PostgresServer:
    """The Postgres endpoint over one query service: listening sockets, sessions' shared pieces."""

    def __init__(self, service: SemanticLayerService, host: str, port: int, token: str | None) -> None:
        if refusal := bind_refusal(host, token, "serve Postgres"):
            raise ServerConfigError(refusal)
        self.service = service
        self.token = token
        self.sql_api = SqlApi(service, transport="postgres", read="postgres")
        self._salt = secrets.token_bytes(16)
        self._salted = ScramSha256.salted(token, self._salt) if token else b""
        self._catalogs: dict[str, PostgresCatalog] = {}
        self._catalog_lock = threading.Lock()
        self._clients = 0
        self._clients_lock = threading.Lock()
        self._sessions: dict[int, Session] = {}  # by process id, for cancel requests
        self.statements = RunningWork()  # stopped when the server shuts down
        self._tcp = _TcpServer((host, port), self)
        self._thread = threading.Thread(target=self._tcp.serve_forever, name="greenery-postgres", daemon=True)

    @property
    def port(self) -> int:
        return int(self._tcp.server_address[1])

    def scram(self) -> ScramSha256:
        """A SCRAM exchange for one connection, against the token."""
        return ScramSha256(self._salted, self._salt)

    def start(self, *, warm: bool = True) -> PostgresServer:
        """Serve in background threads; with `warm`, build the catalog now rather than on first use."""
        self._thread.start()
        if warm:
            threading.Thread(target=self._warm, name="greenery-postgres-catalog", daemon=True).start()
        return self

    def _warm(self) -> None:
        """Build the catalog before the first client asks (it describes every table once)."""
        try:
            self.catalog()
        except Exception:
            log.exception("postgres: building the catalog failed (it is retried on the first query)")

    def catalog(self) -> PostgresCatalog:
        """The emulated catalog of the published version now served (built once per version)."""
        with self.service.layers.use() as layer, self._catalog_lock:
            catalog = self._catalogs.get(layer.version)
            if catalog is None:
                catalog = PostgresCatalog(layer.tables)
                for old in self._catalogs.values():
                    old.close()
                self._catalogs = {layer.version: catalog}
            return catalog

    def table_names(self) -> set[str]:
        with self.service.layers.use() as layer:
            return set(layer.tables.tables)

    def admit(self) -> bool:
        with self._clients_lock:
            if self._clients >= MAX_CONNECTIONS:
                return False
            self._clients += 1
            return True

    def leave(self) -> None:
        with self._clients_lock:
            self._clients = max(0, self._clients - 1)

    def open_session(self, user: str, database: str, params: dict[str, str]) -> Session:
        """A new connection's session (PgError for a setting Postgres would refuse), known by
        its process id until it closes."""
        session = Session(self, user, database, params)
        with self._clients_lock:
            while session.pid in self._sessions:
                session.pid = secrets.randbelow(2**31 - 1) + 1
            self._sessions[session.pid] = session
        return session

    def close_session(self, session: Session) -> None:
        with self._clients_lock:
            if self._sessions.get(session.pid) is session:
                del self._sessions[session.pid]

    def cancel(self, pid: int, secret: bytes) -> None:
        """A cancel request: stop the statement of the session with this process id and secret key."""
        with self._clients_lock:
            session = self._sessions.get(pid)
        if session is not None and hmac.compare_digest(session.secret, secret):
            log.info("postgres: cancel request for session %d", pid)
            session.cancel()

    def shutdown(self) -> None:
        """Stop listening and end every connection as PostgreSQL's fast shutdown does: a running
        statement is stopped, and each client is told FATAL 57P01; their threads are waited for
        (SHUTDOWN_WAIT_S at most), so that none is inside DuckDB when the process exits."""
        self.statements.stop_all(SHUTTING_DOWN)
        self._tcp.shutdown()
        self._tcp.end_connections(SHUTDOWN_WAIT_S)
        self._tcp.server_close()
        with self._catalog_lock:
            for catalog in self._catalogs.values():
                catalog.close(interrupt=True)
            self._catalogs = {}


def start_postgres_server(
    service: SemanticLayerService, host: str, port: int, token: str | None, *, warm: bool = True
) -> PostgresServer:
    """The Postgres endpoint on `host:port` (0: any free port), serving in background threads."""
    return PostgresServer(service, host, port, token).start(warm=warm)
