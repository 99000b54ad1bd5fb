"""The semantic layer over Arrow Flight SQL: what `dbt-sl-sdk`, ADBC and JDBC clients speak.

`greenery serve --flight-port N` starts this next to the GraphQL API, on the same
`SemanticLayerService` (same published versions, result cache and query log) and the same
token. Statements are dbt's semantic-layer templates (`greenery.serve.statements`) or SQL
over them and the ``semantic_layer`` schema (`greenery.serve.sql`); every answer is a job of
the service, and a ticket names the job.

RPCs: ``GetFlightInfo(CommandStatementQuery)`` runs the statement and answers a ticket that
``DoGet`` streams (the ADBC fallback path); prepared statements (``DoAction``
``CreatePreparedStatement`` → ``GetFlightInfo(CommandPreparedStatementQuery)`` → ``DoGet`` →
``ClosePreparedStatement``), which the ADBC and JDBC drivers use; ``GetSchema``; and
the catalog: ``GetSqlInfo``, ``GetCatalogs``, ``GetDbSchemas``, ``GetTables`` (the
``semantic_layer`` tables, with their Arrow schemas), ``GetTableTypes`` and ``GetPrimaryKeys``
(none). Flight SQL commands are protobuf messages packed
in ``google.protobuf.Any``; the few fields needed are read and written by the small codec below.

Errors: a bad statement or query is INVALID_ARGUMENT, raised before any data is sent; a bad
token is UNAUTHENTICATED (checked for every call by a server middleware).
"""

from __future__ import annotations

import importlib.metadata
import logging
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.flight as flight
from sqlglot import exp

from greenery.semantic.cache import Lru
from greenery.semantic.layer import SemanticLayerError
from greenery.semantic.watchdog import WATCHDOG, Cancellable, RunningWork, running
from greenery.serve.auth import NOT_AUTHORIZED, bearer_matches, bind_refusal, netloc
from greenery.serve.scheduler import as_client
from greenery.serve.service import (
    SHUTTING_DOWN,
    TOO_COMPLEX,
    QueryJob,
    QueryNotFound,
    QueryTimedOut,
    SemanticLayerService,
    ServerConfigError,
)
from greenery.serve.sql import SqlApi, literal
from greenery.serve.tables import SCHEMA, SqlTable, SqlTables

log = logging.getLogger("greenery.serve")

SQL_TYPE_PREFIX = "type.googleapis.com/arrow.flight.protocol.sql."
MAX_PREPARED = 1024  # open prepared statements kept (the oldest are closed first) …
PREPARED_BYTES = 16 * 1024 * 1024  # … within about this many bytes of statement text and schemas
BATCH_BYTES = 4 * 1024 * 1024  # record batches are cut to about this size (gRPC's default limit)
_JOB = b"job:"  # ticket handles: a finished query job
CANCEL_CHECK_S = 0.2  # how often a running call looks whether its client cancelled it
T = TypeVar("T")


# ---- errors the client sees --------------------------------------------------------------


class _WithoutTraceback:
    """pyarrow sends a Python exception to the client as its message plus ``Detail:`` and the
    formatted traceback (server file paths and source lines). Formatting reads ``__notes__``;
    refusing it makes pyarrow fall back to the class name, so clients get
    ``<message>. Detail: Python exception: InvalidArgument``. (CPython 3.11, which the project
    pins; tests/test_flight.py checks that no traceback reaches a client.)
    """

    @property
    def __notes__(self) -> list[str]:
        raise LookupError("not formatted for clients")


class InvalidArgument(_WithoutTraceback, ValueError):
    """Sent as gRPC INVALID_ARGUMENT (pyarrow maps ValueError to Status::Invalid)."""


class Unimplemented(_WithoutTraceback, NotImplementedError):
    """Sent as gRPC UNIMPLEMENTED."""


