"""Answers the policy gives instead of the upstream's (NXDOMAIN, NODATA, Local-Data, CNAME).

Built once with dnspython per (question, rule) and kept as cache entries for
the policy version in force, so a repeated blocked query costs what a cache
hit costs. NXDOMAIN/NODATA bodies are shared by every name of a zone (the
zone's SOA, BIND's add-soa). A ``cname:TARGET`` zone policy overrides the
rules' records; ``CNAME *.garden.example.`` rewrites to ``<qname>.garden.example.``.
"""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from mamori.dnsutil import wire
from mamori.policy.engine import Policy
from mamori.policy.model import Action, LocalRecord, Match
from mamori.resolver.cache import Entry, entry_from_response

MAX_ANSWERS = 100_000
FOREVER = 7 * 86400


class PolicyAnswers:
    """Memo of synthesised answers for one policy version."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.entries: dict[tuple[bytes, int], Entry] = {}
        self.shared: dict[tuple[int, Action], Entry] = {}

    def get(self, match: Match, key: bytes, now: float) -> Entry:
        rule = match.rule
        if match.action in (Action.NXDOMAIN, Action.NODATA):
            # Same body for every name: the policy zone's SOA, uncompressed.
            tkey = (rule.zone_index, match.action)
            shared = self.shared.get(tkey)
            if shared is None or now >= shared.expires:
                shared = self.shared[tkey] = self._negative(match, now)
            return shared
        memo_key = (key, id(match))
        entry = self.entries.get(memo_key)
        if entry is None or now >= entry.expires:
            if len(self.entries) >= MAX_ANSWERS:
                self.entries.clear()
            entry = self.entries[memo_key] = self._synthesise(match, key, now)
        return entry

    def cname_target(self, match: Match, key: bytes) -> dns.name.Name | None:
        """Where a Local-Data CNAME rewrite of *key* points (None: not a CNAME rewrite)."""
        if match.action is not Action.LOCAL_DATA:
            return None
        rule = match.rule
        override = self.policy.override_cname(rule.zone_index)
        records = (override,) if override is not None else rule.records
        cname = next((x for x in records if x.rdtype == dns.rdatatype.CNAME), None)
        if cname is None:
            return None
        return _substitute(cname, dns.name.from_wire(key[:-5], 0)[0])

    def _negative(self, match: Match, now: float) -> Entry:
        """NXDOMAIN / NODATA answer body shared by all names of a zone (add-soa)."""
        zi = match.rule.zone_index
        soa = self.policy.soa[zi]
        cap = self.policy.settings[zi].max_policy_ttl or FOREVER
        rcode = wire.NXDOMAIN if match.action is Action.NXDOMAIN else wire.NOERROR
        body = b""
        ttl_offsets: list[int] = []
        ttls: list[int] = []
        if soa is not None:
            owner = _wire(dns.name.from_text(self.policy.zones[zi].name).to_wire())
            rdata = _wire(soa.rdata.to_wire())  # no compression: valid after any question
            minimum: int = soa.rdata.minimum  # type: ignore[attr-defined]
            ttl = min(soa.ttl, minimum, cap)
            body = (
                owner + struct.pack("!HHIH", wire.TYPE_SOA, wire.CLASS_IN, ttl, len(rdata)) + rdata
            )
            ttl_offsets, ttls = [len(owner) + 4], [ttl]
        lifetime = ttls[0] if ttls else 60
        flags = wire.QR | wire.RA | rcode
        return Entry(
            body,
            ttl_offsets,
            ttls,
            flags,
            (0, 1 if ttls else 0, 0),
            len(body),
            now,
            lifetime,
            0,
            rcode,
            "",
        )

    def _synthesise(self, match: Match, key: bytes, now: float) -> Entry:
        rule = match.rule
        qname = dns.name.from_wire(key[:-5], 0)[0]
        qtype = (key[-5] << 8) | key[-4]
        q = dns.message.Message(id=0)
        q.flags = dns.flags.RD
        q.find_rrset(
            q.question, qname, dns.rdataclass.IN, dns.rdatatype.RdataType.make(qtype), create=True
        )
        r = dns.message.make_response(q)
        r.flags |= dns.flags.RA
        settings = self.policy.settings[rule.zone_index]
        cap = settings.max_policy_ttl or FOREVER
        soa = self.policy.soa[rule.zone_index]
        action = match.action
        if action is Action.LOCAL_DATA:
            records = rule.records
            override = self.policy.override_cname(rule.zone_index)
            if override is not None:
                records = (override,)
            cname = next((x for x in records if x.rdtype == dns.rdatatype.CNAME), None)
            if cname is not None:
                target = _substitute(cname, qname)
                if target is None:
                    r.set_rcode(dns.rcode.YXDOMAIN)  # substituted name too long (RFC 6672)
                else:
                    r.answer.append(
                        dns.rrset.from_text(
                            qname, min(cname.ttl, cap), "IN", "CNAME", target.to_text()
                        )
                    )
            else:
                for rec in records:
                    if qtype in (rec.rdtype, dns.rdatatype.ANY):
                        rrset = r.find_rrset(
                            r.answer,
                            qname,
                            dns.rdataclass.IN,
                            dns.rdatatype.RdataType.make(rec.rdtype),
                            create=True,
                        )
                        rrset.add(rec.rdata, min(rec.ttl, cap))
                if not r.answer:
                    action = Action.NODATA  # Local-Data without this type
        if action is Action.NXDOMAIN:
            r.set_rcode(dns.rcode.NXDOMAIN)
        if action in (Action.NXDOMAIN, Action.NODATA) and soa is not None:
            _add_soa(r, self.policy.zones[rule.zone_index].name, soa, cap)
        wire = r.to_wire()
        entry, _ = entry_from_response(
            wire, key[:-1], now, 0, cap, cap, 0, keep_ad=False, cd=bool(key[-1] & 1)
        )
        return entry


def _wire(data: bytes | None) -> bytes:
    """dnspython's to_wire() without a file returns bytes (typed as optional)."""
    assert data is not None
    return data


def _substitute(cname: LocalRecord, qname: dns.name.Name) -> dns.name.Name | None:
    """``CNAME *.garden.example.`` -> ``<qname>.garden.example.`` (walled garden)."""
    target: dns.name.Name = cname.rdata.target  # type: ignore[attr-defined]
    if target.labels and target.labels[0] == b"*":
        try:
            return dns.name.Name(qname.labels[:-1] + target.labels[1:])
        except dns.name.NameTooLong:
            return None
    return target


def _add_soa(r: dns.message.Message, zone: str, soa: LocalRecord, cap: int) -> None:
    """BIND's add-soa: the policy zone's SOA in the authority section."""
    minimum: int = soa.rdata.minimum  # type: ignore[attr-defined]
    ttl = min(soa.ttl, minimum, cap)
    rrset = r.find_rrset(
        r.authority, dns.name.from_text(zone), dns.rdataclass.IN, dns.rdatatype.SOA, create=True
    )
    rrset.add(soa.rdata, ttl)
