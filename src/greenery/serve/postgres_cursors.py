"""SQL cursors over the Postgres endpoint: DECLARE, FETCH, MOVE and CLOSE, as PostgreSQL reads them.

psycopg's and psycopg2's named cursors, and psqlODBC (which Tableau's PostgreSQL connector
reads through: ``declare "SQL_CUR…" cursor with hold for …; fetch 100 in "SQL_CUR…"``), read an
answer in pieces this way. The answer is computed whole when the cursor is declared (MetricFlow
answers are), the session holds it, and each FETCH hands out the rows its direction names from
the cursor's position: 0 before the first row, 1…n on a row, n + 1 after the last, as in
PostgreSQL. This module reads the statements and does that arithmetic; the session
(greenery.serve.postgres) keeps the cursors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from greenery.serve.postgres_catalog import PgError

_IDENTIFIER = r'"(?:[^"]|"")+"|[A-Za-z_][\w$]*'
_DECLARE = re.compile(
    rf"^\s*declare\s+(?P<name>{_IDENTIFIER})\s+(?P<options>(?:(?:binary|insensitive|asensitive|"
    r"no\s+scroll|scroll)\s+)*)cursor\s+(?:(?P<hold>with|without)\s+hold\s+)?for\s+(?P<query>.+)$",
    re.I | re.S,
)
_TOKEN = re.compile(r'"(?:[^"]|"")*"|[^\s;]+')
_COUNT = re.compile(r"[-+]?\d+")
_NAMED_DIRECTIONS = {  # a one-word direction: (kind, count)
    "next": ("forward", 1),
    "prior": ("backward", 1),
    "first": ("absolute", 1),
    "last": ("absolute", -1),
    "all": ("forward", None),
    "forward": ("forward", 1),
    "backward": ("backward", 1),
}


@dataclass(frozen=True)
class Declaration:
    """A DECLARE: the cursor's name, its query, and how it may be read."""

    name: str
    query: str
    hold: bool  # WITH HOLD: outlives its transaction
    scroll: bool  # False for NO SCROLL: it only moves forward


@dataclass(frozen=True)
class Fetch:
    """A FETCH or MOVE: which cursor, which way, how far (None: ALL)."""

    name: str
    move: bool  # MOVE: the position changes, no row is sent
    kind: str  # forward, backward, absolute, relative
    count: int | None


def identifier(token: str) -> str:
    """A name as PostgreSQL reads it: a quoted one as written, anything else lower-cased."""
    if token.startswith('"'):
        return token[1:-1].replace('""', '"')
    return token.lower()


def declaration(text: str) -> Declaration:
    match = _DECLARE.match(text)
    if match is None:
        raise PgError(
            "42601",
            f"syntax error in {text.strip()[:80]}: DECLARE name [SCROLL] CURSOR [WITH HOLD] FOR query",
        )
    options = match.group("options").lower().split()
    if "binary" in options:
        raise PgError(
            "0A000", "BINARY cursors are not supported: ask for binary results in the extended protocol"
        )
    return Declaration(
        name=identifier(match.group("name")),
        query=match.group("query").strip().rstrip(";"),
        hold=(match.group("hold") or "").lower() == "with",
        scroll="no" not in options,
    )


def fetch_request(text: str) -> Fetch:
    """FETCH or MOVE ``[direction] [FROM | IN] name``."""
    tokens = _TOKEN.findall(text)
    word = tokens[0].lower()
    if len(tokens) < 2:
        raise PgError("42601", f"syntax error at end of input: {word.upper()} needs a cursor name")
    name, direction = identifier(tokens[-1]), [t.lower() for t in tokens[1:-1]]
    if direction and direction[-1] in ("from", "in"):
        direction.pop()
    kind, count = _direction(direction, text)
    if count is not None and count < 0 and kind in ("forward", "backward"):
        kind, count = ("backward" if kind == "forward" else "forward"), -count
    return Fetch(name, word == "move", kind, count)


def _direction(words: list[str], text: str) -> tuple[str, int | None]:
    if not words:
        return "forward", 1
    if len(words) == 1 and words[0] in _NAMED_DIRECTIONS:
        return _NAMED_DIRECTIONS[words[0]]
    if len(words) == 1 and _COUNT.fullmatch(words[0]):
        return "forward", int(words[0])
    if len(words) == 2 and words[0] in ("absolute", "relative") and _COUNT.fullmatch(words[1]):
        return words[0], int(words[1])
    if len(words) == 2 and words[0] in ("forward", "backward"):
        if words[1] == "all":
            return words[0], None
        if _COUNT.fullmatch(words[1]):
            return words[0], int(words[1])
    raise PgError("42601", f"syntax error in {text.strip()[:80]}: an unknown FETCH direction")


def fetched(position: int, rows: int, fetch: Fetch, scroll: bool) -> tuple[list[int], int]:
    """The rows a FETCH returns from `position` (0-based indexes, in the order sent) and the
    position after it, for an answer of `rows` rows (PostgreSQL's DoPortalRunFetch)."""
    count = rows + 1 if fetch.count is None else fetch.count
    if fetch.kind == "forward" and count > 0:  # rows position + 1 … position + count
        returned = list(range(position, min(position + count, rows)))
        after = position + count if position + count <= rows else rows + 1
    elif fetch.kind == "backward" and count > 0:  # rows position - 1 … position - count
        returned = list(range(position - 2, max(position - count, 1) - 2, -1))
        after = max(position - count, 0)
    else:  # one row at most: absolute, relative, or the current row (forward 0, backward 0)
        target = {
            "absolute": count if count >= 0 else rows + 1 + count,
            "relative": position + count,
        }.get(fetch.kind, position)
        after = min(max(target, 0), rows + 1)
        returned = [after - 1] if 1 <= after <= rows else []
    if not scroll and (fetch.kind == "backward" or after < position):
        raise PgError("55000", "cursor can only scan forward: declare it with SCROLL to move backward")
    return returned, after


def close_target(text: str) -> str | None:
    """The cursor CLOSE names; None for CLOSE ALL."""
    tokens = _TOKEN.findall(text)
    if len(tokens) != 2:
        raise PgError("42601", f"syntax error in {text.strip()[:80]}: CLOSE name, or CLOSE ALL")
    return None if tokens[1].lower() == "all" else identifier(tokens[1])
