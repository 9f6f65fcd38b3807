"""UDP and TCP listeners feeding a message handler (asyncio protocols, run on uvloop).

The handler is ``Pipeline.handle`` (or, for ``mamori zones serve``, the
control plane's zone-transfer router): ``handle(data, addr, reply, tcp)``
returns the answer to send now, or None (answered later through *reply*, or
not at all). A TCP connection can be handed over whole to another handler
(``TcpConnection.take_over``): the data plane gives a zone-transfer connection to
the control plane that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from mamori.config import Endpoint
from mamori.dnsutil import wire
from mamori.errors import StartupError
from mamori.resolver.query import Reply

if TYPE_CHECKING:
    from mamori.resolver.rrl import ResponseLimiter

log = logging.getLogger(__name__)

UDP_RCVBUF = 4 * 1024 * 1024
_LEN = struct.Struct("!H")
# Linux's IP_PKTINFO (the socket module names it from Python 3.12 on)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
WILDCARD_HOSTS = ("0.0.0.0", "::")


def receive_local(sock: socket.socket) -> None:
    """Turn on the reception of each datagram's local address on the UDP *sock*
    (``IP_PKTINFO`` / ``IPV6_RECVPKTINFO``; batchio.py answers from it).

    Linux fills an IPv4 datagram's ``ipi_spec_dst`` (the address to answer from) when
    the datagram is queued: one queued before this option was on reads as 0.0.0.0,
    so a listening socket gets it before ``bind`` (``bind_socket``). Raises OSError
    when the kernel refuses the option.
    """
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)


class Handler(Protocol):
    """What the listeners feed: ``Pipeline`` or the control plane's zone-traffic router.

    A handler may also have ``handle_batch(msgs, one) -> answers`` (the DNSBL
    responder): the batched UDP listener (batchio.py) then gives it each batch of
    ``(bytes, address)`` datagrams at once and sends ``answers[i]`` (bytes, or None)
    to the sender of datagram i; *one(data, addr)* is the listener's guarded call of
    ``handle`` for a datagram it does not answer itself.
    """

    def handle(self, data: bytes, addr: Any, reply: Reply, tcp: bool) -> bytes | None: ...


class Limits(Protocol):
    """Where a UDP listener finds the response rate limiter in force (``Pipeline.rrl``,
    replaced on reload; None: off). TCP answers are never limited."""

    @property
    def rrl(self) -> ResponseLimiter | None: ...


class NoLimits:
    """For listeners with no response rate limiting (DNSBL zones, ``mamori zones serve``)."""

    rrl = None


NO_LIMITS = NoLimits()


# Takes a connection over: (its socket, the message that asked for it, bytes read after it)
TakeOver = Callable[[socket.socket, bytes, bytes], None]


class UdpServer(asyncio.DatagramProtocol):
    def __init__(self, handler: Handler, limits: Limits = NO_LIMITS) -> None:
        self.handle = handler.handle
        self.limits = limits
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop: not a subclass
        self.sendto = self.transport.sendto

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            resp = self.handle(data, addr, self.reply, False)
        except Exception:
            resp = internal_error(data)
        if resp is not None:
            rrl = self.limits.rrl
            if rrl is not None:
                resp = rrl.check(resp, addr)
                if resp is None:
                    return
            self.sendto(resp, addr)

    def reply(self, resp: bytes, addr: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            rrl = self.limits.rrl
            if rrl is not None:
                limited = rrl.check(resp, addr)
                if limited is None:
                    return
                resp = limited
            self.sendto(resp, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp socket error: %s", exc)


class TcpConnection(asyncio.Protocol):
    """One client connection: length-prefixed messages, pipelined (RFC 7766).

    Bounds (``TcpListener``): connections in all and per client address (more are
    closed at once); the idle timeout; the read timeout (a message begun must be
    whole within it: a client trickling bytes is closed); and flow control: while
    the answers waiting to be sent exceed the transport's high-water mark (a
    client that pipelines queries without reading its answers), its queries are
    not read.
    """

    def __init__(self, server: TcpListener) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.client = ""  # the address counted in server.per_client ("" not counted)
        self.buf = b""
        self.idle: asyncio.TimerHandle | None = None
        self.reading: asyncio.TimerHandle | None = None  # read timeout of a message begun
        self.taker: tuple[TakeOver, bytes] | None = None  # set by take_over()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop: not a subclass
        self.peer = self.transport.get_extra_info("peername")
        srv = self.server
        if len(srv.connections) >= srv.max_connections:
            srv.refused_total += 1
            self.transport.abort()
            return
        if srv.max_per_client and self.peer:
            ip = self.peer[0]
            held = srv.per_client.get(ip, 0)
            if held >= srv.max_per_client:
                srv.refused_per_client += 1
                if srv.refused_per_client == 1 or srv.refused_per_client % 1000 == 0:
                    log.info(
                        "tcp: %s has %d connections open (tcp_max_per_client): closing more"
                        " (%d so far)", ip, held, srv.refused_per_client,
                    )  # fmt: skip
                self.transport.abort()
                return
            srv.per_client[ip] = held + 1
            self.client = ip
        srv.connections.add(self)
        self._arm()

    def _arm(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        loop = asyncio.get_running_loop()
        self.idle = loop.call_later(self.server.idle_timeout, self._timeout)

    def _timeout(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _read_timeout(self) -> None:
        self.server.read_timeouts += 1
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self._arm()
        buf = self.buf + data
        handle = self.server.handler.handle
        done = False
        while len(buf) >= 2:
            (ln,) = _LEN.unpack_from(buf)
            if len(buf) < 2 + ln:
                break
            msg, buf = buf[2 : 2 + ln], buf[2 + ln :]
            done = True
            try:
                resp = handle(msg, self.peer, self.reply, True)
            except Exception:
                resp = internal_error(msg)
            if resp is not None:
                self.reply(resp, self.peer)
            if self.taker is not None:
                self._hand_over(buf)
                return
        self.buf = buf
        # Read timeout: a message begun (bytes held) must be whole within it.
        if (done or not buf) and self.reading is not None:
            self.reading.cancel()
            self.reading = None
        if buf and self.reading is None and self.server.read_timeout:
            loop = asyncio.get_running_loop()
            self.reading = loop.call_later(self.server.read_timeout, self._read_timeout)

    def pause_writing(self) -> None:
        """The answers waiting to be sent are over the high-water mark: stop reading
        queries (a client that does not read its answers gets no more of them)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def take_over(self, taker: TakeOver, msg: bytes) -> None:
        """Give this connection away after *msg* (called while *msg* is handled).

        *taker* gets a duplicate of the socket, *msg* and whatever the client sent
        after it; this side then lets go of the connection without closing it
        (the duplicate keeps it open).
        """
        self.taker = (taker, msg)

    def _hand_over(self, rest: bytes) -> None:
        assert self.taker is not None and self.transport is not None
        taker, msg = self.taker
        raw = self.transport.get_extra_info("socket")
        try:
            dup = socket.socket(fileno=os.dup(raw.fileno()))
        except OSError as e:
            log.warning("could not hand a TCP connection over: %s", e)
            self.transport.abort()
            return
        self.transport.pause_reading()
        self.transport.abort()  # our descriptor only: the duplicate keeps the connection
        try:
            taker(dup, msg, rest)
        except Exception:
            log.exception("handing a TCP connection over failed")
            dup.close()

    def reply(self, resp: bytes, _addr: Any) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(_LEN.pack(len(resp)) + resp)
            if t.get_write_buffer_size():
                self._arm()  # a long answer stream (zone transfer) is not idle

    def backlog(self) -> int:
        """Bytes waiting to be sent (zone transfers pause above a limit)."""
        t = self.transport
        return t.get_write_buffer_size() if t is not None else 0

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        if self.reading is not None:
            self.reading.cancel()
            self.reading = None
        srv = self.server
        srv.connections.discard(self)
        if self.client:
            held = srv.per_client.get(self.client, 0) - 1
            if held > 0:
                srv.per_client[self.client] = held
            else:
                srv.per_client.pop(self.client, None)
            self.client = ""
        self.transport = None


