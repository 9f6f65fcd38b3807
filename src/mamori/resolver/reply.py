"""The reply stage: answers put together from wire parts, and the event of each query.

Every answer that leaves the pipeline goes through here (the cache-hit fast
path inlines the same steps): an entry's body behind the client's header and
question, cut to the client's size limit (additional section dropped, then
TC=1, RFC 2181 section 9), stale answers (RFC 8767), error answers echoing as
much of the query as parses, and the query event with its typed outcome.
No dnspython here.
"""

from __future__ import annotations

import logging
import struct
import time

from mamori.config import Config
from mamori.dnsutil import wire
from mamori.resolver.cache import Entry
from mamori.resolver.events import EventQueue
from mamori.resolver.query import (
    REASON_RECHECK,
    REASON_UPSTREAM_REFUSED,
    REASON_UPSTREAM_SERVFAIL,
    Hit,
    Outcome,
    Query,
)

_HDR_TAIL = struct.Struct("!HHHHH")
log = logging.getLogger("mamori.resolver.pipeline")

# An upstream's REFUSED passed on to the client is marked with EDE 22 (No Reachable
# Authority, RFC 8914 4.23: "could not reach any of the authoritative name servers
# (or they potentially refused to reply)"): the upstream did answer, so not EDE 23
# (Network Error), and not our own refusal (EDE 18, Prohibited: the ACL).
UPSTREAM_REFUSED_TEXT = "the upstream answered REFUSED"


class Stats:
    """Counters of one data plane (read by the stats log line and /metrics; summed over workers)."""

    __slots__ = (
        "cache_hits",
        "cache_misses",
        "dropped_malformed",
        "formerr",
        "notimp",
        "policy_drops",
        "queries",
        "ratelimited",
        "refused",
        "rewrites",
        "rrl_dropped_errors",
        "rrl_dropped_nxdomains",
        "rrl_dropped_responses",
        "rrl_limited_errors",
        "rrl_limited_nxdomains",
        "rrl_limited_responses",
        "rrl_slipped_errors",
        "rrl_slipped_nxdomains",
        "rrl_slipped_responses",
        "servfail",
        "stale_answers",
        "truncated",
        "udp_send_dropped",
        "upstream_refused",
    )

    def __init__(self) -> None:
        self.queries = 0  # messages received
        self.cache_hits = 0
        self.cache_misses = 0  # questions sent upstream
        self.stale_answers = 0  # RFC 8767
        self.rewrites = 0  # answers replaced by policy
        self.policy_drops = 0  # policy DROP: nothing sent
        self.refused = 0  # ACL, meta queries
        self.ratelimited = 0
        self.formerr = 0
        self.notimp = 0
        self.servfail = 0
        self.truncated = 0  # answers sent with TC=1
        self.upstream_refused = 0  # upstream REFUSED answers passed on (with EDE 22)
        self.dropped_malformed = 0  # too short, too long, or a response
        self.udp_send_dropped = 0  # UDP answers not sent: refused by the kernel, or queue full
        # Response rate limiting (rrl.py), by kind: answers over their rate (limited), of
        # which sent as TC=1 (slipped) or not sent (dropped); with log_only, limited only.
        self.rrl_limited_responses = 0
        self.rrl_limited_nxdomains = 0
        self.rrl_limited_errors = 0
        self.rrl_slipped_responses = 0
        self.rrl_slipped_nxdomains = 0
        self.rrl_slipped_errors = 0
        self.rrl_dropped_responses = 0
        self.rrl_dropped_nxdomains = 0
        self.rrl_dropped_errors = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def answer_flags(entry: Entry, data: bytes) -> bytes:
    """The 2 flag bytes of *entry*'s answer to the query *data*: its RD, and its CD
    (RFC 4035 section 3.2.2; cached entries have it already, as CD is part of their
    key; synthesised policy answers shared by all names get it here)."""
    flags = entry.flags[data[2] & 1]
    if data[3] & 0x10 and not flags[1] & 0x10:
        return bytes((flags[0], flags[1] | 0x10))
    return flags


