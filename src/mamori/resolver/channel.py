"""The channel between the control plane and one worker: whole messages, never blocking.

An AF_UNIX SOCK_SEQPACKET socket pair (one end per process). A message is a
kind (one byte) and a payload, cut into parts of at most PART_BYTES (each
part: kind, flags, bytes; flag MORE on all but the last), and may carry file
descriptors (SCM_RIGHTS: a TCP connection handed over). Sends never block
the event loop: what the kernel does not take at once waits in a queue sent
when the socket is writable again. Bulk messages (query events, passive DNS
answers, counters) are *droppable*: when more than ``max_backlog`` bytes
already wait, they are dropped and the caller counts them. Payloads are
``marshal`` (plain values) or ``pickle`` (the configuration): both ends are
our own processes, forked from one parent.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

PART_BYTES = 60_000
SOCKET_BUFFER = 4 * 1024 * 1024
MAX_BACKLOG = 16 * 1024 * 1024
_MORE = 1

# Message kinds. Control plane -> worker:
CONFIG = 1  # pickle: Config
POLICY = 2  # marshal: (version, [(zone, settings tuple, compiled file, overlay bytes|None)])
ROUTES = 3  # marshal: (published zone names as wire bytes, notify?)
REPLY = 4  # marshal: (request id, answer bytes or None) to a FORWARD
STOP = 5  # drain and exit
FLOW = 6  # marshal: (shed events?, shed passive DNS answers?): the writers are behind
# Worker -> control plane:
HELLO = 16  # marshal: (worker number, pid)
APPLIED = 17  # marshal: policy version now in force
EVENTS = 18  # marshal: list of query events (events.py layout)
TAP = 19  # marshal: list of (time, answer wire) for passive DNS
STATS = 20  # marshal: dataplane.Snapshot.to_wire()
FORWARD = 21  # marshal: (request id, message, client address): UDP control traffic
HANDOVER = 22  # marshal: (message, bytes after it, client address) + the connection's fd
POLICY_FAILED = 23  # marshal: (policy version, error): a version the worker cannot map

OnMessage = Callable[[int, bytes, list[int]], None]


def pair() -> tuple[socket.socket, socket.socket]:
    """A new channel: (control plane end, worker end), both non-blocking, large buffers."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (a, b):
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        s.setblocking(False)
    return a, b


class Channel:
    """One end of a channel, on the running event loop.

    *on_message(kind, payload, fds)* gets every whole message; *on_close()*
    runs once when the other end is gone (its process exited) or on ``close``.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_message: OnMessage,
        on_close: Callable[[], None],
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        self.sock = sock
        self.on_message = on_message
        self.on_close = on_close
        self.max_backlog = max_backlog
        self.backlog = 0  # bytes queued, not yet taken by the kernel
        self.dropped = 0  # droppable messages not sent (backlog full)
        self._out: deque[tuple[bytes, list[int]]] = deque()
        self._parts: list[bytes] = []
        self._fds: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = False
        self.closed = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    # ----------------------------------------------------------------- send
    def send(
        self, kind: int, payload: bytes, fds: tuple[int, ...] = (), droppable: bool = False
    ) -> bool:
        """Queue a message; False when it was dropped (droppable, backlog full) or closed.

        *fds* are sent with the first part and closed here once sent (the caller
        passes duplicates it no longer needs).
        """
        if self.closed or (droppable and self.backlog > self.max_backlog):
            self.dropped += 1
            for fd in fds:
                os.close(fd)
            return False
        n = len(payload)
        parts = [payload[i : i + PART_BYTES] for i in range(0, n, PART_BYTES)] or [b""]
        last = len(parts) - 1
        for i, part in enumerate(parts):
            head = bytes((kind, 0 if i == last else _MORE))
            self._out.append((head + part, list(fds) if i == 0 else []))
            self.backlog += len(part) + 2
        self._flush()
        return True

    def _flush(self) -> None:
        out = self._out
        while out:
            data, fds = out[0]
            try:
                if fds:
                    self.sock.sendmsg(
                        [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _fd_bytes(fds))]
                    )
                else:
                    self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                self._want_write(True)
                return
            except OSError as e:
                if e.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                    self._closed()
                    return
                raise
            out.popleft()
            self.backlog -= len(data)
            for fd in fds:
                os.close(fd)
        self._want_write(False)

    def _want_write(self, on: bool) -> None:
        if on == self._writing or self._loop is None or self.closed:
            return
        self._writing = on
        if on:
            self._loop.add_writer(self.sock.fileno(), self._flush)
        else:
            self._loop.remove_writer(self.sock.fileno())

    # -------------------------------------------------------------- receive
    def _readable(self) -> None:
        for _ in range(64):  # bounded: other callbacks get their turn
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(
                    PART_BYTES + 16, socket.CMSG_SPACE(16 * 4)
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._closed()
                return
            if not data:
                self._closed()
                return
            for level, ctype, cdata in anc:
                if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
                    usable = len(cdata) - len(cdata) % 4
                    self._fds += list(memoryview(cdata[:usable]).cast("i"))
            self._parts.append(data[2:])
            if data[1] & _MORE:
                continue
            payload = b"".join(self._parts)
            fds, self._parts, self._fds = self._fds, [], []
            try:
                self.on_message(data[0], payload, fds)
            except Exception:  # a bad message costs that message, not the channel
                log.exception("channel: handling a message of kind %d failed", data[0])

    # ---------------------------------------------------------------- close
    def _closed(self) -> None:
        if self.closed:
            return
        self.closed = True
        for _data, fds in self._out:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._out.clear()
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sock.fileno())
            if self._writing:
                with contextlib.suppress(Exception):
                    self._loop.remove_writer(self.sock.fileno())
        self.sock.close()
        self.on_close()

    def close(self) -> None:
        """Close this end (the other end sees it as closed)."""
        self._closed()


def _fd_bytes(fds: list[int]) -> bytes:
    return array.array("i", fds).tobytes()
