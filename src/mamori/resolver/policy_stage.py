"""Policy in the resolver: load the configured RPZ zones, synthesise rewritten answers.

Loading builds a whole new ``Policy`` beside the serving one; a zone whose file
fails to load keeps its previous version (at startup there is none: the
service refuses to start). Synthesised answers are built once with dnspython
and kept as cache entries keyed by (question, rule, action) for the current
policy version, so a repeated blocked query costs what a cache hit costs.
"""

from __future__ import annotations

import logging
import time

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from mamori.config import RpzConfig
from mamori.errors import StartupError
from mamori.policy import zone as zone_mod
from mamori.policy.engine import Policy, ZoneSettings
from mamori.policy.model import Action, LocalRecord, Match
from mamori.policy.zone import LoadedZone, ZoneError
from mamori.resolver.cache import Entry, entry_from_response

log = logging.getLogger("mamori.rpz")

MAX_ANSWERS = 100_000
FOREVER = 7 * 86400


def load_policy(
    zones: tuple[RpzConfig, ...], previous: Policy | None, strict: bool
) -> Policy | None:
    """Build the policy of *zones*; None when no zone is configured.

    *strict* (startup): a zone that fails raises StartupError. Otherwise the
    zone's previous version is kept and the error logged.
    """
    if not zones:
        return None
    old = {z.name: z for z in previous.zones} if previous else {}
    loaded: list[LoadedZone] = []
    settings: list[ZoneSettings] = []
    for rpz in zones:
        assert rpz.file is not None
        t0 = time.monotonic()
        try:
            z = zone_mod.load(rpz.file, rpz.name, rpz.on_error)
        except ZoneError as e:
            if strict or rpz.name not in old:
                if strict:
                    raise StartupError(f"policy zone {rpz.name} refused: {e}") from e
                log.error("policy zone %s refused, not applied: %s", rpz.name, e)
                continue
            log.error("policy zone %s reload refused, previous version serving: %s", rpz.name, e)
            z = old[rpz.name]
        else:
            for reason in z.skipped:
                log.warning("policy zone %s: skipped bad record: %s", rpz.name, reason)
            log.info(
                "policy zone %s serial %d: %d rules loaded in %.2fs",
                rpz.name,
                z.serial,
                z.rule_count,
                time.monotonic() - t0,
            )
        loaded.append(z)
        settings.append(ZoneSettings(rpz.name, rpz.policy, rpz.log, rpz.max_policy_ttl))
    version = (previous.version + 1) if previous else 1
    return Policy(loaded, settings, version)


class PolicyAnswers:
    """Memo of synthesised answers for one policy version."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.entries: dict[tuple[bytes, int], Entry] = {}

    def get(self, match: Match, key: bytes, now: float) -> Entry:
        memo_key = (key, id(match))
        entry = self.entries.get(memo_key)
        if entry is None or now >= entry.expires:
            if len(self.entries) >= MAX_ANSWERS:
                self.entries.clear()
            entry = self.entries[memo_key] = self._synthesise(match, key, now)
        return entry

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
        entry, _ = entry_from_response(wire, key[:-1], now, 0, cap, cap, 0, keep_ad=False)
        entry.summary = f"rpz {action.value} via {rule.rule_name}"
        return entry


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
