"""``COPY (query) TO STDOUT`` over the Postgres endpoint: an answer as text, CSV or binary.

psql's ``\\copy (select …) to 'funnel.csv' with csv header`` sends ``COPY ( select … ) TO STDOUT
with csv header``; psycopg's ``cursor.copy()`` and other exporters send the same. The ADBC
PostgreSQL driver and connectorx (pandas', polars' readers) read every answer as ``COPY (…) TO
STDOUT (FORMAT binary)``. This module reads the statement (PostgreSQL's option list ``WITH
(FORMAT csv, HEADER, …)`` and its older ``WITH CSV HEADER DELIMITER ';' NULL 'x'``), checks the
options as PostgreSQL 15 does, and writes the data as its COPY writes it; the session
(greenery.serve.postgres) runs the query and sends the data.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from greenery.serve.postgres_catalog import PgError
from greenery.serve.postgres_values import encode_rows, sized, text_value

_COPY = re.compile(
    r"^\s*copy\s+(?:\((?P<query>.*)\)|(?P<table>[\w.\"]+)(?:\s*\((?P<columns>[^()]*)\))?)"
    r"\s+to\s+(?P<target>\S+)(?P<options>.*)$",
    re.I | re.S,
)
_OPTION_LIST = re.compile(r"^\s*(?:with\s*)?\((?P<items>.*)\)\s*$", re.I | re.S)
_WORD_OR_STRING = re.compile(r"'(?:[^']|'')*'|[^\s,]+")
_TEXT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f", "\v": "\\v"}


_FORMATS = ("text", "csv", "binary")
_OPTIONS = frozenset({"format", "header", "delimiter", "null", "quote", "escape", "encoding"})
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)  # binary: no flags, no extension


@dataclass(frozen=True)
class CopyRequest:
    """What to copy (a query) and how to write it: text, CSV or PostgreSQL's binary format."""

    query: str
    format: str = "text"
    header: bool = False
    delimiter: str = "\t"
    null: str = "\\N"
    quote: str = '"'
    escape: str = '"'

    @property
    def format_code(self) -> int:
        """CopyOutResponse's format code: 1 for binary, 0 for text and CSV."""
        return int(self.format == "binary")


def copy_request(text: str) -> CopyRequest:
    """A ``COPY … TO STDOUT`` statement read; PgError for what is refused or malformed."""
    match = _COPY.match(text.strip().rstrip(";"))
    if match is None:
        raise PgError(
            "42601", f"syntax error in {text.strip()[:80]}: COPY (query) TO STDOUT [WITH (options)]"
        )
    if match.group("target").lower() != "stdout":
        raise PgError(
            "42501", "COPY to a file is not allowed here: copy TO STDOUT (psql's \\copy writes the file)"
        )
    if match.group("query") is not None:
        query = match.group("query").strip()
    else:
        columns = match.group("columns")
        query = f"select {columns.strip() if columns else '*'} from {match.group('table')}"
    return _with_options(query, _settings(match.group("options")))


def _settings(options: str) -> dict[str, str]:
    """The options as written, by lowercase name: ``WITH (FORMAT csv, HEADER, …)`` or the older
    ``WITH CSV HEADER DELIMITER ';'``; an option given twice is 42601, as in PostgreSQL."""
    listed = _OPTION_LIST.match(options)
    if listed is None:
        pairs = _older_options(_WORD_OR_STRING.findall(options))
    else:
        items = [item.strip().split(None, 1) for item in _split_items(listed.group("items"))]
        pairs = [(item[0].lower(), _unquoted(item[1]) if len(item) > 1 else "true") for item in items if item]
    settings = dict(pairs)
    if len(settings) < len(pairs):
        raise PgError("42601", "conflicting or redundant options in COPY")
    unknown = set(settings) - _OPTIONS
    if unknown:
        raise PgError("0A000", f"COPY option {sorted(unknown)[0]} is not supported")
    return settings