def _client_errors(call: Callable[[], T]) -> T:
    """Run an RPC body, turning user errors into INVALID_ARGUMENT and the unexpected into INTERNAL."""
    try:
        return call()
    except (flight.FlightError, InvalidArgument, Unimplemented):
        raise
    except (SemanticLayerError, ValueError) as exc:  # StatementError, FilterRejected, QueryNotFound …
        raise InvalidArgument(str(exc)) from None
    except (RecursionError, MemoryError):  # input nested too deeply or too big: the client's to fix
        raise InvalidArgument(TOO_COMPLEX) from None
    except Exception as exc:
        log.exception("flight call failed unexpectedly")
        raise flight.FlightInternalError(f"internal error ({type(exc).__name__}): {exc}") from None


# ---- a tiny protobuf codec (varints and length-delimited fields are all Flight SQL needs) ---


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise InvalidArgument("malformed protobuf message: truncated varint")


def encode_message(fields: list[tuple[int, bytes | int]]) -> bytes:
    """Fields in order: bytes/strings as length-delimited (wire type 2), ints as varints (type 0)."""
    out = bytearray()
    for number, value in fields:
        if isinstance(value, int):
            out += _varint(number << 3) + _varint(value)
        else:
            out += _varint(number << 3 | 2) + _varint(len(value)) + value
    return bytes(out)


def decode_message(data: bytes) -> dict[int, list[bytes | int]]:
    """Every field by number (repeated fields keep their order); fixed-width fields as ints."""
    fields: dict[int, list[bytes | int]] = {}
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        value: bytes | int
        if wire_type == 0:
            value, pos = _read_varint(data, pos)
        elif wire_type == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise InvalidArgument("malformed protobuf message: truncated field")
            value, pos = data[pos : pos + length], pos + length
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            value, pos = int.from_bytes(data[pos : pos + width], "little"), pos + width
        else:
            raise InvalidArgument(f"malformed protobuf message: wire type {wire_type}")
        fields.setdefault(number, []).append(value)
    return fields


def _bytes_field(fields: dict[int, list[bytes | int]], number: int) -> bytes:
    values = fields.get(number) or [b""]
    value = values[-1]
    if not isinstance(value, bytes):
        raise InvalidArgument(f"malformed protobuf message: field {number} is not a string")
    return value


def _text_field(fields: dict[int, list[bytes | int]], number: int) -> str:
    try:
        return _bytes_field(fields, number).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"field {number} is not UTF-8 text") from None


def _uint_list(fields: dict[int, list[bytes | int]], number: int) -> list[int]:
    """A repeated integer field, packed (one length-delimited run of varints) or not."""
    values: list[int] = []
    for item in fields.get(number, []):
        if isinstance(item, int):
            values.append(item)
            continue
        pos = 0
        while pos < len(item):
            value, pos = _read_varint(item, pos)
            values.append(value)
    return values


def pack_any(message_name: str, payload: bytes) -> bytes:
    """``google.protobuf.Any`` holding the Flight SQL message `message_name`."""
    return encode_message([(1, (SQL_TYPE_PREFIX + message_name).encode()), (2, payload)])


def unpack_any(data: bytes) -> tuple[str, dict[int, list[bytes | int]]]:
    """(Flight SQL message name, its decoded fields) from an ``Any``."""
    fields = decode_message(data)
    type_url = _text_field(fields, 1)
    if not type_url.startswith(SQL_TYPE_PREFIX):
        shown = type_url or data[:40]
        raise InvalidArgument(f"not a Flight SQL command ({shown!r}): send a Flight SQL statement")
    return type_url.removeprefix(SQL_TYPE_PREFIX), decode_message(_bytes_field(fields, 2))


