"""UDP listeners served in batches: many datagrams per system call.

On Linux with the native helper (``mamori.resolver.udpbatch``, built from
``udpbatch.c`` at install) a readable listening socket is drained with
``recvmmsg(2)``, up to ``BATCH`` datagrams a call; the handler answers each,
and the answers go out with one ``sendmmsg(2)`` per batch. That replaces one
``recvfrom`` + one ``sendto`` + one event-loop callback per packet with one of
each per batch. A batch is whatever the kernel holds when the loop wakes up:
nothing waits for a batch to fill, so latency at low load is unchanged.

Without the helper (not built, not Linux, or ``MAMORI_UDP_BATCH=0`` in the
environment) the listeners are asyncio datagram transports, one datagram per
callback (``server.UdpServer``). ``describe()`` says which is in use.

A socket bound to a wildcard address (``0.0.0.0``, ``::``) on Linux answers
from the address each query came to: the socket has ``IP_PKTINFO`` /
``IPV6_RECVPKTINFO`` on, each datagram's local address is received with it and
given back to the kernel with its answer (RFC 1122 4.1.3.5: a UDP reply's
source is the request's destination; a client that sent to 192.0.2.53 ignores
an answer from 198.51.100.7). The sender's address is then a ``LocalAddr``.
Without the helper such a socket is read with ``recvmsg``/``sendmsg``, one
datagram per call (asyncio's transport cannot carry the local address).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from types import ModuleType
from typing import Any

from mamori.resolver.reply import Stats
from mamori.resolver.server import (
    IP_PKTINFO,
    NO_LIMITS,
    WILDCARD_HOSTS,
    Handler,
    Limits,
    UdpServer,
    internal_error,
    receive_local,
)

log = logging.getLogger(__name__)

BATCH = 64  # datagrams per recvmmsg call
ROUNDS = 8  # recvmmsg calls per wake-up at most, then other sockets get their turn
# A wake-up reads until a recvmmsg finds nothing (or ROUNDS): under load, queries that
# came while a batch was being answered are read without another epoll wake-up.
DATAGRAM = 4097  # bytes kept per received datagram: one more than the largest UDP query
# (pipeline.MAX_UDP_QUERY), so a longer one arrives long and is dropped as malformed
PENDING_MAX = 8192  # answers waiting for the socket to drain; beyond: dropped, counted
CMSG_ROOM = 64  # ancillary bytes received per datagram (one in6_pktinfo and more)

_native: ModuleType | None
_why_not = ""
try:
    from mamori.resolver import udpbatch as _native
except ImportError:  # not built (no compiler or Python headers at install), or not Linux
    _native = None
    _why_not = (
        "the native helper mamori.resolver.udpbatch is not built: install mamori again"
        " with a C compiler and the Python headers (e.g. pip install -e .)"
        if sys.platform.startswith("linux")
        else "the native helper needs Linux (recvmmsg/sendmmsg)"
    )
OFF = ("0", "off", "no", "false")  # MAMORI_UDP_BATCH values that turn batching off


def native() -> ModuleType | None:
    """The native helper module, or None when the pure-Python path is in use."""
    if _native is None or os.environ.get("MAMORI_UDP_BATCH", "1").strip().lower() in OFF:
        return None
    return _native


def describe() -> str:
    """One line for the start-up log: which UDP I/O path serves the listeners."""
    if native() is not None:
        return f"batched (recvmmsg/sendmmsg, up to {BATCH} datagrams per call)"
    why = _why_not or f"turned off by MAMORI_UDP_BATCH={os.environ.get('MAMORI_UDP_BATCH')}"
    wildcard = ", recvmsg/sendmsg on 0.0.0.0 and ::" if sys.platform.startswith("linux") else ""
    return f"one datagram per call (asyncio transport{wildcard}; {why})"


class LocalAddr(tuple):  # type: ignore[type-arg]
    """A sender's address as the socket module gives it (``(host, port)`` or
    ``(host, port, flowinfo, scope_id)``; indexing and unpacking unchanged) and,
    in ``local``, the local address its datagram came to: ``struct in_pktinfo``
    (12 bytes) or ``struct in6_pktinfo`` (20 bytes) as the kernel gave it. Given
    to handlers by sockets bound to a wildcard address; an answer to it leaves
    from there."""

    local: bytes


def wildcard(sock: socket.socket) -> bool:
    """True for a UDP socket bound to ``0.0.0.0`` or ``::`` on Linux: its answers
    need the local address of their query (``IP_PKTINFO``)."""
    if not sys.platform.startswith("linux") or sock.type != socket.SOCK_DGRAM:
        return False
    return bool(sock.getsockname()[0] in WILDCARD_HOSTS)


def local_cmsg(local: bytes) -> list[tuple[int, int, bytes]]:
    """The ancillary data for ``sendmsg`` that makes a datagram leave from *local*
    (what ``LocalAddr.local`` holds; b"": none). For IPv4 the interface index is
    cleared (the route back picks the interface), the source is ``ipi_spec_dst``
    (unicast). For IPv6 a multicast address (a query to ``ff02::1``) is replaced by
    the unspecified one: the kernel picks a unicast source on that interface."""
    if len(local) == 12:
        return [(socket.IPPROTO_IP, IP_PKTINFO, bytes(4) + local[4:])]
    if len(local) == 20:
        if local[0] == 0xFF:  # a multicast group is no source address
            local = bytes(16) + local[16:]
        return [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, local)]
    return []


class SocketBatch:
    """The ``udpbatch.Batch`` interface over ``recvmsg``/``sendmsg``, one datagram
    a call: how a wildcard socket is served without the native helper (the
    local address of each datagram is received and answered from, which
    asyncio's datagram transport cannot do). Senders are ``LocalAddr``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.truncated = 0
        self.send_errors = 0
        self.last_send_errno = 0
        self.last: list[tuple[bytes, Any]] = []
        self.local = b""

    def recv(self, fd: Any) -> list[tuple[bytes, Any]]:
        try:
            data, anc, flags, addr = self.sock.recvmsg(DATAGRAM, CMSG_ROOM)
        except (BlockingIOError, InterruptedError):
            self.last = []
            return self.last
        if flags & socket.MSG_TRUNC:
            self.truncated += 1
        self.local = b""
        for level, kind, value in anc:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= 12:
                self.local = value[:12]
            elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(value) >= 20:
                self.local = value[:20]
        la = LocalAddr(addr)
        la.local = self.local
        self.last = [(data, la)]
        return self.last

    def answer(self, fd: Any, answers: list[bytes | None], start: int = 0) -> int:
        if len(answers) > len(self.last):
            raise ValueError("more answers than datagrams received")
        for i in range(start, len(answers)):
            r = answers[i]
            if r is not None and self.send(fd, [(r, self.last[i][1], self.local)]) == 0:
                return i  # the socket would block: answers[i:] wait
        return len(answers)

    def send(self, fd: Any, msgs: list[tuple[Any, ...]], start: int = 0) -> int:
        for i in range(start, len(msgs)):
            data, addr, *local = msgs[i]
            try:
                self.sock.sendmsg([data], local_cmsg(local[0]) if local else [], 0, addr)
            except (BlockingIOError, InterruptedError):
                return i
            except (OSError, TypeError, ValueError) as e:  # dropped, as asyncio's transport does
                self.send_errors += 1
                self.last_send_errno = getattr(e, "errno", None) or 22
        return len(msgs)


class BatchedUdp:
    """One UDP listening socket served in batches; ``close()`` stops it.

    The socket is non-blocking and stays owned by the caller until ``close``,
    which closes it. Answers given later (``reply``: upstream answers,
    forwarded messages) are sent at once with ``sendto`` (``sendmsg`` from the
    query's local address on a wildcard socket: *local*, see ``LocalAddr``).
    *batch* replaces the native helper's buffers (``SocketBatch``).
    """

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        stats: Stats | None,
        limits: Limits = NO_LIMITS,
        local: bool = False,
        batch: Any = None,
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.handle = handler.handle
        # A handler that answers a whole batch at once (the pipeline, the DNSBL
        # responder): one call per batch instead of one per datagram, when no response
        # rate limiting is in force (with it, every answer passes [rrl] one by one).
        self.handle_batch = getattr(handler, "handle_batch", None)
        self.limits = limits  # response rate limiting: limits.rrl sees every answer
        self.stats = stats
        self.local = local  # a wildcard socket: answers leave from the query's local address
        if batch is None:
            assert _native is not None
            batch = _native.Batch(BATCH, DATAGRAM, local=LocalAddr if local else None)
        self.batch = batch
        # answers waiting for the socket to drain: (bytes, addr) or (bytes, addr, local)
        self.pending: list[tuple[Any, ...]] = []
        self.pos = 0  # first unsent of pending
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        self.errors_seen = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        recv = self.batch.recv
        handle = self.handle
        reply = self.reply
        fd = self.fd
        limits = self.limits
        for _ in range(ROUNDS):
            try:
                msgs = recv(fd)
            except OSError as e:
                log.debug("udp receive error: %s", e)
                return
            if not msgs:  # drained (while a batch is answered more may come: read again)
                return
            # answers[i]: the answer to datagram i (None: none now), sent back to its
            # sender at the address the kernel gave (Batch.answer: nothing parsed)
            answers: list[bytes | None] = []
            add = answers.append
            rrl = limits.rrl
            if rrl is None and self.handle_batch is not None:
                try:
                    answers = self.handle_batch(msgs, self._one)
                except Exception:
                    answers = [internal_error(data) for data, _ in msgs]
            elif rrl is None:  # no response rate limiting: the loop as it always was
                for data, addr in msgs:
                    try:
                        add(handle(data, addr, reply, False))
                    except Exception:
                        add(internal_error(data))
            else:
                check = rrl.check
                for data, addr in msgs:
                    try:
                        resp = handle(data, addr, reply, False)
                    except Exception:
                        resp = internal_error(data)
                    add(None if resp is None else check(resp, addr))
            if answers:
                if self.pending:  # answers before these still wait: after them, in order
                    self._queue(_pairs(answers, msgs, 0), 0)
                else:
                    sent = self.batch.answer(fd, answers)
                    if sent < len(answers):
                        self._queue(_pairs(answers, msgs, sent), 0)
                self._count_errors()

    def _one(self, data: bytes, addr: Any) -> bytes | None:
        """The handler's answer to one datagram; a bug in it costs a SERVFAIL."""
        try:
            return self.handle(data, addr, self.reply, False)
        except Exception:
            return internal_error(data)

    def reply(self, resp: bytes, addr: Any) -> None:
        """Send an answer given after the query's turn (called by the pipeline)."""
        if self.closed:
            return
        rrl = self.limits.rrl
        if rrl is not None:
            limited = rrl.check(resp, addr)
            if limited is None:
                return
            resp = limited
        local = getattr(addr, "local", None) if self.local else None
        out = (resp, addr) if local is None else (resp, addr, local)
        if self.pending:
            self._queue([out], 0)
            return
        try:
            if local is None:
                self.sock.sendto(resp, addr)
            else:
                self.sock.sendmsg([resp], local_cmsg(local), 0, addr)
        except BlockingIOError:
            self._queue([out], 0)
        except OSError as e:
            log.debug("udp send error: %s", e)
            if self.stats is not None:
                self.stats.udp_send_dropped += 1

    def _queue(self, out: list[tuple[Any, ...]], start: int) -> None:
        room = PENDING_MAX - (len(self.pending) - self.pos)
        take = out[start : start + max(room, 0)]
        lost = len(out) - start - len(take)
        if lost and self.stats is not None:
            self.stats.udp_send_dropped += lost
        if not take:
            return
        if not self.pending and self.loop is not None:
            self.loop.add_writer(self.fd, self._writable)
        self.pending.extend(take)

    def _writable(self) -> None:
        self.pos = self.batch.send(self.fd, self.pending, self.pos)
        self._count_errors()
        if self.pos >= len(self.pending):
            self.pending = []
            self.pos = 0
            if self.loop is not None:
                self.loop.remove_writer(self.fd)
        elif self.pos > 4096:
            del self.pending[: self.pos]
            self.pos = 0

    def _count_errors(self) -> None:
        errors = self.batch.send_errors
        if errors != self.errors_seen:
            if self.stats is not None:
                self.stats.udp_send_dropped += errors - self.errors_seen
            log.debug("udp send error: %s", os.strerror(self.batch.last_send_errno))
            self.errors_seen = errors

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.loop is not None:
            self.loop.remove_reader(self.fd)
            if self.pending:
                self.loop.remove_writer(self.fd)
        if self.stats is not None:  # answers still waiting for the socket: not sent, counted
            self.stats.udp_send_dropped += len(self.pending) - self.pos
        self.pending = []
        self.sock.close()

    def is_closing(self) -> bool:
        return self.closed


def _pairs(
    answers: list[bytes | None], msgs: list[tuple[bytes, Any]], start: int
) -> list[tuple[Any, ...]]:
    """(answer, sender address) for answers[start:] that are not None; with the
    local address to answer from, (answer, address, local), for a LocalAddr."""
    out: list[tuple[Any, ...]] = []
    for i in range(start, len(answers)):
        r = answers[i]
        if r is not None:
            addr = msgs[i][1]
            out.append((r, addr) if type(addr) is not LocalAddr else (r, addr, addr.local))
    return out


async def serve_udp(
    sock: socket.socket,
    handler: Handler,
    stats: Stats | None = None,
    limits: Limits = NO_LIMITS,
) -> BatchedUdp | asyncio.BaseTransport:
    """Serve *handler* on the bound UDP *sock*; the returned object's ``close()`` stops it.

    *limits*: where the response rate limiter in force is read (every answer passes it).
    A socket bound to a wildcard address answers from each query's local address
    (module docstring); raises OSError when the kernel refuses ``IP_PKTINFO``.
    """
    loop = asyncio.get_running_loop()
    local = wildcard(sock)
    if local:
        receive_local(sock)
    if native() is not None or local:
        sock.setblocking(False)
        batch = None if native() is not None else SocketBatch(sock)
        server = BatchedUdp(sock, handler, stats, limits, local=local, batch=batch)
        server.start(loop)
        return server
    tr, _ = await loop.create_datagram_endpoint(lambda: UdpServer(handler, limits), sock=sock)
    return tr
