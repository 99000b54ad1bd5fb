"""What a Postgres client sees of the server before it asks for data: pg_catalog, information_schema.

psql, SQLAlchemy, JDBC and BI tools list schemas, tables and columns by querying
``pg_catalog`` and ``information_schema``, call ``version()``, ``current_schema()``,
``format_type()``…, and cast to ``regclass``. `PostgresCatalog` answers those queries from an
in-memory DuckDB built once per published version:

- every relation of PostgreSQL 15's ``pg_catalog`` and ``information_schema``, with the
  columns a real server has (greenery.serve.postgres_system, copied from a live server), so
  whatever a client selects binds; most are empty;
- rows for the ``semantic_layer`` schema (greenery.serve.tables): one table per saved query
  and per semantic model, its columns typed from MetricFlow's answer (Arrow types mapped to
  Postgres type OIDs by `pg_type_of`), descriptions as comments; the built-in types; one
  database, one role, the server's settings;
- Postgres functions clients call (format_type, pg_get_userbyid, obj_description,
  has_table_privilege…) as DuckDB macros.

A query is rewritten (sqlglot, Postgres in, DuckDB out) before it runs: system schemas to
their emulation, ``OPERATOR(pg_catalog.~)`` to a regex match, ``::regclass`` and friends to
lookups, and the session's own facts (user, database, search path, settings) to literals.
Only SELECTs reach the DuckDB, which reaches no file and no network.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from greenery.semantic.watchdog import WATCHDOG
from greenery.serve.postgres_system import NAMESPACES, RELATIONS, SERVER_VERSION, TYPE_FUNCTIONS, TYPES
from greenery.serve.service import query_timeout_s
from greenery.serve.sql import clock_calls, open_sandbox
from greenery.serve.tables import SCHEMA, SqlTables

PG_CATALOG = "pg_catalog"
INFORMATION_SCHEMA = "information_schema"
EMULATED = {PG_CATALOG: "sys_pg_catalog", INFORMATION_SCHEMA: "sys_information_schema"}
PUBLIC_OID = 2200
SCHEMA_OID = 16384  # semantic_layer
FIRST_TABLE_OID = 16400  # the semantic_layer tables, in name order
OWNER_OID = 10
NO_FUNCTION = "-"  # a function column (regproc) naming none, OID 0, as PostgreSQL shows it
DEFAULT_TABLESPACE_OID = 1663  # pg_default (pg_global is the next)
OWNER = "greenery"
DATABASE = "greenery"  # what pg_database lists; clients may connect naming any database
SERVER_VERSION_TEXT = f"{SERVER_VERSION} (greenery semantic layer)"
VERSION = f"PostgreSQL {SERVER_VERSION} (greenery semantic layer, answers computed by MetricFlow)"
# What SHOW and current_setting() answer, and pg_settings lists (a real server's defaults,
# read-only transactions by default: nothing here can be written).
DEFAULT_SETTINGS: dict[str, str] = {
    "application_name": "",
    "block_size": "8192",
    "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY",
    "default_table_access_method": "heap",  # SQLAlchemy reads it when it reflects a table
    "default_transaction_isolation": "read committed",
    "default_transaction_read_only": "on",
    "extra_float_digits": "1",
    "in_hot_standby": "off",
    "integer_datetimes": "on",
    "IntervalStyle": "postgres",
    "jit": "off",  # no JIT here (asyncpg reads it, and sets it off, before it looks up a type)
    "is_superuser": "off",
    "lc_collate": "C.UTF-8",
    "lc_ctype": "C.UTF-8",
    "lc_messages": "C.UTF-8",
    "lc_monetary": "C.UTF-8",
    "lc_numeric": "C.UTF-8",
    "lc_time": "C.UTF-8",
    "max_identifier_length": "63",
    "max_index_keys": "32",
    "search_path": f"{SCHEMA}, public",
    "server_encoding": "UTF8",
    "server_version": SERVER_VERSION_TEXT,
    "server_version_num": str(int(SERVER_VERSION.split(".")[0]) * 10000 + int(SERVER_VERSION.split(".")[1])),
    "standard_conforming_strings": "on",
    "statement_timeout": "0",
    "TimeZone": "UTC",
    "transaction_isolation": "read committed",
    "transaction_read_only": "on",
    "work_mem": "4MB",
}
# Reported to the client at startup and when changed (PostgreSQL's GUC_REPORT settings).
REPORTED_SETTINGS = (
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "standard_conforming_strings",
    "TimeZone",
)
# Table functions a catalog query may use, by their Postgres names; everything else (read_csv,
# glob, query…) is refused.
TABLE_FUNCTIONS = frozenset({"generate_series", "generate_subscripts", "unnest", "range"})
# Postgres functions that reach files, the network, other sessions or the server's settings.
FORBIDDEN_FUNCTIONS = re.compile(
    r"^(pg_read_\w+|pg_ls_\w+|pg_stat_file|pg_file_\w+|lo_\w+|dblink\w*|pg_sleep\w*|set_config|"
    r"pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile|read_\w+|glob|getenv|"
    r"query|query_table|copy\w*|pg_import_system_collations)$",
    re.I,
)


# PostgreSQL's message to its clients at a fast shutdown (SQLSTATE 57P01)
TERMINATING = "terminating connection due to administrator command: the server is shutting down"


class PgError(ValueError):
    """An error for the client, with the SQLSTATE a real server would send."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


# ---- types ------------------------------------------------------------------------------

