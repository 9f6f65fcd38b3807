"""The [tls] certificate is reloaded on SIGHUP and when its files change (an ACME
renewal), without dropping open connections; a bad new one keeps the old one
serving with one log line."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import struct
from pathlib import Path

import dns.message
import pytest

from tests.encrypted.certs import SERVER_NAME, make_pki
from tests.encrypted.conftest import start_service
from tests.support.authserver import AuthServer
from tests.support.wait import until

pytestmark = pytest.mark.integration


def _connect(port: int, ca: Path) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(ca))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname=SERVER_NAME)


def _ask(s: ssl.SSLSocket) -> list[str]:
    q = dns.message.make_query("www.example.test", "A").to_wire()
    s.sendall(struct.pack("!H", len(q)) + q)
    (n,) = struct.unpack("!H", _recv(s, 2))
    r = dns.message.from_wire(_recv(s, n))
    return [rd.to_text() for rr in r.answer for rd in rr]


def _recv(s: ssl.SSLSocket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def _verifies(port: int, ca: Path) -> bool:
    try:
        with _connect(port, ca) as s:
            return _ask(s) == ["192.0.2.1"]
    except ssl.SSLCertVerificationError:
        return False


def test_certificate_reload_keeps_connections_and_refuses_bad_files(
    tmp_path: Path, auth: AuthServer
) -> None:
    old = make_pki(tmp_path, tag="-old")
    new = make_pki(tmp_path, tag="-new")  # another CA: tells which certificate serves
    live = make_pki(tmp_path, tag="")
    shutil.copy(old.cert, live.cert)
    shutil.copy(old.key, live.key)
    svc = start_service(tmp_path, live, auth)
    m = svc.mamori
    try:
        held = _connect(svc.dot, old.ca)  # open across the reloads
        assert _ask(held) == ["192.0.2.1"]
        # a broken renewal: refused with one line, the old certificate serves
        live.cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
        m.signal(signal.SIGHUP)
        assert until(lambda: "new certificate not loaded" in m.stderr(), 10)
        assert _verifies(svc.dot, old.ca)
        # the renewal lands (key first, then the certificate): picked up without a signal
        shutil.copy(new.key, live.key)
        shutil.copy(new.cert, live.cert)
        assert until(lambda: _verifies(svc.dot, new.ca), 15)
        assert not _verifies(svc.dot, old.ca)
        assert _ask(held) == ["192.0.2.1"]  # the connection opened before goes on
        held.close()
    finally:
        m.stop()
    assert "reloaded (file changed)" in m.stderr()
