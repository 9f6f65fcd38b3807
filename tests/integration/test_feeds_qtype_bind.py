"""A feed zone with rules by query type, loaded by Debian's BIND 9 as a response-policy zone.

BIND loads the ``NAME.mamori-qtype TXT`` owners (no error) and never matches
them; the zone's plain rules it applies as mamori does. This pins what
docs/reference/rpz.md says about publishing such a zone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from mamori import config
from mamori.feeds.sources import update
from tests.conftest import require_binary
from tests.support.authserver import AuthServer
from tests.support.bind import Bind
from tests.support.wait import until

pytestmark = pytest.mark.integration

UPSTREAM = """
$TTL 300
@  SOA ns1 hostmaster 1 3600 600 86400 60
@  NS  ns1
ns1 A 127.0.0.1
b  A    192.0.2.1
b  AAAA 2001:db8::1
c  A    192.0.2.3
"""


@pytest.fixture
def upstream() -> Iterator[AuthServer]:
    with AuthServer(UPSTREAM, "example.test.") as srv:
        yield srv


def _rcode(port: int, name: str, rdtype: str) -> int:
    q = dns.message.make_query(name, rdtype)
    return int(dns.query.udp(q, "127.0.0.1", port=port, timeout=3).rcode())


def test_bind_loads_qtype_rules_and_applies_only_the_plain_ones(
    tmp_path: Path, upstream: AuthServer
) -> None:
    named = require_binary("named")
    (tmp_path / "ag.txt").write_text("||b.example.test^$dnstype=AAAA\n||c.example.test^\n")
    (tmp_path / "m.toml").write_text(
        f'[upstream]\nservers = ["127.0.0.1:{upstream.port}"]\n'
        f'[store]\npath = "{tmp_path / "store" / "m.sqlite"}"\n'
        '[[feed]]\nname = "ag"\npath = "ag.txt"\nformat = "adblock"\n'
    )
    cfg = config.load(tmp_path / "m.toml")
    update(cfg.feeds[0], cfg.store)
    zone = config.feed_zone(cfg.feeds[0], cfg.store)
    assert zone.file is not None and "b.example.test.mamori-qtype TXT" in zone.file.read_text()
    name = zone.name.rstrip(".")
    b = Bind(
        named,
        tmp_path / "bind",
        f'zone "{name}" {{ type primary; file "{zone.file}"; }};\n',
        options=(
            f"forwarders {{ 127.0.0.1 port {upstream.port}; }}; forward only;"
            f' response-policy {{ zone "{name}"; }} qname-wait-recurse no;'
        ),
        recursion=True,
    )
    b.start(probe_zone=name)
    try:
        # a plain rule (BIND applies the policy zone shortly after it serves it: wait)
        assert until(lambda: _rcode(b.port, "c.example.test", "A") == dns.rcode.NXDOMAIN, 10)
        assert _rcode(b.port, "b.example.test", "AAAA") == dns.rcode.NOERROR  # not matched
        assert _rcode(b.port, "b.example.test", "A") == dns.rcode.NOERROR
        assert "mamori-qtype" not in b.log  # loaded without a complaint
    finally:
        b.stop()
