"""Feed formats, one module each; ``parse(format, lines)`` picks the parser."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from mamori.feeds.parsers import (
    adblock,
    bind,
    csvfeed,
    dnsmasq,
    domains,
    hosts,
    iplist,
    rpz,
    stix,
    unbound,
)
from mamori.feeds.parsers.base import FeedError, FeedUnreachableError, ParseResult, check_budget

PARSERS: dict[str, Callable[[Iterable[str]], ParseResult]] = {
    "hosts": hosts.parse,
    "domains": domains.parse,
    "wildcards": domains.parse,
    "adblock": adblock.parse,
    "dnsmasq": dnsmasq.parse,
    "unbound": unbound.parse,
    "bind": bind.parse,
    "csv": csvfeed.parse,
    "ips": iplist.parse,
    "rpz": rpz.parse,
    "stix": stix.parse,
}
# "taxii" and "misp" are read by feeds.remote (not line by line), then parsed by
# stix.parse_objects / misp.parse_events.

__all__ = [
    "PARSERS",
    "FeedError",
    "FeedUnreachableError",
    "ParseResult",
    "check_budget",
    "parse",
]


def parse(fmt: str, lines: Iterable[str], columns: Sequence[str] = ()) -> ParseResult:
    """Parse *lines* (with or without their ends) as *fmt*; *columns* names the
    columns of a CSV file without a header (``[[feed]] columns``)."""
    if fmt == "csv":
        return csvfeed.parse(lines, columns)
    try:
        parser = PARSERS[fmt]
    except KeyError:
        raise FeedError(f"unknown feed format {fmt!r} (known: {', '.join(PARSERS)})") from None
    return parser(lines)
