"""A loaded policy zone back to wire records, fast, for AXFR and IXFR.

The compact index keeps an action code per QNAME rule; its record is the
canonical ``CNAME`` of the action (``CNAME .`` for NXDOMAIN ...) with the
zone's TTL for simple rules. Owner names are the index keys themselves
(lowercased wire names) with the zone origin appended: no dnspython per
record, so a million rules render in about a second.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import dns.name
import dns.rdatatype

from mamori.policy.model import Action, LocalRecord, Rule
from mamori.policy.zone import CODE_ACTIONS, COMPLEX_BASE, LoadedZone

_RR = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_CNAME = dns.rdatatype.CNAME
_TARGETS = {
    Action.NXDOMAIN: b"\x00",
    Action.NODATA: b"\x01*\x00",
    Action.PASSTHRU: b"\x0crpz-passthru\x00",
    Action.DROP: b"\x08rpz-drop\x00",
    Action.TCP_ONLY: b"\x0crpz-tcp-only\x00",
}
DEFAULT_TTL = 300


def rr(owner: bytes, rdtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + _RR.pack(rdtype, 1, ttl, len(rdata)) + rdata


def soa_rr(zone: LoadedZone) -> bytes:
    assert zone.soa is not None
    origin = dns.name.from_text(zone.name).to_wire()
    assert origin is not None
    return rr(
        origin,
        dns.rdatatype.SOA,
        zone.soa.ttl,
        _rdata_wire(zone.soa, dns.name.from_text(zone.name)),
    )


def zone_rrs(zone: LoadedZone) -> Iterator[bytes]:
    """Every record of the zone except the SOA, as uncompressed wire RRs."""
    origin_name = dns.name.from_text(zone.name)
    origin = origin_name.to_wire()
    assert origin is not None
    ttl = zone.simple_ttl if zone.simple_ttl is not None else DEFAULT_TTL
    simple = {code: rr_tail(_CNAME, ttl, _TARGETS[a]) for code, a in CODE_ACTIONS.items()}
    yield from apex_ns_rrs(zone)
    for wild, index in ((False, zone.exact), (True, zone.wild)):
        prefix = b"\x01*" if wild else b""
        for key, code in index.items():
            owner = prefix + key[:-1] + origin
            if code < COMPLEX_BASE:
                yield owner + simple[code]
                continue
            rule = zone.complex[code - COMPLEX_BASE]
            yield from _rule_rrs(owner, rule, ttl, origin_name)
    for rule in zone.other:
        other_owner = dns.name.from_text(rule.owner, origin=origin_name).to_wire()
        assert other_owner is not None
        yield from _rule_rrs(other_owner, rule, ttl, origin_name)


def apex_ns_rrs(zone: LoadedZone) -> Iterator[bytes]:
    origin_name = dns.name.from_text(zone.name)
    origin = origin_name.to_wire()
    assert origin is not None
    for r in zone.apex_ns:
        yield rr(origin, r.rdtype, r.ttl, _rdata_wire(r, origin_name))


def rr_tail(rdtype: int, ttl: int, rdata: bytes) -> bytes:
    return _RR.pack(rdtype, 1, ttl, len(rdata)) + rdata


def _rule_rrs(owner: bytes, rule: Rule, ttl: int, origin: dns.name.Name) -> Iterator[bytes]:
    if not rule.zone:
        return  # a removed rule's slot
    if rule.records:
        for r in rule.records:
            yield owner + rr_tail(r.rdtype, r.ttl, _rdata_wire(r, origin))
        return
    target = _TARGETS.get(rule.action)
    if target is not None:
        yield owner + rr_tail(_CNAME, ttl, target)


def _rdata_wire(r: LocalRecord, origin: dns.name.Name) -> bytes:
    data = r.rdata.to_wire(origin=origin)
    assert data is not None
    return data
