"""Interop: Debian's Knot DNS as the upstream; mamori's answers equal Knot's."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.conftest import require_binary
from tests.integration.test_resolver_service import ZONE
from tests.support.knot import Knot
from tests.support.mamori_proc import MamoriProcess
from tests.support.wait import until

pytestmark = pytest.mark.integration


@pytest.fixture
def knot(tmp_path: Path) -> Iterator[Knot]:
    k = Knot(require_binary("knotd"), tmp_path / "knot", {"example.test.": ZONE}).start()
    yield k
    k.stop()


def _canon(m: dns.message.Message) -> tuple[int, list[str], list[str]]:
    def section(rrsets: list[dns.rrset.RRset]) -> list[str]:
        return sorted(f"{r.name} {r.rdtype} {rd.to_text()}" for r in rrsets for rd in r)

    return m.rcode(), section(m.answer), section(m.authority)


@pytest.mark.parametrize(
    ("name", "rtype"),
    [
        ("www.example.test", "A"),
        ("alias.example.test", "A"),
        ("mail.example.test", "MX"),
        ("big.example.test", "TXT"),
        ("www.example.test", "AAAA"),
        ("missing.example.test", "A"),
        ("example.test", "SOA"),
        ("example.test", "NS"),
        # types with a byte in 'A'..'Z' (0x41-0x5A): HTTPS is 0x0041 (was lowercased with
        # the name, the answer then taken for another question's, the upstream marked down)
        ("www.example.test", "HTTPS"),
        ("WWW.Example.TEST", "HTTPS"),
        ("www.example.test", "TYPE90"),
        ("www.example.test", "TYPE16705"),
    ],
)
def test_answers_match_knot(tmp_path: Path, knot: Knot, name: str, rtype: str) -> None:
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{knot.port}"]).start()
    try:
        direct = dns.query.udp(
            dns.message.make_query(name, rtype, use_edns=0),
            "127.0.0.1",
            port=knot.port,
            timeout=3,
        )
        for _ in range(2):  # miss, then cache hit
            via = m.query(name, rtype, use_edns=0)
            assert _canon(via) == _canon(direct)
        via_tcp = m.query(name, rtype, tcp=True)
        assert _canon(via_tcp) == _canon(direct)
    finally:
        assert m.stop() == 0


def _ede(m: dns.message.Message) -> list[tuple[int, str]]:
    return [(int(o.code), o.text or "") for o in m.options if isinstance(o, dns.edns.EDEOption)]


def test_upstream_refused_is_marked_with_ede_22_and_logged_once(tmp_path: Path, knot: Knot) -> None:
    """Knot is authoritative for example.test only and REFUSES other names: passed on,
    but marked (RFC 8914 EDE 22), unlike our own ACL refusal (EDE 18)."""
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{knot.port}"]).start()
    try:
        for name in ("example.org", "example.org", "www.example.com"):
            r = m.query(name, "A", use_edns=0)
            assert r.rcode() == dns.rcode.REFUSED
            assert _ede(r) == [(22, "the upstream answered REFUSED")]
        plain = m.query("example.org", "A")  # no EDNS: no OPT record to carry an EDE
        assert plain.rcode() == dns.rcode.REFUSED and plain.opt is None
        acl = m.query("example.org", "A", use_edns=0, source="127.0.0.2")  # outside allow
        assert acl.rcode() == dns.rcode.REFUSED and [c for c, _ in _ede(acl)] == [18]
        assert until(lambda: "reason=upstream-refused" in _query_log(m)), m.stderr()
        # Once per upstream in each data plane (the workers log on their own).
        workers = int(os.environ.get("MAMORI_TEST_WORKERS", "1"))
        assert 1 <= m.stderr().count("answered REFUSED") <= workers, m.stderr()
    finally:
        assert m.stop() == 0
    # The stats line at shutdown (one per data plane; stats_interval is 0 here)
    counts = [int(n) for n in re.findall(r"stats: .*\bupstream_refused=(\d+)", m.stderr())]
    assert sum(counts) == 4, m.stderr()


def _query_log(m: MamoriProcess) -> str:
    import sqlite3

    if not m.db.exists():
        return ""
    db = sqlite3.connect(m.db)
    try:
        rows = db.execute("SELECT qname, rcode, reason FROM query_log").fetchall()
    except sqlite3.OperationalError:
        return ""
    finally:
        db.close()
    return " ".join(f"{q}/{rc}/reason={why}" for q, rc, why in rows)
