"""What an analyst asks, turned into store lookups (shared by the CLI and the APIs)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mamori.pdns.model import type_code
from mamori.store.pdns_base import NO_FENCES, Fences, PdnsStore, Record
from mamori.store.pdns_keys import net_range


@dataclass(frozen=True)
class Ask:
    kind: str  # "rrset", "rdata-name", "rdata-ip"
    value: str  # name (with * wildcards), or address / CIDR / "lo-hi"
    rrtype: int | None = None
    bailiwick: str | None = None


def parse_rrset(arg: str) -> Ask:
    """``name[/type[/bailiwick]]`` (dnsdbq -r)."""
    name, _, rest = arg.partition("/")
    rtype, _, bw = rest.partition("/")
    return Ask("rrset", name, _type(rtype), bw or None)


def parse_rdata_name(arg: str) -> Ask:
    """``name[/type]`` (dnsdbq -n)."""
    name, _, rtype = arg.partition("/")
    return Ask("rdata-name", name, _type(rtype))


def parse_rdata_ip(arg: str) -> Ask:
    """An address, ``addr/prefix`` or ``addr,prefix`` (DNSDB), or ``lo-hi``."""
    value = arg.replace(",", "/")
    if "-" in value:
        lo, hi = value.split("-", 1)
        net_range(lo, hi)  # validates
    else:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"not an address, network or range: {arg!r}") from None
    return Ask("rdata-ip", value)


def _type(text: str) -> int | None:
    if not text or text.upper() == "ANY":
        return None
    return type_code(text)


def is_address(q: str) -> bool:
    """An address, a network (``/`` or DNSDB's ``,``), or a ``lo-hi`` range?"""
    try:
        ipaddress.ip_network(q.replace(",", "/"), strict=False)
    except ValueError:
        return "-" in q and all(is_address(x) for x in q.split("-", 1))
    return True


def name_or_address(
    store: PdnsStore,
    q: str,
    rrtype: int | None = None,
    limit: int = 10000,
    fences: Fences = NO_FENCES,
) -> list[Record]:
    """What an analyst means by "look this up": the records of an address, network or
    range; or of a name, as owner and as rdata. Deduplicated, most recently seen first.
    *fences*: time fences (inclusive, see ``Fences``)."""
    if is_address(q):
        records = run(store, parse_rdata_ip(q), fences, limit=limit)
        return [r for r in records if rrtype is None or r.rrtype == rrtype]
    by_name = store.rrset(q, rrtype, fences=fences, limit=limit)
    by_data = store.rdata_name(q, rrtype, fences, limit=limit)
    merged = {(r.rrname, r.rrtype, r.rdata, r.bailiwick): r for r in [*by_name, *by_data]}
    return sorted(merged.values(), key=lambda r: (-r.time_last, r.rrname, r.rdata))


def run(
    store: PdnsStore, ask: Ask, fences: Fences = NO_FENCES, limit: int = 10000, offset: int = 0
) -> list[Record]:
    if ask.kind == "rrset":
        return store.rrset(ask.value, ask.rrtype, ask.bailiwick, fences, limit, offset)
    if ask.kind == "rdata-name":
        return store.rdata_name(ask.value, ask.rrtype, fences, limit, offset)
    lo_hi = ask.value.split("-", 1)
    lo, hi = net_range(lo_hi[0], lo_hi[1] if len(lo_hi) == 2 else None)
    return store.rdata_ip(lo, hi, fences, limit, offset)
