"""Newly observed domains (NOD): registrable domains first seen in our passive DNS.

A registrable domain (the Public Suffix List's "private suffix": ``example.co.jp``,
``someone.github.io``) is *new* when the first observation of it or of any name
below it (the least ``time_first`` in passive DNS; NXDOMAIN answers do not count)
lies within ``[nod] window`` of now.

Warm-up. A store that began observing an hour ago has seen every name for the first
time within the last hour: it must not call them all new. The store's first
observation (``PdnsStore.observed_since``) starts a warm-up of ``[nod] warmup``
seconds (default: the window). Until it ends nothing is new; the names seen during
it are the baseline. After it, a domain is new when first seen at or after
``max(now - window, observed_since + warmup)``: a name first seen during the
warm-up is never new, even when that was less than a window ago.

The DNSBL code of a new domain says its age, as Spamhaus' ZRD does:
``127.0.2.N`` for a domain first seen less than N hours ago (N - 1 <= age < N),
N >= 2 (the first two hours share ``127.0.2.2``), at most 254: with the default
24-hour window the codes run from ``127.0.2.2`` to ``127.0.2.24``.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

from mamori.store.pdns_base import PdnsStore

HOUR = 3600
MAX_CANDIDATES = 1_000_000  # names first seen in one window read from the store at most
# Names a zone file and a DNSBL can carry: LDH labels (and "_"), lowercase, trailing dot
_NAME = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)+")
_NOT_DOMAINS = ("arpa.",)  # reverse mapping (in-addr.arpa, ip6.arpa) and infrastructure


@dataclass(frozen=True)
class NewDomain:
    """A newly observed registrable domain.

    ``domain``: lowercase A-labels with the trailing dot (``example.com.``);
    ``first_seen``: its first observation, UNIX seconds; ``names``: how many names
    at or below it were first observed since the view's ``since``.
    """

    domain: str
    first_seen: int
    names: int

    def age_hours(self, now: int) -> int:
        """N of the DNSBL code ``127.0.2.N``: first seen less than N hours ago, 2..254."""
        return min(254, max(2, max(0, now - self.first_seen) // HOUR + 1))

    def code(self, now: int) -> str:
        return f"127.0.2.{self.age_hours(now)}"


@dataclass(frozen=True)
class NodView:
    """What is new at ``now`` (UNIX seconds).

    ``since``: domains first seen at or after it are new; ``observed_since``: the
    store's first observation (None: an empty store); ``warm_until``: the end of the
    warm-up (None: an empty store); ``domains``: the new ones, earliest first.
    """

    now: int
    since: int
    observed_since: int | None
    warm_until: int | None
    domains: tuple[NewDomain, ...]

    @property
    def warming(self) -> bool:
        """True while the warm-up runs (or the store is empty): nothing is new."""
        return self.warm_until is None or self.now < self.warm_until


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # the list the package ships (ICANN and private sections)


def registrable(name: str) -> str | None:
    """The registrable domain of *name* (presentation form, any case, trailing dot or
    not) with a trailing dot; None for a public suffix itself, a reverse-mapping name
    (``.arpa``) or a name a zone file cannot carry."""
    n = name.lower().rstrip(".") + "."
    if n == "." or n.endswith(_NOT_DOMAINS) or not _NAME.fullmatch(n):
        return None
    reg = _psl().privatesuffix(n[:-1])
    return None if reg is None else reg + "."


def find_new(
    store: PdnsStore, window: int, warmup: int, now: int | None = None, observed: int | None = None
) -> NodView:
    """The newly observed domains at *now* (UNIX seconds; default: the clock) for a
    *window* and *warmup* in seconds (see the module's docstring). Reads the store:
    its first observation (unless given as *observed*: a caller that saw the warm-up
    end keeps it), the names first seen since the bound, then each of their
    registrable domains' first observation."""
    now = int(time.time()) if now is None else now
    if observed is None:
        observed = store.observed_since()
    if observed is None:
        return NodView(now, now, None, None, ())
    warm_until = observed + warmup
    since = max(now - window, warm_until)
    if now < warm_until:
        return NodView(now, since, observed, warm_until, ())
    by_domain: dict[str, list[int]] = {}  # domain -> [least first seen, names]
    for name, first in store.names_first_seen_since(since, MAX_CANDIDATES):
        reg = registrable(name)
        if reg is None:
            continue
        slot = by_domain.setdefault(reg, [first, 0])
        slot[0] = min(slot[0], first)
        slot[1] += 1
    out = []
    for domain, (first, names) in by_domain.items():
        earliest = store.earliest_below(domain)  # names below it seen before `since`?
        if earliest is not None and earliest >= since:
            out.append(NewDomain(domain, min(first, earliest), names))
    out.sort(key=lambda d: (d.first_seen, d.domain))
    return NodView(now, since, observed, warm_until, tuple(out))


# ------------------------------------------------------------------ publishing
def zone_lines(domains: Iterable[str], action: str, address: str = "") -> list[str]:
    """The policy zone's rules (relative to its origin) for new *domains*: the domain
    and every name below it. *action* ``log`` and ``block``: NXDOMAIN (``log`` zones
    are applied with policy ``disabled``: only logged); ``warn``: the block page's
    *address* (A, or AAAA for an IPv6 address)."""
    rdata = "CNAME ."
    if action == "warn":
        rdata = f"{'AAAA' if ':' in address else 'A'} {address}"
    out = []
    for d in sorted(domains):
        owner = d.rstrip(".")
        out.append(f"{owner} {rdata}")
        out.append(f"*.{owner} {rdata}")
    return out


def entries_text(domains: Iterable[NewDomain], now: int) -> str:
    """The DNSBL entries file (feeds/publish/dnsbl_data.py's format): each domain and
    the names below it, with its own category ``nod-N`` (code ``127.0.2.N``)."""
    lines = ["# feed nod category nod"]
    for d in sorted(domains, key=lambda x: x.domain):
        name, cat = d.domain.rstrip("."), f"nod-{d.age_hours(now)}"
        lines.append(f"domain\t{name}\t{cat}")
        lines.append(f"wildcard\t{name}\t{cat}")
    return "\n".join(lines) + "\n"
