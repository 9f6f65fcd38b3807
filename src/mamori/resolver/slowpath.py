"""Stage 5 of the pipeline: the slow path of a query (upstream, then policy, then answer).

A mixin of ``Pipeline`` (the stages and their order are in pipeline.py): a
cache miss is resolved upstream (coalesced per key), the answer-dependent
policy triggers are decided on it (late.py, apply.py), and the answer sent;
an upstream failure answers stale (RFC 8767) or SERVFAIL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from mamori.dnsutil import wire
from mamori.policy.model import Match
from mamori.resolver.apply import ApplyPolicy
from mamori.resolver.cache import Entry, UpstreamAnswerError, entry_from_response
from mamori.resolver.events import AnswerTap, Hit
from mamori.resolver.upstream import UpstreamError, UpstreamPool

log = logging.getLogger("mamori.resolver.pipeline")

Reply = Callable[[bytes, Any], None]
STALE_CLIENT_TIMER = 1.8  # RFC 8767 section 5: answer stale after this long


class SlowPath(ApplyPolicy):
    """Needs ``inflight`` and ``pool`` from Pipeline (and what ApplyPolicy needs)."""

    inflight: dict[bytes, asyncio.Task[tuple[Entry, str] | None]]
    pool: UpstreamPool
    answer_tap: AnswerTap | None

    async def _miss(
        self,
        data: bytes,
        addr: Any,
        reply: Reply,
        tcp: bool,
        key: bytes,
        qend: int,
        opt: bytes,
        limit: int,
        do: int,
        cd: int,
        now: float,
        stale: Entry | None,
        hit: Hit | None,
        undecided: bool,
        found: Match | None,
    ) -> None:
        ip = addr[0]
        fetch = self.inflight.get(key)
        if fetch is None:
            fetch = asyncio.get_running_loop().create_task(self._fetch(key, do, cd, stale))
            self.inflight[key] = fetch
            fetch.add_done_callback(lambda _t: self.inflight.pop(key, None))
        serve_stale = self.cfg.cache.serve_stale and stale is not None
        if serve_stale:
            done, _ = await asyncio.wait({fetch}, timeout=STALE_CLIENT_TIMER)
            result = fetch.result() if done else None
        else:
            result = await asyncio.shield(fetch)
        if result is None or (serve_stale and result[0].rcode == wire.SERVFAIL):
            if serve_stale:
                assert stale is not None
                stale.retry_after = time.time() + self.cfg.cache.stale_refresh_interval
                if undecided:
                    resp = self._stale_decided(
                        stale, data, qend, opt, do, limit, key, ip, now, tcp, addr, reply, found
                    )
                else:
                    resp = self._stale(stale, data, qend, opt, limit, key, ip, now, tcp, hit)
            elif undecided and found is not None and self._rewrites_response(found, tcp):
                # No answer to check other triggers against: the QNAME match stands.
                resp = self._apply_match(
                    found, data, qend, opt, do, limit, key, ip, now, tcp, addr, reply, False
                )
            else:
                self.stats.servfail += 1
                resp = self._error(
                    data, wire.SERVFAIL, ip, now, tcp, wire.EDE_NO_REACHABLE_AUTHORITY
                )
            if resp is not None:
                reply(resp, addr)
            return
        entry, upstream = result
        if not undecided:
            self._send(entry, upstream, data, addr, reply, tcp, key, qend, opt, limit, now, hit)
            return
        await self._answer(
            entry, upstream, data, addr, reply, tcp, key, qend, opt, limit, do, now, found
        )

    async def _answer(
        self,
        entry: Entry,
        upstream: str,
        data: bytes,
        addr: Any,
        reply: Reply,
        tcp: bool,
        key: bytes,
        qend: int,
        opt: bytes,
        limit: int,
        do: int,
        now: float,
        found: Match | None,
    ) -> None:
        """Decide the answer-dependent triggers on *entry*, then answer."""
        ip = addr[0]
        policy = self.policy
        hit = found.hit if found is not None else None
        if policy is not None:
            rd = data[2] & 1 == 1
            # Again: the policy may have been swapped while we waited for the answer
            # (a reload, a zone transfer): decide with the one now in force.
            found = policy.check_query(ip, key[:-5], rd)[0]
            decision = await self._decide_entry_async(entry, policy, ip, key, found, rd, tcp, now)
            if decision is None:
                hit = None
                if policy.by_name_only and (rd or not policy.has_recursive_only):
                    entry.policy_version = policy.version  # checked: no rule applies
            else:
                hit = decision[0].hit
                if self._rewrites_response(decision[0], tcp):
                    resp = self._apply_decision(
                        decision, entry, data, qend, opt, do, limit, key, ip, now, tcp, addr, reply
                    )
                    if resp is not None:
                        reply(resp, addr)
                    return
        self._send(entry, upstream, data, addr, reply, tcp, key, qend, opt, limit, now, hit)

    def _send(
        self,
        entry: Entry,
        upstream: str,
        data: bytes,
        addr: Any,
        reply: Reply,
        tcp: bool,
        key: bytes,
        qend: int,
        opt: bytes,
        limit: int,
        now: float,
        hit: Hit | None,
    ) -> None:
        """Send an upstream (or cached) answer as it is."""
        age = int(time.time() - entry.born)
        body = entry.render(age)
        counts = entry.counts_edns if opt else entry.counts
        resp = data[:2] + entry.flags[data[2] & 1] + counts + data[12:qend] + body + opt
        if len(resp) > limit:
            resp = self._fit(entry, data, qend, body, opt, limit)
        if entry.rcode == wire.SERVFAIL:
            self.stats.servfail += 1
        latency = int((time.time() - now) * 1e6)
        self._event(
            now, addr[0], key, entry.rcode, entry.summary, latency, tcp, hit, upstream, not upstream
        )
        reply(resp, addr)

    def _stale_decided(
        self,
        entry: Entry,
        data: bytes,
        qend: int,
        opt: bytes,
        do: int,
        limit: int,
        key: bytes,
        ip: str,
        now: float,
        tcp: bool,
        addr: Any,
        reply: Reply,
        found: Match | None,
    ) -> bytes | None:
        """A stale answer with the policy decided on it (NS data as far as cached)."""
        policy = self.policy
        hit = found.hit if found is not None else None
        if policy is not None:
            rd = data[2] & 1 == 1
            decision = self._entry_decision(
                entry, policy, ip, key, found, rd, tcp, now, missing_ns_ok=True
            )
            if decision is not None and not isinstance(decision, str):
                hit = decision[0].hit
                if self._rewrites_response(decision[0], tcp):
                    return self._apply_decision(
                        decision, entry, data, qend, opt, do, limit, key, ip, now, tcp, addr, reply
                    )
            elif decision is None:
                hit = None
        return self._stale(entry, data, qend, opt, limit, key, ip, now, tcp, hit)

    async def _fetch(
        self, key: bytes, do: int, cd: int, stale: Entry | None
    ) -> tuple[Entry, str] | None:
        """Ask the upstreams; cache a usable answer. None when every upstream failed."""
        question = key[:-1]
        flags = wire.RD | (wire.CD if cd else 0)
        c = self.cfg.cache
        try:
            resp, up = await self.pool.resolve(question, flags, bool(do))
            entry, lifetime = entry_from_response(
                resp,
                question,
                time.time(),
                c.min_ttl,
                c.max_ttl,
                c.max_negative_ttl,
                c.stale_max_age if c.serve_stale else 0,
                keep_ad=bool(do),
            )
        except (UpstreamError, UpstreamAnswerError) as e:
            log.debug("resolution of %s failed: %s", wire.name_to_text(key[:-5]), e)
            return None
        except Exception:  # a bug must cost one SERVFAIL, never the service
            log.exception("resolution of %s failed", wire.name_to_text(key[:-5]))
            return None
        if lifetime > 0:
            self.cache.put(key, entry)
        tap = self.answer_tap
        if tap is not None:  # passive DNS: the answer as received (parsed elsewhere)
            tap.put((time.time(), resp))
        return entry, up.name
