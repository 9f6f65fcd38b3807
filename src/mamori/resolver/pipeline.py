"""The query pipeline: the one place that decides the order of stages for a query.

``Pipeline.handle`` is called for every query (UDP datagram or TCP message).
It returns the answer bytes when it can answer at once (cache hit, errors),
or None after scheduling the slow path (upstream), which replies through the
transport's ``reply`` callback. Stages, in order:

1. client record: ACL (REFUSED outside ``allow``) and UDP rate limit
2. header + question + OPT, hand-parsed; malformed -> FORMERR or drop
3. policy pre-check (Client-IP, QNAME); answer-dependent triggers are
   decided on the cached entry or after resolution (late.py, apply.py)
4. cache: fresh hit -> patch ID/flags/TTLs, send             [fast path]
5. miss / expired -> upstream (coalesced per key), cache, policy, send
   upstream failure -> stale answer (RFC 8767) or SERVFAIL    [slowpath.py]
6. event -> bounded queue (never blocks; drops are counted)
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Coroutine
from time import time as _time
from typing import Any

from mamori.config import Config
from mamori.dnsutil import wire
from mamori.policy.engine import Policy
from mamori.policy.model import Match
from mamori.resolver.acl import ClientTable
from mamori.resolver.answers import Stats
from mamori.resolver.apply import PENDING
from mamori.resolver.cache import Cache, Entry
from mamori.resolver.events import AnswerTap, EventQueue, Hit
from mamori.resolver.policy_stage import PolicyAnswers
from mamori.resolver.slowpath import SlowPath
from mamori.resolver.upstream import UpstreamPool

log = logging.getLogger(__name__)

Reply = Callable[[bytes, Any], None]

_OPT = struct.Struct("!BHHBBHH")  # root, type, payload, ext-rcode, version, flags, rdlen
_PLAIN_Q = b"\x00\x01\x00\x00\x00\x00\x00\x00"  # QD=1 AN=0 NS=0 AR=0
_EDNS_Q = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # QD=1 AN=0 NS=0 AR=1
_PLAIN_OR_EDNS_Q = (_PLAIN_Q, _EDNS_Q)
_BITS = (b"\x00", b"\x01", b"\x02", b"\x03")  # cache-key byte: DO<<1 | CD
_TYPE_XFR = (b"\x00\xfb", b"\x00\xfc")  # IXFR, AXFR
_CLASS_IN = b"\x00\x01"
_SOA_NS = (b"\x00\x06", b"\x00\x02")
MAX_UDP_QUERY = 4096


def _xfr_or_soa(data: bytes) -> bool:
    """Is this a query for AXFR, IXFR or SOA (what a secondary asks its primary)?"""
    try:
        end = wire.scan_name(data, 12)
    except wire.WireError:
        return False
    return data[4:6] == b"\x00\x01" and data[end : end + 2] in (
        b"\x00\xfb",
        b"\x00\xfc",
        b"\x00\x06",
    )


class Pipeline(SlowPath):
    def __init__(self, cfg: Config, events: EventQueue, policy: Policy | None = None) -> None:
        self.events = events
        self.notify_handler = None
        # Zone publishing (xfr.primary): transfer requests and apex SOA/NS answers.
        self.xfr_handler: Callable[[bytes, Any, Reply, bool], Coroutine[Any, Any, None]] | None = (
            None
        )
        self.local_answer: Callable[[bytes, str], bytes | None] | None = None
        self.policy_listeners: list[Callable[[Policy | None, Policy | None], None]] = []
        self.answer_tap: AnswerTap | None = None  # passive DNS sensor ([pdns] enabled)
        self.set_policy(policy)
        self.stats = Stats()
        self.cache = Cache(cfg.cache.max_entries, cfg.cache.max_bytes)
        # Bound methods cached for the hot path (one attribute lookup instead of three).
        self._cache_get = self.cache.data.get
        self._cache_touch = self.cache.data.move_to_end
        self._event_items = events.items
        self.pool = UpstreamPool(cfg.upstream)
        self.tasks: set[asyncio.Task[None]] = set()
        self.inflight: dict[bytes, asyncio.Task[tuple[Entry, str] | None]] = {}
        self.configure(cfg)

    def configure(self, cfg: Config) -> None:
        """Apply (re)loadable settings; called at start and on SIGHUP."""
        s, c = cfg.server, cfg.cache
        self.cfg = cfg
        self.clients = ClientTable(s.allow, s.rate_burst)
        self._client_get = self.clients.clients.get
        self.rate = s.rate_limit
        self.burst = s.rate_burst
        self.rate_action = s.rate_limit_action
        self.max_udp = s.max_udp_size
        self.log_queries = cfg.store.query_log
        if getattr(self, "min_ns_dots", None) != cfg.policy.min_ns_dots:
            self.ns_cache = {}  # NS data is gathered down to min_ns_dots
        self.min_ns_dots = cfg.policy.min_ns_dots
        self.opt_plain = wire.build_opt(self.max_udp, False)
        self.opt_do = wire.build_opt(self.max_udp, True)
        self.opt_blocked = (
            wire.build_opt(self.max_udp, False, wire.EDE_BLOCKED),
            wire.build_opt(self.max_udp, True, wire.EDE_BLOCKED),
        )
        self.cache.resize(c.max_entries, c.max_bytes)
        if cfg.upstream != self.pool.cfg:
            old = self.pool
            self.pool = UpstreamPool(cfg.upstream)
            old.close()

    def set_policy(self, policy: Policy | None) -> None:
        """Swap in a whole new policy (built beside the old one)."""
        old = getattr(self, "policy", None)
        self.policy = policy
        self.answers = PolicyAnswers(policy) if policy is not None else None
        # key -> (rewrite, synthesised answer), for by-name-only policies
        self._rewrites: dict[bytes, tuple[Match, Entry]] = {}
        for listener in getattr(self, "policy_listeners", ()):
            listener(old, policy)

    # ------------------------------------------------------------------ hot path
    def handle(self, data: bytes, addr: Any, reply: Reply, tcp: bool) -> bytes | None:
        now = _time()
        self.stats.queries += 1
        ip = addr[0]

        # Stage 1: client record -> ACL, then UDP rate limit (token bucket).
        cl = self._client_get(ip)
        if cl is None:
            cl = self.clients.lookup(ip, now)
        if not cl.allowed:
            if self.notify_handler is not None and len(data) > 3 and (data[2] >> 3) & 0xF == 4:
                return self.notify_handler(data, ip)  # primaries need not be clients
            if self.xfr_handler is not None and _xfr_or_soa(data):
                return self._for_secondary(data, addr, reply, tcp)  # nor secondaries
            self.stats.refused += 1
            return self._error(data, wire.REFUSED, ip, now, tcp, wire.EDE_PROHIBITED)
        if self.rate and not tcp:
            tokens = cl.tokens + (now - cl.last) * self.rate
            cl.last = now
            tokens = min(tokens, self.burst)
            if tokens < 1.0:
                cl.tokens = tokens
                self.stats.ratelimited += 1
                return self._ratelimited(data)
            cl.tokens = tokens - 1.0

        # Stage 2: header + question + OPT (hand-written parser, no dnspython).
        n = len(data)
        if n < 12 or (n > MAX_UDP_QUERY and not tcp) or data[2] & 0x80:
            self.stats.dropped_malformed += 1  # too short, oversize, or a response
            return None
        counts = data[4:12]
        if data[2] & 0x78 or counts not in _PLAIN_OR_EDNS_Q:
            if self.xfr_handler is not None and not data[2] & 0x78 and _xfr_or_soa(data):
                return self._for_secondary(data, addr, reply, tcp)  # EDNS + TSIG
            return self._unusual(data, ip, now, tcp)
        # The question name, inline (this is wire.scan_name without the call).
        nend = 12
        while nend < n:
            ln = data[nend]
            if ln == 0 or ln > 63:
                break
            nend += ln + 1
        if nend >= n or data[nend] or nend > 266:  # no root label, pointer, > 255 octets
            return self._error(data, wire.FORMERR, ip, now, tcp)
        nend += 1
        qend = nend + 4
        if qend > n:
            return self._error(data, wire.FORMERR, ip, now, tcp)
        cd = 1 if data[3] & 0x10 else 0
        if data[11]:
            if qend + 11 > n:
                return self._error(data, wire.FORMERR, ip, now, tcp)
            root, otype, payload, _ext, version, oflags, rdlen = _OPT.unpack_from(data, qend)
            if root or otype != 41 or qend + 11 + rdlen != n:
                if self.xfr_handler is not None and _xfr_or_soa(data):
                    return self._for_secondary(data, addr, reply, tcp)  # TSIG-signed
                return self._error(data, wire.FORMERR, ip, now, tcp)
            if version:
                return self._error(data, wire.BADVERS, ip, now, tcp)
            do = 1 if oflags & 0x8000 else 0
            limit = 65535 if tcp else min(max(payload, 512), self.max_udp)
            opt = self.opt_do if do else self.opt_plain
        else:
            if qend != n:
                return self._error(data, wire.FORMERR, ip, now, tcp)
            do = 0
            limit = 65535 if tcp else 512
            opt = b""
        qtc = data[nend:qend]
        if qtc[2:] != _CLASS_IN or qtc[:2] in _TYPE_XFR:
            if self.xfr_handler is not None and qtc[:2] in _TYPE_XFR:
                self._spawn(self.xfr_handler(data, addr, reply, tcp))  # published zones
                return None
            # Meta queries (zone transfers) and other classes are not forwarded.
            return self._error(data, wire.REFUSED, ip, now, tcp, wire.EDE_PROHIBITED)
        key = data[12:nend].lower() + qtc + _BITS[do << 1 | cd]

        # Stage 3: policy pre-check (Client-IP, QNAME): index probes, no parsing.
        # When the decision depends on the name only (policy.by_name_only), it is
        # memoised: on the cache entry ("no rule", per policy version) and, for
        # rewrites, per key; a new policy version invalidates both at once.
        # Triggers that need the answer (Response-IP, NSDNAME, NSIP, CNAME chain
        # names) are decided on the cached entry, or after resolution (_miss).
        hit: Hit | None = None
        rewritten = False
        undecided = False
        found: Match | None = None
        entry = self._cache_get(key)
        policy = self.policy
        if policy is not None and (entry is None or entry.policy_version != policy.version):
            rd = data[2] & 1 == 1
            memo_ok = policy.by_name_only and (rd or not policy.has_recursive_only)
            rewrite = self._rewrites.get(key) if memo_ok else None
            if rewrite is not None and now < rewrite[1].expires:
                # Memoised rewrite: its synthesised entry is served like a cache hit below.
                match, entry = rewrite
                hit = match.hit
                rewritten = True
                if opt:
                    opt = self.opt_blocked[do]  # EDE 15 Blocked (RFC 8914)
            else:
                found, disabled = policy.check_query(ip, key[:-5], rd)
                for m in disabled:  # "disabled" zones: log what they would have done
                    self._event(now, ip, key, -1, "", 0, tcp, m.hit)
                if found is not None and not policy.late_before(found.rule.zone_index):
                    hit = found.hit  # final: no earlier zone has answer-dependent triggers
                    if self._rewrites_response(found, tcp):
                        return self._apply_match(
                            found,
                            data,
                            qend,
                            opt,
                            do,
                            limit,
                            key,
                            ip,
                            now,
                            tcp,
                            addr,
                            reply,
                            memo_ok,
                        )
                elif entry is not None and now < entry.expires:
                    decision = self._entry_decision(entry, policy, ip, key, found, rd, tcp, now)
                    if decision is None:
                        if memo_ok:
                            entry.policy_version = policy.version  # checked: no rule applies
                    elif decision == PENDING:  # NS data needed: decide asynchronously
                        self._spawn(
                            self._answer(
                                entry,
                                "",
                                data,
                                addr,
                                reply,
                                tcp,
                                key,
                                qend,
                                opt,
                                limit,
                                do,
                                now,
                                found,
                            )
                        )
                        return None
                    else:
                        assert not isinstance(decision, str)
                        hit = decision[0].hit
                        if self._rewrites_response(decision[0], tcp):
                            return self._apply_decision(
                                decision,
                                entry,
                                data,
                                qend,
                                opt,
                                do,
                                limit,
                                key,
                                ip,
                                now,
                                tcp,
                                addr,
                                reply,
                            )
                else:
                    undecided = True  # decided when the answer is there

        # Stage 4: cache (fresh hit -> answer from wire bytes).
        if entry is not None:
            if now < entry.expires:
                if rewritten:
                    self.stats.rewrites += 1
                else:
                    self._cache_touch(key)
                    self.stats.cache_hits += 1
                age = int(now - entry.born)
                body = entry.rendered if age == entry.rendered_age else entry.render(age)
                if opt:
                    resp = (
                        data[:2]
                        + entry.flags[data[2] & 1]
                        + entry.counts_edns
                        + data[12:qend]
                        + body
                        + opt
                    )
                else:
                    resp = data[:2] + entry.flags[data[2] & 1] + entry.counts + data[12:qend] + body
                if len(resp) > limit:
                    resp = self._fit(entry, data, qend, body, opt, limit)
                if self.log_queries or hit is not None:
                    if len(self._event_items) < self.events.limit:
                        self._event_items.append(
                            (now, ip, key, entry.rcode, entry.summary, 0, "", True, tcp, hit)
                        )
                    else:
                        self.events.dropped += 1
                return resp
            if now < entry.retry_after and now < entry.stale_until:
                # RFC 8767 failure-recheck timer: upstreams failed recently, answer stale.
                if undecided:
                    return self._stale_decided(
                        entry, data, qend, opt, do, limit, key, ip, now, tcp, addr, reply, found
                    )
                return self._stale(entry, data, qend, opt, limit, key, ip, now, tcp, hit)

        # Stage 5: upstream (slow path, asynchronous). A fresh answer is always
        # checked, even if the expired entry had been (its data may differ now).
        if policy is not None and hit is None:
            undecided = True
        if self.local_answer is not None and qtc[:2] in _SOA_NS:
            local = self.local_answer(data, ip)  # apex of a zone we publish
            if local is not None:
                return local
        self.stats.cache_misses += 1
        stale = entry if entry is not None and now < entry.stale_until else None
        self._spawn(
            self._miss(
                data,
                addr,
                reply,
                tcp,
                key,
                qend,
                opt,
                limit,
                do,
                cd,
                now,
                stale,
                hit,
                undecided,
                found,
            )
        )
        return None

    def _for_secondary(self, data: bytes, addr: Any, reply: Reply, tcp: bool) -> bytes | None:
        """A transfer or SOA request from outside ``allow``: the publisher decides."""
        end = wire.scan_name(data, 12)  # parses: checked by _xfr_or_soa
        if data[end : end + 2] == b"\x00\x06":
            assert self.local_answer is not None
            return self.local_answer(data, addr[0]) or wire.error_response(data, wire.REFUSED)
        assert self.xfr_handler is not None
        self._spawn(self.xfr_handler(data, addr, reply, tcp))
        return None

    def close(self) -> None:
        self.pool.close()
