"""NSDNAME, NSIP and CNAME-chain triggers end to end, with Debian's Knot as the upstream.

Knot is authoritative for several zones on one port; mamori forwards to it and
looks the name servers of each queried zone up through it (``NAME NS``, the
SOA of negative answers, glue), as it does through any upstream resolver.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.conftest import require_binary
from tests.support.knot import Knot
from tests.support.mamori_proc import MamoriProcess

pytestmark = pytest.mark.integration


def _zone(origin: str, body: str) -> str:
    return (
        f"$ORIGIN {origin}\n$TTL 300\n"
        f"@ SOA ns1.{origin} hostmaster.{origin} 1 3600 600 86400 60\n" + body
    )


ZONES = {
    "good.test.": _zone(
        "good.test.",
        "@ NS ns1\nns1 A 192.0.2.53\nwww A 192.0.2.10\n"
        "alias CNAME www.evil.test.\nchain CNAME blocked\nblocked A 192.0.2.11\n"
        "sub NS ns1.evil.test.\n",
    ),
    # A child zone of good.test whose name server is the bad one.
    "sub.good.test.": _zone("sub.good.test.", "@ NS ns1.evil.test.\nwww A 192.0.2.12\n"),
    "evil.test.": _zone("evil.test.", "@ NS ns1\nns1 A 198.51.100.7\nwww A 192.0.2.20\n"),
    "shady.test.": _zone("shady.test.", "@ NS ns\nns A 203.0.113.9\nwww A 192.0.2.30\n"),
}

POLICY = """$TTL 60
@ SOA ns.rpz.local. hostmaster.rpz.local. 1 3600 600 86400 30
@ NS ns.rpz.local.
ns1.evil.test.rpz-nsdname CNAME .
32.9.113.0.203.rpz-nsip   CNAME *.
blocked.good.test         CNAME .
"""


@pytest.fixture(scope="module")
def knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Knot]:
    k = Knot(require_binary("knotd"), tmp_path_factory.mktemp("knot"), ZONES).start()
    yield k
    k.stop()


def _mamori(
    tmp_path: Path, knot: Knot, zones: list[tuple[str, str]], extra: str = ""
) -> MamoriProcess:
    conf = [extra]
    for name, text in zones:
        f = tmp_path / f"{name}.rpz"
        f.write_text(text)
        conf.append(f'[[rpz]]\nname = "{name}"\nfile = "{f}"\n')
    return MamoriProcess(tmp_path, [f"127.0.0.1:{knot.port}"], extra="\n".join(conf)).start()


@pytest.fixture
def mamori(tmp_path: Path, knot: Knot) -> Iterator[MamoriProcess]:
    m = _mamori(tmp_path, knot, [("rpz.local", POLICY)])
    yield m
    assert m.stop() == 0, m.stderr()


def _addrs(r: dns.message.Message) -> set[str]:
    return {rd.address for rrset in r.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset}


def test_nsdname_blocks_names_served_by_a_listed_name_server(mamori: MamoriProcess) -> None:
    assert _addrs(mamori.query("www.good.test")) == {"192.0.2.10"}
    for _ in range(2):  # resolved, then from the cache (decision memoised on the entry)
        r = mamori.query("www.evil.test")
        assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer


def test_nsdname_applies_on_every_delegation_point_of_the_data_path(
    mamori: MamoriProcess,
) -> None:
    # sub.good.test is delegated to ns1.evil.test; its parent good.test is clean.
    assert mamori.query("www.sub.good.test").rcode() == dns.rcode.NXDOMAIN


def test_nsip_blocks_names_whose_name_server_address_is_listed(mamori: MamoriProcess) -> None:
    r = mamori.query("www.shady.test")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer  # NODATA action


def test_names_in_an_upstream_cname_chain_are_checked(mamori: MamoriProcess) -> None:
    # QNAME rule on the CNAME target: the CNAME is kept, the target rewritten.
    r = mamori.query("chain.good.test")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert [(x.name.to_text(), x.rdtype) for x in r.answer] == [
        ("chain.good.test.", dns.rdatatype.CNAME)
    ]
    # NSDNAME rule on the target's zone (the query name's own zone is clean).
    r = mamori.query("alias.good.test")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert r.answer[0].rdtype == dns.rdatatype.CNAME and not _addrs(r)


def test_hits_name_the_trigger(mamori: MamoriProcess) -> None:
    mamori.query("www.evil.test")
    mamori.query("www.shady.test")
    assert mamori.stop() == 0
    rows = (
        sqlite3.connect(mamori.db)
        .execute("SELECT qname, policy_trigger, policy_rule FROM query_log WHERE policy_zone != ''")
        .fetchall()
    )
    assert ("www.evil.test.", "NSDNAME", "ns1.evil.test.rpz-nsdname.rpz.local") in rows
    assert ("www.shady.test.", "NSIP", "32.9.113.0.203.rpz-nsip.rpz.local") in rows
    assert "rpz NSDNAME NXDOMAIN rewrite www.evil.test/A/IN via" in mamori.stderr()


def test_min_ns_dots_skips_shallow_delegation_points(tmp_path: Path, knot: Knot) -> None:
    m = _mamori(tmp_path, knot, [("rpz.local", POLICY)], "[policy]\nmin_ns_dots = 2\n")
    try:
        # evil.test has one dot: not checked; sub.good.test has two: checked.
        assert _addrs(m.query("www.evil.test")) == {"192.0.2.20"}
        assert m.query("www.sub.good.test").rcode() == dns.rcode.NXDOMAIN
    finally:
        assert m.stop() == 0, m.stderr()


ALLOW = """$TTL 60
@ SOA ns.allow. hostmaster.allow. 1 3600 600 86400 30
@ NS ns.allow.
ns1.evil.test.rpz-nsdname CNAME rpz-passthru.
"""
BLOCK = """$TTL 60
@ SOA ns.block. hostmaster.block. 1 3600 600 86400 30
@ NS ns.block.
www.evil.test CNAME .
"""


@pytest.mark.parametrize(
    ("order", "rcode"),
    [(("allow", "block"), dns.rcode.NOERROR), (("block", "allow"), dns.rcode.NXDOMAIN)],
)
def test_an_earlier_zones_nsdname_beats_a_later_zones_qname(
    tmp_path: Path, knot: Knot, order: tuple[str, str], rcode: int
) -> None:
    texts = {"allow": ALLOW, "block": BLOCK}
    m = _mamori(tmp_path, knot, [(n, texts[n]) for n in order])
    try:
        for _ in range(2):
            assert m.query("www.evil.test").rcode() == rcode
    finally:
        assert m.stop() == 0, m.stderr()


def test_recursive_only_zone_leaves_rd0_queries_alone(tmp_path: Path, knot: Knot) -> None:
    f = tmp_path / "ro.rpz"
    f.write_text(BLOCK)
    extra = f'[[rpz]]\nname = "block"\nfile = "{f}"\nrecursive_only = true\n'
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{knot.port}"], extra=extra).start()
    try:
        assert m.query("www.evil.test").rcode() == dns.rcode.NXDOMAIN
        q = dns.message.make_query("www.evil.test", "A")
        q.flags &= ~dns.flags.RD
        r = dns.query.udp(q, "127.0.0.1", port=m.port, timeout=3)
        assert r.rcode() == dns.rcode.NOERROR and _addrs(r) == {"192.0.2.20"}
    finally:
        assert m.stop() == 0, m.stderr()
