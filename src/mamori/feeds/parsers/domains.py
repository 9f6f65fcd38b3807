"""Plain lists: one name, ``*.name`` wildcard, or address per line."""

from __future__ import annotations

from collections.abc import Iterable

from mamori.feeds.normalize import RejectedError
from mamori.feeds.parsers.base import ParseResult, Tokens, run


def _tokens(text: str) -> Tokens:
    fields = text.split("#", 1)[0].split()
    if len(fields) != 1:
        raise RejectedError("more than one token on the line")
    return [(fields[0], False, False)]


def parse(lines: Iterable[str]) -> ParseResult:
    return run(lines, _tokens, comments=("#", "!", ";"))