_TYPE_ROWS = {row[0]: row for row in TYPES}
_TYPE_BY_NAME = {row[1]: row[0] for row in TYPES}
_DISPLAY = {  # format_type()'s names where they differ from typname
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "varchar": "character varying",
    "bpchar": "character",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "time": "time without time zone",
    "timetz": "time with time zone",
    "char": '"char"',
}


def type_oid(name: str) -> int:
    return _TYPE_BY_NAME[name]


def element_type(oid: int) -> int:
    """The type of an array type's items (0 for a type that is not an array)."""
    row = _TYPE_ROWS.get(oid)
    return row[6] if row and row[5] == "A" else 0


def array_type(oid: int) -> int:
    """The array type whose items are of this type (0 if there is none)."""
    row = _TYPE_ROWS.get(oid)
    return row[7] if row else 0


def type_length(oid: int) -> int:
    row = _TYPE_ROWS.get(oid)
    return row[2] if row else -1


def type_display(oid: int) -> str:
    """format_type(oid, NULL): ``bigint``, ``text[]``, ``timestamp without time zone``."""
    row = _TYPE_ROWS.get(oid)
    if row is None:
        return "???"
    name, elem = row[1], row[6]
    if name.startswith("_") and elem:
        return type_display(elem) + "[]"
    return _DISPLAY.get(name, name)


def pg_type_of(dtype: pa.DataType) -> int:
    """The OID of the Postgres type a client should read an Arrow column as."""
    scalar = _scalar_type_name(dtype)
    if scalar is not None:
        return type_oid(scalar)
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        element = _scalar_type_name(dtype.value_type) or "text"
        return array_type(type_oid(element))
    return type_oid("json") if pa.types.is_struct(dtype) or pa.types.is_map(dtype) else type_oid("text")


def _scalar_type_name(dtype: pa.DataType) -> str | None:
    checks: list[tuple[Callable[[pa.DataType], bool], str]] = [
        (pa.types.is_boolean, "bool"),
        (lambda t: pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t), "int2"),
        (lambda t: pa.types.is_int32(t) or pa.types.is_uint16(t), "int4"),
        (pa.types.is_uint32, "oid"),
        (pa.types.is_int64, "int8"),
        (pa.types.is_uint64, "numeric"),
        (lambda t: pa.types.is_float16(t) or pa.types.is_float32(t), "float4"),
        (pa.types.is_float64, "float8"),
        (pa.types.is_decimal, "numeric"),
        (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "text"),
        (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), "bytea"),
        (pa.types.is_date, "date"),
        (lambda t: pa.types.is_timestamp(t) and t.tz is None, "timestamp"),
        (pa.types.is_timestamp, "timestamptz"),
        (pa.types.is_time, "time"),
        (lambda t: pa.types.is_duration(t) or pa.types.is_interval(t), "interval"),
        (pa.types.is_null, "text"),
    ]
    return next((name for check, name in checks if check(dtype)), None)


_DUCKDB_TYPES = {  # Postgres column types of the system relations, as the emulation stores them
    "oid": "UINTEGER",  # read back as Postgres oid (uint32), arrays of it as oid[]
    "regproc": "VARCHAR",
    "regtype": "UINTEGER",
    "xid": "BIGINT",
    "smallint": "SMALLINT",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "real": "REAL",
    "double precision": "DOUBLE",
    "numeric": "DOUBLE",
    "boolean": "BOOLEAN",
    "interval": "INTERVAL",
    "timestamp with time zone": "TIMESTAMPTZ",
    "information_schema.time_stamp": "TIMESTAMPTZ",
    "information_schema.cardinal_number": "INTEGER",
    "int2vector": "SMALLINT[]",
    "oidvector": "UINTEGER[]",
}
_DUCKDB_ARRAY_TYPES = {
    "oid[]": "UINTEGER[]",
    "smallint[]": "SMALLINT[]",
    "real[]": "REAL[]",
    "boolean[]": "BOOLEAN[]",
}


def _duckdb_type(pg_type: str) -> str:
    if pg_type in _DUCKDB_TYPES:
        return _DUCKDB_TYPES[pg_type]
    if pg_type.endswith("[]"):
        return _DUCKDB_ARRAY_TYPES.get(pg_type, "VARCHAR[]")
    return "VARCHAR"


def _columns(relation: tuple[str, str]) -> list[tuple[str, str]]:
    """(name, Postgres type) of a system relation's columns, in order."""
    return [tuple(c.split(" ", 1)) for c in RELATIONS[relation][2].split(", ")]  # type: ignore[misc]


# ---- the session's facts a query may ask for ------------------------------------------------


@dataclass(frozen=True)
class SessionFacts:
    user: str
    database: str
    settings: Mapping[str, str]
    pid: int

    @property
    def search_path(self) -> list[str]:
        names = [n.strip().strip('"') for n in self.settings.get("search_path", "").split(",")]
        return [n for n in names if n and n != "$user"]

    @property
    def current_schema(self) -> str | None:
        known = {PG_CATALOG, INFORMATION_SCHEMA, "public", SCHEMA}
        return next((n for n in self.search_path if n in known), None)

    def setting(self, name: str) -> str | None:
        lowered = {k.lower(): v for k, v in self.settings.items()}
        return lowered.get(name.lower())


# ---- the catalog database ------------------------------------------------------------------


