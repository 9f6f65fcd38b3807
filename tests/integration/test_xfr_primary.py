"""mamori as the primary of a policy zone, Debian's Unbound and BIND 9 as secondaries.

Unbound (``rpz:`` with ``primary:``; it cannot sign transfer requests, so it
is allowed by address) and BIND (``response-policy`` over a secondary zone,
TSIG) transfer the zone from mamori, block the listed names, and pick up a
change of mamori's zone file through NOTIFY + IXFR.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest

from tests.conftest import require_binary
from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.bind import Bind
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.unbound import Unbound
from tests.support.wait import until as _wait

pytestmark = pytest.mark.integration

SECRET = base64.b64encode(b"fleet-secret-0123456789abcdefghi").decode()


def _rpz(serial: int, rules: str) -> str:
    return (
        "$TTL 60\n"
        f"@ SOA ns.rpz.test. hostmaster.rpz.test. {serial} 3600 60 86400 30\n"
        "@ NS localhost.\n" + rules
    )


def _rcode(port: int, name: str) -> int:
    q = dns.message.make_query(name, "A")
    return int(dns.query.udp(q, "127.0.0.1", port=port, timeout=3).rcode())


@pytest.fixture
def upstream() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


def _mamori(tmp_path: Path, upstream: AuthServer, notify: list[int]) -> MamoriProcess:
    zone = tmp_path / "rpz.test.zone"
    zone.write_text(_rpz(1, "mx1.example.test CNAME .\n"))
    targets = ", ".join(f'"127.0.0.1:{p}"' for p in notify)
    extra = (
        "[policy]\nwatch_interval = 0.2\n"
        f'[publish]\nallow = ["127.0.0.1/32"]\nkeys = ["fleet:hmac-sha256:{SECRET}"]\n'
        f"notify = [{targets}]\n"
        f'[[rpz]]\nname = "rpz.test"\nfile = "{zone}"\npublish = true\n'
    )
    return MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra=extra).start()


def _edit(m: MamoriProcess) -> None:
    """Serial 2: mx1 is no longer listed, www is."""
    (m.tmp / "rpz.test.zone").write_text(_rpz(2, "www.example.test CNAME .\n"))


def test_unbound_secondary_transfers_blocks_and_follows_notify(
    tmp_path: Path, upstream: AuthServer
) -> None:
    binary = require_binary("unbound")
    # Unbound's port is needed for mamori's NOTIFY list, mamori's for Unbound's primary.
    ub = Unbound(binary, tmp_path / "unbound", upstream.port)
    m = _mamori(tmp_path, upstream, [ub.port])
    ub.extra = (
        f'rpz:\n  name: "rpz.test."\n  primary: 127.0.0.1@{m.port}\n'
        f'  zonefile: "{tmp_path / "unbound" / "rpz.test.zone"}"\n  rpz-log: yes\n'
    )
    try:
        ub.start()
        try:
            assert _wait(lambda: _rcode(ub.port, "mx1.example.test") == dns.rcode.NXDOMAIN)
            assert _rcode(ub.port, "www.example.test") == dns.rcode.NOERROR
            assert "to 127.0.0.1: AXFR" in m.stderr() or "to 127.0.0.1: IXFR" in m.stderr()
            _edit(m)
            assert _wait(lambda: _rcode(ub.port, "www.example.test") == dns.rcode.NXDOMAIN)
            assert _rcode(ub.port, "mx1.example.test") == dns.rcode.NOERROR
            err = m.stderr()
            assert "NOTIFY sent to 127.0.0.1" in err
            assert "IXFR from 1" in err, err
        finally:
            ub.stop()
    finally:
        assert m.stop() == 0, m.stderr()


def test_bind_secondary_with_tsig_transfers_blocks_and_follows_notify(
    tmp_path: Path, upstream: AuthServer
) -> None:
    named = require_binary("named")
    d = tmp_path / "bind"
    b = Bind(named, d, "", keys={"fleet": ("hmac-sha256", SECRET)}, recursion=True)
    m = _mamori(tmp_path, upstream, [b.port])
    b.zones = (
        f'zone "rpz.test" {{ type secondary; file "{d}/rpz.test.db";'
        f' primaries {{ 127.0.0.1 port {m.port} key "fleet"; }}; }};\n'
    )
    b.options = (
        f"forwarders {{ 127.0.0.1 port {upstream.port}; }}; forward only;"
        ' response-policy { zone "rpz.test"; } qname-wait-recurse no min-update-interval 0;'
    )
    try:
        b.start()
        try:
            assert _wait(lambda: _rcode(b.port, "mx1.example.test") == dns.rcode.NXDOMAIN)
            assert _rcode(b.port, "www.example.test") == dns.rcode.NOERROR
            assert "TSIG fleet." in m.stderr()
            _edit(m)
            assert _wait(lambda: _rcode(b.port, "www.example.test") == dns.rcode.NXDOMAIN)
            assert _rcode(b.port, "mx1.example.test") == dns.rcode.NOERROR
            assert "IXFR from 1" in m.stderr()
            assert "Transfer status: success" in b.log
        finally:
            b.stop()
    finally:
        assert m.stop() == 0, m.stderr()


def test_unknown_clients_and_wrong_keys_are_refused(tmp_path: Path, upstream: AuthServer) -> None:
    m = _mamori(tmp_path, upstream, [])
    try:
        # From an address outside [publish] allow, unsigned: REFUSED.
        with pytest.raises(dns.xfr.TransferError, match="REFUSED"):
            dns.zone.from_xfr(
                dns.query.xfr("127.0.0.1", "rpz.test", port=m.port, source="127.0.0.2")
            )
        # Signed with a wrong secret: NOTAUTH (TSIG failure), whatever the address.
        wrong = dns.tsigkeyring.from_text(
            {"fleet": ("hmac-sha256", base64.b64encode(b"x" * 32).decode())}
        )
        with pytest.raises((dns.xfr.TransferError, dns.exception.DNSException)):
            dns.zone.from_xfr(
                dns.query.xfr("127.0.0.1", "rpz.test", port=m.port, keyring=wrong, keyname="fleet")
            )
        # Signed with the right key from the same outside address: the zone, TSIG verified.
        right = dns.tsigkeyring.from_text({"fleet": ("hmac-sha256", SECRET)})
        z = dns.zone.from_xfr(
            dns.query.xfr(
                "127.0.0.1",
                "rpz.test",
                port=m.port,
                keyring=right,
                keyname="fleet",
                source="127.0.0.2",
            )
        )
        assert z.get_rdataset("mx1.example.test", "CNAME") is not None
        assert "refused (not allowed)" in m.stderr() and "TSIG" in m.stderr()
    finally:
        assert m.stop() == 0, m.stderr()


def test_zones_serve_runs_the_primary_alone(tmp_path: Path) -> None:
    zone = tmp_path / "rpz.test.zone"
    zone.write_text(_rpz(7, "mx1.example.test CNAME .\n"))
    port = free_port()
    conf = tmp_path / "primary.toml"
    conf.write_text(
        f'[server]\nlisten = ["127.0.0.1:{port}"]\n[store]\npath = "{tmp_path / "p.db"}"\n'
        '[publish]\nallow = ["127.0.0.1/32"]\n'
        f'[[rpz]]\nname = "rpz.test"\nfile = "{zone}"\npublish = true\n'
    )
    err = (tmp_path / "primary.stderr").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mamori", "zones", "serve", "--config", str(conf)], stderr=err
    )
    try:
        assert _wait(lambda: "serving zone transfers" in (tmp_path / "primary.stderr").read_text())
        z = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", "rpz.test", port=port))
        assert z.get_rdataset("mx1.example.test", "CNAME") is not None
        assert _rcode(port, "www.example.test") == dns.rcode.REFUSED  # no resolver here
        status = subprocess.run(
            [sys.executable, "-m", "mamori", "zones", "status", "--config", str(conf)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "published by AXFR/IXFR: serial 7" in status
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        err.close()
