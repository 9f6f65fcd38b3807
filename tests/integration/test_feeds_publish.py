"""A feed published by zone transfer: AXFR, then an update of 1% served as an IXFR of 1%.

The feed is the real CoinBlockerLists host list, published but not enforced
(``enforce = false``): the local firewall does not apply it, secondaries get it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.zone
import pytest

from tests.conftest import require_binary
from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.unbound import Unbound
from tests.support.wait import until

pytestmark = pytest.mark.integration

COIN = Path(__file__).resolve().parents[3] / "shared/data/feeds/CoinBlockerLists"
ZONE_NAME = "coin.feeds.mamori."


@pytest.fixture
def upstream() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


def _names() -> list[str]:
    lines = (COIN / "list.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _serial(port: int, zone: str = ZONE_NAME) -> int:
    q = dns.message.make_query(zone, "SOA")
    r = dns.query.udp(q, "127.0.0.1", port=port, timeout=3)
    return int(r.answer[0][0].serial) if r.answer else 0


def _update(conf: Path) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "mamori", "feeds", "update", "--config", str(conf)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_published_feed_goes_out_by_axfr_then_ixfr(tmp_path: Path, upstream: AuthServer) -> None:
    names = _names()
    feed = tmp_path / "coin.txt"
    feed.write_text("\n".join([*names, "mx1.example.test"]) + "\n")
    extra = (
        '[policy]\nwatch_interval = 0.2\n[publish]\nallow = ["127.0.0.1/32"]\n'
        f'[[feed]]\nname = "coin"\npath = "{feed}"\nformat = "domains"\n'
        'category = "cryptominer"\nenforce = false\npublish = true\n'
    )
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra=extra)
    out = _update(m.config)
    listed = int(out.split("coin: ")[1].split(" entries")[0])
    m.start()
    try:
        z = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", ZONE_NAME, port=m.port))
        rules = [n for n in z.nodes if str(n) != "@"]
        assert len(rules) == listed > 5000
        assert z.get_rdataset("mx1.example.test", "CNAME") is not None
        # not enforced here: the name resolves as the upstream says
        r = m.query("mx1.example.test", "A")
        assert r.rcode() == dns.rcode.NOERROR and r.answer
        old = _serial(m.port)
        # 1% of the list changes: some names leave, as many new ones come
        n = len(names) // 100
        gone, kept = names[:n], names[n:]
        new = [f"pool{i}.new-miner.example" for i in range(n)]
        feed.write_text("\n".join([*kept, *new, "mx1.example.test"]) + "\n")
        out = _update(m.config)
        assert f"+{n} -{n}" in out, out
        # the feeds child recompiles the zone at idle priority: slow on a loaded machine
        assert until(lambda: _serial(m.port) == old + 1, timeout=60)
        msgs = list(
            dns.query.xfr("127.0.0.1", ZONE_NAME, rdtype=dns.rdatatype.IXFR, serial=old,
                          port=m.port)
        )  # fmt: skip
        records = [rr for msg in msgs for rrset in msg.answer for rr in rrset]
        cnames = [rr for rr in records if rr.rdtype == dns.rdatatype.CNAME]
        # an IXFR: SOA new, SOA old, deleted..., SOA new, added..., SOA new
        assert records[0].rdtype == dns.rdatatype.SOA and records[1].rdtype == dns.rdatatype.SOA
        assert len(cnames) == 2 * n, f"{len(cnames)} changed records for {n} + {n} changes"
        owners = {
            str(rrset.name).rstrip(".")
            for msg in msgs
            for rrset in msg.answer
            if rrset.rdtype == dns.rdatatype.CNAME
        }
        want = {x.lower() for x in [*gone, *new]}  # owners relative to the zone
        assert owners == want
    finally:
        assert m.stop() == 0, m.stderr()


def test_unbound_secondary_blocks_a_coinblocker_name_from_the_published_dataset(
    tmp_path: Path, upstream: AuthServer
) -> None:
    """The fleet case: mamori ingests the feed, Debian's Unbound transfers the dataset."""
    binary = require_binary("unbound")
    feed = tmp_path / "coin.txt"
    feed.write_text("\n".join([*_names(), "mx1.example.test"]) + "\n")
    ub = Unbound(binary, tmp_path / "unbound", upstream.port)
    extra = (
        f'[policy]\nwatch_interval = 0.2\n[publish]\nallow = ["127.0.0.1/32"]\n'
        f'notify = ["127.0.0.1:{ub.port}"]\n'
        f'[[feed]]\nname = "coin"\npath = "{feed}"\nformat = "domains"\n'
        'category = "cryptominer"\nenforce = false\n'
        '[[dataset]]\nname = "fleet"\ncategories = ["cryptominer"]\npublish = true\n'
    )
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra=extra)
    _update(m.config)
    m.start()
    ub.extra = (
        f'rpz:\n  name: "fleet.datasets.mamori."\n  primary: 127.0.0.1@{m.port}\n'
        f'  zonefile: "{tmp_path / "unbound" / "fleet.zone"}"\n'
    )
    try:
        ub.start()
        try:

            def rcode(name: str) -> int:
                q = dns.message.make_query(name, "A")
                return int(dns.query.udp(q, "127.0.0.1", port=ub.port, timeout=3).rcode())

            assert until(lambda: rcode("mx1.example.test") == dns.rcode.NXDOMAIN, 20)
            assert rcode("www.example.test") == dns.rcode.NOERROR
            coin = next(n for n in _names() if n.startswith("10k."))  # 10k.suprnova.cc
            assert rcode(coin) == dns.rcode.NXDOMAIN
            # mamori itself does not apply it (enforce = false on both)
            assert m.query("mx1.example.test", "A").rcode() == dns.rcode.NOERROR
            # the feed drops mx1: the update reaches Unbound (NOTIFY + IXFR)
            old = _serial(m.port, "fleet.datasets.mamori.")
            feed.write_text("\n".join(_names()) + "\n")
            _update(m.config)
            # (the message is made only when the assertion fails)
            assert until(lambda: _serial(m.port, "fleet.datasets.mamori.") > old, 60), m.stderr()
            assert until(lambda: rcode("mx1.example.test") == dns.rcode.NOERROR, 30), (
                f"mamori:\n{m.stderr()[-4000:]}\nunbound:\n{ub.log()[-4000:]}"
            )
            assert rcode(coin) == dns.rcode.NXDOMAIN
        finally:
            ub.stop()
    finally:
        assert m.stop() == 0, m.stderr()