class PostgresCatalog:
    """The emulated system catalog of one published version (built once, read by every session)."""

    def __init__(self, tables: SqlTables) -> None:
        self._con = open_sandbox()
        self._lock = threading.Lock()
        self._running: set[duckdb.DuckDBPyConnection] = set()  # the cursors of queries running now
        self._closed = False
        self.table_oids: dict[str, int] = {}
        self._build(tables)

    def run(self, tree: exp.Query, facts: SessionFacts) -> pa.Table:
        """Answer a SELECT over the system catalog (PgError when it cannot be answered)."""
        sql = rewrite(tree, facts, self.table_oids).sql(dialect="duckdb")
        limit_s = query_timeout_s()
        with self._lock:
            if self._closed:
                raise PgError("57014", "the catalog was replaced by a newer published version: run it again")
            cursor = self._con.cursor()
            self._running.add(cursor)
        try:
            with WATCHDOG.limit(limit_s, cursor.interrupt):  # a join of catalogs can take hours
                return cursor.sql(sql).to_arrow_table()
        except duckdb.InterruptException:
            if self._closed:
                raise PgError("57P01", TERMINATING) from None
            raise PgError("57014", f"canceling statement: it ran longer than {limit_s:g} s") from None
        except duckdb.Error as exc:
            raise _catalog_error(exc) from None
        finally:
            cursor.close()
            with self._lock:
                self._running.discard(cursor)
                last = self._closed and not self._running
            if last:
                self._con.close()

    def close(self, *, interrupt: bool = False) -> None:
        """Close the catalog once no query runs on it: now, or when the last running query ends
        (a catalog replaced by a newer version's); with `interrupt` (a server shutting down), the
        running queries are stopped first. DuckDB refuses to close a connection a query is using."""
        with self._lock:
            self._closed = True
            if interrupt:
                for cursor in self._running:
                    cursor.interrupt()
            if self._running:
                return
        self._con.close()

    # -- building --

    def _build(self, tables: SqlTables) -> None:
        con = self._con
        for schema in EMULATED.values():
            con.execute(f"CREATE SCHEMA {schema}")
        for (schema, name), _ in RELATIONS.items():
            columns = ", ".join(f'"{c}" {_duckdb_type(t)}' for c, t in _columns((schema, name)))
            con.execute(f'CREATE TABLE {EMULATED[schema]}."{name}" ({columns})')
        con.execute("CREATE TABLE sys_type_display (oid BIGINT, display VARCHAR)")
        con.executemany(
            "INSERT INTO sys_type_display VALUES (?, ?)", [(o, type_display(o)) for o in _TYPE_ROWS]
        )
        for relation, rows in _rows(tables, self.table_oids).items():
            self._insert(relation, rows)
        for macro in _MACROS:
            con.execute(f"CREATE MACRO {macro}")

    def _insert(self, relation: tuple[str, str], rows: list[dict[str, Any]]) -> None:
        """Rows by column name; a column not given gets a real server's empty value (false, 0, '')."""
        if not rows:
            return
        columns = _columns(relation)
        values = [[row.get(c, _empty(t)) for c, t in columns] for row in rows]
        names = ", ".join(f'"{c}"' for c, _ in columns)
        marks = ", ".join("?" for _ in columns)
        self._con.executemany(
            f'INSERT INTO {EMULATED[relation[0]]}."{relation[1]}" ({names}) VALUES ({marks})', values
        )


def _empty(pg_type: str) -> object:
    if pg_type == "boolean":
        return False
    if pg_type in ("oid", "smallint", "integer", "bigint", "real", "xid", "regtype"):
        return 0
    if pg_type == "regproc":
        return NO_FUNCTION
    return "" if pg_type == '"char"' else None


