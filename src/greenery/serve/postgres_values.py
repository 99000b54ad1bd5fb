"""Values on the Postgres wire: each value in PostgreSQL's text and binary formats.

Out: an Arrow table's rows as DataRow columns or binary COPY fields, in the format a client asks
for, typed by the OIDs of ``pg_type_of`` (greenery.serve.postgres_catalog). In: bind parameters
sent in binary, and array parameters in either format. The session (greenery.serve.postgres)
and COPY (greenery.serve.postgres_copy) both write values through this module.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
from pygwire import messages as wire

from greenery.serve.postgres_catalog import PgError, element_type, pg_type_of, type_length, type_oid

_EPOCH = dt.datetime(2000, 1, 1)  # PostgreSQL's binary dates and times count from here
_EPOCH_DATE = dt.date(2000, 1, 1)


def _binary_timestamp(value: bytes) -> dt.datetime:
    """A binary timestamp: microseconds since 2000-01-01 (UTC for a timestamptz)."""
    return _EPOCH + dt.timedelta(microseconds=struct.unpack("!q", value)[0])


_BINARY_PARAMETERS: dict[int, Callable[[bytes], object]] = {
    type_oid("int2"): lambda b: struct.unpack("!h", b)[0],
    type_oid("int4"): lambda b: struct.unpack("!i", b)[0],
    type_oid("int8"): lambda b: struct.unpack("!q", b)[0],
    type_oid("oid"): lambda b: struct.unpack("!I", b)[0],
    type_oid("float4"): lambda b: struct.unpack("!f", b)[0],
    type_oid("float8"): lambda b: struct.unpack("!d", b)[0],
    type_oid("bool"): lambda b: b != b"\x00",
    type_oid("date"): lambda b: _EPOCH_DATE + dt.timedelta(days=struct.unpack("!i", b)[0]),
    type_oid("timestamp"): _binary_timestamp,
    type_oid("timestamptz"): _binary_timestamp,  # in UTC, the session's time zone
}


def binary_parameter(value: bytes, type_: int) -> object:
    """A bind parameter sent in binary, decoded; a text type's value is its UTF-8 text."""
    decode = _BINARY_PARAMETERS.get(type_)
    if decode is not None:
        return decode(value)
    if type_ in (0, type_oid("text"), type_oid("varchar"), type_oid("name")):
        return value.decode("utf-8")
    raise PgError("0A000", f"binary parameters of type {type_} are not supported: send them as text")


def array_items(value: bytes, binary: bool) -> list[bytes | None]:
    """The items of a one-dimensional array parameter, each still in the parameter's format."""
    return _binary_array(value) if binary else _text_array(value.decode("utf-8"))


# quoted or bare, then a comma; possessive (*+): a malformed array fails in linear time
_ARRAY_ITEM = r'\s*+(?:"((?:[^"\\]|\\.)*+)"\s*+|((?:[^,{}"\\]|\\.)*+)),'


def _text_array(text: str) -> list[bytes | None]:
    """The items of a one-dimensional array in PostgreSQL's text form: ``{a,"b, c",NULL}``."""
    body = re.sub(r"^\s*(\[[^\]]*\])+\s*=", "", text).strip()  # dimension decoration: [1:2]={…}
    if not (body.startswith("{") and body.endswith("}")):
        raise PgError("22P02", f'malformed array literal: "{text[:80]}"')
    inner = body[1:-1] + ","
    if not inner[:-1].strip():
        return []
    if not re.fullmatch(f"(?:{_ARRAY_ITEM})+", inner):
        if "{" in inner:
            raise PgError("0A000", "multi-dimensional array parameters are not supported")
        raise PgError("22P02", f'malformed array literal: "{text[:80]}"')
    return [
        None
        if not quoted and bare.strip().upper() == "NULL"
        else re.sub(r"\\(.)", r"\1", quoted or bare.strip()).encode()
        for quoted, bare in re.findall(_ARRAY_ITEM, inner)
    ]


