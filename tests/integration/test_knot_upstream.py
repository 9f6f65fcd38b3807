"""Interop: Debian's Knot DNS as the upstream; mamori's answers equal Knot's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest

from tests.conftest import require_binary
from tests.integration.test_resolver_service import ZONE
from tests.support.knot import Knot
from tests.support.mamori_proc import MamoriProcess

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
