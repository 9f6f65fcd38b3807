"""`mamori serve` around the encrypted listeners: devices named by the EDNS client MAC on
port 53 (their group's policy, the query log's device column), DDR (RFC 9462) as kdig
sees it, the Firefox DoH canary and the shipped list of public DoH resolvers.

Clients are told apart by their loopback source address: 127.0.0.2 is the trusted LAN
forwarder (``trust_client_mac``), 127.0.0.3 a client that is not.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import dns.edns
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rdtypes.svcbbase as svcb
import pytest

from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import REPO, MamoriProcess
from tests.support.net import free_port
from tests.support.testca import TestCA
from tests.support.wait import until

pytestmark = pytest.mark.integration

TRUSTED, OTHER = "127.0.0.2", "127.0.0.3"
NX, OK = dns.rcode.NXDOMAIN, dns.rcode.NOERROR
PHONE = "a0:b1:c2:d3:e4:f5"
RAW = [dns.edns.GenericOption(65001, bytes.fromhex(PHONE.replace(":", "")))]
TEXT = [dns.edns.GenericOption(65073, PHONE.encode())]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MamoriProcess, int]]:
    tmp = tmp_path_factory.mktemp("devices")
    cert, key = TestCA.make(tmp / "ca").issue("dns.example.test")
    (tmp / "kids.rpz").write_text(
        "$TTL 60\n@ SOA ns.kids. h.kids. 1 3600 600 86400 30\n@ NS ns.kids.\n"
        "www.example.test CNAME .\n"
    )
    dot, doh = free_port(), free_port()
    extra = f"""
[tls]
cert = "{cert}"
key = "{key}"
server_name = "dns.example.test"
[[group]]
name = "kids"
client_ids = ["{PHONE.upper()}"]
[[rpz]]
name = "kids.rpz"
file = "{tmp / "kids.rpz"}"
groups = ["kids"]
[[feed]]
name = "public-doh"
path = "{REPO / "examples" / "lists" / "public-doh.txt"}"
format = "domains"
category = "custom"
"""
    with AuthServer(ZONE, "example.test.") as auth:
        m = MamoriProcess(
            tmp, [f"127.0.0.1:{auth.port}"], extra=extra, allow=["127.0.0.0/8", "::1"],
            trust_client_mac=[f"{TRUSTED}/32"], doh_canary=True,
            dot=[f"127.0.0.1:{dot}"], doh=[f"127.0.0.1:{doh}"],
        )  # fmt: skip
        r = subprocess.run(
            [sys.executable, "-m", "mamori", "feeds", "update", "--config", str(m.config)],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        m.start()
        try:
            yield m, doh
        finally:
            m.stop()


def _ask(m: MamoriProcess, name: str, source: str, options: list[dns.edns.Option],
         tcp: bool = False) -> int:  # fmt: skip
    return m.query(name, source=source, tcp=tcp, use_edns=0, options=options).rcode()


def _logged(m: MamoriProcess, qname: str) -> list[tuple[str, str, str, int]]:
    db = sqlite3.connect(m.db)
    try:
        return db.execute(
            "SELECT client, client_group, device, rcode FROM query_log WHERE qname = ? ORDER BY id",
            (qname,),
        ).fetchall()
    finally:
        db.close()


def test_a_mac_from_the_trusted_forwarder_names_the_device_over_udp_and_tcp(
    service: tuple[MamoriProcess, int],
) -> None:
    m, _ = service
    assert _ask(m, "www.example.test", TRUSTED, RAW) == NX  # the kids' zone
    assert _ask(m, "www.example.test", TRUSTED, TEXT, tcp=True) == NX
    assert _ask(m, "www.example.test", TRUSTED, []) == OK  # the forwarder itself
    assert _ask(m, "www.example.test", OTHER, RAW) == OK  # not trusted: option ignored
    want = [(TRUSTED, "kids", PHONE, NX), (TRUSTED, "kids", PHONE, NX), (TRUSTED, "", "", OK),
            (OTHER, "", "", OK)]  # fmt: skip
    assert until(lambda: len(_logged(m, "www.example.test.")) == 4, 10)
    # with workers, their batches reach the writer in any order
    assert sorted(_logged(m, "www.example.test.")) == sorted(want)


def test_ddr_answer_through_kdig_validates_as_rfc_9462_svcb(
    service: tuple[MamoriProcess, int],
) -> None:
    m, doh = service
    out = subprocess.run(
        ["kdig", "@127.0.0.1", "-p", str(m.port), "_dns.resolver.arpa", "SVCB", "+noall",
         "+answer"], capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip
    assert "alpn=dot" in out and "alpn=h2" in out, out
    # kdig 3.2 prints dohpath by its number (key7)
    assert re.search(r'(dohpath|key7)="?/dns-query\{\?dns\}', out), out
    r = m.query("_dns.resolver.arpa", "SVCB")
    (rrset,) = r.answer
    assert rrset.rdtype == dns.rdatatype.SVCB
    doh_rd = next(rd for rd in rrset if rd.params[svcb.ParamKey.ALPN].ids == (b"h2",))
    assert doh_rd.target.to_text() == "dns.example.test."
    assert doh_rd.params[svcb.ParamKey.PORT].port == doh
    assert list(doh_rd.params[svcb.ParamKey.IPV4HINT].addresses) == ["127.0.0.1"]
    assert {rd.params[svcb.ParamKey.ALPN].ids for rd in rrset} == {(b"dot",), (b"h2",)}


def test_firefox_canary_and_public_doh_names_are_blocked_when_chosen(
    service: tuple[MamoriProcess, int],
) -> None:
    m, _ = service
    for name in ("use-application-dns.net", "dns.google", "cloudflare-dns.com", "dns.quad9.net"):
        for rdtype in ("A", "AAAA"):
            assert m.query(name, rdtype).rcode() == dns.rcode.NXDOMAIN, (name, rdtype)
    db = sqlite3.connect(m.db)
    try:
        assert until(lambda: db.execute(
            "SELECT count(*) FROM query_log WHERE policy_zone = 'doh-canary.mamori.'"
        ).fetchone()[0] == 2, 10)  # fmt: skip
    finally:
        db.close()