# The Flight SQL catalog commands, with the result schemas the specification gives. One
# unnamed catalog holds the schema `semantic_layer` (greenery.serve.tables).
_CATALOG_COMMANDS: dict[str, pa.Schema] = {
    "CommandGetCatalogs": pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)]),
    "CommandGetDbSchemas": pa.schema(
        [("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8(), nullable=False)]
    ),
    "CommandGetTables": pa.schema(
        [
            ("catalog_name", pa.utf8()),
            ("db_schema_name", pa.utf8()),
            pa.field("table_name", pa.utf8(), nullable=False),
            pa.field("table_type", pa.utf8(), nullable=False),
        ]
    ),
    "CommandGetTableTypes": pa.schema([pa.field("table_type", pa.utf8(), nullable=False)]),
    "CommandGetPrimaryKeys": pa.schema(
        [
            ("catalog_name", pa.utf8()),
            ("db_schema_name", pa.utf8()),
            pa.field("table_name", pa.utf8(), nullable=False),
            pa.field("column_name", pa.utf8(), nullable=False),
            pa.field("key_sequence", pa.int32(), nullable=False),
            ("key_name", pa.utf8()),
        ]
    ),
    "CommandGetSqlInfo": pa.schema([]),  # see SQL_INFO_SCHEMA
    "CommandGetXdbcTypeInfo": pa.schema(
        [
            pa.field("type_name", pa.utf8(), nullable=False),
            pa.field("data_type", pa.int32(), nullable=False),
            ("column_size", pa.int32()),
            ("literal_prefix", pa.utf8()),
            ("literal_suffix", pa.utf8()),
            ("create_params", pa.list_(pa.field("item", pa.utf8(), nullable=False))),
            pa.field("nullable", pa.int32(), nullable=False),
            pa.field("case_sensitive", pa.bool_(), nullable=False),
            pa.field("searchable", pa.int32(), nullable=False),
            ("unsigned_attribute", pa.bool_()),
            pa.field("fixed_prec_scale", pa.bool_(), nullable=False),
            ("auto_increment", pa.bool_()),
            ("local_type_name", pa.utf8()),
            ("minimum_scale", pa.int32()),
            ("maximum_scale", pa.int32()),
            pa.field("sql_data_type", pa.int32(), nullable=False),
            ("datetime_subcode", pa.int32()),
            ("num_prec_radix", pa.int32()),
            ("interval_precision", pa.int32()),
        ]
    ),
}
# Foreign keys (imported, exported, between two tables): one schema; the semantic layer has none.
_FOREIGN_KEYS = pa.schema(
    [
        ("pk_catalog_name", pa.utf8()),
        ("pk_db_schema_name", pa.utf8()),
        pa.field("pk_table_name", pa.utf8(), nullable=False),
        pa.field("pk_column_name", pa.utf8(), nullable=False),
        ("fk_catalog_name", pa.utf8()),
        ("fk_db_schema_name", pa.utf8()),
        pa.field("fk_table_name", pa.utf8(), nullable=False),
        pa.field("fk_column_name", pa.utf8(), nullable=False),
        pa.field("key_sequence", pa.int32(), nullable=False),
        ("fk_key_name", pa.utf8()),
        ("pk_key_name", pa.utf8()),
        pa.field("update_rule", pa.uint8(), nullable=False),
        pa.field("delete_rule", pa.uint8(), nullable=False),
    ]
)
_FOREIGN_KEY_COMMANDS = ["CommandGetImportedKeys", "CommandGetExportedKeys", "CommandGetCrossReference"]
_CATALOG_COMMANDS |= dict.fromkeys(_FOREIGN_KEY_COMMANDS, _FOREIGN_KEYS)
# one unnamed catalog; no keys
_NO_ROWS = {"CommandGetCatalogs", "CommandGetPrimaryKeys", *_FOREIGN_KEY_COMMANDS}
# GetXdbcTypeInfo: the types the answers' columns have, in the order of their JDBC type code
# (java.sql.Types), as (name, code, size, literal prefix, literal suffix, precision radix)
_XDBC_TYPES = [
    ("BIGINT", -5, 19, None, None, 10),
    ("DECIMAL", 3, 38, None, None, 10),
    ("INTEGER", 4, 10, None, None, 10),
    ("DOUBLE", 8, 15, None, None, 10),
    ("VARCHAR", 12, None, "'", "'", None),
    ("BOOLEAN", 16, 1, None, None, None),
    ("DATE", 91, 10, "DATE '", "'", None),
    ("TIMESTAMP", 93, 26, "TIMESTAMP '", "'", None),
]
_TABLE_SCHEMA_FIELD = pa.field("table_schema", pa.binary(), nullable=False)
TABLE_TYPES = ["TABLE", "VIEW"]  # a semantic model's table; a saved query's (a fixed query)


def _like(pattern: str, value: str) -> bool:
    """SQL LIKE (``%`` and ``_``) as Flight SQL's filter patterns use it, case-insensitive; an
    empty pattern matches all. The greedy wildcard match, which goes back only to the last
    ``%``: at most len(pattern) × len(value) steps (a regex of ``.*`` took over 10 s for
    ``%%%…x``, growing exponentially)."""
    if not pattern:
        return True
    pattern, value = pattern.lower(), value.lower()
    p = v = 0
    star, resume = -1, 0  # the last % seen, and where in `value` it would take one more character
    while v < len(value):
        if p < len(pattern) and pattern[p] == "%":
            star, resume, p = p, v, p + 1
        elif p < len(pattern) and pattern[p] in ("_", value[v]):
            p, v = p + 1, v + 1
        elif star >= 0:
            resume += 1
            p, v = star + 1, resume
        else:
            return False
    return all(c == "%" for c in pattern[p:])


def _db_schemas(pattern: str) -> pa.Table:
    names = [SCHEMA] if _like(pattern, SCHEMA) else []
    return pa.table(
        {"catalog_name": [None] * len(names), "db_schema_name": names},
        schema=_CATALOG_COMMANDS["CommandGetDbSchemas"],
    )


def _tables(tables: SqlTables, fields: dict[int, list[bytes | int]]) -> pa.Table:
    """GetTables: the semantic_layer tables matching the patterns, with their Arrow schemas if asked."""
    schema_pattern, name_pattern = _text_field(fields, 2), _text_field(fields, 3)
    wanted_types = {t.decode() for t in fields.get(4, []) if isinstance(t, bytes)}
    rows = [
        table
        for table in tables.tables.values()
        if _like(schema_pattern, SCHEMA)
        and _like(name_pattern, table.name)
        and (not wanted_types or _table_type(table) in wanted_types)
    ]
    columns: dict[str, list[object]] = {
        "catalog_name": [None] * len(rows),
        "db_schema_name": [SCHEMA] * len(rows),
        "table_name": [t.name for t in rows],
        "table_type": [_table_type(t) for t in rows],
    }
    schema = _CATALOG_COMMANDS["CommandGetTables"]
    if fields.get(5, [0])[-1]:  # include_schema
        schema = schema.append(_TABLE_SCHEMA_FIELD)
        columns["table_schema"] = [tables.schema(t.name).serialize().to_pybytes() for t in rows]
    return pa.table(columns, schema=schema)


def _xdbc_type_info(data_type: list[bytes | int] | None) -> pa.Table:
    """The answers' column types, or the one asked for (its JDBC code), sorted by code as JDBC's
    getTypeInfo lists them."""
    wanted = _signed32(data_type[-1]) if data_type and isinstance(data_type[-1], int) else None
    rows = [
        {
            "type_name": name,
            "data_type": code,
            "column_size": size,
            "literal_prefix": prefix,
            "literal_suffix": suffix,
            "create_params": ["precision", "scale"] if name == "DECIMAL" else None,
            "nullable": 1,  # columnNullable
            "case_sensitive": name == "VARCHAR",
            "searchable": 3,  # typeSearchable
            "unsigned_attribute": False if radix else None,
            "fixed_prec_scale": False,
            "auto_increment": False,
            "local_type_name": name,
            "minimum_scale": 0 if name == "DECIMAL" else None,
            "maximum_scale": 38 if name == "DECIMAL" else None,
            "sql_data_type": code,
            "datetime_subcode": None,
            "num_prec_radix": radix,
            "interval_precision": None,
        }
        for name, code, size, prefix, suffix, radix in _XDBC_TYPES
        if wanted is None or code == wanted
    ]
    return pa.Table.from_pylist(rows, schema=_CATALOG_COMMANDS["CommandGetXdbcTypeInfo"])


def _signed32(number: int) -> int:
    """A protobuf int32 field's value (a negative one arrives as a 64-bit two's complement varint)."""
    return number - (1 << 64) if number >= 1 << 63 else number


def _table_type(table: SqlTable) -> str:
    return "VIEW" if table.saved_query else "TABLE"


# GetSqlInfo: info_name uint32, value dense_union<string, bool, int64, int32 bitmask, list, map>.
_SQL_INFO_VALUE = pa.dense_union(
    [
        pa.field("string_value", pa.utf8()),
        pa.field("bool_value", pa.bool_()),
        pa.field("bigint_value", pa.int64()),
        pa.field("int32_bitmask", pa.int32()),
        pa.field("string_list", pa.list_(pa.field("item", pa.utf8()))),
        pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.field("item", pa.int32())))),
    ]
)
SQL_INFO_SCHEMA = pa.schema(
    [pa.field("info_name", pa.uint32(), nullable=False), pa.field("value", _SQL_INFO_VALUE, nullable=False)]
)
_STRING, _BOOL, _INT32 = 0, 1, 3


