"""DNS over TLS (RFC 7858): the TCP framing of RFC 7766 inside TLS.

Each message is preceded by its 2-octet length; queries are pipelined and answered
as they are ready (out of order). The bounds are those of ``TlsListener`` (tls.py);
while a client's answers waiting to be sent pass the transport's high-water mark,
its queries are not read. Answers to queries that carry the EDNS Padding option
are padded to a multiple of 468 octets (RFC 8467). A server name
``{device}.{[tls] server_name}`` names the device (``ClientTable.device``).
"""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING, Any

from mamori.dnsutil.padding import pad_response, wants_padding
from mamori.resolver.acl import ClientState
from mamori.resolver.server import internal_error
from mamori.resolver.tls import device_from_sni
from mamori.resolver.tlsconn import TlsConnection, TlsListener

if TYPE_CHECKING:
    from mamori.resolver.pipeline import Pipeline

_LEN = struct.Struct("!H")
MAX_PADDED_PENDING = 256  # query IDs remembered for padding per connection


class DnsListener(TlsListener):
    """A ``TlsListener`` that feeds a pipeline; *server_name*: ``[tls] server_name``."""

    def __init__(self, pipeline: Pipeline, server_name: str, *args: Any) -> None:
        super().__init__(*args)
        self.pipeline = pipeline
        self.server_name = server_name
        self.responses: dict[int, int] = {}  # DoH: HTTP responses by status

    def counters(self) -> dict[str, int]:
        out = super().counters()
        for status, n in self.responses.items():
            out[f"{self.kind}_status_{status}"] = n
        return out

    def client_of(self, peer: Any, device: str | None) -> ClientState | None:
        """The client record of the named *device* at *peer*'s address (None: unnamed)."""
        if device is None or not peer:
            return None
        return self.pipeline.clients.device(peer[0], device, time.time())


class DotConnection(TlsConnection):
    listener: DnsListener

    def __init__(self, listener: DnsListener) -> None:
        super().__init__(listener)
        self.buf = b""
        self.device: str | None = None
        self.padded: set[bytes] = set()  # IDs of pending queries that asked for padding
        self.batch: list[bytes] | None = None  # answers of the input being read, sent at once

    def on_ready(self) -> None:
        self.device = device_from_sni(self.sni, self.listener.server_name)

    def on_data(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        lis = self.listener
        handle = lis.pipeline.handle
        client = lis.client_of(self.peer, self.device) if self.device else None
        done = False
        batch: list[bytes] = []
        self.batch = batch
        while len(buf) >= 2:
            (ln,) = _LEN.unpack_from(buf)
            if len(buf) < 2 + ln:
                break
            msg, buf = buf[2 : 2 + ln], buf[2 + ln :]
            done = True
            if (
                len(msg) > 11
                and msg[10:12] != b"\x00\x00"
                and len(self.padded) < MAX_PADDED_PENDING
                and wants_padding(msg)
            ):
                self.padded.add(msg[:2])
            try:
                resp = handle(msg, self.peer, self.reply, True, client)
            except Exception:
                resp = internal_error(msg)
            if resp is not None:
                self.reply(resp, self.peer)
        self.batch = None
        if batch:  # one TLS write (and send) for the answers ready now
            self.send(b"".join(batch) if len(batch) > 1 else batch[0])
        self.buf = buf
        if buf and done:
            self.reading = False  # a new message begun: its own read timeout
        self.busy(bool(buf))

    def reply(self, resp: bytes, _addr: Any) -> None:
        if self.padded and resp[:2] in self.padded:
            self.padded.discard(resp[:2])
            resp = pad_response(resp)
        if self.batch is not None:
            self.batch.append(_LEN.pack(len(resp)) + resp)
        else:
            self.send(_LEN.pack(len(resp)) + resp)

    def on_lost(self) -> None:
        self.padded.clear()
