"""The query pipeline: the one place that decides the order of the stages of a query.

``Pipeline.handle`` runs for every query (UDP datagram or TCP message). It
returns the answer bytes when it can answer at once, or None when there is
nothing to send now: the answer comes later through the transport's *reply*
callback (slow path), or never (malformed packet, policy DROP; both counted
and, for DROP, logged with outcome ``dropped``). The stages, in order:

1. header: too short, too long over UDP, or a response -> dropped
   (other opcodes and unusual section counts: ``_unusual``)
2. question: hand-parsed, no dnspython; malformed -> FORMERR
3. control traffic: NOTIFY, AXFR/IXFR, SOA/NS of a zone we publish -> the
   control plane (``routing.ControlLink``), before any client check; SVCB
   ``_dns.resolver.arpa`` (DDR, RFC 9462) answered locally (ddr.py)
4. client: ACL (REFUSED outside ``allow``), UDP rate limit (acl.py)
5. OPT record (EDNS0): payload size, DO bit; bad -> FORMERR / BADVERS. Options are
   read only when there are some and the client is a trusted forwarder ([server]
   trust_client_mac): its EDNS client MAC (dnsutil/clientmac.py) names the device
6. policy pre-check: Client-IP, QNAME (one index probe; memoised by name) ->
   rewritten answer (rewrite.py)
7. cache: fresh hit -> patch ID/flags/TTLs, send                    [fast path]
   answer-dependent triggers on the entry, memoised (postcheck.py)
8. miss or expired -> resolve upstream (resolve.py), post-check the answer
   (postcheck.py), rewrite (rewrite.py) or send (reply.py); upstream failure ->
   stale answer (RFC 8767) or SERVFAIL                               [slow path]
9. event -> bounded queue (never blocks; drops are counted)
10. UDP only: response rate limiting (rrl.py, ``self.rrl``), applied by the listeners
    to every answer as it leaves (returned here or sent later through *reply*)

Stages 1-7 are written inline for speed (a cache hit costs ~0.9 µs of Python);
each slow stage is an object in the module named after it. A query asked again,
byte for byte but its ID, skips stages 1, 2, 3 and 5 (``_qmemo``, filled on cache
hits; see ``handle``); a cache entry keeps its last answer's bytes after the flags
for the rest of that second of its age (``Entry.tail``).
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
from mamori.dnsutil.clientmac import client_mac
from mamori.policy.engine import Policy
from mamori.policy.groups import GroupClassifier
from mamori.policy.model import Match
from mamori.resolver.acl import ClientState, ClientTable
from mamori.resolver.active_policy import PolicySlots
from mamori.resolver.cache import Cache, Entry
from mamori.resolver.ddr import QTYPE_SVCB, ddr_records, ddr_summary
from mamori.resolver.events import AnswerTap, EventQueue
from mamori.resolver.follow import CnameFollower
from mamori.resolver.postcheck import PENDING, Decision, PostCheck
from mamori.resolver.query import (
    REASON_ACL,
    REASON_BADVERS,
    REASON_META,
    REASON_UPSTREAM,
    Hit,
    Outcome,
    Query,
    Reply,
)
from mamori.resolver.reply import Replies, Stats, answer_flags
from mamori.resolver.resolve import Resolve
from mamori.resolver.rewrite import REASON_OF, Rewrite, replaces_answer
from mamori.resolver.routing import ControlLink, Routes
from mamori.resolver.rrl import ResponseLimiter
from mamori.resolver.special import CONTINUE, TYPE_XFR, SpecialMessages
from mamori.resolver.upstream import UpstreamPool, Upstreams

log = logging.getLogger(__name__)

_OPT = struct.Struct("!BHHBBHH")  # root, type, payload, ext-rcode, version, flags, rdlen
_PLAIN_Q = b"\x00\x01\x00\x00\x00\x00\x00\x00"  # QD=1 AN=0 NS=0 AR=0
_EDNS_Q = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # QD=1 AN=0 NS=0 AR=1
_PLAIN_OR_EDNS_Q = (_PLAIN_Q, _EDNS_Q)
_BITS = (b"\x00", b"\x01", b"\x02", b"\x03")  # cache-key byte: DO<<1 | CD
_CLASS_IN = b"\x00\x01"
MAX_UDP_QUERY = 4096
QMEMO_MAX = 16384  # parsed questions remembered (see Pipeline.handle); emptied when full
_CACHED, _BLOCKED = Outcome.CACHED.value, Outcome.BLOCKED.value  # events hold plain ints


# A remembered query: (end of QNAME, end of question, QTYPE+QCLASS bytes, cache key, CD
# bit, DO bit, UDP answer limit, OPT record for the answer).
QuestionMemo = tuple[int, int, bytes, bytes, int, int, int, bytes]


class Pipeline:
    """The stages of a query for one event loop (one data plane)."""

    def __init__(
        self,
        cfg: Config,
        events: EventQueue,
        upstreams: Upstreams | None = None,
        tap: AnswerTap | None = None,
        control: ControlLink | None = None,
    ) -> None:
        """*upstreams*: where misses are resolved (default: the configured forwarders)."""
        self.events = events
        self.stats = Stats()
        self.replies = Replies(cfg, self.stats, events)
        self.cache = Cache(cfg.cache.max_entries, cfg.cache.max_bytes)
        self.slots = PolicySlots()  # the policy (a view of it per set of client groups)
        self.tasks: set[asyncio.Task[None]] = set()
        self.resolve = Resolve(cfg, self.cache, upstreams or UpstreamPool(cfg.upstream), tap)
        self.follower = CnameFollower(self.cache, self.resolve.fetch, self.replies)
        self.postcheck = PostCheck(
            self.cache, self.resolve.fetch, self.replies, cfg.policy.min_ns_dots
        )
        self.rewrite = Rewrite(self.replies, self.follower, self.spawn)
        self.special = SpecialMessages(self.replies, control)
        self._special_types: tuple[bytes, ...] = (*TYPE_XFR, QTYPE_SVCB)
        self.policy: Policy | None = None
        # Response rate limiting ([rrl]): the UDP listeners pass every answer through it
        # (batchio.py, server.py); None when off.
        self.rrl: ResponseLimiter | None = None
        # Bound methods cached for the hot path (one attribute lookup instead of three).
        self._cache_get = self.cache.data.get
        self._cache_touch = self.cache.data.move_to_end
        self._event_items = events.items
        # Parsed queries, by their bytes after the ID (stages 1, 2, 3 and 5 done once
        # for a query asked again): see handle(). Filled on cache hits only, so names
        # asked once (misses, random subdomains) never enter it.
        self._qmemo: dict[bytes, QuestionMemo] = {}
        self._qmemo_get = self._qmemo.get
        self.configure(cfg)

    def configure(self, cfg: Config) -> None:
        """Apply (re)loadable settings; called at start and on SIGHUP."""
        s, c = cfg.server, cfg.cache
        self.cfg = cfg
        groups = GroupClassifier(
            ((g.name, g.clients) for g in cfg.groups), ((g.name, g.client_ids) for g in cfg.groups)
        )
        self.clients = ClientTable(s.allow, s.rate_burst, self.slots, groups, s.trust_client_mac)
        self._client_get = self.clients.clients.get
        self.special.clients = self.clients
        self.special.ddr_records = ddr_records(cfg)
        self.special.ddr_summary = ddr_summary(cfg)
        self.rate = s.rate_limit
        self.burst = s.rate_burst
        self.max_udp = s.max_udp_size
        self.log_queries = cfg.store.query_log
        self.replies.configure(cfg)
        self._qmemo.clear()  # it holds answer limits and OPT records made from the settings
        self.resolve.configure(cfg)
        self.postcheck.configure(cfg.policy.min_ns_dots)
        self.cache.resize(c.max_entries, c.max_bytes)
        rrl = self.rrl
        if not cfg.rrl.enabled:
            self.rrl = None
        elif rrl is None or rrl.cfg != cfg.rrl:  # a new table only when the settings change
            self.rrl = ResponseLimiter(cfg.rrl, self.stats)

    def set_policy(self, policy: Policy | None) -> None:
        """Swap in a whole new policy version (memoised decisions go with the old one);
        each set of client groups gets its view of it."""
        self.policy = policy
        self.slots.set_policy(policy)

    def set_routes(self, routes: Routes) -> None:
        """What goes to the control plane (published zones, transfers, NOTIFY)."""
        self.special.routes = routes
        self._special_types = (*TYPE_XFR, QTYPE_SVCB, *routes.types)
        self._qmemo.clear()  # a remembered question is one that was not routed

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a slow-path coroutine, kept referenced until done (drained at stop)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ------------------------------------------------------------------ hot path
    def handle(
        self, data: bytes, addr: Any, reply: Reply, tcp: bool, client: ClientState | None = None
    ) -> bytes | None:
        """Answer one query: the answer's bytes now, or None (sent later through *reply*,
        or dropped). *addr*: (address, port, ...); *tcp*: stream transport (TCP, DoT,
        DoH, DoQ: no size limit, no rate limit); *client*: the record of a named device
        (``clients.device``), else the address's own."""
        now = _time()
        stats = self.stats
        stats.queries += 1

        # A query asked before, byte for byte but its ID: stages 1, 2, 3 and 5 gave
        # this result, which depends on those bytes and the settings only (the memo is
        # emptied when they change). Stage 4 (the client) still runs for every query.
        qraw = data[2:]
        qm = self._qmemo_get(qraw)
        if qm is None:
            # Stage 1: header. Too short, too long for UDP, or a response: dropped.
            n = len(data)
            if n < 12 or (n > MAX_UDP_QUERY and not tcp) or data[2] & 0x80:
                stats.dropped_malformed += 1
                return None
            if data[2] & 0x78 or data[4:12] not in _PLAIN_OR_EDNS_Q:
                return self.special.unusual(data, addr, reply, tcp, now)

            # Stage 2: the question, inline (this is wire.scan_name without the call).
            nend = 12
            while nend < n:
                ln = data[nend]
                if ln == 0 or ln > 63:
                    break
                nend += ln + 1
            if nend >= n or data[nend] or nend > 266:  # no root label, pointer, > 255 octets
                return self.special.formerr(data, addr[0], now, tcp)
            nend += 1
            qend = nend + 4
            if qend > n:
                return self.special.formerr(data, addr[0], now, tcp)
            qtc = data[nend:qend]

            # Stage 3: zone-transfer traffic and our published zones' apex go to the
            # control plane; zone transfers are refused when we publish nothing.
            if qtc[:2] in self._special_types:
                routed = self.special.question(data, addr, reply, tcp, now, nend, qtc)
                if routed is not CONTINUE:
                    return routed  # type: ignore[return-value]
                qraw = b""  # answered here, but not remembered: routes can change
        else:
            nend, qend, qtc, key, cd, do, limit, opt = qm

        # Stage 4: client record -> ACL, then UDP rate limit (token bucket). The record
        # keeps the client's policy slot: the view of the policy for its groups.
        ip = addr[0]
        cl = client or self._client_get(ip)
        if cl is None:
            cl = self.clients.lookup(ip, now)
        if not cl.allowed:
            stats.refused += 1
            return self.replies.error(
                data, wire.REFUSED, ip, now, tcp, Outcome.REFUSED, REASON_ACL, wire.EDE_PROHIBITED,
                cl.slot.label,
            )  # fmt: skip
        if self.rate and not tcp:
            tokens = cl.tokens + (now - cl.last) * self.rate
            cl.last = now
            tokens = min(tokens, self.burst)
            if tokens < 1.0:
                cl.tokens = tokens
                return self.replies.ratelimited(data)
            cl.tokens = tokens - 1.0

        if qm is not None:
            if tcp:
                limit = 65535
        else:
            cd = 1 if data[3] & 0x10 else 0
            # Stage 5: OPT record (EDNS0).
            if data[11]:
                if qend + 11 > n:
                    return self.special.formerr(data, ip, now, tcp)
                root, otype, payload, _ext, version, oflags, rdlen = _OPT.unpack_from(data, qend)
                if root or otype != 41 or qend + 11 + rdlen != n:
                    return self.special.formerr(data, ip, now, tcp)
                if version:
                    return self.replies.error(
                        data, wire.BADVERS, ip, now, tcp, Outcome.ERROR, REASON_BADVERS, None,
                        cl.slot.label,
                    )  # fmt: skip
                if rdlen:  # options (cookies, a client MAC): not remembered
                    qraw = b""
                    if cl.mac_trusted:  # EDNS options from a trusted LAN forwarder
                        mac = client_mac(data, qend + 11, n)
                        if mac:
                            cl = self.clients.device(ip, mac, now)
                do = 1 if oflags & 0x8000 else 0
                limit = min(max(payload, 512), self.max_udp)
                opt = self.replies.opt_do if do else self.replies.opt_plain
            else:
                if qend != n:
                    return self.special.formerr(data, ip, now, tcp)
                do = 0
                limit = 512
                opt = b""
            if qtc[2:] != _CLASS_IN:  # CHAOS, HESIOD, ANY: not forwarded
                stats.refused += 1
                return self.replies.error(
                    data, wire.REFUSED, ip, now, tcp, Outcome.REFUSED, REASON_META,
                    wire.EDE_PROHIBITED, cl.slot.label,
                )  # fmt: skip
            key = data[12:nend].lower() + qtc + _BITS[do << 1 | cd]
            if tcp:
                limit = 65535

        # Stage 6: policy pre-check (Client-IP, QNAME): index probes, no parsing.
        # When the decision depends on the name only (policy.by_name_only), it is
        # memoised: on the cache entry ("no rule", per policy version) and, for
        # rewrites, per key; a new policy version invalidates both at once.
        # Triggers that need the answer (Response-IP, NSDNAME, NSIP, CNAME chain
        # names) are decided on the cached entry, or after resolution.
        hit: Hit | None = None
        rewritten = ""  # the action's reason when a memoised rewrite answers
        undecided = False
        found: Match | None = None
        q: Query | None = None
        entry = self._cache_get(key)
        slot = cl.slot
        active = slot.active
        if active is not None and (
            entry is None
            # two compares, not a tuple: the first decides on a hit (no tuple built)
            or (entry.policy_version != active.version and entry.policy_version != active.clear)  # noqa: PLR1714
        ):
            policy = active.policy
            rd = data[2] & 1 == 1
            memo_ok = policy.by_name_only and (rd or not policy.has_recursive_only)
            rewrite = active.rewrites.get(key) if memo_ok else None
            if rewrite is not None and now < rewrite[1].expires:
                # Memoised rewrite: its synthesised entry is served like a cache hit below.
                match, entry = rewrite
                hit = match.hit
                rewritten = REASON_OF[match.action]
                if opt:
                    opt = self.replies.opt_blocked[do]  # EDE 15 Blocked (RFC 8914)
            else:
                found, disabled = policy.check_query(ip, key[:-5], rd)
                if (found is not None and found.typed) or (disabled and _any_typed(disabled)):
                    # A mamori-qtype rule: its branch for this query's type decides.
                    found, disabled = policy.check_typed(ip, key[:-5], key[-5] << 8 | key[-4], rd)
                if found is not None or disabled or entry is not None:
                    q = Query(data, addr, reply, tcp, now, key, qend, opt, do, cd, limit, slot)
                    q.found = found
                    for m in disabled:  # "disabled" zones: log what they would have done
                        self.replies.event(q, -1, "", Outcome.LOG_ONLY, "disabled", m.hit)
                if found is not None and not policy.late_before(found.rule.zone_index):
                    assert q is not None
                    hit = found.hit  # final: no earlier zone has answer-dependent triggers
                    if replaces_answer(found, tcp):
                        return self.rewrite.qname_match(q, found, memo_ok)
                elif entry is not None and now < entry.expires:
                    assert q is not None
                    decision = self.postcheck.on_entry(q, entry, policy)
                    if decision is None:
                        if memo_ok:  # checked: no rule applies
                            entry.policy_version = self._no_rule(q, entry, policy)
                    elif decision == PENDING:  # NS data needed: decide asynchronously
                        self.spawn(self._decide_and_answer(q, entry, ""))
                        return None
                    else:
                        assert not isinstance(decision, str)
                        hit = decision[0].hit
                        if replaces_answer(decision[0], tcp):
                            return self.rewrite.decision(q, decision, entry)
                else:
                    undecided = True  # decided when the answer is there

        # Stage 7: cache (fresh hit -> answer from wire bytes).
        if entry is not None:
            if now < entry.expires:
                if rewritten:
                    stats.rewrites += 1
                else:
                    self._cache_touch(key)
                    stats.cache_hits += 1
                if qm is None and qraw and not tcp and not rewritten:  # remember (see above)
                    if len(self._qmemo) >= QMEMO_MAX:
                        self._qmemo.clear()
                    self._qmemo[qraw] = qm = (nend, qend, qtc, key, cd, do, limit, opt)
                if entry.tail_of is qm and now < entry.tail_until and not rewritten:
                    # The same query within the same second of the entry's age: counts,
                    # question, body and OPT as the last time.
                    resp = data[:2] + entry.flags[data[2] & 1] + entry.tail
                else:
                    age = int(now - entry.born)
                    body = entry.rendered if age == entry.rendered_age else entry.render(age)
                    if opt:
                        tail = entry.counts_edns + data[12:qend] + body + opt
                    else:
                        tail = entry.counts + data[12:qend] + body
                    if rewritten:  # a policy answer shared by names: CD as the query's
                        resp = data[:2] + answer_flags(entry, data) + tail
                    else:
                        resp = data[:2] + entry.flags[data[2] & 1] + tail
                    if qm is not None and not rewritten:
                        entry.tail_of = qm
                        entry.tail = tail
                        entry.tail_until = entry.born + age + 1
                if len(resp) > limit:
                    body = entry.render(int(now - entry.born))
                    resp = self.replies.fit(entry, data, qend, body, opt, limit)
                if self.log_queries or hit is not None:
                    if len(self._event_items) < self.events.limit:
                        self._event_items.append(
                            (now, ip, key, entry.rcode, entry.summary, 0, "",
                             _BLOCKED if rewritten else _CACHED, rewritten, tcp, hit, slot.label)
                        )  # fmt: skip
                    else:
                        self.events.dropped += 1
                return resp
            if now < entry.retry_after and now < entry.stale_until:
                # RFC 8767 failure-recheck timer: upstreams failed recently, answer stale.
                if q is None:
                    q = Query(data, addr, reply, tcp, now, key, qend, opt, do, cd, limit, slot)
                    q.found = found
                if undecided:
                    return self._stale_decided(q, entry)
                return self.replies.stale(q, entry, hit)

        # Stage 8: upstream (slow path, asynchronous). A fresh answer is always
        # checked, even if the expired entry had been (its data may differ now).
        if active is not None and hit is None:
            undecided = True
        stats.cache_misses += 1
        stale = entry if entry is not None and now < entry.stale_until else None
        if q is None:
            q = Query(data, addr, reply, tcp, now, key, qend, opt, do, cd, limit, slot)
            q.found = found
        self.spawn(self._resolve_and_answer(q, stale, hit, undecided))
        return None

    def handle_batch(
        self, msgs: list[tuple[bytes, Any]], one: Callable[[bytes, Any], bytes | None]
    ) -> list[bytes | None]:
        """Answers to a batch of UDP datagrams ``(bytes, address)``, in order (None: no
        answer now), for the batched listener (batchio.py) when no response rate
        limiting is in force. The commonest query is answered here: one asked before
        (remembered), by a known allowed client within its rate limit, whose cache
        entry is fresh, decided for the policy in force and holds the answer made for
        this query in this second of its age; the same answer, counters, LRU touch and
        event as ``handle`` gives. Every other datagram goes to *one* (the listener's
        guarded call of ``handle``). The time is read once per batch."""
        now = _time()
        qget = self._qmemo_get
        cget = self._cache_get
        touch = self._cache_touch
        client_get = self._client_get
        rate = self.rate
        log = self.log_queries
        items = self._event_items
        out: list[bytes | None] = []
        add = out.append
        hits = 0
        for data, addr in msgs:
            qm = qget(data[2:])
            if qm is not None:
                ip = addr[0]
                cl = client_get(ip)
                key = qm[3]
                entry = cget(key)
                if (
                    cl is not None
                    and cl.allowed
                    and entry is not None
                    and entry.tail_of is qm
                    and now < entry.tail_until
                    and now < entry.expires
                ):
                    slot = cl.slot
                    active = slot.active
                    if active is None or entry.policy_version in (active.version, active.clear):
                        resp = data[:2] + entry.flags[data[2] & 1] + entry.tail
                        if len(resp) <= qm[6]:
                            if rate:  # stage 4's token bucket, as handle() runs it
                                tokens = min(cl.tokens + (now - cl.last) * rate, self.burst)
                                if tokens < 1.0:
                                    add(one(data, addr))  # limited: handle() answers it
                                    continue
                                cl.last = now
                                cl.tokens = tokens - 1.0
                            touch(key)
                            hits += 1
                            if log:
                                if len(items) < self.events.limit:
                                    items.append(
                                        (now, ip, key, entry.rcode, entry.summary, 0, "",
                                         _CACHED, "", False, None, slot.label)
                                    )  # fmt: skip
                                else:
                                    self.events.dropped += 1
                            add(resp)
                            continue
            add(one(data, addr))
        if hits:
            stats = self.stats
            stats.queries += hits
            stats.cache_hits += hits
        return out

    # ----------------------------------------------------------------- slow path
    async def _resolve_and_answer(
        self, q: Query, stale: Entry | None, hit: Hit | None, undecided: bool
    ) -> None:
        """Stage 8: resolve upstream, then decide the policy on the answer, then answer."""
        result = await self.resolve.answer(q, stale)
        if result is None:
            q.send(self._resolution_failed(q, stale, hit, undecided))
            return
        entry, upstream = result
        if not undecided:
            q.send(self.replies.entry_answer(q, entry, Outcome.RESOLVED, hit, upstream))
            return
        await self._decide_and_answer(q, entry, upstream)

    def _resolution_failed(
        self, q: Query, stale: Entry | None, hit: Hit | None, undecided: bool
    ) -> bytes | None:
        """No upstream answer: stale (RFC 8767), the QNAME match alone, or SERVFAIL."""
        if self.cfg.cache.serve_stale and stale is not None:
            if undecided:
                return self._stale_decided(q, stale, REASON_UPSTREAM)
            return self.replies.stale(q, stale, hit, REASON_UPSTREAM)
        found = q.found
        if undecided and found is not None and replaces_answer(found, q.tcp):
            # No answer to check other triggers against: the QNAME match stands.
            return self.rewrite.qname_match(q, found, memo=False)
        self.stats.servfail += 1
        return self.replies.error(
            q.data, wire.SERVFAIL, q.ip, q.now, q.tcp, Outcome.ERROR, REASON_UPSTREAM,
            wire.EDE_NO_REACHABLE_AUTHORITY, q.slot.label,
        )  # fmt: skip

    async def _decide_and_answer(self, q: Query, entry: Entry, upstream: str) -> None:
        """Decide the answer-dependent triggers on *entry* (NS data looked up), then answer.

        *upstream* "" means the entry came from the cache.
        """
        active = q.slot.active
        hit = q.found.hit if q.found is not None else None
        if active is not None:
            # Again: the policy may have been swapped while we waited for the answer
            # (a reload, a zone transfer): decide with the one now in force.
            policy = active.policy
            q.found = policy.check_query_typed(q.ip, q.qname, q.qtype, q.rd)[0]
            decision = await self.postcheck.decide(q, entry, policy)
            if decision is None:
                hit = None
                if policy.by_name_only and (q.rd or not policy.has_recursive_only):
                    entry.policy_version = self._no_rule(q, entry, policy)  # checked: no rule
            else:
                hit = decision[0].hit
                if replaces_answer(decision[0], q.tcp):
                    q.send(self.rewrite.decision(q, decision, entry))
                    return
        outcome = Outcome.RESOLVED if upstream else Outcome.CACHED
        q.send(self.replies.entry_answer(q, entry, outcome, hit, upstream))

    def _no_rule(self, q: Query, entry: Entry, policy: Policy) -> int:
        """The version to memoise on *entry*, for which *policy* has no rule (by name).

        *policy* may be a client's view (client groups): when the whole policy
        has no rule for *entry* either, its version (``ActivePolicy.clear``), which
        every view of it takes (a view's zones are some of the whole's), so
        clients of different groups asking the same names do not decide them
        again in turn; otherwise the view's own.
        """
        base = policy.base
        if base is policy or not (base.by_name_only and (q.rd or not base.has_recursive_only)):
            return policy.version
        found, disabled = base.check_query_typed(None, q.qname, q.qtype, q.rd)
        if found is not None or disabled or q.found is not None:
            return policy.version
        decision = self.postcheck.on_entry(q, entry, base)  # PENDING (NS data): the view's
        return base.version if decision is None else policy.version

    def _stale_decided(self, q: Query, entry: Entry, reason: str = "") -> bytes | None:
        """A stale answer with the policy decided on it (NS data as far as cached)."""
        active = q.slot.active
        hit = q.found.hit if q.found is not None else None
        if active is not None:
            decision = self.postcheck.on_entry(q, entry, active.policy, missing_ns_ok=True)
            if decision is not None and not isinstance(decision, str):
                hit = decision[0].hit
                if replaces_answer(decision[0], q.tcp):
                    return self.rewrite.decision(q, decision, entry)
            elif decision is None:
                hit = None
        if reason:
            return self.replies.stale(q, entry, hit, reason)
        return self.replies.stale(q, entry, hit)

    def close(self) -> None:
        self.resolve.upstreams.close()


def _any_typed(matches: list[Match]) -> bool:
    return any(m.typed for m in matches)


__all__ = ["Decision", "Pipeline"]
