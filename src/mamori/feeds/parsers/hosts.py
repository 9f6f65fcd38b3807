"""Hosts files: ``0.0.0.0 name [name ...]`` (the address is ignored)."""

from __future__ import annotations

from collections.abc import Iterable

from mamori.feeds.normalize import RejectedError
from mamori.feeds.parsers.base import ParseResult, SkipLineError, Tokens, run

LOCAL_NAMES = {
    "localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost",
    "ip6-loopback", "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters",
    "ip6-allhosts", "0.0.0.0",
}  # fmt: skip


def _tokens(text: str) -> Tokens:
    fields = text.split("#", 1)[0].split()
    if len(fields) < 2:
        raise RejectedError("a hosts line needs an address and a name")
    names = [n for n in fields[1:] if n.lower() not in LOCAL_NAMES]
    if not names:
        raise SkipLineError("loopback/local name")
    return [(n, False, False) for n in names]


def parse(lines: Iterable[str]) -> ParseResult:
    return run(lines, _tokens)