def _binary_array(value: bytes) -> list[bytes | None]:
    """The items of a one-dimensional array in PostgreSQL's binary form (each still binary)."""
    try:
        dimensions = struct.unpack_from("!i", value)[0]
        if dimensions == 0:
            return []
        if dimensions != 1:
            raise PgError("0A000", "multi-dimensional array parameters are not supported")
        (size,) = struct.unpack_from("!i", value, 12)
        items: list[bytes | None] = []
        at = 20
        for _ in range(size):
            (length,) = struct.unpack_from("!i", value, at)
            items.append(None if length < 0 else value[at + 4 : at + 4 + length])
            at += 4 + max(length, 0)
        return items
    except struct.error:
        raise PgError("08P01", "insufficient data left in an array parameter") from None


def text_value(value: object) -> str:
    """A value in Postgres' text output format."""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ")
        return re.sub(r"([+-]\d\d):00$", r"\1", text)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta | pa.MonthDayNano):  # a duration, DuckDB's INTERVAL
        return _interval_text(*_interval_parts(value))
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, list):
        return "{" + ",".join(_array_item(v) for v in value) + "}"
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return str(value)


def _interval_text(months: int, days: int, micros: int) -> str:
    """An interval as PostgreSQL writes it (IntervalStyle postgres): ``1 year 2 mons 3 days
    -04:05:06.5``, each part that is not zero."""
    years = int(months / 12)  # toward zero, as PostgreSQL splits a negative interval
    months -= 12 * years
    parts = [
        f"{n} {unit}{'' if n == 1 else 's'}"
        for n, unit in ((years, "year"), (months, "mon"), (days, "day"))
        if n
    ]
    if micros or not parts:
        sign, micros = ("-" if micros < 0 else ""), abs(micros)
        seconds, fraction = divmod(micros, 1_000_000)
        clock = f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        parts.append(clock + (f".{fraction:06d}".rstrip("0") if fraction else ""))
    return " ".join(parts)


