"""DNS over QUIC (RFC 9250) with ``aioquic``.

ALPN ``doq``; one query per client-initiated bidirectional stream, with a 2-octet
length prefix, ended by the client's FIN; the answer goes back on the same stream,
which the server then ends. A query whose ID is not 0, a length that does not
match, data on a unidirectional stream: the connection is closed with
DOQ_PROTOCOL_ERROR (section 4.3). Bounds: connections in all and per client
address (new ones past them are dropped before any handshake work: a flood of
Initial packets costs a header parse each), the handshake timeout and QUIC's idle
timeout; past half the connection limit, new clients get a stateless Retry (address
validation) before any connection state is kept. A server name
``{device}.{[tls] server_name}`` names the device.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.retry import QuicRetryTokenHandler
from aioquic.tls import pull_client_hello

from mamori.dnsutil.padding import pad_response, wants_padding
from mamori.resolver.dot import DnsListener
from mamori.resolver.server import internal_error
from mamori.resolver.tls import device_from_sni

log = logging.getLogger(__name__)

ALPN = "doq"
DOQ_NO_ERROR = 0x0
DOQ_INTERNAL_ERROR = 0x1
DOQ_PROTOCOL_ERROR = 0x2
DOQ_EXCESSIVE_LOAD = 0x4
MAX_STREAM_BYTES = 2 + 65535
_LEN = struct.Struct("!H")


def quic_configuration(cert: str, key: str, idle_timeout: float) -> QuicConfiguration:
    """A server configuration for DoQ; raises OSError/ValueError when the files do not load."""
    cfg = QuicConfiguration(is_client=False, alpn_protocols=[ALPN], idle_timeout=idle_timeout)
    cfg.max_stream_data = MAX_STREAM_BYTES * 2
    cfg.load_cert_chain(cert, key)
    return cfg


class DoqListener(DnsListener):
    """The DoQ side of a data plane: its QUIC servers (one per socket) and counters."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.quic_config: QuicConfiguration | None = None
        self.quic_generation = 0
        self.protocol_errors = 0
        self.servers: list[DoqServer] = []

    def counters(self) -> dict[str, int]:
        out = super().counters()
        out[f"{self.kind}_protocol_errors"] = self.protocol_errors
        return out

    def close_all(self) -> None:
        for srv in self.servers:
            srv.close()


class DoqConnection(QuicConnectionProtocol):
    def __init__(self, quic: QuicConnection, server: DoqServer, peer: Any) -> None:
        super().__init__(quic)
        self.server = server
        self.listener = server.listener
        self.peer = peer
        self.sni: str | None = None
        self.device: str | None = None
        self.ready = False
        self.gone = False
        self.streams: dict[int, bytes] = {}
        loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = loop.call_later(
            self.listener.handshake_timeout, self._handshake_timeout
        )

    def _handshake_timeout(self) -> None:
        self.timer = None
        if not self.ready and not self.gone:
            self.listener.handshake_timeouts += 1
            self._quic.close(error_code=DOQ_NO_ERROR, reason_phrase="handshake timeout")
            self.transmit()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived):
            self._stream_data(event)
        elif isinstance(event, events.HandshakeCompleted):
            self.ready = True
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.device = device_from_sni(self.sni, self.listener.server_name)
        elif isinstance(event, events.StreamReset):
            self.streams.pop(event.stream_id, None)
        elif isinstance(event, events.ConnectionTerminated):
            self._release()

    def _protocol_error(self, why: str) -> None:
        self.listener.protocol_errors += 1
        self._quic.close(error_code=DOQ_PROTOCOL_ERROR, reason_phrase=why)
        self.transmit()

    def _stream_data(self, ev: events.StreamDataReceived) -> None:
        sid = ev.stream_id
        if sid & 0x2:  # unidirectional: DoQ uses none (section 4.2)
            return self._protocol_error("unidirectional stream")
        if sid & 0x1:
            return  # server-initiated: we open none
        buf = self.streams.get(sid, b"") + ev.data
        if len(buf) > MAX_STREAM_BYTES:
            return self._protocol_error("stream too long")
        if not ev.end_stream:
            self.streams[sid] = buf
            return
        self.streams.pop(sid, None)
        if len(buf) < 2 or _LEN.unpack_from(buf)[0] != len(buf) - 2:
            return self._protocol_error("length prefix does not match the stream")
        msg = buf[2:]
        if len(msg) < 12 or msg[:2] != b"\x00\x00":
            return self._protocol_error("message ID must be 0")
        pad = msg[10:12] != b"\x00\x00" and wants_padding(msg)
        lis = self.listener
        client = lis.client_of(self.peer, self.device) if self.device else None

        answered = False

        def reply(resp: bytes, _addr: Any) -> None:
            nonlocal answered
            if self.gone or answered:
                return  # one answer per stream
            answered = True
            if pad:
                resp = pad_response(resp)
            try:
                self._quic.send_stream_data(sid, _LEN.pack(len(resp)) + resp, end_stream=True)
            except (ValueError, AssertionError):
                return  # stream reset by the client meanwhile
            self.transmit()

        try:
            resp = lis.pipeline.handle(msg, self.peer, reply, True, client)
        except Exception:
            resp = internal_error(msg)
        if resp is not None:
            reply(resp, self.peer)

    def _release(self) -> None:
        if self.gone:
            return
        self.gone = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.server.release(self)


