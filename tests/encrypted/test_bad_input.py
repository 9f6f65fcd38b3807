"""Bad input on the encrypted listeners: a garbage TLS hello, DoH requests with a bad
body, wrong path, method or content type, a huge POST, a QUIC flood, slow and
too many connections. Each gets a 4xx or a closed connection, and the service keeps
answering; /metrics counts what happened."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.message
import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.encrypted.certs import SERVER_NAME, Pki
from tests.encrypted.conftest import Service, start_service
from tests.encrypted.doqclient import query as doq_query
from tests.support.authserver import AuthServer
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = pytest.mark.integration

MAX_PER_CLIENT = 8


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, auth: AuthServer
) -> Iterator[tuple[Service, int]]:
    web = free_port()
    svc = start_service(
        tmp_path_factory.mktemp("limited"), pki, auth,
        tls="handshake_timeout = 1.0\nidle_timeout = 2.0\nread_timeout = 1.0\n"
        f"max_per_client = {MAX_PER_CLIENT}\nmax_connections = 30",
        more=f'[web]\nenabled = true\nlisten = "127.0.0.1:{web}"\nmetrics_allow = ["127.0.0.1"]',
    )  # fmt: skip
    try:
        yield svc, web
    finally:
        svc.mamori.stop()


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def _answers(svc: Service) -> bool:
    """A DoT query still gets its answer (a fresh connection, verified)."""
    ctx = ssl.create_default_context(cafile=str(svc.pki.ca))
    q = dns.message.make_query("www.example.test", "A").to_wire()
    raw = socket.create_connection(("127.0.0.1", svc.dot), timeout=5)
    with ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as s:
        s.sendall(struct.pack("!H", len(q)) + q)
        (n,) = struct.unpack("!H", _recv(s, 2))
        r = dns.message.from_wire(_recv(s, n))
    return [rd.to_text() for rr in r.answer for rd in rr] == ["192.0.2.1"]


def _recv(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def _closed_by_server(s: socket.socket, timeout: float = 5.0) -> bool:
    """True when the server closes (EOF or reset) within *timeout* seconds."""
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("kind", ["dot", "doh"])
@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05hello", os.urandom(600)],
    ids=["http", "short-hello", "random"],
)
def test_garbage_tls_hello_is_closed_and_service_answers(
    service: Service, kind: str, garbage: bytes
) -> None:
    port = service.dot if kind == "dot" else service.doh
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(garbage)
        assert _closed_by_server(s)
    assert _answers(service)


def _curl(svc: Service, *args: str, http: str = "--http2") -> str:
    r = subprocess.run(
        ["curl", "-s", http, "--max-time", "10", "--cacert", str(svc.pki.ca), "-o", "/dev/null",
         "-w", "%{http_code}", *args],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    return r.stdout


GOOD = "AAABAAABAAAAAAAAA3d3dwdleGFtcGxlBHRlc3QAAAEAAQ"  # www.example.test A, ID 0
DNS_CT = "Content-Type: application/dns-message"


@pytest.mark.parametrize("http", ["--http2", "--http1.1"])
@pytest.mark.parametrize(
    ("status", "path", "args"),
    [
        ("200", f"/dns-query?dns={GOOD}", []),
        ("404", f"/other?dns={GOOD}", []),
        ("405", "/dns-query", ["-X", "PUT", "-H", DNS_CT, "--data-binary", "x" * 20]),
        ("415", "/dns-query", ["-H", "Content-Type: text/plain", "--data-binary", "x" * 20]),
        ("415", "/dns-query", ["-H", "Content-Type:", "--data-binary", "x" * 20]),
        ("400", "/dns-query?dns=%%%not-base64", []),
        ("400", "/dns-query", []),
        ("400", "/dns-query", ["-H", DNS_CT, "--data-binary", "not a DNS message"]),
        ("400", f"/dns-query/Bad_Device?dns={GOOD}", []),
        ("413", "/dns-query", ["-H", DNS_CT, "--data-binary", "@BIG"]),
    ],
    ids=[
        "ok",
        "wrong-path",
        "wrong-method",
        "wrong-type",
        "no-type",
        "bad-base64",
        "no-dns-param",
        "bad-body",
        "bad-device",
        "huge-post",
    ],
)
def test_doh_client_mistakes_get_4xx(
    service: Service, tmp_path: Path, http: str, status: str, path: str, args: list[str]
) -> None:
    if "@BIG" in args:
        big = tmp_path / "big"
        big.write_bytes(b"\0" * 70_000)
        args = [a.replace("@BIG", f"@{big}") for a in args]
    url = f"https://127.0.0.1:{service.doh}{path}"
    assert _curl(service, *args, url, http=http) == status
    assert _curl(service, f"https://127.0.0.1:{service.doh}/dns-query?dns={GOOD}") == "200"


def _tls(service: Service, alpn: str) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(service.pki.ca))
    ctx.set_alpn_protocols([alpn])
    raw = socket.create_connection(("127.0.0.1", service.doh), timeout=5)
    return ctx.wrap_socket(raw, server_hostname=SERVER_NAME)


def test_a_declared_huge_body_is_refused_while_it_is_still_being_sent_http2(
    service: Service,
) -> None:
    # the request stays unfinished, as a slow or hostile client's would: the 413 comes
    # at once (not at the idle timeout), the stream is reset, the connection stays up
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    with _tls(service, "h2") as s:
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "POST"), (":scheme", "https"),
                              (":authority", SERVER_NAME), (":path", "/dns-query"),
                              ("content-type", "application/dns-message"),
                              ("content-length", "999999999")])  # fmt: skip
        conn.send_data(1, b"x" * 100)  # no END_STREAM
        s.sendall(conn.data_to_send())
        status, reset, deadline = b"", None, time.monotonic() + 8
        while reset is None and time.monotonic() < deadline:
            data = s.recv(65536)
            assert data, "the server closed the connection"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = dict(ev.headers)[b":status"]
                elif isinstance(ev, h2.events.StreamReset):
                    reset = ev.error_code
            s.sendall(conn.data_to_send())
        assert (status, reset) == (b"413", h2.errors.ErrorCodes.NO_ERROR)
        # the same connection answers the next request
        conn.send_headers(3, [(":method", "GET"), (":scheme", "https"),
                              (":authority", SERVER_NAME), (":path", f"/dns-query?dns={GOOD}")],
                          end_stream=True)  # fmt: skip
        s.sendall(conn.data_to_send())
        status = b""
        while not status and time.monotonic() < deadline:
            data = s.recv(65536)
            assert data, "the server closed the connection"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == 3:
                    status = dict(ev.headers)[b":status"]
        assert status == b"200"


def test_a_declared_huge_body_is_refused_while_it_is_still_being_sent_http1(
    service: Service,
) -> None:
    with _tls(service, "http/1.1") as s:
        s.sendall(
            b"POST /dns-query HTTP/1.1\r\nHost: " + SERVER_NAME.encode()
            + b"\r\nContent-Type: application/dns-message\r\nContent-Length: 999999999\r\n\r\n"
            + b"x" * 100
        )  # fmt: skip
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 413 "), head[:100]


def test_slow_handshakes_time_out_and_per_client_limit_holds(
    limited: tuple[Service, int],
) -> None:
    svc, web = limited
    # a client opening more connections than it may (the limit is per worker), never
    # finishing a handshake
    allowed = MAX_PER_CLIENT * int(os.environ.get("MAMORI_TEST_WORKERS", "1"))
    socks = [
        socket.create_connection(("127.0.0.1", svc.dot), timeout=5) for _ in range(allowed + 4)
    ]
    try:
        for s in socks:
            with contextlib.suppress(OSError):  # those over the limit may be reset already
                s.sendall(b"\x16")  # one byte of a hello: a slowloris
        closed = [_closed_by_server(s, 5.0) for s in socks]
        assert all(closed)  # the extra ones at once, the others at handshake_timeout
    finally:
        for s in socks:
            s.close()
    m = _metrics(web)
    assert m[("mamori_encrypted_refused_total", (("transport", "dot"),))] >= 4
    assert (
        m[("mamori_encrypted_timeouts_total", (("kind", "handshake"), ("transport", "dot")))] >= 1
    )
    assert _answers(svc)


def test_trickled_message_is_closed_at_read_timeout(limited: tuple[Service, int]) -> None:
    """A DoT client that finishes its handshake then sends a message one byte at a time
    is closed ([tls] read_timeout, 1 s here), however steadily it trickles."""
    svc, web = limited
    ctx = ssl.create_default_context(cafile=str(svc.pki.ca))
    raw = socket.create_connection(("127.0.0.1", svc.dot), timeout=5)
    with ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as s:
        s.sendall(b"\x00\x40")  # a 64-octet message begun
        deadline = time.monotonic() + 15
        gone = False
        while time.monotonic() < deadline and not gone:
            try:
                s.sendall(b"\x00")
                s.settimeout(0.5)
                gone = s.recv(1) == b""
            except TimeoutError:
                continue
            except (ConnectionError, ssl.SSLError):
                gone = True
        assert gone
    assert until(
        lambda: _metrics(web)[
            ("mamori_encrypted_timeouts_total", (("kind", "read"), ("transport", "dot")))
        ] >= 1, 5,
    )  # fmt: skip


def test_idle_dot_connection_is_closed_after_idle_timeout(limited: tuple[Service, int]) -> None:
    svc, web = limited
    ctx = ssl.create_default_context(cafile=str(svc.pki.ca))
    raw = socket.create_connection(("127.0.0.1", svc.dot), timeout=5)
    with ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as s:
        q = dns.message.make_query("www.example.test", "A").to_wire()
        s.sendall(struct.pack("!H", len(q)) + q)
        (n,) = struct.unpack("!H", _recv(s, 2))
        assert dns.message.from_wire(_recv(s, n)).answer
        s.settimeout(10)
        assert s.recv(1) == b""  # close_notify after [tls] idle_timeout (2 s)
    idle = (("kind", "idle"), ("transport", "dot"))
    assert until(lambda: _metrics(web)[("mamori_encrypted_timeouts_total", idle)] >= 1, 5)


def test_quic_flood_is_bounded_and_doq_keeps_answering(limited: tuple[Service, int]) -> None:
    svc, web = limited
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for i in range(400):
            if i % 2:
                u.sendto(os.urandom(50), ("127.0.0.1", svc.doq))  # garbage
            else:  # an Initial (QUIC v1) from a new connection ID, the rest noise
                dcid = os.urandom(8)
                pkt = b"\xc3\x00\x00\x00\x01" + bytes([8]) + dcid + b"\x08" + os.urandom(8)
                u.sendto(pkt + os.urandom(1200 - len(pkt)), ("127.0.0.1", svc.doq))
    q = dns.message.make_query("www.example.test", "A")
    q.id = 0
    r = dns.message.from_wire(doq_query(svc.doq, svc.pki.ca, SERVER_NAME, q.to_wire()))
    assert [rd.to_text() for rr in r.answer for rd in rr] == ["192.0.2.1"]
    m = _metrics(web)
    assert m[("mamori_encrypted_open_connections", (("transport", "doq"),))] <= 30


def test_doq_query_with_nonzero_id_closes_with_protocol_error(service: Service) -> None:
    """RFC 9250 4.2.1: the message ID must be 0; else DOQ_PROTOCOL_ERROR (0x2)."""
    import asyncio

    from aioquic.asyncio.client import connect

    from tests.encrypted.doqclient import DoqClient, configuration

    async def ask() -> int | None:
        cfg = configuration(service.pki.ca, SERVER_NAME)
        async with connect("127.0.0.1", service.doq, configuration=cfg,
                           create_protocol=DoqClient) as c:  # fmt: skip
            assert isinstance(c, DoqClient)
            q = dns.message.make_query("www.example.test", "A")
            q.id = 4321
            with pytest.raises(ConnectionError):
                await c.ask(q.to_wire())
            return c.closed_with

    assert asyncio.run(asyncio.wait_for(ask(), 10)) == 0x2
    q = dns.message.make_query("www.example.test", "A")
    q.id = 0
    r = dns.message.from_wire(doq_query(service.doq, service.pki.ca, SERVER_NAME, q.to_wire()))
    assert r.id == 0 and r.answer
