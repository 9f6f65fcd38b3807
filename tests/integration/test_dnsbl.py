"""The DNSBL responder as a mail server sees it: Postfix/SpamAssassin/rspamd-style lookups."""

from __future__ import annotations

from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dnsbl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MamoriProcess, int, int]]:
    tmp_path = tmp_path_factory.mktemp("dnsbl")
    (tmp_path / "ips.txt").write_text(
        "# spam sources\n198.51.100.7\n203.0.113.0/24\n2001:db8::/32\n"
    )
    (tmp_path / "names.txt").write_text("phish.example\n*.bad.example\n")
    ip_port, name_port = free_port(), free_port()
    extra = (
        f'[[feed]]\nname = "spam-ips"\npath = "{tmp_path}/ips.txt"\nformat = "ips"\n'
        'category = "spam"\nenforce = false\n'
        f'[[feed]]\nname = "phish"\npath = "{tmp_path}/names.txt"\nformat = "domains"\n'
        'category = "phishing"\nenforce = false\n'
        f'[[dnsbl]]\nzone = "bl.test"\nlisten = ["127.0.0.1:{ip_port}"]\nfeeds = ["spam-ips"]\n'
        'lookup_url = "https://bl.test/lookup?ip={}"\n'
        f'[[dnsbl]]\nzone = "dbl.test"\nlisten = ["127.0.0.1:{name_port}"]\nfeeds = ["phish"]\n'
        'kind = "domain"\n'
    )
    with AuthServer(ZONE, "example.test.") as up:
        m = MamoriProcess(tmp_path, [f"127.0.0.1:{up.port}"], extra=extra).start()
        try:
            # The feeds compile at start; the responder picks the entries up.
            assert until((tmp_path / "feeds" / "phish.entries").exists, 20)
            assert until(lambda: _a(ip_port, "7.100.51.198.bl.test") == ["127.0.0.2"], 20)
            yield m, ip_port, name_port
        finally:
            assert m.stop() == 0, m.stderr()


def _ask(port: int, name: str, rdtype: str = "A") -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=3)


def _a(port: int, name: str) -> list[str]:
    r = _ask(port, name)
    return sorted(rd.address for rrset in r.answer for rd in rrset if rrset.rdtype == 1)


def test_ip_list_answers_codes_txt_and_nxdomain(dnsbl: tuple[MamoriProcess, int, int]) -> None:
    _m, port, _ = dnsbl
    assert _a(port, "7.100.51.198.bl.test") == ["127.0.0.2"]  # listed address
    assert _a(port, "9.113.0.203.bl.test") == ["127.0.0.2"]  # inside a listed /24
    txt = _ask(port, "7.100.51.198.bl.test", "TXT").answer[0][0].to_text()
    assert txt.startswith('"198.51.100.7 listed by mamori: spam (feeds: spam-ips)')
    assert "see https://bl.test/lookup?ip=198.51.100.7" in txt
    miss = _ask(port, "8.100.51.198.bl.test")
    assert miss.rcode() == dns.rcode.NXDOMAIN and miss.authority[0].rdtype == 6  # SOA
    # IPv6, nibble form (RFC 5782 section 2.4): 2001:db8::1 is in 2001:db8::/32
    nibbles = ".".join(reversed("20010db8000000000000000000000001"))
    assert _a(port, f"{nibbles}.bl.test") == ["127.0.0.2"]


def test_rfc5782_test_points_and_wrong_queries(dnsbl: tuple[MamoriProcess, int, int]) -> None:
    _m, ip_port, name_port = dnsbl
    assert _a(ip_port, "2.0.0.127.bl.test") == ["127.0.0.2"]
    assert _ask(ip_port, "1.0.0.127.bl.test").rcode() == dns.rcode.NXDOMAIN
    v6_test = ".".join(reversed("00000000000000000000ffff7f000002"))
    assert _a(ip_port, f"{v6_test}.bl.test") == ["127.0.0.2"]
    assert _a(name_port, "test.dbl.test") == ["127.0.0.2"]
    assert _ask(name_port, "invalid.dbl.test").rcode() == dns.rcode.NXDOMAIN
    # A name asked of the IP list, an address of the name list: error code, not a listing.
    assert _a(ip_port, "phish.example.bl.test") == ["127.255.255.252"]
    assert _a(name_port, "7.100.51.198.dbl.test") == ["127.255.255.252"]


def test_domain_list_codes(dnsbl: tuple[MamoriProcess, int, int]) -> None:
    _m, _ip, port = dnsbl
    assert _a(port, "phish.example.dbl.test") == ["127.0.1.4"]  # phishing
    assert _a(port, "x.bad.example.dbl.test") == ["127.0.1.4"]  # below a *. entry
    assert _ask(port, "bad.example.dbl.test").rcode() == dns.rcode.NXDOMAIN  # *.x is not x
    assert _ask(port, "good.example.dbl.test").rcode() == dns.rcode.NXDOMAIN
    apex = _ask(port, "dbl.test", "SOA")
    assert apex.answer and apex.flags & 0x0400  # AA


def test_dig_sees_codes_and_txt(dnsbl: tuple[MamoriProcess, int, int]) -> None:
    """What an admin checks by hand: dig (EDNS, as dig sends it by default)."""
    import subprocess

    from tests.conftest import require_binary

    dig = require_binary("dig")
    _m, ip_port, name_port = dnsbl

    def short(port: int, name: str, rdtype: str) -> str:
        cmd = [dig, "@127.0.0.1", "-p", str(port), name, rdtype, "+short", "+time=2", "+tries=1"]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()

    assert short(ip_port, "7.100.51.198.bl.test", "A") == "127.0.0.2"
    txt = short(ip_port, "7.100.51.198.bl.test", "TXT")
    assert txt.startswith('"198.51.100.7 listed by mamori: spam (feeds: spam-ips)')
    assert short(ip_port, "8.100.51.198.bl.test", "A") == ""
    assert short(name_port, "login.phish.example.dbl.test", "A") == ""
    assert short(name_port, "phish.example.dbl.test", "A") == "127.0.1.4"
    assert short(name_port, "x.bad.example.dbl.test", "TXT").startswith('"x.bad.example listed')
    full = subprocess.run(
        [dig, "@127.0.0.1", "-p", str(ip_port), "8.100.51.198.bl.test", "A", "+time=2"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "status: NXDOMAIN" in full and "flags: qr aa" in full and "SOA" in full
