"""Guards against catastrophic false positives before anything is listed.

Never listed: a public suffix itself (``duckdns.org``, ``co.uk``: listing one
would block every name below it), the critical names of the DNS (root
servers, ``arpa``), and names in the feed's allowlist file. Everything that
is dropped is reported with the reason.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from publicsuffixlist import PublicSuffixList

from mamori.feeds.normalize import Entry, RejectedError, name

CRITICAL = ("root-servers.net", "gtld-servers.net", "arpa", "in-addr.arpa", "ip6.arpa")


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def read_allowlist(path: Path | None) -> set[str]:
    if path is None:
        return set()
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            try:
                out.add(name(text))
            except RejectedError:
                continue
    return out


def refusal(e: Entry, allow: set[str]) -> str | None:
    """Why *e* must not be listed (None: it may)."""
    if e.kind not in ("domain", "wildcard"):
        return None
    value = e.value
    if _psl().is_public(value):
        return f"{value} is a public suffix"
    for critical in CRITICAL:
        if value == critical or value.endswith("." + critical):
            return f"{value} is critical DNS infrastructure"
    labels = value.split(".")
    for i in range(len(labels)):
        if ".".join(labels[i:]) in allow:
            return f"{value} is allowlisted"
    return None
