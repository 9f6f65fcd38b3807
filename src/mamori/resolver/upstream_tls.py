"""Encrypted upstreams: DNS over TLS (RFC 7858) and DNS over HTTPS (RFC 8484, HTTP/2).

Each ``tls://`` or ``https://`` upstream keeps one persistent connection and
sends every query on it without waiting for the previous answers: DoT
messages are length-prefixed on the TLS stream and matched to their query by
ID and question (answers may come out of order, RFC 7766 6.2.1.1); DoH queries
are HTTP/2 streams on one connection (POST ``application/dns-message``,
message ID 0 as RFC 8484 4.1 recommends), matched by stream. A connection
that fails or that the server closes (idle timeout) fails the queries on it
and is opened again by the next query; a query lost on a reused connection
the server had just closed is sent once more on a fresh one.

Certificates are verified (``ssl.create_default_context``: the chain, the
validity, the name): against the system's CAs or ``[upstream] ca_file``, and
the name after ``#`` (else the address, or the URL's host). A refused
certificate is an ``OSError`` like any connection failure (the pool fails
over); it is logged with the reason, once per upstream and reason a minute.

HTTP/2 (the ``h2`` library) rather than HTTP/1.1: DoH servers (Unbound's
``https-port``, the public resolvers) speak it, and it carries any number of
queries at once on one connection, as DoT does.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mamori.config import UpstreamServer
from mamori.dnsutil import wire

if TYPE_CHECKING:  # imported when a DoH upstream is used (h2 takes ~0.1 s to import)
    import h2.connection
    import h2.events

log = logging.getLogger("mamori.resolver.upstream")

_LEN = struct.Struct("!H")
MAX_PENDING = 1000  # queries outstanding on one connection at most
LOG_EVERY = 60.0  # seconds between two log lines of the same refusal of one upstream


class UpstreamConnectionError(ConnectionError):
    """The connection to an encrypted upstream failed or closed under a query."""


def tls_context(ca_file: Path | None, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client context that verifies the server: system CAs, or only *ca_file*'s."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


class _Refusals:
    """Logs why connections to one upstream fail: a new reason at once, the same one
    at most once a minute."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.last = ("", 0.0)

    def note(self, e: BaseException, verify_name: str, ca_file: Path | None) -> None:
        reason = str(e) or e.__class__.__name__
        now = time.monotonic()
        if reason == self.last[0] and now - self.last[1] < LOG_EVERY:
            return
        self.last = (reason, now)
        if isinstance(e, ssl.SSLCertVerificationError):
            log.warning(
                "upstream %s: TLS certificate refused (%s) checking the name %s against %s",
                self.name, e.verify_message or reason, verify_name,
                f"the CA file {ca_file}" if ca_file else "the system CAs",
            )  # fmt: skip
        else:
            log.warning("upstream %s: cannot connect: %s", self.name, reason)