class DoqServer(QuicServer):
    """aioquic's server with the listener's bounds on new connections."""

    def __init__(self, listener: DoqListener, configuration: QuicConfiguration) -> None:
        super().__init__(configuration=configuration, create_protocol=self._create)
        self.listener = listener
        self.peer: Any = None  # the sender of the datagram being handled
        self.open: set[DoqConnection] = set()
        self.per_client: dict[str, int] = {}
        self.retry_tokens = QuicRetryTokenHandler()

    def set_configuration(self, configuration: QuicConfiguration) -> None:
        """The configuration (certificate) for connections from now on."""
        self._configuration = configuration

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        assert isinstance(data, bytes)
        # A long-header Initial (RFC 9000 17.2.2) for a connection we do not have yet
        if len(data) > 6 and data[0] & 0xF0 == 0xC0:
            dcid = data[6 : 6 + data[5]]
            if dcid not in self._protocols:
                if self._full(addr[0]):
                    self.listener.refused += 1
                    return
                # Past half the limit, new clients must prove their address first (a
                # stateless Retry, RFC 9000 8.1.2): a spoofed flood then holds no state
                # (off again below a quarter: tokens issued meanwhile stay good)
                load = len(self.open) / self.listener.max_connections
                if self._retry is None and load >= 0.5:
                    self._retry = self.retry_tokens
                elif self._retry is not None and load < 0.25:
                    self._retry = None  # type: ignore[assignment]
        self.peer = addr
        super().datagram_received(data, addr)

    def _full(self, ip: str) -> bool:
        lis = self.listener
        if len(lis.connections) + len(self.open) >= lis.max_connections:
            return True
        return bool(lis.max_per_client and self.per_client.get(ip, 0) >= lis.max_per_client)

    def _create(self, quic: QuicConnection, stream_handler: Any = None) -> DoqConnection:
        conn = DoqConnection(quic, self, self.peer)
        _watch_server_name(quic, conn)
        ip = self.peer[0] if self.peer else ""
        self.open.add(conn)
        self.per_client[ip] = self.per_client.get(ip, 0) + 1
        self.listener.accepted += 1
        return conn

    def release(self, conn: DoqConnection) -> None:
        if conn in self.open:
            self.open.discard(conn)
            ip = conn.peer[0] if conn.peer else ""
            held = self.per_client.get(ip, 0) - 1
            if held > 0:
                self.per_client[ip] = held
            else:
                self.per_client.pop(ip, None)

    def close(self) -> None:
        for conn in list(self.open):
            conn._release()
        if self._transport is not None:
            super().close()


def _watch_server_name(quic: QuicConnection, conn: DoqConnection) -> None:
    """Keep the server name of the ClientHello on *conn*: aioquic's server side reads
    it but does not keep it (aioquic 1.x internals: ``_initialize`` makes the TLS
    context, whose ``_server_handle_hello`` reads the ClientHello)."""
    initialize = quic._initialize

    def init(peer_cid: bytes) -> None:
        initialize(peer_cid)
        handle_hello = quic.tls._server_handle_hello

        def hello(input_buf: Any, initial_buf: Any, handshake_buf: Any) -> None:
            pos = input_buf.tell()
            try:
                conn.sni = pull_client_hello(input_buf).server_name
            except Exception:  # a bad hello: aioquic's own parse reports it
                conn.sni = None
            input_buf.seek(pos)
            handle_hello(input_buf, initial_buf, handshake_buf)

        quic.tls._server_handle_hello = hello  # type: ignore[method-assign]

    quic._initialize = init  # type: ignore[method-assign]
