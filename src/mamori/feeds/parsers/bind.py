"""BIND blocklist stubs: ``zone "name" { type master; file "null.zone.file"; };``."""

from __future__ import annotations

import re
from collections.abc import Iterable

from mamori.feeds.normalize import RejectedError
from mamori.feeds.parsers.base import ParseResult, Tokens, run

_ZONE = re.compile(r'^zone\s+"([^"]+)"')


def _tokens(text: str) -> Tokens:
    m = _ZONE.match(text)
    if not m:
        raise RejectedError("not a zone statement")
    return [(m.group(1), False, True)]  # the zone covers its subtree


def parse(lines: Iterable[str]) -> ParseResult:
    return run(lines, _tokens, comments=("#", "//"))