def _rows(tables: SqlTables, table_oids: dict[str, int]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The rows of the system relations that are not empty."""
    namespaces = {**NAMESPACES, "public": PUBLIC_OID, SCHEMA: SCHEMA_OID}
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {
        (PG_CATALOG, "pg_namespace"): [
            {"oid": oid, "nspname": name, "nspowner": OWNER_OID} for name, oid in namespaces.items()
        ],
        (PG_CATALOG, "pg_type"): [_type_row(row) for row in TYPES],
        (PG_CATALOG, "pg_am"): [
            {"oid": 2, "amname": "heap", "amhandler": "heap_tableam_handler", "amtype": "t"},
            {"oid": 403, "amname": "btree", "amhandler": "bthandler", "amtype": "i"},
        ],
        (PG_CATALOG, "pg_database"): [
            {
                "oid": 16383,
                "datname": DATABASE,
                "datdba": OWNER_OID,
                "encoding": 6,
                "datcollate": "C.UTF-8",
                "datctype": "C.UTF-8",
                "datallowconn": True,
                "datconnlimit": -1,
                "datlocprovider": "c",
                "dattablespace": DEFAULT_TABLESPACE_OID,
            }
        ],
        (PG_CATALOG, "pg_tablespace"): [  # what psql's \l+ joins the database to
            {"oid": DEFAULT_TABLESPACE_OID, "spcname": "pg_default", "spcowner": OWNER_OID},
            {"oid": DEFAULT_TABLESPACE_OID + 1, "spcname": "pg_global", "spcowner": OWNER_OID},
        ],
        (PG_CATALOG, "pg_roles"): [
            {"oid": OWNER_OID, "rolname": OWNER, "rolinherit": True, "rolcanlogin": True, "rolconnlimit": -1}
        ],
        (PG_CATALOG, "pg_user"): [
            {
                "usename": OWNER,
                "usesysid": OWNER_OID,
                "usecreatedb": False,
                "usesuper": False,
                "passwd": "********",
            }
        ],
        (PG_CATALOG, "pg_settings"): [
            {"name": name, "setting": value, "context": "user", "vartype": "string", "source": "default"}
            for name, value in DEFAULT_SETTINGS.items()
        ],
        (INFORMATION_SCHEMA, "schemata"): [
            {"catalog_name": DATABASE, "schema_name": name, "schema_owner": OWNER} for name in namespaces
        ],
    }
    rows[(PG_CATALOG, "pg_class")] = [
        {
            "oid": oid,
            "relname": name,
            "relnamespace": NAMESPACES[schema],
            "relowner": OWNER_OID,
            "relam": 2 if kind == "r" else 0,
            "relkind": kind,
            "relpersistence": "p",
            "relispopulated": True,
            "relreplident": "n",
            "relnatts": len(_columns((schema, name))),
        }
        for (schema, name), (oid, kind, _) in RELATIONS.items()
    ]
    for key in [
        (PG_CATALOG, "pg_attribute"),
        (PG_CATALOG, "pg_description"),
        (PG_CATALOG, "pg_tables"),
        (INFORMATION_SCHEMA, "tables"),
        (INFORMATION_SCHEMA, "columns"),
    ]:
        rows[key] = []
    for number, (name, table) in enumerate(tables.tables.items()):
        oid = FIRST_TABLE_OID + number
        table_oids[name] = oid
        schema = tables.schema(name)
        rows[(PG_CATALOG, "pg_class")].append(
            {
                "oid": oid,
                "relname": name,
                "relnamespace": SCHEMA_OID,
                "relowner": OWNER_OID,
                "relam": 2,
                "relkind": "r",
                "relpersistence": "p",
                "relispopulated": True,
                "relreplident": "d",
                "relnatts": len(schema),
                "reltuples": -1.0,
            }
        )
        rows[(PG_CATALOG, "pg_tables")].append({"schemaname": SCHEMA, "tablename": name, "tableowner": OWNER})
        rows[(INFORMATION_SCHEMA, "tables")].append(
            {
                "table_catalog": DATABASE,
                "table_schema": SCHEMA,
                "table_name": name,
                "table_type": "BASE TABLE",
                "is_insertable_into": "NO",
                "is_typed": "NO",
            }
        )
        rows[(PG_CATALOG, "pg_description")].append(
            {"objoid": oid, "classoid": 1259, "objsubid": 0, "description": table.description}
        )
        described = {c.name: c.description for c in table.columns}
        for position, field in enumerate(schema, start=1):
            type_ = pg_type_of(field.type)
            rows[(PG_CATALOG, "pg_attribute")].append(
                {
                    "attrelid": oid,
                    "attname": field.name,
                    "atttypid": type_,
                    "attlen": type_length(type_),
                    # psql's \d+ Storage: plain for fixed-length types, extended for the others
                    "attstorage": "p" if type_length(type_) > 0 else "x",
                    "attnum": position,
                    "atttypmod": -1,
                    "attislocal": True,
                    "attstattarget": -1,
                    "attcollation": 100 if type_ == type_oid("text") else 0,
                }
            )
            rows[(INFORMATION_SCHEMA, "columns")].append(_column_row(name, position, field.name, type_))
            if described.get(field.name):
                rows[(PG_CATALOG, "pg_description")].append(
                    {
                        "objoid": oid,
                        "classoid": 1259,
                        "objsubid": position,
                        "description": described[field.name],
                    }
                )
    return rows


def _type_row(row: tuple[int, str, int, bool, str, str, int, int, str]) -> dict[str, Any]:
    oid, name, length, byval, kind, category, elem, array, delim = row
    return {
        "oid": oid,
        "typname": name,
        "typnamespace": NAMESPACES[PG_CATALOG],
        "typowner": OWNER_OID,
        "typlen": length,
        "typbyval": byval,
        "typtype": kind,
        "typcategory": category,
        "typisdefined": True,
        "typdelim": delim,
        "typelem": elem,
        "typarray": array,
        "typtypmod": -1,
        "typalign": "i",
        "typstorage": "p",
        **dict(zip(("typinput", "typoutput", "typreceive", "typsend"), TYPE_FUNCTIONS[oid], strict=True)),
    }


def _column_row(table: str, position: int, name: str, type_: int) -> dict[str, Any]:
    display = type_display(type_)
    return {
        "table_catalog": DATABASE,
        "table_schema": SCHEMA,
        "table_name": table,
        "column_name": name,
        "ordinal_position": position,
        "is_nullable": "YES",
        "data_type": display,
        "udt_catalog": DATABASE,
        "udt_schema": PG_CATALOG,
        "udt_name": _TYPE_ROWS[type_][1],
        "dtd_identifier": str(position),
        "is_updatable": "NO",
        "is_self_referencing": "NO",
        "is_identity": "NO",
        "is_generated": "NEVER",
    }


# Postgres functions as DuckDB macros (names shadow DuckDB's own pg_catalog ones).
_MACROS = [
    f"version() AS '{VERSION}'",
    f"pg_get_userbyid(role) AS '{OWNER}'",
    "format_type(type_oid, typemod) AS (SELECT display FROM sys_type_display WHERE oid = type_oid)",
    # aliases no caller's column can name: a macro's argument (c.oid) is pasted into its body
    "sys_table_is_visible(relation, search_path) AS (SELECT list_contains(search_path, visible_ns.nspname) "
    "FROM sys_pg_catalog.pg_class visible_rel JOIN sys_pg_catalog.pg_namespace visible_ns "
    "ON visible_ns.oid = visible_rel.relnamespace WHERE visible_rel.oid = relation)",
    "pg_type_is_visible(type_oid) AS true",
    "pg_function_is_visible(function) AS true",
    "pg_collation_is_visible(collation) AS true",
    "pg_statistics_obj_is_visible(statistics) AS true",
    "pg_opclass_is_visible(opclass) AS true",
    "pg_opfamily_is_visible(opfamily) AS true",
    "pg_operator_is_visible(operator) AS true",
    "pg_conversion_is_visible(conversion) AS true",
    "pg_ts_config_is_visible(config) AS true",
    "pg_ts_dict_is_visible(dictionary) AS true",
    "pg_ts_parser_is_visible(parser) AS true",
    "pg_ts_template_is_visible(template) AS true",
    "pg_get_expr(node, relation) AS NULL::VARCHAR, (node, relation, pretty) AS NULL::VARCHAR",
    "pg_get_constraintdef(constraint_oid) AS NULL::VARCHAR, (constraint_oid, pretty) AS NULL::VARCHAR",
    "pg_get_indexdef(index_oid) AS NULL::VARCHAR, (index_oid, col, pretty) AS NULL::VARCHAR",
    "pg_get_viewdef(view_oid) AS NULL::VARCHAR, (view_oid, pretty) AS NULL::VARCHAR",
    "pg_get_triggerdef(trigger_oid) AS NULL::VARCHAR, (trigger_oid, pretty) AS NULL::VARCHAR",
    "pg_get_ruledef(rule_oid) AS NULL::VARCHAR, (rule_oid, pretty) AS NULL::VARCHAR",
    "pg_get_partkeydef(relation) AS NULL::VARCHAR",
    "pg_get_serial_sequence(relation, column_name) AS NULL::VARCHAR",
    "pg_get_statisticsobjdef_columns(statistics) AS NULL::VARCHAR",
    "pg_get_function_arguments(function) AS NULL::VARCHAR",
    "pg_get_function_result(function) AS NULL::VARCHAR",
    "pg_get_function_identity_arguments(function) AS NULL::VARCHAR",
    "pg_relation_is_publishable(relation) AS false",
    "pg_encoding_to_char(encoding) AS 'UTF8'",
    "pg_char_to_encoding(name) AS 6",  # UTF8's number in PostgreSQL
    "pg_is_in_recovery() AS false",
    "statement_timestamp() AS get_current_timestamp()",
    "clock_timestamp() AS get_current_timestamp()",
    "txid_current() AS 1::BIGINT",
    "pg_total_relation_size(relation) AS 0::BIGINT",
    "pg_relation_size(relation) AS 0::BIGINT, (relation, fork) AS 0::BIGINT",
    "pg_table_size(relation) AS 0::BIGINT",
    "pg_indexes_size(relation) AS 0::BIGINT",
    "pg_database_size(database) AS 0::BIGINT",
    "pg_tablespace_location(tablespace) AS ''",
    "pg_tablespace_size(tablespace) AS 0::BIGINT",
    "obj_description(object) AS (SELECT min(description) FROM sys_pg_catalog.pg_description d "
    "WHERE d.objoid = object AND d.objsubid = 0), "
    "(object, catalog_name) AS (SELECT min(description) FROM sys_pg_catalog.pg_description d "
    "WHERE d.objoid = object AND d.objsubid = 0)",
    "col_description(relation, position) AS (SELECT min(description) FROM sys_pg_catalog.pg_description d "
    "WHERE d.objoid = relation AND d.objsubid = position)",
    "shobj_description(object, catalog_name) AS NULL::VARCHAR",
    "has_table_privilege(a, b) AS true, (a, b, c) AS true",
    "has_schema_privilege(a, b) AS true, (a, b, c) AS true",
    "has_database_privilege(a, b) AS true, (a, b, c) AS true",
    "has_column_privilege(a, b, c) AS true, (a, b, c, d) AS true",
    "has_any_column_privilege(a, b) AS true, (a, b, c) AS true",
    "has_function_privilege(a, b) AS true, (a, b, c) AS true",
    "has_sequence_privilege(a, b) AS true, (a, b, c) AS true",
    "pg_has_role(a, b) AS false, (a, b, c) AS false",
    # an array's items with their positions, a row each (pgjdbc's getPrimaryKeys, psqlODBC)
    "_pg_expandarray(arr) AS unnest(list_transform(range(1, len(arr) + 1), lambda i: {'x': arr[i], 'n': i}))",
    "array_upper(list, dimension) AS len(list)",
    "array_lower(list, dimension) AS CASE WHEN len(list) > 0 THEN 1 END",
    "quote_ident(name) AS CASE WHEN regexp_full_match(name, '[a-z_][a-z0-9_$]*') THEN name "
    "ELSE '\"' || replace(name, '\"', '\"\"') || '\"' END",
    "to_regtype(type_name) AS (SELECT min(oid) FROM sys_type_display WHERE display = lower(type_name) OR "
    "oid = (SELECT min(oid) FROM sys_pg_catalog.pg_type WHERE typname = lower(type_name)))",
    "to_regnamespace(namespace) AS "
    "(SELECT min(oid) FROM sys_pg_catalog.pg_namespace WHERE nspname = namespace)",
    "parse_ident_last(relation) AS lower(trim(string_split(relation, '.')[-1], '\"'))",
    "parse_ident_schema(relation) AS CASE WHEN len(string_split(relation, '.')) > 1 "
    "THEN lower(trim(string_split(relation, '.')[1], '\"')) END",
    "sys_regclass_oid(relation) AS (SELECT min(c.oid) FROM sys_pg_catalog.pg_class c "
    "JOIN sys_pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = parse_ident_last(relation) AND "
    "(n.nspname = parse_ident_schema(relation) OR (parse_ident_schema(relation) IS NULL "
    f"AND n.nspname IN ('{PG_CATALOG}', '{SCHEMA}'))))",
    "to_regclass(relation) AS sys_regclass_oid(relation)",
    f"sys_regclass_name(relation) AS (SELECT min(CASE WHEN n.nspname IN ('{PG_CATALOG}', '{SCHEMA}') "
    "THEN c.relname ELSE n.nspname || '.' || c.relname END) FROM sys_pg_catalog.pg_class c "
    "JOIN sys_pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = relation)",
    "sys_regnamespace_name(namespace) AS "
    "(SELECT min(nspname) FROM sys_pg_catalog.pg_namespace WHERE oid = namespace)",
]


def _catalog_error(exc: duckdb.Error) -> PgError:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    message = message[:300]  # DuckDB may echo the client's text, or a value it made, at any length
    for pattern, sqlstate in _DUCKDB_ERRORS:
        if re.search(pattern, message, re.I):
            return PgError(sqlstate, _plain(message))
    return PgError("0A000", f"this catalog query is not supported here: {_plain(message)}")


_DUCKDB_ERRORS = [
    (r"Parser Error|syntax error", "42601"),
    (r"Table with name .* does not exist|Table .* does not exist", "42P01"),
    (r"Referenced column .* not found|column .* not found|does not have a column", "42703"),
    (
        r"Function with name .* does not exist|Table Function with name|Macro .* does not support"
        r"|No function matches",
        "42883",
    ),
    (r"Could not convert|Conversion Error", "22P02"),
    (r"Permission Error|disabled by configuration", "42501"),
    (r"Out of Memory", "53200"),
]


def _plain(message: str) -> str:
    """DuckDB's message without the emulation's own schema names."""
    for real, emulated in EMULATED.items():
        message = message.replace(emulated, real)
    return message


# ---- rewriting a query for the emulation ---------------------------------------------------


def rewrite(tree: exp.Query, facts: SessionFacts, table_oids: Mapping[str, int]) -> exp.Expression:
    """The query for the catalog DuckDB (a copy; PgError for what must not run)."""
    tree = tree.copy()
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in list(tree.find_all(exp.Table)):
        _rewrite_table(table, ctes)
    for column in list(tree.find_all(exp.Column)):
        db = column.args.get("db")
        if db is not None and db.name.lower() in EMULATED:
            column.set("db", exp.to_identifier(EMULATED[db.name.lower()]))
    rewritten: exp.Expression = tree
    for node in reversed(list(tree.dfs())):  # children before their parents
        new = _rewrite_node(node, facts)
        if new is node:
            continue
        if node is tree:
            rewritten = new
        else:
            node.replace(new)
    return clock_calls(rewritten)


def name_projections(tree: exp.Expression) -> None:
    """Give each unnamed output column the name Postgres gives it (``version``, ``?column?``…)."""
    select = tree if isinstance(tree, exp.Select) else tree.find(exp.Select)
    if select is None:
        return
    select.set(
        "expressions",
        [
            exp.alias_(p, name, quoted=True) if (name := _output_name(p)) is not None else p
            for p in select.expressions
        ],
    )


_KEYWORD_NAMES: dict[type[exp.Expression], str] = {
    exp.CurrentUser: "current_user",
    exp.SessionUser: "session_user",
    exp.CurrentSchema: "current_schema",
    exp.CurrentCatalog: "current_catalog",
    exp.CurrentDatabase: "current_database",
    exp.CurrentDate: "current_date",
    exp.CurrentTimestamp: "current_timestamp",
}


# a cast's column is named by its type's internal name (``1::bigint`` is int8), as sqlglot writes it
_TYPE_NAMES = {
    "bigint": "int8",
    "int": "int4",
    "smallint": "int2",
    "real": "float4",
    "double precision": "float8",
    "boolean": "bool",
    "decimal": "numeric",
    "char": "bpchar",
}


def _output_name(node: exp.Expression) -> str | None:
    """Postgres' name for an unaliased projection; None when the node names itself (columns, *)."""
    if isinstance(node, exp.Alias | exp.Column | exp.Star):
        return None
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
        return _output_name(node.expression)
    if type(node) in _KEYWORD_NAMES:
        return _KEYWORD_NAMES[type(node)]
    if isinstance(node, exp.Cast):  # named by what it casts, down to a column or a call, or its type
        inner = node.this
        while isinstance(inner, exp.Cast):
            inner = inner.this
        if isinstance(inner, exp.Column):
            return inner.name
        if isinstance(inner, exp.Func | exp.Dot) or type(inner) in _KEYWORD_NAMES:
            return _output_name(inner)
        written = node.to.sql("postgres").lower().rsplit(".", 1)[-1].replace('"', "").split("(")[0]
        return _TYPE_NAMES.get(written, written)
    if isinstance(node, exp.AtTimeZone):
        return "timezone"
    if isinstance(node, exp.Interval):  # interval '2 hours', a typed literal like date '…'
        return "interval"
    if isinstance(node, exp.Func) and not isinstance(node, exp.Binary):  # and, or, ^ are operators
        return _written_name(node)
    return "?column?"


def _written_name(call: exp.Expression) -> str:
    """A call's name as PostgreSQL writes it: sqlglot's own may differ (string_agg is its
    GroupConcat, to_char TimeToStr, unnest Explode), so the call is written in Postgres' dialect
    to learn it (as long as parsing the call: for the projections and table functions only)."""
    if isinstance(call, exp.Anonymous):
        return str(call.name).lower()
    if isinstance(call, exp.Trim) and call.args.get("position") is None:
        return "btrim"
    written = re.match(r"\w+", call.sql("postgres"))  # f(…), ARRAY[…], CASE …, POSITION(… IN …)
    return written.group(0).lower() if written else "?column?"


def _rewrite_table(table: exp.Table, ctes: set[str]) -> None:
    if not isinstance(table.this, exp.Identifier):
        name = _written_name(table.this)
        if name not in TABLE_FUNCTIONS:
            raise PgError("42501", f"table function {name}() is not allowed here")
        table.set("db", None)  # pg_catalog.generate_series → DuckDB's own
        return
    schema, name = table.db.lower(), table.name.lower()
    if table.catalog:
        raise PgError("0A000", f"cross-database references are not implemented: {table.sql('postgres')}")
    if not schema and name in ctes:
        return
    if not schema and (PG_CATALOG, name) in RELATIONS:
        schema = PG_CATALOG
    if schema in EMULATED and (schema, name) in RELATIONS:
        table.set("db", exp.to_identifier(EMULATED[schema]))
        table.set("this", exp.to_identifier(name))
        return
    shown = f"{schema}.{name}" if schema else name
    raise PgError("42P01", f'relation "{shown}" does not exist')


def _function_name(call: exp.Func) -> str:
    """A call's name, cheaply, for the check of every call: sqlglot's, which is Postgres' for
    each function FORBIDDEN_FUNCTIONS names (none of them has a sqlglot name of its own)."""
    return str(call.name).lower() if isinstance(call, exp.Anonymous) else call.sql_name().lower()


def _rewrite_node(node: exp.Expression, facts: SessionFacts) -> exp.Expression:
    for handler in _NODE_HANDLERS:
        replaced = handler(node, facts)
        if replaced is not None:
            return replaced
    return node


def _without_qualifier(node: exp.Expression, facts: SessionFacts) -> exp.Expression | None:
    """``pg_catalog.f(x)`` → ``f(x)`` (the macros and DuckDB's functions are unqualified), and
    ``pg_catalog.current_database()`` → its value, once the call is replaced by it."""
    if (
        isinstance(node, exp.Dot)
        and isinstance(node.this, exp.Identifier)
        and node.this.name.lower() in (PG_CATALOG, INFORMATION_SCHEMA)
        and not isinstance(node.expression, exp.Identifier)
    ):
        return node.expression
    return None


def _checked_function(node: exp.Expression, facts: SessionFacts) -> exp.Expression | None:
    if isinstance(node, exp.Func) and FORBIDDEN_FUNCTIONS.match(_function_name(node)):
        raise PgError("42501", f"permission denied for function {_function_name(node)}")
    return None


def _session_value(node: exp.Expression, facts: SessionFacts) -> exp.Expression | None:
    """current_user, current_database(), current_setting('x')… → the session's value."""
    if isinstance(node, exp.CurrentUser | exp.SessionUser):
        return exp.Literal.string(facts.user)
    if isinstance(node, exp.CurrentSchema):
        return _text_or_null(facts.current_schema)
    if isinstance(node, exp.CurrentCatalog | exp.CurrentDatabase):
        return exp.Literal.string(facts.database)
    if isinstance(node, exp.CurrentSchemas):  # sqlglot's own node for current_schemas(implicit)
        return _current_schemas(node.this, facts)
    if not isinstance(node, exp.Anonymous):
        return None
    name, args = node.name.lower(), node.expressions
    if name in ("current_database", "current_catalog") and not args:
        return exp.Literal.string(facts.database)
    if name in ("current_user", "session_user", "user") and not args:
        return exp.Literal.string(facts.user)
    if name == "current_schema" and not args:
        return _text_or_null(facts.current_schema)
    if name == "current_schemas" and len(args) == 1:
        return _current_schemas(args[0], facts)
    if name == "pg_table_is_visible" and len(args) == 1:  # in a schema of the session's search path
        path = [exp.Literal.string(n) for n in _search_path(facts, implicit=True)]
        return exp.func("sys_table_is_visible", args[0], exp.Array(expressions=path))
    if name == "pg_backend_pid" and not args:
        return exp.Literal.number(facts.pid)
    if name == "current_setting" and args:
        # the name as a literal, or a bound parameter cast to text (SQLAlchemy's current_setting(%s::VARCHAR))
        setting = args[0].this if isinstance(args[0], exp.Cast) else args[0]
        if isinstance(setting, exp.Literal):
            value = facts.setting(setting.name)
            if value is None and len(args) == 1:
                raise PgError("42704", f'unrecognized configuration parameter "{setting.name}"')
            return _text_or_null(value)
        # a name read from each row (psql's \dconfig: current_setting(s.name) over pg_settings)
        values = [
            exp.If(this=exp.Literal.string(k.lower()), true=_text_or_null(v))
            for k, v in facts.settings.items()
        ]
        return exp.Case(this=exp.Lower(this=setting), ifs=values)
    return None


def _search_path(facts: SessionFacts, *, implicit: bool) -> list[str]:
    """The session's search path, of the schemas there are, pg_catalog first when `implicit`."""
    known = [n for n in facts.search_path if n in {SCHEMA, "public", PG_CATALOG, INFORMATION_SCHEMA}]
    return list(dict.fromkeys(([PG_CATALOG] if implicit else []) + known))


def _current_schemas(implicit: exp.Expression | None, facts: SessionFacts) -> exp.Expression:
    """current_schemas(implicit): the search path's schemas, pg_catalog first when asked."""
    with_catalog = implicit is not None and implicit.sql().lower() in ("true", "'t'", "'true'")
    names = _search_path(facts, implicit=with_catalog)
    return exp.Array(expressions=[exp.Literal.string(n) for n in names])


def _json_build_object(node: exp.Expression, facts: SessionFacts) -> exp.Expression | None:
    """``json_build_object(k1, v1, …)`` → DuckDB's ``json_object`` (keys as text)."""
    if not (isinstance(node, exp.Anonymous) and node.name.lower() == "json_build_object"):
        return None
    args = [exp.cast(a, "VARCHAR") if i % 2 == 0 else a for i, a in enumerate(node.expressions)]
    return exp.func("json_object", *args)


def _text_or_null(value: str | None) -> exp.Expression:
    return exp.Literal.string(value) if value is not None else exp.Null()


def _operator(node: exp.Expression, facts: SessionFacts) -> exp.Expression | None:
    """``a OPERATOR(pg_catalog.~) b`` (psql's pattern matches) → the plain operator."""
    if not isinstance(node, exp.Operator):
        return None
    symbol = str(node.args.get("operator", "")).rsplit(".", 1)[-1].strip()
    left, right = node.this, node.expression
    builders: dict[str, Callable[[], exp.Expression]] = {
        "~": lambda: exp.func("regexp_matches", left, right),
        "~*": lambda: exp.func("regexp_matches", left, right, exp.Literal.string("i")),
        "!~": lambda: exp.not_(exp.func("regexp_matches", left, right)),
        "!~*": lambda: exp.not_(exp.func("regexp_matches", left, right, exp.Literal.string("i"))),
        "=": lambda: exp.EQ(this=left, expression=right),
        "<>": lambda: exp.NEQ(this=left, expression=right),
        "<": lambda: exp.LT(this=left, expression=right),
        ">": lambda: exp.GT(this=left, expression=right),
        "<=": lambda: exp.LTE(this=left, expression=right),
        ">=": lambda: exp.GTE(this=left, expression=right),
    }
    if symbol not in builders:
        raise PgError("42883", f"operator does not exist: OPERATOR({node.args.get('operator')})")
    return builders[symbol]()


def _regproc_zero(node: exp.Expression, facts: SessionFacts) -> exp.Expression | None:
    """``typreceive != 0`` (ADBC's type query): a function column, kept as the function's name,
    compared with OID 0, no function, compares with the name PostgreSQL shows for none."""
    if not isinstance(node, exp.EQ | exp.NEQ):
        return None
    for column, other in ((node.this, node.expression), (node.expression, node.this)):
        if (
            isinstance(column, exp.Column)
            and column.name.lower() in _REGPROC_COLUMNS
            and isinstance(other, exp.Literal)
            and not other.is_string
            and other.name == "0"
        ):
            return type(node)(this=column, expression=exp.Literal.string(NO_FUNCTION))
    return None


def _collate(node: exp.Expression, facts: SessionFacts) -> exp.Expression | None:
    """``x COLLATE pg_catalog.default`` → x (one collation here)."""
    return node.this if isinstance(node, exp.Collate) else None


def _cast(node: exp.Expression, facts: SessionFacts) -> exp.Expression | None:
    """Casts to Postgres' own types: ``'t'::regclass`` → its OID, ``oid::regclass`` → its name…"""
    if not isinstance(node, exp.Cast):
        return None
    target = node.to.sql("postgres").lower().replace('"', "")
    target = re.sub(rf"^({PG_CATALOG}|{INFORMATION_SCHEMA})\.", "", target)
    value = node.this
    literal = isinstance(value, exp.Literal) and value.is_string
    lookups = {
        "regclass": ("sys_regclass_oid", "sys_regclass_name"),
        "regtype": ("to_regtype", "format_type"),
        "regnamespace": ("to_regnamespace", "sys_regnamespace_name"),
    }
    if target in lookups:
        by_name, by_oid = lookups[target]
        if literal:
            return exp.func(by_name, value)
        return exp.func(by_oid, value, exp.Null()) if by_oid == "format_type" else exp.func(by_oid, value)
    if target in ("regproc", "regprocedure", "regrole", "regoper", "regconfig"):
        return exp.cast(value, "VARCHAR")
    simple = _CAST_TYPES.get(target.removesuffix("[]"))
    if simple is not None:
        return exp.cast(value, simple + ("[]" if target.endswith("[]") else ""))
    return None


_CAST_TYPES = {
    "oid": "UINT",
    "xid": "BIGINT",
    "cid": "BIGINT",
    "text": "VARCHAR",
    "name": "VARCHAR",
    "char": "VARCHAR",
    "bpchar": "VARCHAR",
    "sql_identifier": "VARCHAR",
    "character_data": "VARCHAR",
    "yes_or_no": "VARCHAR",
    "cardinal_number": "INTEGER",
    "int2": "SMALLINT",
    "int4": "INTEGER",
    "int8": "BIGINT",
    "int2vector": "SMALLINT[]",
    "oidvector": "UINT[]",
}

_REGPROC_COLUMNS = frozenset(
    name for relation in RELATIONS for name, pg_type in _columns(relation) if pg_type == "regproc"
)
_NODE_HANDLERS: list[Callable[[exp.Expression, SessionFacts], exp.Expression | None]] = [
    _without_qualifier,
    _checked_function,
    _session_value,
    _json_build_object,
    _operator,
    _regproc_zero,
    _collate,
    _cast,
]