class Replies:
    """Builds answers and logs events. Settings come from ``configure`` (start and SIGHUP)."""

    def __init__(self, cfg: Config, stats: Stats, events: EventQueue) -> None:
        self.stats = stats
        self.events = events
        self.refused_by: set[str] = set()  # upstreams whose REFUSED was logged (once each)
        self.configure(cfg)

    def configure(self, cfg: Config) -> None:
        self.max_udp = cfg.server.max_udp_size
        self.rate_action = cfg.server.rate_limit_action
        self.log_queries = cfg.store.query_log
        self.stale_ttl = cfg.cache.stale_answer_ttl
        self.opt_plain = wire.build_opt(self.max_udp, False)
        self.opt_do = wire.build_opt(self.max_udp, True)
        # EDE 15 Blocked (RFC 8914), for policy answers; index: DO bit
        self.opt_blocked = (
            wire.build_opt(self.max_udp, False, wire.EDE_BLOCKED),
            wire.build_opt(self.max_udp, True, wire.EDE_BLOCKED),
        )
        # EDE 22 for an upstream's REFUSED (slow path only: REFUSED is never cached)
        self.opt_upstream_refused = tuple(
            wire.build_opt(self.max_udp, do, wire.EDE_NO_REACHABLE_AUTHORITY, UPSTREAM_REFUSED_TEXT)
            for do in (False, True)
        )

    # ------------------------------------------------------------ events
    def event(
        self,
        q: Query,
        rcode: int,
        answer: str,
        outcome: Outcome,
        reason: str = "",
        hit: Hit | None = None,
        latency: int = 0,
        upstream: str = "",
    ) -> None:
        """Queue the event of *q* (the cache-hit fast path inlines this)."""
        if self.log_queries or hit is not None:
            self.events.put(
                (q.now, q.ip, q.key, rcode, answer, latency, upstream, outcome.value, reason,
                 q.tcp, hit, q.slot.label)
            )  # fmt: skip

    # ----------------------------------------------------------- answers
    def assemble(self, q: Query, entry: Entry, body: bytes, opt: bytes) -> bytes:
        """Header + question of *q*, *body* of *entry*, *opt*; cut to the client's limit."""
        data = q.data
        counts = entry.counts_edns if opt else entry.counts
        resp = data[:2] + answer_flags(entry, data) + counts + data[12 : q.qend] + body + opt
        if len(resp) > q.limit:
            resp = self.fit(entry, data, q.qend, body, opt, q.limit)
        return resp

    def fit(
        self, entry: Entry, data: bytes, qend: int, body: bytes, opt: bytes, limit: int
    ) -> bytes:
        """Make an answer fit *limit*: drop the additional section, else TC=1 (RFC 2181 9)."""
        counts = entry.counts_short_edns if opt else entry.counts_short
        flags = answer_flags(entry, data)
        short = data[:2] + flags + counts + data[12:qend] + body[: entry.an_ns_len] + opt
        if len(short) <= limit:
            return short
        self.stats.truncated += 1
        tc = struct.unpack("!H", flags)[0] | wire.TC
        return data[:2] + _HDR_TAIL.pack(tc, 1, 0, 0, 1 if opt else 0) + data[12:qend] + opt

    def entry_answer(
        self, q: Query, entry: Entry, outcome: Outcome, hit: Hit | None, upstream: str = ""
    ) -> bytes:
        """An upstream or cached answer as it is (TTLs aged), with its event.

        An upstream's REFUSED (never cached, so only here) gets EDE 22 when the
        client sent EDNS, the reason ``upstream-refused``, and one log line per
        upstream.
        """
        age = int(time.time() - entry.born)
        opt = q.opt
        reason = ""
        if entry.rcode == wire.SERVFAIL:
            self.stats.servfail += 1
            reason = REASON_UPSTREAM_SERVFAIL
        elif entry.rcode == wire.REFUSED:
            self.stats.upstream_refused += 1
            reason = REASON_UPSTREAM_REFUSED
            if opt:
                opt = self.opt_upstream_refused[1 if q.do else 0]
            if upstream not in self.refused_by:
                self.refused_by.add(upstream)
                log.warning(
                    "upstream %s answered REFUSED (first for %s): passed on to clients with"
                    " EDE 22 (No Reachable Authority); not logged again, counted as"
                    " upstream_refused (query log reason upstream-refused)",
                    upstream or "(cache)",
                    wire.name_to_text(q.key[:-5]),
                )
        resp = self.assemble(q, entry, entry.render(age), opt)
        latency = int((time.time() - q.now) * 1e6) if outcome is Outcome.RESOLVED else 0
        self.event(q, entry.rcode, entry.summary, outcome, reason, hit, latency, upstream)
        return resp

    def stale(self, q: Query, entry: Entry, hit: Hit | None, reason: str = REASON_RECHECK) -> bytes:
        """An expired entry served with a short TTL and EDE 3 (RFC 8767, RFC 8914)."""
        self.stats.stale_answers += 1
        body = entry.render_fixed(self.stale_ttl)
        opt = q.opt
        if opt:
            opt = wire.build_opt(self.max_udp, bool(q.do), wire.EDE_STALE_ANSWER)
        resp = self.assemble(q, entry, body, opt)
        self.event(q, entry.rcode, entry.summary, Outcome.STALE, reason, hit)
        return resp

    def ratelimited(self, data: bytes) -> bytes | None:
        """The answer to a client over its query rate: REFUSED, TC=1 or nothing.

        Not logged per query (a flood would fill the event queue): counted.
        """
        self.stats.ratelimited += 1
        if self.rate_action == "drop" or len(data) < 12:
            return None
        try:
            qend = wire.scan_name(data, 12) + 4 if data[4:6] == b"\x00\x01" else 0
        except wire.WireError:
            qend = 0
        qend = qend if qend <= len(data) else 0
        if self.rate_action == "truncate":
            return wire.error_response(data, wire.NOERROR, qend, tc=True)
        return wire.error_response(data, wire.REFUSED, qend)

    def error(
        self,
        data: bytes,
        rcode: int,
        ip: str,
        now: float,
        tcp: bool,
        outcome: Outcome,
        reason: str,
        ede: int | None = None,
        group: str = "",
    ) -> bytes:
        """An error answer echoing as much of the query as parses, with its event
        (*group*: the client's groups as the query log shows them).

        *rcode* may be an extended rcode (BADVERS): its high bits go in the OPT record.
        """
        if rcode == wire.FORMERR:
            self.stats.formerr += 1
        qend = 0
        opt = b""
        key = b"\x00\x00\x00\x00\x00\x00"
        if data[4:6] == b"\x00\x01":
            try:
                nend = wire.scan_name(data, 12)
                if nend + 4 <= len(data):
                    qend = nend + 4
                    key = data[12:nend].lower() + data[nend:qend] + b"\x00"
                    if data[10:12] == b"\x00\x01":
                        edns, _ = wire.parse_opt(data, qend)
                        if rcode == wire.BADVERS:
                            opt = wire.build_opt_ext(self.max_udp, edns.do, wire.BADVERS >> 4)
                        else:
                            opt = wire.build_opt(self.max_udp, edns.do, ede)
            except wire.WireError:
                pass
        if self.log_queries:
            self.events.put(
                (now, ip, key, rcode, "", 0, "", outcome.value, reason, tcp, None, group)
            )
        return wire.error_response(data, rcode & 0xF, qend, opt)
