"""IP/CIDR lists: one address or network per line (names are rejected)."""

from __future__ import annotations

from collections.abc import Iterable

from mamori.feeds.normalize import RejectedError, entry
from mamori.feeds.parsers.base import ParseResult, Tokens, run


def _tokens(text: str) -> Tokens:
    token = text.split("#", 1)[0].split(";", 1)[0].strip()
    if entry(token).kind not in ("ip", "cidr"):
        raise RejectedError("not an IP address or network")
    return [(token, False, False)]


def parse(lines: Iterable[str]) -> ParseResult:
    return run(lines, _tokens, comments=("#", ";"))