class TcpListener:
    """The TCP side of one data plane (or of a control-plane listener): its connections
    and their bounds. *max_per_client*: connections per client address (0: no limit);
    *read_timeout*: seconds a message begun may take to arrive whole (0: none)."""

    def __init__(
        self,
        handler: Handler,
        idle_timeout: float,
        max_connections: int,
        max_per_client: int = 0,
        read_timeout: float = 0.0,
    ) -> None:
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.read_timeout = read_timeout
        self.connections: set[TcpConnection] = set()
        self.per_client: dict[str, int] = {}  # open connections per client address
        self.refused_total = 0  # closed at once: max_connections reached
        self.refused_per_client = 0  # closed at once: max_per_client reached
        self.read_timeouts = 0  # closed: a message not whole within read_timeout

    def factory(self) -> TcpConnection:
        return TcpConnection(self)


_last_internal_error = 0.0


def internal_error(data: bytes) -> bytes | None:
    """A bug in the pipeline costs this query a SERVFAIL, never the service.

    Logged with its traceback at most once a minute.
    """
    global _last_internal_error
    now = time.monotonic()
    if now - _last_internal_error > 60:
        _last_internal_error = now
        log.exception("internal error while answering a query (answered SERVFAIL)")
    if len(data) < 12:
        return None
    return wire.error_response(data, wire.SERVFAIL)


def bind_socket(ep: Endpoint, kind: int, reuse_port: bool) -> socket.socket:
    """Create and bind a listening socket; fail with a clear message when taken."""
    family = socket.AF_INET6 if ":" in ep.host else socket.AF_INET
    proto = "udp" if kind == socket.SOCK_DGRAM else "tcp"
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == socket.SOCK_DGRAM:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
            if ep.host in WILDCARD_HOSTS and sys.platform.startswith("linux"):
                # before bind: from the first datagram on, the local address is there
                # (SO_REUSEPORT gives a worker's socket queries before it runs)
                receive_local(sock)
        sock.bind((ep.host, ep.port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            msg = "address already in use (another DNS server running?)"
        elif e.errno == errno.EACCES:
            msg = "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        elif e.errno == errno.EADDRNOTAVAIL:
            msg = "address not available on this host"
        else:
            msg = e.strerror or str(e)
        raise StartupError(f"cannot listen on {ep}/{proto}: {msg}") from e
    return sock


def bind_all(listen: tuple[Endpoint, ...], tcp: bool, reuse_port: bool) -> list[socket.socket]:
    """Bind every listen address (UDP, and TCP when enabled); all or nothing."""
    socks: list[socket.socket] = []
    try:
        for ep in listen:
            socks.append(bind_socket(ep, socket.SOCK_DGRAM, reuse_port))
            if tcp:
                socks.append(bind_socket(ep, socket.SOCK_STREAM, reuse_port))
    except StartupError:
        for s in socks:
            s.close()
        raise
    return socks


async def adopt(listener: TcpListener, sock: socket.socket, msg: bytes, rest: bytes) -> None:
    """Serve a connection handed over by another process (or listener) as if accepted here.

    *msg* is the message that asked for the hand-over (handled again here), *rest*
    what the client sent after it.
    """
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    _, conn = await loop.connect_accepted_socket(listener.factory, sock)
    conn.data_received(_LEN.pack(len(msg)) + msg + rest)
