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

from mamori.dnsutil import textfile
from mamori.feeds.normalize import Entry, RejectedError, name
from mamori.feeds.parsers.base import FeedError

CRITICAL = ("root-servers.net", "gtld-servers.net", "arpa", "in-addr.arpa", "ip6.arpa")


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def read_allowlist(path: Path | None) -> set[str]:
    """The names of an allowlist file (one per line, ``*.name`` the same as ``name``,
    ``#`` comments); each covers the names below it.

    The file is decoded as feeds are (``dnsutil.textfile``). A line that is
    not a name is an error (FeedError naming file and line), not a line left
    out: the name it meant to protect would be blocked without a word.
    """
    if path is None:
        return set()
    try:
        text = textfile.decode(path.read_bytes())
    except OSError as e:
        raise FeedError(f"allowlist {path}: cannot read: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise FeedError(f"allowlist {path}: not valid {e.encoding.upper()}: {e.reason}") from None
    out = set()
    for no, line in enumerate(textfile.lines(text), 1):
        token = line.split("#", 1)[0].strip()
        if not token:
            continue
        why = textfile.bad_bytes(token)
        if why is None:
            try:
                out.add(name(token[2:] if token.startswith("*.") else token))
                continue
            except RejectedError as e:
                why = str(e)
        raise FeedError(f"allowlist {path}:{no}: {why}: {textfile.shown(token)}")
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
