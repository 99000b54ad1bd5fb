"""``COPY (query) TO STDOUT`` over the Postgres endpoint: an answer as lines of text or CSV.

psql's ``\\copy (select …) to 'funnel.csv' with csv header`` sends ``COPY ( select … ) TO STDOUT
with csv header``; psycopg's ``cursor.copy()`` and other exporters send the same. This module
reads the statement (PostgreSQL's option list ``WITH (FORMAT csv, HEADER, …)`` and its older
``WITH CSV HEADER DELIMITER ';' NULL 'x'``) and writes the lines, as PostgreSQL's COPY writes
them; the session (greenery.serve.postgres) runs the query and sends the lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from greenery.serve.postgres_catalog import PgError

_COPY = re.compile(
    r"^\s*copy\s+(?:\((?P<query>.*)\)|(?P<table>[\w.\"]+)(?:\s*\((?P<columns>[^()]*)\))?)"
    r"\s+to\s+(?P<target>\S+)(?P<options>.*)$",
    re.I | re.S,
)
_OPTION_LIST = re.compile(r"^\s*(?:with\s*)?\((?P<items>.*)\)\s*$", re.I | re.S)
_WORD_OR_STRING = re.compile(r"'(?:[^']|'')*'|[^\s,]+")
_TEXT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f", "\v": "\\v"}


@dataclass(frozen=True)
class CopyRequest:
    """What to copy (a query) and how to write it."""

    query: str
    csv: bool = False
    header: bool = False
    delimiter: str = "\t"
    null: str = "\\N"
    quote: str = '"'


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
    return _with_options(query, match.group("options"))


def _with_options(query: str, options: str) -> CopyRequest:
    listed = _OPTION_LIST.match(options)
    if listed is not None:  # WITH (FORMAT csv, HEADER true, DELIMITER ';')
        pairs = [item.strip().split(None, 1) for item in _split_items(listed.group("items"))]
        settings = {
            pair[0].lower(): _unquoted(pair[1]) if len(pair) > 1 else "true" for pair in pairs if pair
        }
    else:  # the older form: [WITH] [CSV] [HEADER] [DELIMITER [AS] 'x'] [NULL [AS] 'x'] [QUOTE [AS] 'q']
        settings = _older_options(_WORD_OR_STRING.findall(options))
    unknown = set(settings) - {"format", "header", "delimiter", "null", "quote", "escape", "encoding"}
    if unknown:
        raise PgError("0A000", f"COPY option {sorted(unknown)[0]} is not supported")
    form = settings.get("format", "text").lower()
    if form not in ("text", "csv"):
        raise PgError("0A000", f"COPY format {form} is not supported: use text or csv")
    csv = form == "csv"
    request = CopyRequest(
        query=query,
        csv=csv,
        header=settings.get("header", "false").lower() in ("true", "on", "1", "match"),
        delimiter=settings.get("delimiter", "," if csv else "\t"),
        null=settings.get("null", "" if csv else "\\N"),
        quote=settings.get("quote", '"'),
    )
    if len(request.delimiter) != 1 or len(request.quote) != 1:
        raise PgError("22023", "COPY delimiter and quote must be one character each")
    if request.header and not csv:
        raise PgError("0A000", "COPY HEADER is available only in CSV mode")
    return request


def _split_items(items: str) -> list[str]:
    """Option list items, split at commas outside quotes."""
    return [m.strip() for m in re.findall(r"(?:'(?:[^']|'')*'|[^,'])+", items)]


def _older_options(words: list[str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    taking: str | None = None
    for word in words:
        lowered = word.lower()
        if taking is not None:
            if lowered == "as":
                continue
            settings[taking], taking = _unquoted(word), None
        elif lowered == "with":
            continue
        elif lowered in ("csv", "binary"):
            settings["format"] = lowered
        elif lowered == "header":
            settings["header"] = "true"
        elif lowered in ("delimiter", "null", "quote", "escape", "encoding"):
            taking = lowered
        else:
            raise PgError("42601", f'syntax error at or near "{word}" in COPY')
    return settings


def _unquoted(word: str) -> str:
    word = word.strip()
    return word[1:-1].replace("''", "'") if word.startswith("'") and word.endswith("'") else word


def copy_lines(names: list[str], rows: Iterable[list[str | None]], request: CopyRequest) -> Iterator[bytes]:
    """Each line COPY writes (ending in a newline): the header, then a row per line, its values
    already in Postgres's text output (None for NULL)."""
    if request.header:
        yield _line([_csv_value(n, request) for n in names], request)
    write = _csv_value if request.csv else _text_value
    for row in rows:
        yield _line([request.null if v is None else write(v, request) for v in row], request)


def _line(values: list[str], request: CopyRequest) -> bytes:
    return (request.delimiter.join(values) + "\n").encode("utf-8")


def _csv_value(value: str, request: CopyRequest) -> str:
    """Quoted where it holds the delimiter, the quote, a line break, or reads as the NULL string."""
    special = request.delimiter in value or request.quote in value or "\n" in value or "\r" in value
    if special or value == request.null:
        return request.quote + value.replace(request.quote, request.quote * 2) + request.quote
    return value


def _text_value(value: str, request: CopyRequest) -> str:
    """Backslash escapes for the backslash, control characters and the delimiter."""
    escaped = "".join(_TEXT_ESCAPES.get(c, c) for c in value)
    return (
        escaped.replace(request.delimiter, "\\" + request.delimiter) if request.delimiter != "\t" else escaped
    )
