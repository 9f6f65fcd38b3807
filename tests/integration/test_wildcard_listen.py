"""`mamori serve` listening on 0.0.0.0 / :: answers from the address each query came to.

dnspython's ``dns.query.udp`` refuses an answer from another address than the
one it asked (``UnexpectedSource``), as stub resolvers do; every 127.0.0.0/8
address is local here, so a query to 127.0.0.2 would be answered from 127.0.0.1
without IP_PKTINFO. Cache misses (answered later) and hits (answered at once),
the resolver and the DNSBL responder. ``make test`` runs this on both UDP paths.
"""

from __future__ import annotations

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


def _ask(host: str, port: int, name: str) -> dns.message.Message:
    # raises dns.query.UnexpectedSource for an answer from another address
    return dns.query.udp(dns.message.make_query(name, "A"), host, port=port, timeout=3)


def _addresses(r: dns.message.Message) -> list[str]:
    return sorted(rd.address for rrset in r.answer for rd in rrset if rrset.rdtype == 1)


def test_resolver_and_dnsbl_on_wildcard_addresses_answer_from_the_address_asked(
    tmp_path: Path,
) -> None:
    (tmp_path / "ips.txt").write_text("198.51.100.7\n")
    bl_port = free_port()
    extra = (
        f'[[feed]]\nname = "spam-ips"\npath = "{tmp_path}/ips.txt"\nformat = "ips"\n'
        'category = "spam"\nenforce = false\n'
        f'[[dnsbl]]\nzone = "bl.test"\nlisten = ["0.0.0.0:{bl_port}"]\nfeeds = ["spam-ips"]\n'
    )
    port = free_port()
    with AuthServer(ZONE, "example.test.") as up:
        m = MamoriProcess(
            tmp_path,
            [f"127.0.0.1:{up.port}"],
            extra=extra,
            listen=[f"0.0.0.0:{port}", f"[::]:{port}"],
            allow=["127.0.0.0/8", "::1"],
        )
        m.port = port
        m.start()
        try:
            for host in ("127.0.0.2", "127.0.0.3", "127.0.0.1", "::1"):
                miss = _ask(host, port, "www.example.test")  # first: from the upstream
                hit = _ask(host, port, "www.example.test")  # then: from the cache
                assert _addresses(miss) == _addresses(hit) == ["192.0.2.1", "192.0.2.2"]
            fresh = _ask("127.0.0.4", port, "mail.example.test")  # a miss on another address
            assert fresh.rcode() == dns.rcode.NOERROR
            assert until(lambda: _listed(bl_port), 20)
            for host in ("127.0.0.5", "127.0.0.6"):
                assert _addresses(_ask(host, bl_port, "7.100.51.198.bl.test")) == ["127.0.0.2"]
        finally:
            assert m.stop() == 0, m.stderr()


def _listed(port: int) -> bool:
    try:
        return _addresses(_ask("127.0.0.5", port, "7.100.51.198.bl.test")) == ["127.0.0.2"]
    except (dns.exception.Timeout, OSError):
        return False
