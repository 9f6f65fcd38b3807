"""DNS over HTTPS (RFC 8484) on HTTP/2 (``h2``) and HTTP/1.1 (``h11``), sans-io over
``TlsConnection``.

Paths ``/dns-query`` and ``/dns-query/{device}`` (a device name, AdGuard DNS style);
GET with ``?dns=`` (base64url, padding optional) and POST with an
``application/dns-message`` body. Answers carry ``Cache-Control: max-age=`` the
smallest TTL of their records (RFC 8484 5.1) and keep the query's ID (0).
Client mistakes get a 4xx, never a 5xx: unknown path 404, method 405, content
type 415, body over 65535 octets 413, bad base64, bad device name or a message
that is not a DNS query 400.
"""

from __future__ import annotations

import binascii
import contextlib
from base64 import urlsafe_b64decode
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h11

from mamori.dnsutil import wire
from mamori.dnsutil.padding import pad_response, wants_padding
from mamori.resolver.dot import DnsListener
from mamori.resolver.server import internal_error
from mamori.resolver.tls import device_name
from mamori.resolver.tlsconn import TlsConnection

PATH = "/dns-query"
CONTENT_TYPE = b"application/dns-message"
MAX_BODY = 65535
MAX_STREAMS = 100  # concurrent HTTP/2 requests per connection
MAX_HEADERS = 16384  # octets of request line and headers (HTTP/1.1) / header list (HTTP/2)

# (status, extra headers, body): what a request gets
Respond = Callable[[int, list[tuple[bytes, bytes]], bytes], None]

_PLAIN = {
    400: b"bad request\n", 404: b"not found: the DNS path is /dns-query\n",
    405: b"method not allowed: GET or POST\n", 413: b"DNS message over 65535 octets\n",
    415: b"content type must be application/dns-message\n",
}  # fmt: skip


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def max_age(resp: bytes) -> int:
    """The smallest TTL of *resp*'s records (not OPT), in seconds; 0 when it has none."""
    try:
        _, refs = wire.walk_records(resp)
    except wire.WireError:
        return 0
    ttls = [r.ttl for r in refs if r.rtype != wire.TYPE_OPT]
    return min(ttls) if ttls else 0


def _is_query(msg: bytes) -> bool:
    """A DNS query the pipeline will answer: header, QR=0, one whole question."""
    if len(msg) < 12 or msg[2] & 0x80 or msg[4:6] != b"\x00\x01":
        return False
    try:
        end = wire.scan_name(msg, 12)
    except wire.WireError:
        return False
    return end + 4 <= len(msg)


def _dns_param(query: str) -> str | None:
    for part in query.split("&"):
        if part.startswith("dns="):
            return part[4:]
    return None


class DohConnection(TlsConnection):
    """One HTTPS connection: HTTP/2 when ALPN chose ``h2``, else HTTP/1.1."""

    listener: DnsListener

    def __init__(self, listener: DnsListener) -> None:
        super().__init__(listener)
        self.session: H2Session | H11Session | None = None

    def on_ready(self) -> None:
        self.session = H2Session(self) if self.alpn == "h2" else H11Session(self)

    def on_data(self, data: bytes) -> None:
        if self.session is not None:
            self.session.feed(data)

    def on_lost(self) -> None:
        self.session = None

    # ------------------------------------------------------------- requests
    def request(
        self, method: str, target: str, ctype: bytes | None, body: bytes, respond: Respond
    ) -> None:
        """Answer one HTTP request (through *respond*, now or when the answer comes)."""
        self.busy(False)
        path, _, query = target.partition("?")
        device = None
        if path != PATH:
            if not path.startswith(PATH + "/"):
                return self.error(respond, 404)
            device = device_name(path[len(PATH) + 1 :])
            if device is None:
                return self.error(respond, 400)
        if method == "GET":
            param = _dns_param(query)
            if not param:
                return self.error(respond, 400)
            try:
                msg = urlsafe_b64decode(param + "=" * (-len(param) % 4))
            except (binascii.Error, ValueError):
                return self.error(respond, 400)
        elif method == "POST":
            if ctype is None or ctype.split(b";", 1)[0].strip().lower() != CONTENT_TYPE:
                return self.error(respond, 415)
            msg = body
        else:
            return self.error(respond, 405)
        if len(msg) > MAX_BODY:
            return self.error(respond, 413)
        if not _is_query(msg):
            return self.error(respond, 400)
        pad = msg[10:12] != b"\x00\x00" and wants_padding(msg)
        lis = self.listener
        client = lis.client_of(self.peer, device) if device else None

        answered = False

        def reply(resp: bytes, _addr: Any) -> None:
            nonlocal answered
            if answered:
                return  # one answer per request (a zone transfer's stream does not fit)
            answered = True
            if pad:
                resp = pad_response(resp)
            headers = [
                (b"content-type", CONTENT_TYPE),
                (b"cache-control", b"max-age=%d" % max_age(resp)),
            ]
            lis.responses[200] = lis.responses.get(200, 0) + 1
            respond(200, headers, resp)

        try:
            resp = lis.pipeline.handle(msg, self.peer, reply, True, client)
        except Exception:
            resp = internal_error(msg)
        if resp is not None:
            reply(resp, self.peer)

    def error(self, respond: Respond, status: int) -> None:
        lis = self.listener
        lis.responses[status] = lis.responses.get(status, 0) + 1
        extra = [(b"allow", b"GET, POST")] if status == 405 else []
        respond(status, [(b"content-type", b"text/plain"), *extra], _PLAIN.get(status, b""))