def _with_options(query: str, settings: dict[str, str]) -> CopyRequest:
    """The request, its options checked as PostgreSQL 15 checks them (ProcessCopyOptions)."""
    form = settings.get("format", "text").lower()
    if form not in _FORMATS:
        raise PgError("22023", f'COPY format "{form}" not recognized')
    csv = form == "csv"
    if form == "binary":
        for name, sqlstate in (("delimiter", "42601"), ("null", "42601"), ("header", "0A000")):
            if name in settings:
                raise PgError(sqlstate, f"cannot specify {name.upper()} in BINARY mode")
    for name in ("quote", "escape"):
        if name in settings and not csv:
            raise PgError("0A000", f"COPY {name} available only in CSV mode")
    header = settings.get("header", "false").lower()
    if header == "match":
        raise PgError("0A000", 'cannot use "match" with HEADER in COPY TO')
    encoding = settings.get("encoding", "utf8").lower().replace("-", "").replace("_", "")
    if encoding not in ("utf8", "unicode"):
        raise PgError(
            "0A000", f"COPY encoding {settings['encoding']} is not supported: the server writes UTF8"
        )
    quote = settings.get("quote", '"')
    request = CopyRequest(
        query=query,
        format=form,
        header=header in ("true", "on", "1"),
        delimiter=settings.get("delimiter", "," if csv else "\t"),
        null=settings.get("null", "" if csv else "\\N"),
        quote=quote,
        escape=settings.get("escape", quote),
    )
    for name in ("delimiter", "quote", "escape"):
        if len(getattr(request, name)) != 1:
            raise PgError("0A000", f"COPY {name} must be a single one-byte character")
    if csv and request.delimiter == request.quote:
        raise PgError("22023", "COPY delimiter and quote must be different")
    return request


def _split_items(items: str) -> list[str]:
    """Option list items, split at commas outside quotes."""
    return [m.strip() for m in re.findall(r"(?:'(?:[^']|'')*'|[^,'])+", items)]


def _older_options(words: list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    taking: str | None = None
    for word in words:
        lowered = word.lower()
        if taking is not None:
            if lowered == "as":
                continue
            pairs.append((taking, _unquoted(word)))
            taking = None
        elif lowered == "with":
            continue
        elif lowered in ("csv", "binary"):
            pairs.append(("format", lowered))
        elif lowered == "header":
            pairs.append(("header", "true"))
        elif lowered in ("delimiter", "null", "quote", "escape", "encoding"):
            taking = lowered
        else:
            raise PgError("42601", f'syntax error at or near "{word}" in COPY')
    return pairs


def _unquoted(word: str) -> str:
    word = word.strip()
    return word[1:-1].replace("''", "'") if word.startswith("'") and word.endswith("'") else word


def copy_data(table: pa.Table, request: CopyRequest) -> Iterator[bytes]:
    """The payload of each CopyData message COPY sends for the table: a line per row (after the
    header line) in text or CSV, or PostgreSQL's binary file format."""
    if request.format == "binary":
        return _binary_rows(table)
    columns = [column.to_pylist() for column in table.columns]
    rows = ([None if v is None else text_value(v) for v in values] for values in zip(*columns, strict=True))
    return copy_lines(table.column_names, rows, request)


def _binary_rows(table: pa.Table) -> Iterator[bytes]:
    """The binary format as PostgreSQL sends it: the signature with the first row, a row per
    message (its field count, then each field's length and bytes, -1 for NULL), the -1 trailer
    alone; the values are those of binary DataRows (greenery.serve.postgres_values)."""
    width = struct.pack("!h", table.num_columns)
    prefix = _SIGNATURE
    for fields in encode_rows(table, [1] * table.num_columns):
        yield prefix + width + b"".join(map(sized, fields))
        prefix = b""
    yield prefix + struct.pack("!h", -1)


def copy_lines(names: list[str], rows: Iterable[list[str | None]], request: CopyRequest) -> Iterator[bytes]:
    """Each line COPY writes in text or CSV (ending in a newline): the header, then a row per
    line, its values already in Postgres's text output (None for NULL)."""
    field = _csv_field if request.format == "csv" else _text_field
    if request.header:
        yield _line([field(n, request) for n in names], request)
    for row in rows:
        yield _line([request.null if v is None else field(v, request) for v in row], request)


def _line(values: list[str], request: CopyRequest) -> bytes:
    return (request.delimiter.join(values) + "\n").encode("utf-8")


def _csv_field(value: str, request: CopyRequest) -> str:
    """Quoted where it holds the delimiter, the quote, a line break, or reads as the NULL string;
    inside the quotes, the escape character goes before each quote and escape character."""
    special = request.delimiter in value or request.quote in value or "\n" in value or "\r" in value
    if not (special or value == request.null):
        return value
    escaped = "".join(request.escape + c if c in (request.quote, request.escape) else c for c in value)
    return request.quote + escaped + request.quote


def _text_field(value: str, request: CopyRequest) -> str:
    """Backslash escapes for the backslash, control characters and the delimiter."""
    escaped = "".join(_TEXT_ESCAPES.get(c, c) for c in value)
    return (
        escaped.replace(request.delimiter, "\\" + request.delimiter) if request.delimiter != "\t" else escaped
    )
