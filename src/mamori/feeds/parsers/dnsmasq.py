"""dnsmasq blocking lines: ``address=/name/...``, ``server=/name/``, ``local=/name/``."""

from __future__ import annotations

from collections.abc import Iterable

from mamori.feeds.normalize import RejectedError
from mamori.feeds.parsers.base import ParseResult, Tokens, run


def _tokens(text: str) -> Tokens:
    key, sep, rest = text.partition("=")
    if not sep or key.strip() not in ("address", "server", "local"):
        raise RejectedError("not an address=/server=/local= line")
    parts = rest.split("/")
    if len(parts) < 3 or parts[0]:
        raise RejectedError("expected =/name/...")
    # dnsmasq matches the names and everything below them
    return [(n, False, True) for n in parts[1:-1] if n]


def parse(lines: Iterable[str]) -> ParseResult:
    return run(lines, _tokens)
