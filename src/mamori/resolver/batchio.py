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
from mamori.resolver.server import NO_LIMITS, Handler, Limits, UdpServer, internal_error

log = logging.getLogger(__name__)

BATCH = 64  # datagrams per recvmmsg call
ROUNDS = 8  # recvmmsg calls per wake-up at most, then other sockets get their turn
# A wake-up reads until a recvmmsg finds nothing (or ROUNDS): under load, queries that
# came while a batch was being answered are read without another epoll wake-up.
DATAGRAM = 4097  # bytes kept per received datagram: one more than the largest UDP query
# (pipeline.MAX_UDP_QUERY), so a longer one arrives long and is dropped as malformed
PENDING_MAX = 8192  # answers waiting for the socket to drain; beyond: dropped, counted

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
    return f"one datagram per call (asyncio transport; {why})"


class BatchedUdp:
    """One UDP listening socket served in batches; ``close()`` stops it.

    The socket is non-blocking and stays owned by the caller until ``close``,
    which closes it. Answers given later (``reply``: upstream answers,
    forwarded messages) are sent at once with ``sendto``.
    """

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        stats: Stats | None,
        limits: Limits = NO_LIMITS,
    ) -> None:
        assert _native is not None
        self.sock = sock
        self.fd = sock.fileno()
        self.handle = handler.handle
        # A handler that answers a whole batch at once (the pipeline, the DNSBL
        # responder): one call per batch instead of one per datagram, when no response
        # rate limiting is in force (with it, every answer passes [rrl] one by one).
        self.handle_batch = getattr(handler, "handle_batch", None)
        self.limits = limits  # response rate limiting: limits.rrl sees every answer
        self.stats = stats
        self.batch = _native.Batch(BATCH, DATAGRAM)
        self.pending: list[tuple[bytes, Any]] = []  # answers waiting for the socket to drain
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
        if self.pending:
            self._queue([(resp, addr)], 0)
            return
        try:
            self.sock.sendto(resp, addr)
        except BlockingIOError:
            self._queue([(resp, addr)], 0)
        except OSError as e:
            log.debug("udp send error: %s", e)
            if self.stats is not None:
                self.stats.udp_send_dropped += 1

    def _queue(self, out: list[tuple[bytes, Any]], start: int) -> None:
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
) -> list[tuple[bytes, Any]]:
    """(answer, sender address) for answers[start:] that are not None."""
    return [(r, msgs[i][1]) for i in range(start, len(answers)) if (r := answers[i]) is not None]


async def serve_udp(
    sock: socket.socket,
    handler: Handler,
    stats: Stats | None = None,
    limits: Limits = NO_LIMITS,
) -> BatchedUdp | asyncio.BaseTransport:
    """Serve *handler* on the bound UDP *sock*; the returned object's ``close()`` stops it.

    *limits*: where the response rate limiter in force is read (every answer passes it).
    """
    loop = asyncio.get_running_loop()
    if native() is not None:
        sock.setblocking(False)
        server = BatchedUdp(sock, handler, stats, limits)
        server.start(loop)
        return server
    tr, _ = await loop.create_datagram_endpoint(lambda: UdpServer(handler, limits), sock=sock)
    return tr