def _sql_info(wanted: list[int]) -> pa.Table:
    """The server facts clients ask for first (name, version, read-only, no transactions…)."""
    known: dict[int, tuple[int, Any]] = {
        0: (_STRING, "greenery semantic layer"),  # FLIGHT_SQL_SERVER_NAME
        1: (_STRING, _version()),  # FLIGHT_SQL_SERVER_VERSION
        2: (_STRING, pa.__version__),  # FLIGHT_SQL_SERVER_ARROW_VERSION
        3: (_BOOL, True),  # FLIGHT_SQL_SERVER_READ_ONLY
        4: (_BOOL, True),  # FLIGHT_SQL_SERVER_SQL (the semantic-layer dialect)
        5: (_BOOL, False),  # FLIGHT_SQL_SERVER_SUBSTRAIT
        8: (_INT32, 0),  # FLIGHT_SQL_SERVER_TRANSACTION: none
        9: (_BOOL, False),  # FLIGHT_SQL_SERVER_CANCEL
        100: (_INT32, 0),  # FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT: none
        500: (_BOOL, False),  # SQL_DDL_CATALOG
        501: (_BOOL, False),  # SQL_DDL_SCHEMA
        502: (_BOOL, False),  # SQL_DDL_TABLE
        503: (_INT32, 3),  # SQL_IDENTIFIER_CASE: lower case
        504: (_STRING, '"'),  # SQL_IDENTIFIER_QUOTE_CHAR
        505: (_INT32, 1),  # SQL_QUOTED_IDENTIFIER_CASE: case-insensitive
        506: (_BOOL, True),  # SQL_ALL_TABLES_ARE_SELECTABLE
        507: (_INT32, 3),  # SQL_NULL_ORDERING: nulls at the end
        513: (_BOOL, False),  # SQL_TRANSACTIONS_SUPPORTED (FLIGHT_SQL_SERVER_TRANSACTION says none)
    }
    names = [n for n in (wanted or sorted(known)) if n in known]
    children: list[list[Any]] = [[] for _ in _SQL_INFO_VALUE]
    type_ids, offsets = [], []
    for name in names:
        code, value = known[name]
        type_ids.append(code)
        offsets.append(len(children[code]))
        children[code].append(value)
    arrays = [pa.array(values, type=f.type) for values, f in zip(children, _SQL_INFO_VALUE, strict=True)]
    value = pa.UnionArray.from_dense(
        pa.array(type_ids, pa.int8()),
        pa.array(offsets, pa.int32()),
        arrays,
        [f.name for f in _SQL_INFO_VALUE],
    )
    return pa.Table.from_arrays([pa.array(names, pa.uint32()), value], schema=SQL_INFO_SCHEMA)