class H2Session:
    """HTTP/2 (RFC 9113) with the ``h2`` state machine."""

    def __init__(self, conn: DohConnection) -> None:
        self.conn = conn
        # Header validation and normalisation cost more than the DNS answer: the headers
        # are read here only for :method, :path and content-type, never passed on
        cfg = h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=False,
            normalize_inbound_headers=False, validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )  # fmt: skip
        self.h2 = h2.connection.H2Connection(config=cfg)
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADERS,
            },
        )
        self.h2.initiate_connection()
        self.streams: dict[int, tuple[list[tuple[bytes, bytes]], list[bytes], int]] = {}
        self.waiting: dict[int, bytes] = {}  # answer bytes waiting for flow-control window
        self.flush()

    def flush(self) -> None:
        out = self.h2.data_to_send()
        if out:
            self.conn.send(out)

    def feed(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.flush()  # the GOAWAY h2 queued
            self.conn.close()
            return
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                if _declared_size(ev.headers or []) > MAX_BODY:  # refused before the body
                    self._refuse(ev.stream_id, 413)
                    continue
                self.streams[ev.stream_id] = (list(ev.headers or []), [], 0)
            elif isinstance(ev, h2.events.DataReceived):
                sid = ev.stream_id
                if ev.flow_controlled_length:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, sid)
                st = self.streams.get(sid)
                if st is None:
                    continue
                size = st[2] + len(ev.data or b"")
                if size > MAX_BODY:
                    del self.streams[sid]
                    self._refuse(sid, 413)
                    continue
                st[1].append(ev.data or b"")
                self.streams[sid] = (st[0], st[1], size)
            elif isinstance(ev, h2.events.StreamEnded):
                st = self.streams.pop(ev.stream_id, None)
                if st is not None:
                    self._request(ev.stream_id, st[0], b"".join(st[1]))
            elif isinstance(ev, h2.events.StreamReset):
                self.streams.pop(ev.stream_id, None)
                self.waiting.pop(ev.stream_id, None)
            elif isinstance(ev, h2.events.WindowUpdated):
                self._send_waiting()
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.flush()
                self.conn.close()
                return
        self.flush()

    def _refuse(self, sid: int, status: int) -> None:
        """Answer *status* before the request body is whole, then RST_STREAM NO_ERROR:
        the client stops sending it (RFC 9113 section 8.1); the connection stays up."""
        self.conn.error(self._responder(sid), status)
        if self.conn.session is self:
            # (StreamClosedError: the client had already ended or reset it)
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.h2.reset_stream(sid, h2.errors.ErrorCodes.NO_ERROR)

    def _request(self, sid: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        method = target = ""
        ctype = None
        for k, v in headers:
            if k == b":method":
                method = v.decode("latin-1")
            elif k == b":path":
                target = v.decode("latin-1")
            elif k == b"content-type":
                ctype = v
        self.conn.request(method, target, ctype, body, self._responder(sid))

    def _responder(self, sid: int) -> Respond:
        def respond(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
            if self.conn.session is not self:
                return  # the connection is gone
            hdrs = [(b":status", b"%d" % status), *headers,
                    (b"content-length", b"%d" % len(body))]  # fmt: skip
            try:
                self.h2.send_headers(sid, hdrs)
            except h2.exceptions.ProtocolError:  # the stream is gone (reset by the client)
                return
            self.waiting[sid] = body
            self._send_waiting()
            self.flush()

        return respond

    def _send_waiting(self) -> None:
        h = self.h2
        for sid, waiting in list(self.waiting.items()):
            body = waiting
            try:
                window = min(h.local_flow_control_window(sid), h.max_outbound_frame_size)
                while len(body) > window > 0:
                    h.send_data(sid, body[:window])
                    body = body[window:]
                    window = min(h.local_flow_control_window(sid), h.max_outbound_frame_size)
                if len(body) <= window:
                    h.send_data(sid, body, end_stream=True)
                    del self.waiting[sid]
                else:
                    self.waiting[sid] = body
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                self.waiting.pop(sid, None)


class H11Session:
    """HTTP/1.1 (RFC 9112) with ``h11``: keep-alive, one request at a time (pipelined
    requests wait in h11's buffer until the answer before them is sent)."""

    def __init__(self, conn: DohConnection) -> None:
        self.conn = conn
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        self.req: h11.Request | None = None
        self.body: list[bytes] = []
        self.size = 0
        self.answering = False

    def feed(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._process()

    def _process(self) -> None:
        h = self.h11
        while not self.answering:
            try:
                ev = h.next_event()
            except h11.RemoteProtocolError as e:
                self._fail(e.error_status_hint)
                return
            if ev is h11.NEED_DATA or ev is h11.PAUSED:
                return
            if isinstance(ev, h11.Request):
                self.req, self.body, self.size = ev, [], 0
                if _declared_size(ev.headers) > MAX_BODY:  # refused before the body comes
                    self._fail(413)
                    return
            elif isinstance(ev, h11.Data):
                self.size += len(ev.data)
                if self.size > MAX_BODY:
                    self._fail(413)
                    return
                self.body.append(bytes(ev.data))
            elif isinstance(ev, h11.EndOfMessage) and self.req is not None:
                req, self.req = self.req, None
                ctype = None
                for k, v in req.headers:
                    if k == b"content-type":
                        ctype = bytes(v)
                self.answering = True
                self.conn.request(
                    req.method.decode("latin-1"), req.target.decode("latin-1"), ctype,
                    b"".join(self.body), self._respond,
                )  # fmt: skip
            elif isinstance(ev, h11.ConnectionClosed):
                self.conn.close()
                return

    def _respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        if self.conn.session is not self:
            return
        h = self.h11
        hdrs = [*headers, (b"content-length", b"%d" % len(body))]
        try:
            out = h.send(h11.Response(status_code=status, headers=hdrs, reason=_reason(status)))
            out = (out or b"") + (h.send(h11.Data(data=body)) or b"")
            out += h.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            self.conn.close()
            return
        self.conn.send(out)
        self.answering = False
        if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
            self.conn.close()
            return
        try:
            h.start_next_cycle()
        except h11.LocalProtocolError:
            self.conn.close()
            return
        self._process()

    def _fail(self, status: int) -> None:
        """A request h11 cannot read (or too big): answer *status* if we still may, close."""
        h = self.h11
        if h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            lis = self.conn.listener
            lis.responses[status] = lis.responses.get(status, 0) + 1
            body = _PLAIN.get(status, b"bad request\n")
            try:
                out = h.send(h11.Response(status_code=status, reason=_reason(status), headers=[
                    (b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body)),
                    (b"connection", b"close")]))  # fmt: skip
                out = (out or b"") + (h.send(h11.Data(data=body)) or b"")
                out += h.send(h11.EndOfMessage()) or b""
                self.conn.send(out)
            except h11.LocalProtocolError:
                pass
        self.conn.close()


def _declared_size(headers: Any) -> int:
    """The Content-Length a request declares (octets; 0 when absent or not a number)."""
    for k, v in headers:
        if bytes(k).lower() == b"content-length":
            try:
                return int(bytes(v))
            except ValueError:
                return 0
    return 0
