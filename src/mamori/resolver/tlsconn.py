"""TLS server connections over memory BIOs, the base of DoT and DoH.

``TlsConnection`` runs TLS itself (``ssl.SSLObject``) rather than through the
event loop's TLS transport, so that a connection counts from the moment it is
accepted: the limits in ``TlsListener`` (connections in all and per client
address, handshake timeout, idle timeout, read timeout) then bound clients that
open connections and never finish their handshake (slowloris).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any, cast

from mamori.resolver.tls import CertStore

log = logging.getLogger(__name__)

READ_CHUNK = 65536


class TlsListener:
    """One kind of encrypted listener of one data plane (``dot`` or ``doh``): its open
    connections and their bounds, and what happened to them (counters, since start).

    *handshake_timeout*: seconds from accept to a finished TLS handshake;
    *idle_timeout*: seconds without a query; *read_timeout*: seconds a message (or
    HTTP request) begun may take to arrive whole; *max_connections* / *max_per_client*:
    open connections in all / per client address (0: no per-client limit).
    """

    def __init__(
        self,
        kind: str,
        certs: CertStore | None,
        alpn: tuple[str, ...],
        handshake_timeout: float,
        idle_timeout: float,
        read_timeout: float,
        max_connections: int,
        max_per_client: int,
    ) -> None:
        self.kind = kind
        self.certs = certs
        self.alpn = alpn
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.connections: set[TlsConnection] = set()
        self.per_client: dict[str, int] = {}
        self.accepted = 0
        self.refused = 0  # closed at once: max_connections or max_per_client reached
        self.handshake_failures = 0  # not TLS, no common version/cipher/ALPN
        self.handshake_timeouts = 0
        self.read_timeouts = 0
        self.idle_closed = 0

    def counters(self) -> dict[str, int]:
        """Counters under ``{kind}_{what}`` (summed over workers for /metrics)."""
        k = self.kind
        return {
            f"{k}_accepted": self.accepted,
            f"{k}_refused": self.refused,
            f"{k}_handshake_failures": self.handshake_failures,
            f"{k}_handshake_timeouts": self.handshake_timeouts,
            f"{k}_read_timeouts": self.read_timeouts,
            f"{k}_idle_closed": self.idle_closed,
            f"{k}_open": len(self.connections),
        }

    def configure(self, handshake: float, idle: float, read: float, total: int, per: int) -> None:
        self.handshake_timeout, self.idle_timeout, self.read_timeout = handshake, idle, read
        self.max_connections, self.max_per_client = total, per

    def close_all(self) -> None:
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()


class TlsConnection(asyncio.Protocol):
    """A TLS server connection over memory BIOs. Subclasses get ``on_ready`` (handshake
    done: ``alpn``, ``sni`` known), ``on_data`` (plaintext) and send with ``send``."""

    def __init__(self, listener: TlsListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.client = ""  # the address counted in listener.per_client
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls: ssl.SSLObject | None = None
        self.ready = False
        self.alpn: str | None = None
        self.sni: str | None = None
        self.timer: asyncio.TimerHandle | None = None  # handshake, then idle / read
        self.reading = False  # a message begun: the read timeout applies, not idle
        self.ready_idle = False  # the timer running is the idle one
        self.active = 0.0  # loop time of the last whole message
        self.loop = asyncio.get_running_loop()

    # -------------------------------------------------------------- transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = cast(asyncio.Transport, transport)
        self.peer = t.get_extra_info("peername")
        lis = self.listener
        if len(lis.connections) >= lis.max_connections:
            lis.refused += 1
            t.abort()
            return
        ip = self.peer[0] if self.peer else ""
        if lis.max_per_client and ip:
            held = lis.per_client.get(ip, 0)
            if held >= lis.max_per_client:
                lis.refused += 1
                if lis.refused == 1 or lis.refused % 1000 == 0:
                    log.info("%s: %s has %d connections open: closing more (%d so far)",
                             lis.kind, ip, held, lis.refused)  # fmt: skip
                t.abort()
                return
            lis.per_client[ip] = held + 1
            self.client = ip
        lis.accepted += 1
        lis.connections.add(self)
        if lis.certs is None:  # not serving (no certificate): cannot happen with sockets
            t.abort()
            return
        ctx = lis.certs.context(lis.alpn)
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self._set_timer(lis.handshake_timeout, self._handshake_timeout)

    def _set_timer(self, delay: float, what: Any) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(delay, what) if delay else None

    def _handshake_timeout(self) -> None:
        self.listener.handshake_timeouts += 1
        if self.transport is not None:
            self.transport.abort()

    def _idle_timeout(self) -> None:
        """The idle timer: close when nothing came for idle_timeout, else wait the rest
        (input only stamps ``active``: no timer is rearmed per message)."""
        self.timer = None
        idle = self.listener.idle_timeout
        left = self.active + idle - self.loop.time()
        if left > 0:
            self.timer = self.loop.call_later(left, self._idle_timeout)
            return
        self.listener.idle_closed += 1
        self.close()

    def _read_timeout(self) -> None:
        self.listener.read_timeouts += 1
        if self.transport is not None:
            self.transport.abort()

    def busy(self, begun: bool) -> None:
        """Note input: the read timeout runs while a message is *begun* (part of it
        held), else the idle timeout."""
        lis = self.listener
        if begun:
            if not self.reading:
                self.reading = True
                self._set_timer(lis.read_timeout, self._read_timeout)
            return
        self.active = self.loop.time()
        if self.reading or self.timer is None or not self.ready_idle:
            self.reading = False
            self.ready_idle = True
            self._set_timer(lis.idle_timeout, self._idle_timeout)

    def data_received(self, data: bytes) -> None:
        tls = self.tls
        if tls is None:
            return
        self.incoming.write(data)
        if not self.ready:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except (ssl.SSLError, OSError):
                self.listener.handshake_failures += 1
                self._flush()
                if self.transport is not None:
                    self.transport.abort()
                return
            self.ready = True
            self.alpn = tls.selected_alpn_protocol()
            self.sni = getattr(tls, "mamori_sni", None)
            self.busy(False)
            self.on_ready()
        chunks = []
        closed = False
        while True:
            try:
                chunk = tls.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                closed = True
                break
            except (ssl.SSLError, OSError):
                self._flush()
                if self.transport is not None:
                    self.transport.abort()
                return
            if not chunk:
                closed = True
                break
            chunks.append(chunk)
            if not self.incoming.pending and not tls.pending():
                break  # all read (spares raising SSLWantReadError)
        self._flush()
        if chunks:
            self.on_data(b"".join(chunks) if len(chunks) > 1 else chunks[0])
        if closed:
            self.close()

    def _flush(self) -> None:
        out = self.outgoing.read()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def send(self, data: bytes) -> None:
        """Encrypt and send *data* (dropped when the connection is gone)."""
        t = self.transport
        if self.tls is None or t is None or t.is_closing():
            return
        try:
            self.tls.write(data)
        except (ssl.SSLError, OSError):
            t.abort()
            return
        t.write(self.outgoing.read())

    def close(self) -> None:
        """Send close_notify and close."""
        t = self.transport
        if t is None or t.is_closing():
            return
        if self.tls is not None and self.ready:
            with contextlib.suppress(ssl.SSLError, OSError):
                self.tls.unwrap()
            self._flush()
        t.close()

    def pause_writing(self) -> None:
        """Answers wait to be sent above the high-water mark: read no more queries."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        lis = self.listener
        if self in lis.connections:
            lis.connections.discard(self)
            if self.client:
                held = lis.per_client.get(self.client, 0) - 1
                if held > 0:
                    lis.per_client[self.client] = held
                else:
                    lis.per_client.pop(self.client, None)
        self.client = ""
        self.transport = None
        self.on_lost()

    # ------------------------------------------------------------ subclasses
    def on_ready(self) -> None:
        """The handshake is done (``alpn``, ``sni`` set)."""

    def on_data(self, data: bytes) -> None:
        """Plaintext from the client."""

    def on_lost(self) -> None:
        """The connection is gone."""
