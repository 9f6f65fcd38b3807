"""Following a policy CNAME: resolve the target, re-check it, answer the whole chain.

A Local-Data rule ``CNAME target.`` (a redirect or walled garden) is answered
as BIND and Unbound do: the CNAME, then the target's own answer, which is
itself subject to the policy (so a target can be blocked or rewritten too).
This is a slow path (dnspython assembles the answer); repeated queries for the
target are served from the cache. At most MAX_CHAIN policy CNAMEs are followed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from mamori.dnsutil import wire
from mamori.policy.model import Action, Match
from mamori.resolver.active_policy import PolicySlot
from mamori.resolver.cache import Cache, Entry
from mamori.resolver.query import Outcome, Query
from mamori.resolver.reply import Replies

log = logging.getLogger(__name__)

MAX_CHAIN = 8
# One upstream question through the cache: (cache key, DO, CD, stale entry) -> (entry, upstream)
Fetch = Callable[[bytes, int, int, Entry | None], Awaitable[tuple[Entry, str] | None]]


class CnameFollower:
    """Answers policy CNAMEs: the CNAME, then the target's answer (itself checked)."""

    def __init__(self, cache: Cache, fetch: Fetch, replies: Replies) -> None:
        self.cache = cache
        self.fetch = fetch
        self.replies = replies

    async def follow(self, q: Query, match: Match, target: dns.name.Name) -> None:
        """Answer a policy CNAME on the query name: the CNAME, then its target's answer."""
        active = q.slot.active  # the client's view of the policy
        assert active is not None
        try:
            entry = active.answers.get(match, q.key, time.time())
        except Exception:  # a bug costs this query a SERVFAIL, never the service
            log.exception("policy answer for %s failed", target)
            q.send(wire.error_response(q.data, wire.SERVFAIL, q.qend))
            return
        ttl = entry.ttls[0] if entry.ttls else 0
        qname = dns.name.from_wire(q.key, 0)[0]
        prefix = [dns.rrset.from_text(qname, ttl, "IN", "CNAME", target.to_text())]
        await self._chain_reply(q, prefix, target, None, match)

    async def follow_chain(self, q: Query, match: Match, pos: int, upstream: Entry) -> None:
        """Answer a match on the *pos*-th CNAME target of an upstream answer.

        The upstream's CNAMEs up to that name are kept; the policy answers the rest.
        """
        key = q.key
        msg = _message(upstream, key, time.time())
        names = [key[:-5], *upstream.chain[: pos - 1]]
        owners = {dns.name.from_wire(n, 0)[0] for n in names}
        prefix = [
            rrset
            for rrset in msg.answer
            if rrset.rdtype == dns.rdatatype.CNAME and rrset.name in owners
        ]
        name = dns.name.from_wire(upstream.chain[pos - 1], 0)[0]
        await self._chain_reply(q, prefix, name, match, match)

    async def _chain_reply(
        self,
        q: Query,
        prefix: list[dns.rrset.RRset],
        name: dns.name.Name,
        first: Match | None,
        match: Match,
    ) -> None:
        try:
            resp = await self._chain_answer(q, prefix, name, first)
        except Exception:  # a bug costs this query a SERVFAIL, never the service
            log.exception("policy answer for %s failed", name)
            resp = wire.error_response(q.data, wire.SERVFAIL, q.qend)
        summary = f"CNAME {name}"
        self.replies.event(q, resp[3] & 0xF, summary, Outcome.BLOCKED, "cname", match.hit)
        q.send(resp)

    async def _chain_answer(
        self, q: Query, prefix: list[dns.rrset.RRset], name: dns.name.Name, first: Match | None
    ) -> bytes:
        """*prefix* (CNAMEs), then the answers for *name* and the names it leads to.

        *first*: the policy match that applies to *name* (None: check it).
        """
        key, do = q.key, q.do
        query = dns.message.from_wire(q.data, ignore_trailing=True)
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.RA | (query.flags & dns.flags.CD)  # RFC 4035 3.2.2
        answers: list[dns.rrset.RRset] = list(prefix)
        rcode = dns.rcode.NOERROR
        authority: list[dns.rrset.RRset] = []  # the last step's, kept for negative answers
        final_empty = False
        for _ in range(MAX_CHAIN):
            tkey = name.to_wire().lower() + key[-5:]  # type: ignore[union-attr]
            if first is not None:
                step = self._policy_step(q.slot, first, tkey)
                first = None
            else:
                step = await self._resolve_for_chain(q.slot, tkey, do)
            if step is None:
                rcode = dns.rcode.SERVFAIL
                break
            msg, next_target = step
            answers.extend(msg.answer)
            authority = list(msg.authority)
            final_empty = not msg.answer
            rcode = msg.rcode()
            if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                rcode = dns.rcode.SERVFAIL  # the target could not be resolved
                break
            if next_target is None:
                break
            name = next_target
        resp.answer = answers
        # NXDOMAIN / NODATA at the end of the chain keep their SOA (RFC 2308).
        resp.authority = authority if rcode != dns.rcode.NOERROR or final_empty else []
        resp.set_rcode(rcode)
        if query.edns >= 0:
            resp.use_edns(
                0,
                dns.flags.DO if do else 0,
                self.replies.max_udp,
                options=[dns.edns.EDEOption(dns.edns.EDECode.BLOCKED)],
            )
        try:
            return resp.to_wire(max_size=q.limit)
        except dns.exception.TooBig:
            return wire.error_response(q.data, wire.NOERROR, q.qend, tc=True)

    def _policy_step(
        self, slot: PolicySlot, match: Match, tkey: bytes
    ) -> tuple[dns.message.Message, dns.name.Name | None] | None:
        """The policy's own answer for *tkey* under *match*; None for DROP.

        *slot*: the client's (the view of the policy for its groups)."""
        active = slot.active
        assert active is not None
        if match.action is Action.DROP:
            return None
        now = time.time()
        further = active.answers.cname_target(match, tkey)
        return _message(active.answers.get(match, tkey, now), tkey, now), further

    async def _resolve_for_chain(
        self, slot: PolicySlot, tkey: bytes, do: int
    ) -> tuple[dns.message.Message, dns.name.Name | None] | None:
        """The answer for one name of the chain, policy applied (*slot*: the client's);
        and a further policy CNAME."""
        active = slot.active
        now = time.time()
        if active is not None:
            policy = active.policy
            # Client-IP is checked once per query (BIND: DNS_RPZ_DONE_CLIENT_IP).
            match, _ = policy.check_query_typed(None, tkey[:-5], tkey[-5] << 8 | tkey[-4])
            if match is not None and match.action not in (Action.PASSTHRU, Action.TCP_ONLY):
                return self._policy_step(slot, match, tkey)
        cached = self.cache.data.get(tkey)
        if cached is not None and now < cached.expires:
            return _message(cached, tkey, now), None
        result = await self.fetch(tkey, do, tkey[-1] & 1, None)  # the key's CD bit
        if result is None:
            return None
        return _message(result[0], tkey, now), None


def _message(entry: Entry, key: bytes, now: float) -> dns.message.Message:
    """An entry as a dnspython message (question = the key's name and type)."""
    body = entry.render(max(0, int(now - entry.born)))
    return dns.message.from_wire(b"\x00\x00" + entry.flags[1] + entry.counts + key[:-1] + body)
