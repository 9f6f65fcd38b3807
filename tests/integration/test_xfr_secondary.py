"""mamori as a secondary of Debian's BIND 9 for a policy zone: AXFR, NOTIFY + IXFR, TSIG.

BIND is the primary (``ixfr-from-differences yes`` so an edited zone file
becomes an IXFR delta, ``also-notify`` to mamori signed with the key).
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from tests.conftest import require_binary
from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.bind import Bind
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until as _wait

pytestmark = pytest.mark.integration

SECRET = base64.b64encode(b"mamori-test-secret-0123456789abc").decode()
WRONG = base64.b64encode(b"not-the-secret-0123456789abcdefg").decode()


def _rpz(serial: int, rules: str) -> str:
    return (
        "$TTL 60\n"
        f"@ SOA ns.rpz.test. hostmaster.rpz.test. {serial} 2 1 600 30\n"
        "@ NS localhost.\n" + rules
    )


@pytest.fixture
def upstream() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


@pytest.fixture
def notify_port() -> int:
    return free_port()


@pytest.fixture
def bind(tmp_path: Path, notify_port: int) -> Iterator[Bind]:
    d = tmp_path / "bind"
    d.mkdir()
    # Enough rules for a transfer of several messages (TSIG chained across them).
    filler = "".join(f"filler-{i:05d}.example CNAME .\n" for i in range(3000))
    (d / "rpz.test.zone").write_text(_rpz(1, "mx1.example.test CNAME .\n" + filler))
    zones = (
        'zone "rpz.test" { type primary; file "DIR/rpz.test.zone";'
        ' allow-transfer { key "xfr-key"; }; ixfr-from-differences yes; max-ixfr-ratio unlimited;'
        f' notify explicit; also-notify {{ 127.0.0.1 port {notify_port} key "xfr-key"; }}; }};\n'
    )
    b = Bind(require_binary("named"), d, zones, keys={"xfr-key": ("hmac-sha256", SECRET)}).start(
        "rpz.test"
    )
    yield b
    b.stop()


def _mamori(
    tmp_path: Path,
    upstream: AuthServer,
    primary: str,
    secret: str | None,
    port: int | None = None,
) -> MamoriProcess:
    tmp_path.mkdir(parents=True, exist_ok=True)
    extra = f'[[rpz]]\nname = "rpz.test"\nprimary = "{primary}"\n'
    if secret is not None:
        extra += f'tsig = "xfr-key:hmac-sha256:{secret}"\n'
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra=extra)
    if port is not None:  # the port BIND sends NOTIFY to
        m.port = port
        m.config.write_text(_with_port(m.config.read_text(), port))
    return m.start()


def _with_port(conf: str, port: int) -> str:
    lines = []
    for line in conf.splitlines():
        if line.startswith("listen = "):
            lines.append(f'listen = ["127.0.0.1:{port}", "[::1]:{port}"]')
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def _rcode(m: MamoriProcess, name: str) -> int:
    return int(m.query(name).rcode())


def test_axfr_then_notify_and_ixfr_change_answers(
    tmp_path: Path, upstream: AuthServer, bind: Bind, notify_port: int
) -> None:
    m = _mamori(tmp_path / "m", upstream, f"127.0.0.1:{bind.port}", SECRET, notify_port)
    try:
        assert _wait(lambda: _rcode(m, "mx1.example.test") == dns.rcode.NXDOMAIN)
        assert "AXFR from 127.0.0.1" in m.stderr()
        assert _rcode(m, "www.example.test") == dns.rcode.NOERROR
        # Add a rule and remove one on the primary: NOTIFY, then IXFR.
        (bind.dir / "rpz.test.zone").write_text(_rpz(2, "www.example.test CNAME .\n"))
        bind.reload()
        assert _wait(lambda: _rcode(m, "www.example.test") == dns.rcode.NXDOMAIN, 10), m.stderr()
        assert _rcode(m, "mx1.example.test") == dns.rcode.NOERROR
        assert "NOTIFY from 127.0.0.1" in m.stderr()
        # (logged once the journal is written, just after the new version serves)
        assert _wait(lambda: "IXFR from 127.0.0.1" in m.stderr() and "serial 1 -> 2" in m.stderr())
        # `mamori zones status` tells what happened.
        assert _wait(lambda: "IXFR serial 1 -> 2" in _status_cli(m)), _status_cli(m)
        out = _status_cli(m)
        assert "secondary of 127.0.0.1" in out and "loaded, serial 2, 1 rules" in out
        # The journal holds the delta.
        zfile = tmp_path / "m" / "zones" / "rpz.test.zone"
        assert "www.example.test." in (zfile.parent / "rpz.test.zone.jnl").read_text()
    finally:
        assert m.stop() == 0, m.stderr()
    # A restart serves the stored copy at once and resumes by serial (no AXFR).
    m2 = _mamori(tmp_path / "m", upstream, f"127.0.0.1:{bind.port}", SECRET)
    try:
        assert _rcode(m2, "www.example.test") == dns.rcode.NXDOMAIN
        assert _wait(lambda: "up to date at serial 2" in m2.stderr() or "serial 2" in _status(m2))
        assert "AXFR from" not in m2.stderr()
    finally:
        assert m2.stop() == 0, m2.stderr()


def _status_cli(m: MamoriProcess) -> str:
    return subprocess.run(
        [sys.executable, "-m", "mamori", "zones", "status", "--config", str(m.config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _status(m: MamoriProcess) -> str:
    p = m.tmp / "zones" / "rpz.test.zone.status.json"
    return p.read_text() if p.exists() else ""


def test_wrong_tsig_key_is_refused_and_reported(
    tmp_path: Path, upstream: AuthServer, bind: Bind
) -> None:
    m = _mamori(tmp_path, upstream, f"127.0.0.1:{bind.port}", WRONG)
    try:
        assert _wait(lambda: "refresh failed" in m.stderr())
        assert "TSIG" in m.stderr() or "BADSIG" in m.stderr() or "NOTAUTH" in m.stderr()
        assert _rcode(m, "mx1.example.test") == dns.rcode.NOERROR  # never loaded
        assert "failed" in _status(m)
    finally:
        assert m.stop() == 0, m.stderr()


class CutPrimary:
    """A primary that answers SOA queries, then cuts every AXFR after one message."""

    def __init__(self, serial: int) -> None:
        self.port = free_port()
        self.serial = serial
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(4)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.stopped = False
        threading.Thread(target=self._udp, daemon=True).start()
        threading.Thread(target=self._tcp, daemon=True).start()

    def _soa_answer(self, q: dns.message.Message) -> dns.message.Message:
        r = dns.message.make_response(q)
        r.answer.append(
            dns.rrset.from_text(
                "rpz.test.", 60, "IN", "SOA", f"ns.rpz.test. h.rpz.test. {self.serial} 2 1 600 30"
            )
        )
        return r

    def _udp(self) -> None:
        while not self.stopped:
            try:
                data, addr = self.udp.recvfrom(4096)
            except OSError:
                return
            self.udp.sendto(self._soa_answer(dns.message.from_wire(data)).to_wire(), addr)

    def _tcp(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                n = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))[0]
                q = dns.message.from_wire(conn.recv(n, socket.MSG_WAITALL))
                wire = self._transfer(q).to_wire()
                conn.sendall(struct.pack("!H", len(wire)) + wire)

    def _transfer(self, q: dns.message.Message) -> dns.message.Message:
        r = self._soa_answer(q)
        r.answer.append(dns.rrset.from_text("x.rpz.test.", 60, "IN", "CNAME", "."))
        return r  # no closing SOA: the transfer is cut

    def close(self) -> None:
        self.stopped = True
        self.tcp.close()
        self.udp.close()


def test_broken_transfer_keeps_the_stored_version(tmp_path: Path, upstream: AuthServer) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "rpz.test.zone").write_text(_rpz(5, "www.example.test CNAME *.\n"))
    cut = CutPrimary(serial=6)
    try:
        m = _mamori(tmp_path, upstream, f"127.0.0.1:{cut.port}", None)
        try:
            r = m.query("www.example.test")
            assert r.rcode() == dns.rcode.NOERROR and not r.answer  # NODATA from the stored copy
            assert _wait(lambda: "mid-transfer" in m.stderr())
            r = m.query("www.example.test")
            assert r.rcode() == dns.rcode.NOERROR and not r.answer  # still the previous version
        finally:
            assert m.stop() == 0, m.stderr()
    finally:
        cut.close()


class BadIxfrPrimary(CutPrimary):
    """Answers IXFR with a complete but inconsistent sequence (5 -> 4, announced as 6)."""

    def _transfer(self, q: dns.message.Message) -> dns.message.Message:
        def soa(serial: int) -> dns.rrset.RRset:
            text = f"ns.rpz.test. h.rpz.test. {serial} 2 1 600 30"
            return dns.rrset.from_text("rpz.test.", 60, "IN", "SOA", text)

        r = self._soa_answer(q)  # SOA(6)
        www = dns.rrset.from_text("www.example.test.rpz.test.", 60, "IN", "CNAME", "*.")
        r.answer += [soa(5), www, soa(4), www, soa(6)]
        return r


def test_malformed_ixfr_keeps_the_stored_version(tmp_path: Path, upstream: AuthServer) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "rpz.test.zone").write_text(_rpz(5, "www.example.test CNAME *.\n"))
    bad = BadIxfrPrimary(serial=6)
    try:
        m = _mamori(tmp_path, upstream, f"127.0.0.1:{bad.port}", None)
        try:
            assert _wait(lambda: "malformed" in m.stderr())
            assert "refresh failed, previous version serving" in m.stderr()
            r = m.query("www.example.test")
            assert r.rcode() == dns.rcode.NOERROR and not r.answer  # still the stored NODATA rule
        finally:
            assert m.stop() == 0, m.stderr()
    finally:
        bad.close()


@pytest.mark.parametrize(("on_expire", "applied"), [("stop", False), ("keep", True)])
def test_expired_zone_stops_being_applied_unless_kept(
    tmp_path: Path, upstream: AuthServer, on_expire: str, applied: bool
) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    copy = zones / "rpz.test.zone"
    # SOA expire 2 s; the copy on disk was last refreshed a minute ago.
    copy.write_text(
        "$TTL 60\n@ SOA ns.rpz.test. h.rpz.test. 5 1 1 2 30\n@ NS localhost.\n"
        "www.example.test CNAME .\n"
    )
    old = time.time() - 60
    os.utime(copy, (old, old))
    dead = free_port()  # nothing listens there: every refresh fails
    tmp_path.mkdir(exist_ok=True)
    extra = f'[[rpz]]\nname = "rpz.test"\nprimary = "127.0.0.1:{dead}"\non_expire = "{on_expire}"\n'
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra=extra).start()

    def blocked() -> bool:
        return _rcode(m, "www.example.test") == dns.rcode.NXDOMAIN

    try:
        assert _wait(lambda: "expired" in m.stderr())
        assert ('"expired": true' in _status(m)) or _wait(lambda: '"expired": true' in _status(m))
        # the log line comes when the zone is taken off; the policy without it reaches
        # the data plane a moment later (stop), or never changes (keep)
        assert _wait(lambda: blocked() is applied)
        assert all(blocked() is applied for _ in range(5))
        # A reload (SIGHUP) reads the copy on disk again: still not applied while expired.
        m.signal(signal.SIGHUP)
        assert _wait(lambda: "configuration reloaded" in m.stderr())
        assert all(blocked() is applied for _ in range(5))
    finally:
        assert m.stop() == 0, m.stderr()


def test_relay_bind_to_mamori_to_unbound_passes_ixfr_on(
    tmp_path: Path, upstream: AuthServer, bind: Bind, notify_port: int
) -> None:
    from tests.support.unbound import Unbound

    ub = Unbound(require_binary("unbound"), tmp_path / "unbound", upstream.port)
    tmp_path.joinpath("m").mkdir()
    extra = (
        f'[publish]\nallow = ["127.0.0.1/32"]\nnotify = ["127.0.0.1:{ub.port}"]\n'
        f'[[rpz]]\nname = "rpz.test"\nprimary = "127.0.0.1:{bind.port}"\n'
        f'tsig = "xfr-key:hmac-sha256:{SECRET}"\npublish = true\n'
    )
    m = MamoriProcess(tmp_path / "m", [f"127.0.0.1:{upstream.port}"], extra=extra)
    m.port = notify_port  # BIND notifies this port
    m.config.write_text(_with_port(m.config.read_text(), notify_port))
    m.start()
    ub.extra = (
        f'rpz:\n  name: "rpz.test."\n  primary: 127.0.0.1@{m.port}\n'
        f'  zonefile: "{tmp_path / "unbound" / "rpz.test.zone"}"\n'
    )
    try:
        ub.start()
        try:
            q = lambda name: _rcode_at(ub.port, name)  # noqa: E731
            assert _wait(lambda: q("mx1.example.test") == dns.rcode.NXDOMAIN, 20)
            (bind.dir / "rpz.test.zone").write_text(_rpz(2, "www.example.test CNAME .\n"))
            bind.reload()
            assert _wait(lambda: q("www.example.test") == dns.rcode.NXDOMAIN, 20), m.stderr()
            assert q("mx1.example.test") == dns.rcode.NOERROR
            assert "to 127.0.0.1: IXFR from 1" in m.stderr()  # mamori -> Unbound: a delta
            assert _wait(lambda: "IXFR from 127.0.0.1" in m.stderr())  # mamori <- BIND
        finally:
            ub.stop()
    finally:
        assert m.stop() == 0, m.stderr()


def _rcode_at(port: int, name: str) -> int:
    import dns.query

    r = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=3)
    return int(r.rcode())
