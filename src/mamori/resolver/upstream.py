"""Forwarding to upstream resolvers: UDP with TCP fallback on TC=1, TCP only, or
encrypted: DNS over TLS and over HTTPS on persistent connections (upstream_tls.py).

Each upstream keeps a smoothed RTT and a consecutive-failure count. Queries go
to the healthy upstream with the lowest smoothed RTT first and fail over to the
next on timeout, network error, SERVFAIL or REFUSED. After ``down_after``
consecutive failures an upstream is marked down for ``down_for`` seconds and is
tried only when every other one has failed too.

Spoofing resistance: UDP queries leave from a small pool of connected sockets
per upstream (kernel-chosen random ports), each retired after a few hundred
queries, with a random 16-bit ID; a reply must match ID and question.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import secrets
import struct
import time
from dataclasses import dataclass
from typing import Protocol, cast

from mamori.config import UpstreamConfig, UpstreamServer
from mamori.dnsutil import wire
from mamori.resolver.upstream_tls import DohConnection, DotConnection, tls_context

log = logging.getLogger(__name__)

_HDR = struct.Struct("!HHHHHH")
CHANNELS_PER_UPSTREAM = 4
QUERIES_PER_CHANNEL = 500
EDNS_PAYLOAD = 1232


class UpstreamError(Exception):
    """No usable answer from any upstream."""


@dataclass(frozen=True)
class UpstreamHealth:
    """One upstream server as /metrics and the console show it (summed over workers).

    *srtt*: smoothed answer time (seconds, 0 = never measured); *latency*:
    cumulative-per-bucket counts of answer times for LATENCY_BUCKETS, then +Inf;
    *latency_sum*: seconds.
    """

    name: str
    up: bool
    srtt: float
    queries: int
    errors: int
    tcp_fallbacks: int
    latency: tuple[int, ...]
    latency_sum: float


class Upstreams(Protocol):
    """Where the pipeline resolves a cache miss: forwarders (``UpstreamPool``), or a fake.

    The pipeline needs only this; tests give it an in-process fake
    (tests/support/fake_upstream.py) to exercise the slow path without sockets.
    """

    async def resolve(self, question: bytes, flags: int, do: bool) -> tuple[bytes, str]:
        """Ask for *question* (lowercased wire name + type + class) with header *flags*
        (RD, CD) and EDNS DO bit *do*; return the raw answer and the name of the server
        that gave it. Raise UpstreamError when no server gives a usable answer."""
        ...

    def health(self) -> list[UpstreamHealth]:
        """Every server's state now."""
        ...

    def close(self) -> None:
        """Close sockets (the pipeline is stopping, or the upstreams were reconfigured)."""
        ...