class _Connection:
    """What both transports share: the open, verified TLS connection."""

    def __init__(self, server: UpstreamServer, ctx: ssl.SSLContext, name: str) -> None:
        self.server = server
        self.ctx = ctx
        self.verify_name = server.tls_name or server.endpoint.host
        self.refusals = _Refusals(name)
        self.ca_file: Path | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reader_task: asyncio.Task[None] | None = None
        self.uses = 0  # queries sent on the current connection
        self._connecting = asyncio.Lock()

    @property
    def is_open(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    async def ensure_open(self) -> bool:
        """Open the connection if needed; True when it was already open (reused)."""
        if self.is_open:
            return True
        async with self._connecting:
            if self.is_open:
                return True
            ep = self.server.endpoint
            try:
                reader, writer = await asyncio.open_connection(
                    ep.host, ep.port, ssl=self.ctx, server_hostname=self.verify_name
                )
            except OSError as e:
                self.refusals.note(e, self.verify_name, self.ca_file)
                raise
            try:
                self.opened(writer)
            except OSError as e:
                writer.close()
                self.refusals.note(e, self.verify_name, self.ca_file)
                raise
            self.reader, self.writer, self.uses = reader, writer, 0
            self.reader_task = asyncio.get_running_loop().create_task(self._read_loop(reader))
            return False

    def opened(self, writer: asyncio.StreamWriter) -> None:
        """Called once a new connection is up (before any query)."""

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        error: BaseException = UpstreamConnectionError("the upstream closed the connection")
        try:
            await self.read(reader)
        except (OSError, EOFError, asyncio.IncompleteReadError) as e:
            error = UpstreamConnectionError(f"connection lost: {e or e.__class__.__name__}")
        except asyncio.CancelledError:
            error = UpstreamConnectionError("connection closed")
        finally:
            self.drop(error)

    async def read(self, reader: asyncio.StreamReader) -> None:
        raise NotImplementedError

    def fail_pending(self, error: BaseException) -> None:
        raise NotImplementedError

    def drop(self, error: BaseException) -> None:
        """Close the connection at once (no TLS close_notify exchange: the peer may be
        gone already); fail what waits on it."""
        writer = self.writer
        self.reader = self.writer = None
        if writer is not None:
            writer.transport.abort()
        self.fail_pending(error)

    def close(self) -> None:
        task = self.reader_task
        if task is not None and not task.done():
            task.cancel()
        self.drop(UpstreamConnectionError("upstream closed (reconfigured or stopping)"))


class DotConnection(_Connection):
    """DNS over TLS: length-prefixed messages on one TLS stream, answers matched by ID."""

    def __init__(self, server: UpstreamServer, ctx: ssl.SSLContext, name: str) -> None:
        super().__init__(server, ctx, name)
        self.pending: dict[int, tuple[bytes, asyncio.Future[bytes]]] = {}

    async def query(self, question: bytes, flags: int, opt: bytes) -> bytes:
        """One query; the raw answer. OSError (connection, certificate), TimeoutError from
        the caller's timeout."""
        for attempt in (0, 1):
            reused = await self.ensure_open()
            if len(self.pending) >= MAX_PENDING:
                raise UpstreamConnectionError("too many queries outstanding")
            qid = secrets.randbits(16)
            while qid in self.pending:
                qid = secrets.randbits(16)
            fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            self.pending[qid] = (question, fut)
            msg = wire.build_query(qid, question[:-4], question[-4:], flags, opt)
            assert self.writer is not None
            self.uses += 1
            self.writer.write(_LEN.pack(len(msg)) + msg)
            try:
                return await fut
            except UpstreamConnectionError:
                if attempt or not reused:
                    raise  # a fresh connection failed: the upstream's fault
            finally:
                self.pending.pop(qid, None)
        raise AssertionError("unreachable")

    async def read(self, reader: asyncio.StreamReader) -> None:
        while True:
            (ln,) = _LEN.unpack(await reader.readexactly(2))
            resp = await reader.readexactly(ln)
            if len(resp) < 12:
                continue
            item = self.pending.get(resp[0] << 8 | resp[1])
            if item is None or item[1].done() or not wire.same_question(resp, item[0]):
                continue  # not the answer to a query we wait for: ignore
            item[1].set_result(resp)

    def fail_pending(self, error: BaseException) -> None:
        for _, fut in self.pending.values():
            if not fut.done():
                fut.set_exception(error)


class DohConnection(_Connection):
    """DNS over HTTPS over HTTP/2: one POST stream per query on one connection."""

    def __init__(self, server: UpstreamServer, ctx: ssl.SSLContext, name: str) -> None:
        super().__init__(server, ctx, name)
        self.h2: h2.connection.H2Connection | None = None
        # stream id -> (status, body so far, future of the body)
        self.streams: dict[int, tuple[list[int], bytearray, asyncio.Future[bytes]]] = {}
        ep = server.endpoint
        host = f"[{ep.host}]" if ":" in ep.host else ep.host
        self.authority = host if ep.port == 443 else f"{host}:{ep.port}"

    def opened(self, writer: asyncio.StreamWriter) -> None:
        import h2.config
        import h2.connection

        ssl_obj = writer.get_extra_info("ssl_object")
        if ssl_obj is None or ssl_obj.selected_alpn_protocol() != "h2":
            writer.close()
            raise UpstreamConnectionError("the server does not speak HTTP/2 (ALPN h2)")
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        self.h2 = conn

    async def query(self, question: bytes, flags: int, opt: bytes) -> bytes:
        """One query; the raw answer (message ID 0). OSError when the server fails or
        answers other than 200 ``application/dns-message``."""
        import h2.exceptions

        msg = wire.build_query(0, question[:-4], question[-4:], flags, opt)
        for attempt in (0, 1):
            reused = await self.ensure_open()
            conn, writer = self.h2, self.writer
            assert conn is not None and writer is not None
            if len(self.streams) >= MAX_PENDING:
                raise UpstreamConnectionError("too many queries outstanding")
            fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            try:
                sid = conn.get_next_available_stream_id()
                conn.send_headers(
                    sid,
                    [(":method", "POST"), (":scheme", "https"), (":authority", self.authority),
                     (":path", self.server.path), ("accept", "application/dns-message"),
                     ("content-type", "application/dns-message"),
                     ("content-length", str(len(msg)))],
                )  # fmt: skip
                conn.send_data(sid, msg, end_stream=True)
            except h2.exceptions.ProtocolError as e:  # the connection is going away
                self.drop(UpstreamConnectionError(f"HTTP/2: {e}"))
                if attempt:
                    raise UpstreamConnectionError(f"HTTP/2: {e}") from e
                continue
            status: list[int] = []
            self.streams[sid] = (status, bytearray(), fut)
            self.uses += 1
            writer.write(conn.data_to_send())
            try:
                body = await fut
            except UpstreamConnectionError:
                if attempt or not reused:
                    raise
                continue
            finally:
                self.streams.pop(sid, None)
            if status != [200]:
                raise UpstreamConnectionError(f"HTTP status {status[0] if status else '?'}")
            if not wire.same_question(body, question):
                raise UpstreamConnectionError("the answer is not for the question asked")
            return body
        raise AssertionError("unreachable")

    async def read(self, reader: asyncio.StreamReader) -> None:
        import h2.exceptions

        while True:
            data = await reader.read(65536)
            if not data:
                return
            conn, writer = self.h2, self.writer
            if conn is None or writer is None:
                return
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                raise UpstreamConnectionError(f"HTTP/2: {e}") from e
            for event in events:
                self._event(conn, event)
            writer.write(conn.data_to_send())

    def _event(self, conn: h2.connection.H2Connection, event: h2.events.Event) -> None:
        import h2.events

        if isinstance(event, h2.events.ResponseReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                for k, v in event.headers or ():
                    if k in (b":status", ":status"):
                        stream[0].append(int(v))
        elif isinstance(event, h2.events.DataReceived):
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                if len(stream[1]) + len(event.data or b"") > 65535:
                    conn.reset_stream(event.stream_id)
                    stream[2].set_exception(UpstreamConnectionError("answer over 65535 bytes"))
                else:
                    stream[1].extend(event.data or b"")
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None and not stream[2].done():
                stream[2].set_result(bytes(stream[1]))
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None and not stream[2].done():
                stream[2].set_exception(UpstreamConnectionError("the server reset the stream"))
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.drop(UpstreamConnectionError(f"the server ended the connection ({event})"))

    def fail_pending(self, error: BaseException) -> None:
        self.h2 = None
        for _, _, fut in self.streams.values():
            if not fut.done():
                fut.set_exception(error)
