"""Shapes of client SQL that sqlglot's parser takes exponential or quadratic time over.

Checked before client text is parsed (a where filter, the SQL API, the Postgres endpoint): one
linear pass over the characters, strings and quoted names skipped. Measured on this machine
(sqlglot 30): ``array[`` nested 20 deep (164 characters) took 8.3 s to parse and each level
doubles it; 800 subscripts in a row (2,400 characters) 2 s.
"""

from __future__ import annotations

MAX_BRACKET_DEPTH = 8  # `[` inside `[`: 0.01 s to parse at this depth
MAX_BRACKETS = 200  # `[` in one statement or filter


class TooComplex(ValueError):
    """Client SQL of a shape the parser cannot afford (the message says which)."""


def check_brackets(text: str) -> None:
    """TooComplex if square brackets outside strings nest deeper than MAX_BRACKET_DEPTH or
    number more than MAX_BRACKETS."""
    if "[" not in text:  # most SQL: no character to walk through (the server checks every statement)
        return
    depth = deepest = count = 0
    quote = ""
    for char in text:
        if quote:
            if char == quote:
                quote = ""  # a doubled quote closes and opens again: same state after both
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth, count = depth + 1, count + 1
            deepest = max(deepest, depth)
        elif char == "]":
            depth = max(depth - 1, 0)
    if deepest > MAX_BRACKET_DEPTH:
        raise TooComplex(f"square brackets nested {deepest} deep (at most {MAX_BRACKET_DEPTH})")
    if count > MAX_BRACKETS:
        raise TooComplex(f"{count} square brackets (at most {MAX_BRACKETS})")