class _UdpChannel(asyncio.DatagramProtocol):
    """One connected UDP socket with its outstanding queries by ID."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[bytes, asyncio.Future[bytes]]] = {}
        self.used = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop: not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        qid = (data[0] << 8) | data[1]
        item = self.pending.get(qid)
        if item is None:
            return
        question, fut = item
        if not wire.same_question(data, question) or fut.done():
            return  # not the answer to our question: ignore (spoofing defence)
        del self.pending[qid]
        fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: fail everything outstanding at once.
        for _, fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionRefusedError(str(exc)))
        self.pending.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for _, fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("socket closed"))
        self.pending.clear()

    def close_when_idle(self) -> None:
        if not self.pending and self.transport is not None:
            self.transport.close()


# seconds: upper bounds of the upstream latency histogram (/metrics)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Upstream:
    """One upstream server with health state."""

    def __init__(self, server: UpstreamServer, cfg: UpstreamConfig) -> None:
        self.server = server
        # plain upstreams by address (as the query log always showed them); encrypted
        # ones as configured (tls://ADDR:PORT#name, https://HOST:PORT/path)
        self.name = str(server.endpoint) if server.transport in ("udp", "tcp") else str(server)
        self.cfg = cfg
        self.srtt = 0.0  # 0 = never measured yet
        self.fails = 0
        self.down_until = 0.0
        self.queries = 0
        self.errors = 0
        self.tcp_fallbacks = 0
        # answer latency histogram (cumulative counts per LATENCY_BUCKETS bound, then +Inf)
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self._channels: list[_UdpChannel] = []
        self._rr = 0
        self._encrypted: DotConnection | DohConnection | None = None

    # -- health -------------------------------------------------------------
    def is_up(self, now: float) -> bool:
        """*now*: time.monotonic()."""
        return self.down_until <= now

    def health(self, now: float) -> UpstreamHealth:
        return UpstreamHealth(
            self.name,
            self.is_up(now),
            self.srtt,
            self.queries,
            self.errors,
            self.tcp_fallbacks,
            tuple(self.latency),
            self.latency_sum,
        )

    def record_success(self, rtt: float) -> None:
        self.srtt = rtt if self.srtt == 0.0 else 0.7 * self.srtt + 0.3 * rtt
        self.latency[bisect.bisect_left(LATENCY_BUCKETS, rtt)] += 1
        self.latency_sum += rtt
        if self.fails >= self.cfg.down_after:
            log.info("upstream %s is answering again", self.name)
        self.fails = 0
        self.down_until = 0.0

    def record_failure(self, now: float, reason: str) -> None:
        self.errors += 1
        self.fails += 1
        # Penalise, but keep it bounded so a recovered server can win back quickly.
        self.srtt = min(max(self.srtt, 0.05) * 2 + self.cfg.timeout, 10 * self.cfg.timeout)
        if self.fails == self.cfg.down_after:
            log.warning(
                "upstream %s marked down for %.0fs: %s", self.name, self.cfg.down_for, reason
            )
        if self.fails >= self.cfg.down_after:
            self.down_until = now + self.cfg.down_for

    # -- transport ----------------------------------------------------------
    async def query(self, question: bytes, flags: int, do: bool) -> bytes:
        """Send one query; return the raw answer (TCP retry on TC=1)."""
        self.queries += 1
        opt = wire.build_opt(EDNS_PAYLOAD, do)
        transport = self.server.transport
        if transport in ("tls", "https"):
            conn = self._encrypted
            if conn is None:
                conn = self._encrypted = self._connect_encrypted()
            async with asyncio.timeout(self.cfg.timeout):
                return await conn.query(question, flags, opt)
        if transport == "tcp":
            return await self._query_tcp(question, flags, opt)
        resp = await self._query_udp(question, flags, opt)
        if resp[2] & 0x02:  # TC
            self.tcp_fallbacks += 1
            return await self._query_tcp(question, flags, opt)
        return resp

    def _connect_encrypted(self) -> DotConnection | DohConnection:
        ca = self.cfg.ca_file
        conn: DotConnection | DohConnection
        if self.server.transport == "tls":
            conn = DotConnection(self.server, tls_context(ca), self.name)
        else:
            conn = DohConnection(self.server, tls_context(ca, ["h2"]), self.name)
        conn.ca_file = ca
        return conn

    async def _channel(self) -> _UdpChannel:
        chans = self._channels
        for ch in list(chans):
            if ch.closed or ch.used >= QUERIES_PER_CHANNEL:
                chans.remove(ch)
                ch.close_when_idle()
        if len(chans) < CHANNELS_PER_UPSTREAM:
            loop = asyncio.get_running_loop()
            ep = self.server.endpoint
            _, proto = await loop.create_datagram_endpoint(
                _UdpChannel, remote_addr=(ep.host, ep.port)
            )
            chans.append(proto)
            return proto
        self._rr = (self._rr + 1) % len(chans)
        return chans[self._rr]

    async def _query_udp(self, question: bytes, flags: int, opt: bytes) -> bytes:
        ch = await self._channel()
        ch.used += 1
        qid = secrets.randbits(16)
        while qid in ch.pending:
            qid = secrets.randbits(16)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        ch.pending[qid] = (question, fut)
        assert ch.transport is not None
        ch.transport.sendto(wire.build_query(qid, question[:-4], question[-4:], flags, opt))
        try:
            async with asyncio.timeout(self.cfg.timeout):
                return await fut
        finally:
            ch.pending.pop(qid, None)
            if ch.used >= QUERIES_PER_CHANNEL:
                ch.close_when_idle()

    async def _query_tcp(self, question: bytes, flags: int, opt: bytes) -> bytes:
        ep = self.server.endpoint
        qid = secrets.randbits(16)
        msg = wire.build_query(qid, question[:-4], question[-4:], flags, opt)
        async with asyncio.timeout(self.cfg.timeout):
            reader, writer = await asyncio.open_connection(ep.host, ep.port)
            try:
                writer.write(struct.pack("!H", len(msg)) + msg)
                while True:
                    (ln,) = struct.unpack("!H", await reader.readexactly(2))
                    resp = await reader.readexactly(ln)
                    if (
                        len(resp) >= 12
                        and (resp[0] << 8 | resp[1]) == qid
                        and wire.same_question(resp, question)
                    ):
                        return resp
            finally:
                writer.close()

    def close(self) -> None:
        for ch in self._channels:
            if ch.transport is not None:
                ch.transport.close()
        self._channels.clear()
        if self._encrypted is not None:
            self._encrypted.close()
            self._encrypted = None


class UpstreamPool:
    """Chooses among upstreams by health and RTT, with failover."""

    def __init__(self, cfg: UpstreamConfig) -> None:
        self.cfg = cfg
        self.upstreams = [Upstream(s, cfg) for s in cfg.servers]

    def order(self, now: float) -> list[Upstream]:
        up = sorted((u for u in self.upstreams if u.is_up(now)), key=lambda u: u.srtt)
        down = sorted((u for u in self.upstreams if not u.is_up(now)), key=lambda u: u.down_until)
        return up + down

    async def resolve(self, question: bytes, flags: int, do: bool) -> tuple[bytes, str]:
        """Ask upstreams in order until one answers usefully; raise UpstreamError."""
        resp, up = await self.resolve_with(question, flags, do)
        return resp, up.name

    def health(self) -> list[UpstreamHealth]:
        now = time.monotonic()
        return [u.health(now) for u in self.upstreams]

    async def resolve_with(self, question: bytes, flags: int, do: bool) -> tuple[bytes, Upstream]:
        """``resolve``, returning the server object itself."""
        order = self.order(time.monotonic())
        last_reason = "no upstream"
        fallback: tuple[bytes, Upstream] | None = None
        for attempt in range(max(self.cfg.attempts, 1)):
            up = order[attempt % len(order)]
            t0 = time.monotonic()
            try:
                resp = await up.query(question, flags, do)
            except TimeoutError:
                last_reason = f"{up.name}: timeout after {self.cfg.timeout:g}s"
                up.record_failure(time.monotonic(), "timeout")
                continue
            except (OSError, EOFError, asyncio.IncompleteReadError) as e:
                last_reason = f"{up.name}: {e.__class__.__name__}: {e}"
                up.record_failure(time.monotonic(), str(e) or e.__class__.__name__)
                continue
            rcode = resp[3] & 0x0F
            if rcode in (wire.SERVFAIL, wire.REFUSED):
                # The server is alive but gave no answer: try another one.
                up.record_success(time.monotonic() - t0)
                last_reason = f"{up.name}: rcode {rcode}"
                fallback = fallback or (resp, up)
                if len(order) > 1:
                    continue
                return resp, up
            up.record_success(time.monotonic() - t0)
            return resp, up
        if fallback is not None:
            return fallback
        raise UpstreamError(last_reason)

    def close(self) -> None:
        for u in self.upstreams:
            u.close()
