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
from typing import TYPE_CHECKING, Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from mamori.dnsutil import wire
from mamori.policy.engine import Policy
from mamori.policy.model import Action, Match
from mamori.resolver.cache import Cache, Entry
from mamori.resolver.events import Hit
from mamori.resolver.policy_stage import PolicyAnswers

log = logging.getLogger(__name__)

MAX_CHAIN = 8
Reply = Any


class FollowCname:
    """Mixin of Pipeline; needs these attributes and ``_fetch``/``_event``."""

    policy: Policy | None
    answers: PolicyAnswers | None
    cache: Cache
    max_udp: int

    if TYPE_CHECKING:  # provided by Pipeline; declared here for the type checker only

        async def _fetch(
            self, key: bytes, do: int, cd: int, stale: Entry | None
        ) -> tuple[Entry, str] | None: ...

        def _event(
            self,
            now: float,
            ip: str,
            key: bytes,
            rcode: int,
            answer: str,
            latency: int,
            tcp: bool,
            hit: Hit | None,
            upstream: str = "",
            cache_hit: bool = False,
        ) -> None: ...

    async def _follow(
        self,
        match: Match,
        target: dns.name.Name,
        key: bytes,
        data: bytes,
        addr: Any,
        reply: Reply,
        qend: int,
        do: int,
        limit: int,
        ip: str,
        now: float,
        tcp: bool,
    ) -> None:
        """Answer a policy CNAME on the query name: the CNAME, then its target's answer."""
        assert self.answers is not None
        try:
            entry = self.answers.get(match, key, time.time())
        except Exception:  # a bug costs this query a SERVFAIL, never the service
            log.exception("policy answer for %s failed", target)
            reply(wire.error_response(data, wire.SERVFAIL, qend), addr)
            return
        ttl = entry.ttls[0] if entry.ttls else 0
        qname = dns.name.from_wire(key, 0)[0]
        prefix = [dns.rrset.from_text(qname, ttl, "IN", "CNAME", target.to_text())]
        await self._chain_reply(
            prefix, target, None, match, key, data, addr, reply, qend, do, limit, ip, now, tcp
        )

    async def _follow_chain(
        self,
        match: Match,
        pos: int,
        upstream: Entry,
        key: bytes,
        data: bytes,
        addr: Any,
        reply: Reply,
        qend: int,
        do: int,
        limit: int,
        ip: str,
        now: float,
        tcp: bool,
    ) -> None:
        """Answer a match on the *pos*-th CNAME target of an upstream answer.

        The upstream's CNAMEs up to that name are kept; the policy answers the rest.
        """
        msg = _message(upstream, key, time.time())
        names = [key[:-5], *upstream.chain[: pos - 1]]
        owners = {dns.name.from_wire(n, 0)[0] for n in names}
        prefix = [
            rrset
            for rrset in msg.answer
            if rrset.rdtype == dns.rdatatype.CNAME and rrset.name in owners
        ]
        name = dns.name.from_wire(upstream.chain[pos - 1], 0)[0]
        await self._chain_reply(
            prefix, name, match, match, key, data, addr, reply, qend, do, limit, ip, now, tcp
        )

    async def _chain_reply(
        self,
        prefix: list[dns.rrset.RRset],
        name: dns.name.Name,
        first: Match | None,
        match: Match,
        key: bytes,
        data: bytes,
        addr: Any,
        reply: Reply,
        qend: int,
        do: int,
        limit: int,
        ip: str,
        now: float,
        tcp: bool,
    ) -> None:
        try:
            resp = await self._chain_answer(prefix, name, first, key, data, qend, do, limit, ip)
        except Exception:  # a bug costs this query a SERVFAIL, never the service
            log.exception("policy answer for %s failed", name)
            resp = wire.error_response(data, wire.SERVFAIL, qend)
        rcode = resp[3] & 0xF
        self._event(now, ip, key, rcode, f"rpz via {name}", 0, tcp, match.hit)
        reply(resp, addr)

    async def _chain_answer(
        self,
        prefix: list[dns.rrset.RRset],
        name: dns.name.Name,
        first: Match | None,
        key: bytes,
        data: bytes,
        qend: int,
        do: int,
        limit: int,
        ip: str,
    ) -> bytes:
        """*prefix* (CNAMEs), then the answers for *name* and the names it leads to.

        *first*: the policy match that applies to *name* (None: check it).
        """
        query = dns.message.from_wire(data, ignore_trailing=True)
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.RA
        answers: list[dns.rrset.RRset] = list(prefix)
        rcode = dns.rcode.NOERROR
        authority: list[dns.rrset.RRset] = []  # the last step's, kept for negative answers
        final_empty = False
        for _ in range(MAX_CHAIN):
            tkey = name.to_wire().lower() + key[-5:]  # type: ignore[union-attr]
            if first is not None:
                step = self._policy_step(first, tkey)
                first = None
            else:
                step = await self._resolve_for_chain(tkey, ip, do)
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
                self.max_udp,
                options=[dns.edns.EDEOption(dns.edns.EDECode.BLOCKED)],
            )
        try:
            return resp.to_wire(max_size=limit)
        except dns.exception.TooBig:
            return wire.error_response(data, wire.NOERROR, qend, tc=True)

    def _policy_step(
        self, match: Match, tkey: bytes
    ) -> tuple[dns.message.Message, dns.name.Name | None] | None:
        """The policy's own answer for *tkey* under *match*; None for DROP."""
        assert self.answers is not None
        if match.action is Action.DROP:
            return None
        now = time.time()
        further = self.answers.cname_target(match, tkey)
        return _message(self.answers.get(match, tkey, now), tkey, now), further

    async def _resolve_for_chain(
        self, tkey: bytes, ip: str, do: int
    ) -> tuple[dns.message.Message, dns.name.Name | None] | None:
        """The answer for one name of the chain, policy applied; and a further policy CNAME."""
        policy, answers = self.policy, self.answers
        now = time.time()
        if policy is not None and answers is not None:
            # Client-IP is checked once per query (BIND: DNS_RPZ_DONE_CLIENT_IP).
            match, _ = policy.check_query(None, tkey[:-5])
            if match is not None and match.action not in (Action.PASSTHRU, Action.TCP_ONLY):
                return self._policy_step(match, tkey)
        cached = self.cache.data.get(tkey)
        if cached is not None and now < cached.expires:
            return _message(cached, tkey, now), None
        result = await self._fetch(tkey, do, 0, None)
        if result is None:
            return None
        return _message(result[0], tkey, now), None


def _message(entry: Entry, key: bytes, now: float) -> dns.message.Message:
    """An entry as a dnspython message (question = the key's name and type)."""
    body = entry.render(max(0, int(now - entry.born)))
    return dns.message.from_wire(b"\x00\x00" + entry.flags[1] + entry.counts + key[:-1] + body)