def _array_item(value: object) -> str:
    if value is None:
        return "NULL"
    text = text_value(value)
    if text == "" or re.search(r'[{},"\\\s]', text) or text.upper() == "NULL":
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _binary_numeric(value: decimal.Decimal | int) -> bytes:
    """PostgreSQL's binary numeric: how many base-10000 digits, the weight of the first, the sign,
    the display scale, then the digits (asyncpg reads every numeric in binary). The digits come
    from dividing the unscaled integer, its fraction padded to whole groups of four digits."""
    number = decimal.Decimal(value)
    if not number.is_finite():
        return struct.pack("!hhHh", 0, 0, 0xC000, 0)  # NaN
    negative, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite
    scale = max(0, -exponent)  # the display scale
    fraction_groups = -(-scale // 4)
    if exponent >= 0:  # an integer, as every count is: int() is exact and quicker than the digits
        magnitude = abs(int(number))
    else:
        magnitude = int("".join(map(str, digits))) * 10 ** (4 * fraction_groups + exponent)
    groups: list[int] = []
    while magnitude:
        magnitude, group = divmod(magnitude, 10_000)
        groups.append(group)
    weight = len(groups) - 1 - fraction_groups
    groups.reverse()
    while groups and groups[-1] == 0:  # trailing zero digits: the weight keeps their place
        groups.pop()
    header = struct.pack(
        "!hhHh", len(groups), weight if groups else 0, 0x4000 if negative and groups else 0, scale
    )
    return header + struct.pack(f"!{len(groups)}H", *groups)


_BINARY_VALUES: dict[int, Callable[[Any], bytes]] = {
    type_oid("numeric"): _binary_numeric,
    type_oid("bool"): lambda v: b"\x01" if v else b"\x00",
    type_oid("int2"): lambda v: struct.pack("!h", v),
    type_oid("int4"): lambda v: struct.pack("!i", v),
    type_oid("int8"): lambda v: struct.pack("!q", v),
    type_oid("oid"): lambda v: struct.pack("!I", v),
    type_oid("float4"): lambda v: struct.pack("!f", v),
    type_oid("float8"): lambda v: struct.pack("!d", v),
    type_oid("text"): lambda v: str(v).encode("utf-8"),
    type_oid("json"): lambda v: json.dumps(v, default=str).encode("utf-8"),
    type_oid("bytea"): lambda v: bytes(v),
    type_oid("date"): lambda v: struct.pack("!i", (v - _EPOCH_DATE).days),
    type_oid("timestamp"): lambda v: struct.pack("!q", _micros(v - _EPOCH)),
    type_oid("timestamptz"): lambda v: struct.pack(
        "!q", _micros(v.astimezone(dt.UTC).replace(tzinfo=None) - _EPOCH)
    ),
    type_oid("interval"): lambda v: _binary_interval(*_interval_parts(v)),
    type_oid("time"): lambda v: struct.pack(
        "!q", ((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond
    ),
}


def _interval_parts(value: dt.timedelta | pa.MonthDayNano) -> tuple[int, int, int]:
    """An interval as (months, days, microseconds): a duration is all microseconds."""
    if isinstance(value, dt.timedelta):
        return 0, 0, _micros(value)
    return value.months, value.days, value.nanoseconds // 1000


def _binary_interval(months: int, days: int, micros: int) -> bytes:
    return struct.pack("!qii", micros, days, months)


def _micros(delta: dt.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def encode_rows(
    table: pa.Table, formats: list[int], start: int = 0, stop: int | None = None
) -> Iterator[list[bytes | None]]:
    """The table's rows start..stop as DataRow columns, each in the format the client asked for."""
    part = table.slice(start, (stop - start) if stop is not None else None)
    encoders = [_encoder(field, formats[i]) for i, field in enumerate(table.schema)]
    columns = [column.to_pylist() for column in part.columns]
    for values in zip(*columns, strict=True):
        yield [None if v is None else encode(v) for v, encode in zip(values, encoders, strict=True)]


def _encoder(field: pa.Field, format_code: int) -> Callable[[Any], bytes]:
    if format_code == 0:
        return lambda v: text_value(v).encode("utf-8")
    oid = pg_type_of(field.type)
    element = element_type(oid)
    if element and (encode_item := _BINARY_VALUES.get(element)):
        return lambda items: _binary_array_value(items, element, encode_item)
    encode = _BINARY_VALUES.get(oid)
    if encode is None:
        raise PgError("0A000", f"binary format is not supported for column {field.name!r}: ask for text")
    return encode


def _binary_array_value(items: list[Any], element: int, encode: Callable[[Any], bytes]) -> bytes:
    """A one-dimensional array in PostgreSQL's binary form: dimensions, whether it holds a NULL,
    the items' type, its length and lower bound 1, then each item's length and bytes."""
    if not items:
        return struct.pack("!iiI", 0, 0, element)
    header = struct.pack("!iiIii", 1, int(None in items), element, len(items), 1)
    return header + b"".join(sized(None if v is None else encode(v)) for v in items)


def sized(value: bytes | None) -> bytes:
    """A binary value after its length, as arrays and binary COPY hold them: -1 for NULL."""
    return struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value


def result_formats(requested: list[int], columns: int) -> list[int]:
    """Bind's result format codes: none (all text), one (for every column) or one per column."""
    if not requested:
        return [0] * columns
    if len(requested) == 1:
        return requested * columns
    if len(requested) != columns:
        raise PgError(
            "08P01", f"bind message has {len(requested)} result formats but query has {columns} columns"
        )
    return requested


def row_description(table: pa.Table, formats: list[int]) -> wire.RowDescription:
    fields = []
    for column, format_code in zip(table.schema, formats, strict=True):
        oid = pg_type_of(column.type)
        fields.append(
            wire.FieldDescription(
                name=column.name,
                type_oid=oid,
                type_size=type_length(oid),
                type_modifier=-1,
                format_code=format_code,
            )
        )
    return wire.RowDescription(fields=fields)
