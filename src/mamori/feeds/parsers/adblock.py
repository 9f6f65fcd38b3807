"""Adblock / AdGuard / uBlock network rules, as far as they mean something for DNS.

``||example.com^`` blocks the name and its subdomains, ``|example.com^``
(AdGuard's exact form) the name alone; ``@@||...^`` is an exception (allow).
Options after ``$`` are ignored, except those that make a rule page-specific
or not a block (``domain=``, ``badfilter``, ``redirect``...): such rules are
skipped, as are cosmetic rules (``##``) and URL-path rules, which a DNS
firewall cannot apply. A bare ``example.com`` line (uBlock's
simple form) blocks that name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mamori.feeds.normalize import RejectedError
from mamori.feeds.parsers.base import ParseResult, SkipLineError, Tokens, run

_RULE = re.compile(r"^(@@)?(\|\|?)?([^\^$|/]+)\^?(?:\$(.*))?$")
_NOT_DNS_OPTIONS = (
    "domain=",
    "badfilter",
    "redirect",
    "removeparam",
    "csp",
    "replace",
    "dnsrewrite",
)


def _tokens(text: str) -> Tokens:
    if "##" in text or "#@#" in text or "#?#" in text or "#$#" in text:
        raise SkipLineError("cosmetic rule")
    m = _RULE.match(text)
    if not m:
        if "/" in text:
            raise SkipLineError("URL rule (not a DNS rule)")
        raise RejectedError("not a network rule")
    exception, anchored, host, options = m.groups()
    if options and any(o.strip().startswith(_NOT_DNS_OPTIONS) for o in options.split(",")):
        raise SkipLineError("page-specific or non-blocking options")
    if "*" in host.strip("*."):
        raise SkipLineError("pattern with '*' inside the name")
    return [(host, bool(exception), anchored == "||")]


def parse(lines: Iterable[str]) -> ParseResult:
    return run(lines, _tokens, comments=("!", "[", "#"))
