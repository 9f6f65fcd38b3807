"""Policy in the resolver: load the configured RPZ zones, synthesise rewritten answers.

Loading builds a whole new ``Policy`` beside the serving one; a zone whose file
fails to load keeps its previous version (at startup there is none: the
service refuses to start). Synthesised answers are built once with dnspython
and kept as cache entries keyed by (question, rule, action) for the current
policy version, so a repeated blocked query costs what a cache hit costs.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Generator

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from mamori.config import RpzConfig
from mamori.dnsutil import wire
from mamori.errors import StartupError
from mamori.policy import zone as zone_mod
from mamori.policy.engine import Policy, ZoneSettings
from mamori.policy.model import Action, LocalRecord, Match
from mamori.policy.rules import LoadedZone, ZoneError
from mamori.resolver.cache import Entry, entry_from_response
from mamori.steps import drive, run

log = logging.getLogger("mamori.rpz")

MAX_ANSWERS = 100_000
FOREVER = 7 * 86400


def load_policy(
    zones: tuple[RpzConfig, ...], previous: Policy | None, strict: bool
) -> Policy | None:
    """Build the policy of *zones* in one go; None when no zone is configured.

    *strict* (startup): a zone that fails raises StartupError. Otherwise the
    zone's previous version is kept and the error logged.
    """
    return run(load_policy_steps(zones, previous, strict))


def load_policy_steps(
    zones: tuple[RpzConfig, ...], previous: Policy | None, strict: bool = False
) -> Generator[None, None, Policy | None]:
    """``load_policy`` as a generator yielding every few thousand zone lines."""
    if not zones:
        return None
    old = {z.name: z for z in previous.all_zones} if previous is not None else {}
    loaded: list[LoadedZone] = []
    settings: list[ZoneSettings] = []
    held: list[LoadedZone] = []
    for rpz in zones:
        assert rpz.file is not None
        t0 = time.monotonic()
        try:
            z = yield from load_zone_steps(rpz)
        except ZoneError as e:
            if strict:
                raise StartupError(f"policy zone {rpz.name} refused: {e}") from e
            if rpz.name not in old:
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
        if not rpz.apply:
            held.append(z)
            continue
        loaded.append(z)
        settings.append(zone_settings(rpz))
    version = (previous.version + 1) if previous else 1
    return Policy(loaded, settings, version, tuple(held))


def zone_settings(rpz: RpzConfig) -> ZoneSettings:
    return ZoneSettings(
        rpz.name,
        rpz.policy,
        rpz.log,
        rpz.max_policy_ttl,
        rpz.recursive_only,
        rpz.nsdname_enable,
        rpz.nsip_enable,
    )


def load_zone_steps(rpz: RpzConfig) -> Generator[None, None, LoadedZone]:
    """One zone from its file; a transferred zone also replays its IXFR journal.

    A transferred zone with no copy on disk yet loads empty (no rules, no SOA)
    until its first transfer.
    """
    assert rpz.file is not None
    if (rpz.primary or rpz.feed) and not rpz.file.exists():
        return LoadedZone(rpz.name)  # not transferred / not compiled yet
    z = yield from zone_mod.load_steps(rpz.file, rpz.name, rpz.on_error)
    if rpz.primary:
        from mamori.policy import delta
        from mamori.xfr import zonefile

        for d in zonefile.read_journal(rpz.file):
            if d.old == z.serial:
                try:
                    delta.apply(z, d.deleted, d.added)
                except ValueError as e:
                    raise ZoneError(f"{rpz.file}.jnl: serial {d.old} -> {d.new}: {e}") from e
            yield
    return z


async def run_steps_async(steps: Generator[None, None, Policy | None]) -> Policy | None:
    """Drive a step-wise policy load from the event loop (queries flow between steps)."""
    return await drive(steps, "policy load")


async def dispose(old: Policy | None, new: Policy | None) -> None:
    """Free the indexes of replaced zones one shard per loop turn.

    Dropping a million-entry index in one go would hold the loop for a
    noticeable time; a shard (~1/64 of it) is freed in well under a millisecond.
    """
    if old is None:
        return
    keep = {id(z) for z in new.all_zones} if new is not None else set()
    for z in old.all_zones:
        if id(z) in keep or z.pins:
            continue  # still serving, or held by the publisher (which frees it later)
        await free_zone(z)


async def free_zone(z: LoadedZone) -> None:
    """Clear a zone's index one shard per loop turn."""
    for index in (z.exact, z.wild):
        for shard in index.shards:
            shard.clear()
            await asyncio.sleep(0)


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
            f"rpz {match.action.value}",
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
        entry, _ = entry_from_response(wire, key[:-1], now, 0, cap, cap, 0, keep_ad=False)
        entry.summary = f"rpz {action.value} via {rule.rule_name}"
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
