"""`mamori serve` listening on 0.0.0.0 / :: answers from the address each query came to.

dnspython's ``dns.query.udp`` refuses an answer from another address than the
one it asked (``UnexpectedSource``), as stub resolvers do; every 127.0.0.0/8
address is local here, so a query to 127.0.0.2 would be answered from 127.0.0.1
without IP_PKTINFO. Cache misses (answered later) and hits (answered at once), a policy
answer, the published zone's SOA (answered by the control plane; with two
workers, forwarded to it and answered later), the DNSBL responder and
``mamori zones serve``. ``make test`` runs this on both UDP paths.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_PKTINFO: Linux"),
]


def _ask(host: str, port: int, name: str, rdtype: str = "A") -> dns.message.Message:
    # raises dns.query.UnexpectedSource for an answer from another address
    return dns.query.udp(dns.message.make_query(name, rdtype), host, port=port, timeout=3)


def _addresses(r: dns.message.Message) -> list[str]:
    return sorted(rd.address for rrset in r.answer for rd in rrset if rrset.rdtype == 1)


def _soa_serial(host: str, port: int, zone: str) -> int:
    q = dns.message.make_query(zone, "SOA")
    r = dns.query.udp(q, host, port=port, timeout=3)
    return int(r.answer[0][0].serial)


@pytest.mark.parametrize("workers", [1, 2])
def test_resolver_and_dnsbl_on_wildcard_addresses_answer_from_the_address_asked(
    tmp_path: Path, workers: int
) -> None:
    (tmp_path / "ips.txt").write_text("198.51.100.7\n")
    zone = tmp_path / "rpz.test.zone"
    zone.write_text("$TTL 60\n@ SOA ns.rpz.test. hostmaster.rpz.test. 7 3600 60 86400 30\n"
                    "@ NS localhost.\nmx1.example.test CNAME .\n")  # fmt: skip
    bl_port = free_port()
    extra = (
        f'[[feed]]\nname = "spam-ips"\npath = "{tmp_path}/ips.txt"\nformat = "ips"\n'
        'category = "spam"\nenforce = false\n'
        f'[[dnsbl]]\nzone = "bl.test"\nlisten = ["0.0.0.0:{bl_port}"]\nfeeds = ["spam-ips"]\n'
        '[publish]\nallow = ["127.0.0.0/8"]\n'
        f'[[rpz]]\nname = "rpz.test"\nfile = "{zone}"\npublish = true\n'
    )
    port = free_port()
    with AuthServer(ZONE, "example.test.") as up:
        m = MamoriProcess(
            tmp_path,
            [f"127.0.0.1:{up.port}"],
            extra=extra,
            listen=[f"0.0.0.0:{port}", f"[::]:{port}"],
            allow=["127.0.0.0/8", "::1"],
            workers=workers,
        )
        m.port = port
        m.start()
        try:
            asks = [("127.0.0.2", "www", "A"), ("127.0.0.3", "alias", "A"),
                    ("127.0.0.1", "ns1", "A"), ("::1", "mail", "MX")]  # fmt: skip
            for host, name, rdtype in asks:
                miss = _ask(host, port, f"{name}.example.test", rdtype)  # from the upstream
                hit = _ask(host, port, f"{name}.example.test", rdtype)  # then from the cache
                assert miss.rcode() == hit.rcode() == dns.rcode.NOERROR and miss.answer
                assert miss.answer == hit.answer
            blocked = _ask("127.0.0.4", port, "mx1.example.test")  # the RPZ rule
            assert blocked.rcode() == dns.rcode.NXDOMAIN
            # the published zone's SOA: answered by the control plane (forwarded by a
            # worker when workers > 1), from the address asked
            for host in ("127.0.0.5", "127.0.0.6", "::1"):
                assert _soa_serial(host, port, "rpz.test") == 7
            assert until(lambda: _listed(bl_port), 20)
            for host in ("127.0.0.5", "127.0.0.6"):
                assert _addresses(_ask(host, bl_port, "7.100.51.198.bl.test")) == ["127.0.0.2"]
        finally:
            assert m.stop() == 0, m.stderr()


def test_zones_serve_on_a_wildcard_address_answers_from_the_address_asked(
    tmp_path: Path,
) -> None:
    zone = tmp_path / "rpz.test.zone"
    zone.write_text("$TTL 60\n@ SOA ns.rpz.test. hostmaster.rpz.test. 9 3600 60 86400 30\n"
                    "@ NS localhost.\nmx1.example.test CNAME .\n")  # fmt: skip
    port = free_port()
    conf = tmp_path / "primary.toml"
    conf.write_text(
        f'[server]\nlisten = ["0.0.0.0:{port}"]\n[store]\npath = "{tmp_path / "p.db"}"\n'
        '[publish]\nallow = ["127.0.0.0/8"]\n'
        f'[[rpz]]\nname = "rpz.test"\nfile = "{zone}"\npublish = true\n'
    )
    stderr = tmp_path / "primary.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mamori", "zones", "serve", "--config", str(conf)], stderr=err
        )
        try:
            assert until(lambda: "serving zone transfers" in stderr.read_text(), 30)
            for host in ("127.0.0.2", "127.0.0.3", "127.0.0.1"):
                assert _soa_serial(host, port, "rpz.test") == 9
        finally:
            proc.terminate()
            assert proc.wait(10) == 0


def _listed(port: int) -> bool:
    try:
        return _addresses(_ask("127.0.0.5", port, "7.100.51.198.bl.test")) == ["127.0.0.2"]
    except (dns.exception.Timeout, OSError):
        return False
