"""Policy decisions that need the answer: Response-IP, NSDNAME, NSIP, CNAME chains.

Order (BIND 9 ARM, draft-vixie-dnsop-dns-rpz): the names of the answer are
taken in chain order - the query name, then each CNAME target the upstream
followed. For each name, zones in configured order; inside a zone Client-IP
(query name only) > QNAME > Response-IP (addresses of the last name) >
NSDNAME > NSIP. The first name with a match decides, and the answer is
rewritten at that point of the chain (the CNAMEs before it are kept).

NSDNAME and NSIP need the name servers of the zones on the name's data path:
the delegation points from the name up to ``min_ns_dots`` dots. In forwarding
mode they are looked up through the upstream (``NAME NS``; a negative answer's
SOA owner tells the enclosing zone, so one name costs about two lookups per
zone level) plus the addresses of name servers without glue. The result is
kept per name (``ns_cache``, TTL of the NS records clamped to 30 s - 1 h) and
the lookups themselves go through the answer cache.

The decision for a cached answer is memoised on the cache entry per policy
version, so a repeated query costs one tuple comparison. The matches of zones
with policy ``disabled`` (a feed's ``enforce = "preview"``) met on the way are
logged (they would have applied): memoised with the decision, they are logged on
every answer, from the cache too.
"""

from __future__ import annotations

import ipaddress
import logging
import time

import dns.message
import dns.name
import dns.rdatatype

from mamori.policy.engine import Policy
from mamori.policy.model import Match
from mamori.resolver.cache import Cache, Entry
from mamori.resolver.follow import Fetch
from mamori.resolver.query import Outcome, Query
from mamori.resolver.reply import Replies

log = logging.getLogger(__name__)

Decision = tuple[Match, int]  # (match, position: 0 = query name, i = i-th CNAME target)
NsInfo = tuple[tuple[bytes, ...], tuple[tuple[int, int], ...]]  # NS names, their addresses
NS_MIN_TTL = 30
NS_MAX_TTL = 3600
NS_FAIL_TTL = 30
MAX_NS_CACHE = 100_000
MAX_CUTS = 8  # delegation points looked at per name
MAX_ADDR_LOOKUPS = 8  # name servers without glue whose addresses are looked up
_EMPTY: NsInfo = ((), ())
PENDING = "pending"  # the decision needs NS data that is not cached yet