def _version() -> str:
    try:
        return importlib.metadata.version("greenery")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ---- auth ---------------------------------------------------------------------------------


class BearerTokenMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Every call must carry ``authorization: Bearer <token>``; others are UNAUTHENTICATED."""

    def __init__(self, token: str) -> None:
        self._token = token

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str]]) -> None:
        values = headers.get("authorization", [])
        if len(values) != 1 or not bearer_matches(values[0], self._token):  # exactly one, and the right one
            raise flight.FlightUnauthenticatedError(NOT_AUTHORIZED)
        return None


# ---- the server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    text: str
    schema: pa.Schema
    job_id: str | None  # the answer computed when preparing, used by the first execution
    parameter_count: int = 0  # its ``?`` placeholders …
    parameters: tuple[exp.Expression, ...] | None = None  # … and the literals last bound to them


class SemanticLayerFlightServer(flight.FlightServerBase):
    """Flight SQL over a SemanticLayerService; listening once constructed (see `start_flight_server`)."""

    def __init__(self, service: SemanticLayerService, location: str, token: str | None) -> None:
        middleware = {"auth": BearerTokenMiddlewareFactory(token)} if token else {}
        super().__init__(location, middleware=middleware)
        self._service = service
        self._sql = SqlApi(service, transport="flight")
        self._prepared: Lru[bytes, _Prepared] = Lru(MAX_PREPARED, PREPARED_BYTES, _prepared_size)
        self._calls = RunningWork()  # stopped when the server shuts down

    def shutdown(self) -> None:
        """Stop the calls running now (their clients are told the server is shutting down), then
        gRPC's shutdown, which waits for them to end."""
        self._calls.stop_all(SHUTTING_DOWN)
        super().shutdown()

    # -- RPCs --

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        return _for_client(context, self._calls, lambda: self._flight_info(descriptor))

    def get_schema(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.SchemaResult:
        return _for_client(context, self._calls, lambda: flight.SchemaResult(self._schema(descriptor)))

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> flight.FlightDataStream:
        table = _client_errors(lambda: self._ticket_table(ticket.ticket))
        return flight.RecordBatchStream(_rebatched(table))

    def do_action(self, context: flight.ServerCallContext, action: flight.Action) -> Iterator[bytes]:
        body = action.body.to_pybytes() if action.body is not None else b""
        return iter(_for_client(context, self._calls, lambda: self._action(action.type, body)))

    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        """A prepared statement's parameters (`_bind`); updates and ingestion (``execute_update``,
        bulk ingest) are refused: the layer is read-only."""
        command, fields = (
            _client_errors(lambda: unpack_any(descriptor.command)) if descriptor.command else ("DoPut", {})
        )
        if command == "CommandPreparedStatementQuery":
            handle = _bytes_field(fields, 1)
            _for_client(context, self._calls, lambda: self._bind(handle, reader.read_all()))
            # DoPutPreparedStatementResult, unpacked: the handle to execute, the same one
            writer.write(pa.py_buffer(encode_message([(1, handle)])))
            return
        raise Unimplemented(
            f"{command} is not accepted: the semantic layer is read-only (send SELECT statements "
            "or {{ semantic_layer.query(…) }} templates)"
        )

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return [
            ("CreatePreparedStatement", "prepare a statement (SQL or template); answers its dataset schema"),
            ("ClosePreparedStatement", "forget a prepared statement"),
        ]

    def list_flights(self, context: flight.ServerCallContext, criteria: bytes) -> Iterator[flight.FlightInfo]:
        return iter(())

    # -- what they do --

    def _flight_info(self, descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
        if descriptor.descriptor_type != flight.DescriptorType.CMD:
            raise InvalidArgument("send a Flight SQL command (a CMD descriptor), not a path")
        command, fields = unpack_any(descriptor.command)
        if command == "CommandStatementQuery":
            job = self._run(_text_field(fields, 1))
        elif command == "CommandPreparedStatementQuery":
            job = self._execute_prepared(_bytes_field(fields, 1))
        elif command in _CATALOG_COMMANDS:
            return _info(descriptor, descriptor.command, self._catalog_table(command, fields))
        else:
            raise Unimplemented(f"{command} is not supported: send SQL or {{{{ semantic_layer.query(…) }}}}")
        assert job.table is not None
        ticket = pack_any("TicketStatementQuery", encode_message([(1, _JOB + job.id.encode())]))
        return _info(descriptor, ticket, job.table)

    def _run(self, text: str, parameters: Sequence[exp.Expression] = ()) -> QueryJob:
        """The finished job answering a statement; timeouts and server faults as their gRPC codes."""
        try:
            return self._sql.run(text, parameters)
        except QueryTimedOut as exc:
            raise flight.FlightTimedOutError(str(exc)) from None
        except RecursionError:  # a RuntimeError, but the input's fault
            raise InvalidArgument(TOO_COMPLEX) from None
        except RuntimeError as exc:
            raise flight.FlightInternalError(str(exc)) from None

    def _schema(self, descriptor: flight.FlightDescriptor) -> pa.Schema:
        """A prepared statement's schema as prepared; otherwise the answer's (the statement runs)."""
        if descriptor.descriptor_type == flight.DescriptorType.CMD:
            command, fields = unpack_any(descriptor.command)
            if command == "CommandPreparedStatementQuery":
                prepared = self._prepared.get(_bytes_field(fields, 1))
                if prepared is not None:
                    return prepared.schema
        return self._flight_info(descriptor).schema

    def _catalog_table(self, command: str, fields: dict[int, list[bytes | int]]) -> pa.Table:
        if command == "CommandGetSqlInfo":
            return _sql_info(_uint_list(fields, 1))
        if command == "CommandGetTableTypes":
            return pa.table({"table_type": TABLE_TYPES}, schema=_CATALOG_COMMANDS[command])
        if command == "CommandGetXdbcTypeInfo":
            return _xdbc_type_info(fields.get(1))
        if command in _NO_ROWS:
            return _CATALOG_COMMANDS[command].empty_table()
        with self._service.layers.use() as layer:
            if command == "CommandGetDbSchemas":
                return _db_schemas(_text_field(fields, 2))
            return _tables(layer.tables, fields)

    def _execute_prepared(self, handle: bytes) -> QueryJob:
        prepared = self._prepared_statement(handle)
        if prepared.parameter_count:
            if prepared.parameters is None:
                raise InvalidArgument(f"bind the statement's {prepared.parameter_count} parameters first")
            return self._run(prepared.text, prepared.parameters)
        if prepared.job_id is not None:  # the first execution reuses the answer computed when preparing
            self._prepared.put(handle, replace(prepared, job_id=None))
            try:
                job = self._service.get_query(prepared.job_id)
            except QueryNotFound:  # evicted meanwhile: run it again
                pass
            else:
                if job.table is not None:
                    return job
        return self._run(prepared.text)

    def _prepared_statement(self, handle: bytes) -> _Prepared:
        prepared = self._prepared.get(handle)
        if prepared is None:
            raise InvalidArgument("unknown prepared statement: it was closed, or never created here")
        return prepared

    def _bind(self, handle: bytes, values: pa.Table) -> None:
        """Keep one row of parameter values (any Arrow types) for the statement's next executions."""
        prepared = self._prepared_statement(handle)
        if values.num_rows != 1 or values.num_columns != prepared.parameter_count:
            raise InvalidArgument(
                f"the statement has {prepared.parameter_count} parameters (?): bind one row of as many "
                f"values (got {values.num_rows} rows of {values.num_columns})"
            )
        literals = tuple(_literal(column[0].as_py()) for column in values.columns)
        self._prepared.put(handle, replace(prepared, parameters=literals))

    def _ticket_table(self, ticket: bytes) -> pa.Table:
        command, fields = unpack_any(ticket)
        if command in _CATALOG_COMMANDS:
            return self._catalog_table(command, fields)
        if command != "TicketStatementQuery" or not _bytes_field(fields, 1).startswith(_JOB):
            raise InvalidArgument(f"not a ticket this server issued ({command})")
        job = self._service.get_query(_bytes_field(fields, 1).removeprefix(_JOB).decode("ascii", "replace"))
        if job.table is None:
            raise InvalidArgument(f"query {job.id} has no result ({job.status})")
        return job.table

    def _action(self, action_type: str, body: bytes) -> list[bytes]:
        if action_type == "CreatePreparedStatement":
            return [self._prepare(body)]
        if action_type == "ClosePreparedStatement":
            command, fields = unpack_any(body)
            if command != "ActionClosePreparedStatementRequest":
                raise InvalidArgument(f"ClosePreparedStatement expects its request message, not {command}")
            self._prepared.pop(_bytes_field(fields, 1))
            return []
        if action_type == "CloseSession":
            return [encode_message([(1, 1)])]  # CloseSessionResult{status: CLOSED}: nothing to keep
        raise Unimplemented(f"the action {action_type!r} is not supported")

    def _prepare(self, body: bytes) -> bytes:
        """Run the statement once, its parameters null: its schema goes back (none if that run
        fails), and, without parameters, its answer to the first execution."""
        command, fields = unpack_any(body)
        if command != "ActionCreatePreparedStatementRequest":
            raise InvalidArgument(f"CreatePreparedStatement expects its request message, not {command}")
        text = _text_field(fields, 1)
        count = self._sql.parameter_count(text)
        try:
            job: QueryJob | None = self._run(text, [exp.Null()] * count)
        except (ValueError, SemanticLayerError, flight.FlightError):
            if not count:
                raise
            job = None
        schema = job.table.schema if job is not None and job.table is not None else pa.schema([])
        handle = secrets.token_bytes(16)
        first = job.id if job is not None and not count else None
        self._prepared.put(handle, _Prepared(text, schema, first, count))
        result: list[tuple[int, bytes | int]] = [(1, handle), (2, schema.serialize().to_pybytes())]
        if count:  # text, for JDBC's setString; any Arrow type is bound
            parameters = pa.schema([pa.field(f"parameter_{n + 1}", pa.string()) for n in range(count)])
            result.append((3, parameters.serialize().to_pybytes()))
        return pack_any("ActionCreatePreparedStatementResult", encode_message(result))


def _literal(value: object) -> exp.Expression:
    """A bound parameter's value as a SQL literal (never as text pasted into SQL)."""
    bound = literal(value)
    if bound is None:
        raise InvalidArgument(f"parameters of type {type(value).__name__} are not supported")
    return bound


def _prepared_size(handle: bytes, prepared: _Prepared) -> int:
    return len(handle) + len(prepared.text) + prepared.schema.serialize().size


def _for_client(context: flight.ServerCallContext, calls: RunningWork, call: Callable[[], T]) -> T:
    """`call` with its queries counted against the RPC's client, its gRPC peer (one client
    connection; see greenery.serve.scheduler), and client errors mapped (`_client_errors`).
    A call the client cancels (ADBC's ``adbc_cancel``, a gRPC deadline) stops what it runs, as
    does the server shutting down (`calls`)."""
    work = Cancellable()

    def stop_if_cancelled() -> None:
        if context.is_cancelled():
            work.stop("the client cancelled the call")

    with (
        as_client(f"flight:{context.peer()}"),
        calls.track(work),
        running(work),
        WATCHDOG.every(CANCEL_CHECK_S, stop_if_cancelled),
    ):
        try:
            return _client_errors(call)
        except Exception:
            if work.stopped_for is None:
                raise
            log.info("flight: a call from %s stopped: %s", context.peer(), work.stopped_for)
            raise flight.FlightCancelledError(work.stopped_for) from None


def _info(descriptor: flight.FlightDescriptor, ticket: bytes, table: pa.Table) -> flight.FlightInfo:
    """One endpoint on this same server (no locations), with the row count and size."""
    endpoint = flight.FlightEndpoint(ticket, [])
    return flight.FlightInfo(table.schema, descriptor, [endpoint], table.num_rows, table.nbytes)


def _rebatched(table: pa.Table) -> pa.Table:
    """The table in record batches of about BATCH_BYTES (slices, no copy)."""
    if table.num_rows == 0:
        return table
    rows = max(1024, int(BATCH_BYTES / max(1, table.nbytes / table.num_rows)))
    return pa.Table.from_batches(table.to_batches(max_chunksize=rows), table.schema)


# ---- starting it --------------------------------------------------------------------------


def flight_location(host: str, port: int) -> str:
    return f"grpc://{netloc(host, port)}"


def start_flight_server(
    service: SemanticLayerService, host: str, port: int, token: str | None
) -> SemanticLayerFlightServer:
    """Listening on host:port once this returns; a background thread waits for its shutdown.

    Without a token it only binds to loopback, like the HTTP server.
    """
    if refusal := bind_refusal(host, token, "serve Flight SQL"):
        raise ServerConfigError(refusal)
    server = SemanticLayerFlightServer(service, flight_location(host, port), token)
    threading.Thread(target=server.wait, name="greenery-flight", daemon=True).start()
    return server
