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
from mamori.policy.rules import CODE_ACTIONS, COMPLEX_BASE, LoadedZone

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


class Renderer:
    """Wire records of one zone's index entries (shared state computed once)."""

    def __init__(self, zone: LoadedZone) -> None:
        self.zone = zone
        self.origin_name = dns.name.from_text(zone.name)
        origin = self.origin_name.to_wire()
        assert origin is not None
        self.origin = origin
        self.ttl = zone.simple_ttl if zone.simple_ttl is not None else DEFAULT_TTL
        self.simple = {c: rr_tail(_CNAME, self.ttl, _TARGETS[a]) for c, a in CODE_ACTIONS.items()}

    def entry(self, key: bytes, wild: bool, code: int) -> list[bytes]:
        """The records of one QNAME index entry (key: wire name, below the ``*``)."""
        owner = (b"\x01*" if wild else b"") + key[:-1] + self.origin
        if code < COMPLEX_BASE:
            return [owner + self.simple[code]]
        rule = self.zone.complex[code - COMPLEX_BASE]
        if rule.typed:  # its owner is NAME.mamori-qtype, not the key's name
            typed_owner = dns.name.from_text(rule.owner, origin=self.origin_name).to_wire()
            assert typed_owner is not None
            owner = typed_owner.lower()
        return list(_rule_rrs(owner, rule, self.ttl, self.origin_name))

    def others(self) -> Iterator[bytes]:
        """Records of the rules outside the QNAME index (IP and NS triggers)."""
        for rule in self.zone.other:
            owner = dns.name.from_text(rule.owner, origin=self.origin_name).to_wire()
            assert owner is not None
            yield from _rule_rrs(owner, rule, self.ttl, self.origin_name)


def zone_rrs(zone: LoadedZone) -> Iterator[bytes]:
    """Every record of the zone except the SOA, as uncompressed wire RRs."""
    r = Renderer(zone)
    yield from apex_ns_rrs(zone)
    origin = r.origin
    simple = r.simple
    for wild, index in ((False, zone.exact), (True, zone.wild)):
        prefix = b"\x01*" if wild else b""
        for key, code in index.items():
            if code < COMPLEX_BASE:
                yield prefix + key[:-1] + origin + simple[code]  # the bulk: inline
            else:
                yield from r.entry(key, wild, code)
    yield from r.others()


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