class PostCheck:
    """Decides the answer-dependent triggers for one query and one answer."""

    def __init__(self, cache: Cache, fetch: Fetch, replies: Replies, min_ns_dots: int) -> None:
        self.cache = cache
        self.fetch = fetch
        self.replies = replies
        self.min_ns_dots = min_ns_dots
        self.ns_cache: dict[bytes, tuple[float, NsInfo]] = {}

    def configure(self, min_ns_dots: int) -> None:
        if min_ns_dots != self.min_ns_dots:
            self.ns_cache = {}  # NS data is gathered down to min_ns_dots
        self.min_ns_dots = min_ns_dots

    # ------------------------------------------------------- entry points
    def on_entry(
        self, q: Query, entry: Entry, policy: Policy, missing_ns_ok: bool = False
    ) -> Decision | str | None:
        """The decision for *entry* (memoised on it per policy version), or PENDING.

        PENDING: NS data is needed and not cached (``decide`` looks it up).
        With *missing_ns_ok* (stale answers) names without NS data are decided without it.
        """
        found = q.found
        limit = found.rule.zone_index if found is not None else policy.nzones
        memo = entry.rewrite
        if memo is not None and memo[0] == policy.version and memo[1] == limit:
            override = memo[2]
            for m in memo[3]:  # log-only ("disabled") zones: on every answer, cached too
                self.replies.event(q, -1, "", Outcome.LOG_ONLY, "disabled", m.hit)
        else:
            result = self._decide(policy, q.key, entry, found, q.rd, missing_ns_ok)
            if isinstance(result, bytes):
                return PENDING
            decision, disabled = result
            override = self._record(q, entry, policy, decision, disabled, not missing_ns_ok)
        if override is not None:
            return override
        return (found, 0) if found is not None else None

    async def decide(self, q: Query, entry: Entry, policy: Policy) -> Decision | None:
        """``on_entry``, looking up the NS data it needs (through the upstreams, bounded)."""
        decision = self.on_entry(q, entry, policy)
        if decision != PENDING:
            return decision  # type: ignore[return-value]
        result, disabled = await self._decide_async(policy, q.key, entry, q.found, q.rd)
        self._record(q, entry, policy, result, disabled, True)
        return result

    def _record(
        self,
        q: Query,
        entry: Entry,
        policy: Policy,
        decision: Decision | None,
        disabled: list[Match],
        memo: bool,
    ) -> Decision | None:
        """Log the disabled zones' matches; memoise (and return) what overrides ``q.found``.

        Only the override (and the disabled zones' matches, logged again on every
        answer from the memo) is memoised on the entry: ``q.found`` itself may depend
        on the client (Client-IP rules).
        """
        for m in disabled:  # "disabled" zones: log what they would have done
            self.replies.event(q, -1, "", Outcome.LOG_ONLY, "disabled", m.hit)
        found = q.found
        override = decision if decision is not None and decision[0] is not found else None
        if memo:
            limit = found.rule.zone_index if found is not None else policy.nzones
            entry.rewrite = (policy.version, limit, override, tuple(disabled))
        return override

    # ------------------------------------------------------------ decisions
    def _decide(
        self,
        policy: Policy,
        key: bytes,
        entry: Entry,
        found: Match | None,
        rd: bool,
        missing_ns_ok: bool = False,
    ) -> tuple[Decision | None, list[Match]] | bytes:
        """The decision for *entry*, or the name whose NS data must be looked up first.

        *found* is the query name's Client-IP/QNAME match (from the pre-check).
        With *missing_ns_ok*, names without cached NS data are decided without it.
        """
        names = (key[:-5], *entry.chain)
        qtype = key[-5] << 8 | key[-4]
        last = len(names) - 1
        logged: list[Match] = []
        for pos, name in enumerate(names):
            if pos == 0:
                match = found
            else:
                match, disabled = policy.check_query_typed(None, name, qtype, rd)
                logged += disabled
            limit = match.rule.zone_index if match is not None else policy.nzones
            if policy.late_before(limit):
                ns = _EMPTY
                if policy.needs_ns(limit):
                    cached = self._ns_cached(name)
                    if cached is None and not missing_ns_ok:
                        return name
                    ns = cached or _EMPTY
                    if pos == last and entry.auth_ns is not None:
                        # NS records the upstream gave with the answer: the zone's own.
                        ns = (ns[0] + entry.auth_ns[0], ns[1] + entry.auth_ns[1])
                addrs = entry.addrs if pos == last else ()
                late, disabled = policy.check_late(addrs, ns[0], ns[1], limit, rd)
                logged += disabled
                if late is not None:
                    return (late, pos), logged
            if match is not None:
                return (match, pos), logged
        return None, logged

    async def _decide_async(
        self, policy: Policy, key: bytes, entry: Entry, found: Match | None, rd: bool
    ) -> tuple[Decision | None, list[Match]]:
        """``_decide``, looking up NS data as needed (bounded)."""
        for _ in range(len(entry.chain) + 2):
            result = self._decide(policy, key, entry, found, rd)
            if not isinstance(result, bytes):
                return result
            await self._ns_info(result)
        result = self._decide(policy, key, entry, found, rd, missing_ns_ok=True)
        assert not isinstance(result, bytes)
        return result

    # ------------------------------------------------------------- NS data
    def _ns_cached(self, name: bytes) -> NsInfo | None:
        hit = self.ns_cache.get(name)
        if hit is None or hit[0] <= time.time():
            return None
        return hit[1]

    async def _ns_info(self, name: bytes) -> NsInfo:
        """Names and addresses of the name servers on *name*'s data path (cached)."""
        try:
            info, ttl = await self._ns_lookup(name)
        except Exception:  # a bug costs NS data for this name, never the query
            log.exception("NS lookup for %s failed", _text(name))
            info, ttl = _EMPTY, NS_FAIL_TTL
        if len(self.ns_cache) >= MAX_NS_CACHE:
            self.ns_cache.clear()
        self.ns_cache[name] = (time.time() + ttl, info)
        return info

    async def _ns_lookup(self, name: bytes) -> tuple[NsInfo, int]:
        names: list[bytes] = []
        addrs: list[tuple[int, int]] = []
        ttl = NS_MAX_TTL
        current = dns.name.from_wire(name, 0)[0]
        cuts = 0
        failed = False
        while len(current) - 2 >= self.min_ns_dots and cuts < MAX_CUTS:
            msg = await self._lookup(current, dns.rdatatype.NS)
            if msg is None:
                failed = True
                break
            ns = _rrset(msg, current, dns.rdatatype.NS)
            if ns is None:
                # Not a delegation point: a negative answer's SOA names the zone.
                soa = next(
                    (
                        r
                        for r in msg.authority
                        if r.rdtype == dns.rdatatype.SOA
                        and current.is_subdomain(r.name)
                        and r.name != current
                    ),
                    None,
                )
                current = soa.name if soa is not None else current.parent()
                continue
            cuts += 1
            ttl = min(ttl, ns.ttl)
            targets = [rd.target for rd in ns]
            names += [t.to_wire().lower() for t in targets]
            lookups = 0
            for target in targets:
                glue = [
                    r
                    for r in (*msg.additional, *msg.answer)
                    if r.name == target and r.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
                ]
                if not glue and lookups < MAX_ADDR_LOOKUPS:
                    lookups += 1
                    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                        amsg = await self._lookup(target, rdtype)
                        found = _rrset(amsg, target, rdtype) if amsg is not None else None
                        if found is not None:
                            glue.append(found)
                for rrset in glue:
                    for rd in rrset:
                        ip = ipaddress.ip_address(rd.address)
                        addrs.append((ip.version, int(ip)))
            current = current.parent()
        info = (tuple(dict.fromkeys(names)), tuple(dict.fromkeys(addrs)))
        if failed and not names:
            return info, NS_FAIL_TTL
        return info, max(NS_MIN_TTL, min(ttl, NS_MAX_TTL))

    async def _lookup(self, name: dns.name.Name, rdtype: int) -> dns.message.Message | None:
        """One upstream question through the answer cache, as a dnspython message."""
        key = name.to_wire().lower() + rdtype.to_bytes(2, "big") + b"\x00\x01\x00"  # type: ignore[union-attr]
        now = time.time()
        entry = self.cache.data.get(key)
        if entry is None or now >= entry.expires:
            result = await self.fetch(key, 0, 0, None)
            if result is None:
                return None
            entry = result[0]
        body = entry.render(max(0, int(now - entry.born)))
        try:
            return dns.message.from_wire(
                b"\x00\x00" + entry.flags[1] + entry.counts + key[:-1] + body
            )
        except Exception:
            return None


def _rrset(msg: dns.message.Message, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
    """The RRset of *name*/*rdtype* in the answer or authority section (referrals)."""
    for section in (msg.answer, msg.authority):
        for rrset in section:
            if rrset.rdtype == rdtype and rrset.name == name and len(rrset):
                return rrset
    return None


def _text(name: bytes) -> str:
    try:
        return dns.name.from_wire(name, 0)[0].to_text()
    except Exception:
        return repr(name)
