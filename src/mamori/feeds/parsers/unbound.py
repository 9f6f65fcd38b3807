"""Unbound ``local-zone: "name" <type>`` lines (a local zone covers its subtree)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from mamori.feeds.normalize import RejectedError
from mamori.feeds.parsers.base import ParseResult, SkipLineError, Tokens, run

_ZONE = re.compile(r'^local-zone:\s*"?([^"\s]+)"?\s+(\S+)')
_BLOCKING = {
    "always_nxdomain",
    "always_refuse",
    "refuse",
    "static",
    "deny",
    "always_null",
    "redirect",
}


def _tokens(text: str) -> Tokens:
    if text.startswith(("local-data:", "local-data-ptr:", "server:")):
        raise SkipLineError("not a zone declaration")
    m = _ZONE.match(text)
    if not m:
        raise RejectedError("not a local-zone line")
    if m.group(2) not in _BLOCKING:
        raise SkipLineError(f"local-zone type {m.group(2)} does not block")
    return [(m.group(1), False, True)]


def parse(lines: Iterable[str]) -> ParseResult:
    return run(lines, _tokens)
