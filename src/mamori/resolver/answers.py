"""Answers other than "the cache or the upstream said so": errors, truncation,
stale data, rate-limit replies, and the query event itself. A mixin of
``Pipeline`` (kept apart so the pipeline module shows the stages)."""

from __future__ import annotations

import struct
from collections.abc import Callable

from mamori.config import Config
from mamori.dnsutil import wire
from mamori.resolver.cache import Entry
from mamori.resolver.events import EventQueue, Hit


class Stats:
    """Counters of the DNS service (read by the stats log line and, later, /metrics)."""

    __slots__ = (
        "cache_hits",
        "cache_misses",
        "dropped_malformed",
        "formerr",
        "notimp",
        "queries",
        "ratelimited",
        "refused",
        "rewrites",
        "servfail",
        "stale_answers",
        "truncated",
    )

    def __init__(self) -> None:
        self.queries = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.stale_answers = 0
        self.rewrites = 0
        self.refused = 0
        self.ratelimited = 0
        self.formerr = 0
        self.notimp = 0
        self.servfail = 0
        self.truncated = 0
        self.dropped_malformed = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class SpecialAnswers:
    """Needs these attributes from the class it is mixed into."""

    stats: Stats
    cfg: Config
    events: EventQueue
    max_udp: int
    opt_do: bytes
    rate_action: str
    log_queries: bool
    notify_handler: Callable[[bytes, str], bytes | None] | None

    def _fit(
        self, entry: Entry, data: bytes, qend: int, body: bytes, opt: bytes, limit: int
    ) -> bytes:
        """Make an answer fit *limit*: drop the additional section, else TC=1 (RFC 2181 9)."""
        counts = entry.counts_short_edns if opt else entry.counts_short
        short = (
            data[:2]
            + entry.flags[data[2] & 1]
            + counts
            + data[12:qend]
            + body[: entry.an_ns_len]
            + opt
        )
        if len(short) <= limit:
            return short
        self.stats.truncated += 1
        flags = struct.unpack("!H", entry.flags[data[2] & 1])[0] | wire.TC
        return (
            data[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 1 if opt else 0) + data[12:qend] + opt
        )

    def _stale(
        self,
        entry: Entry,
        data: bytes,
        qend: int,
        opt: bytes,
        limit: int,
        key: bytes,
        ip: str,
        now: float,
        tcp: bool,
        hit: Hit | None = None,
    ) -> bytes:
        """An expired entry served with a short TTL and EDE 3 (RFC 8767, RFC 8914)."""
        self.stats.stale_answers += 1
        body = entry.render_fixed(self.cfg.cache.stale_answer_ttl)
        if opt:
            opt = wire.build_opt(self.max_udp, opt is self.opt_do, wire.EDE_STALE_ANSWER)
        counts = entry.counts_edns if opt else entry.counts
        resp = data[:2] + entry.flags[data[2] & 1] + counts + data[12:qend] + body + opt
        if len(resp) > limit:
            resp = self._fit(entry, data, qend, body, opt, limit)
        self._event(now, ip, key, entry.rcode, "stale:" + entry.summary, 0, tcp, hit, "", True)
        return resp

    def _ratelimited(self, data: bytes) -> bytes | None:
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

    def _unusual(self, data: bytes, ip: str, now: float, tcp: bool) -> bytes | None:
        """Opcode other than QUERY, or section counts other than one question (+ OPT)."""
        opcode = (data[2] >> 3) & 0xF
        if opcode == 4 and self.notify_handler is not None:  # NOTIFY for a transferred zone
            return self.notify_handler(data, ip)
        if opcode != 0:
            self.stats.notimp += 1
            return self._error(data, wire.NOTIMP, ip, now, tcp)
        return self._error(data, wire.FORMERR, ip, now, tcp)

    def _error(
        self, data: bytes, rcode: int, ip: str, now: float, tcp: bool, ede: int | None = None
    ) -> bytes:
        """An error answer echoing as much of the query as parses; logged as an event."""
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
        self._event(now, ip, key, rcode, "", 0, tcp, None)
        return wire.error_response(data, rcode & 0xF, qend, opt)

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
    ) -> None:
        """Queue an event (slow paths; the cache-hit path inlines this)."""
        if self.log_queries or hit is not None:
            self.events.put((now, ip, key, rcode, answer, latency, upstream, cache_hit, tcp, hit))
