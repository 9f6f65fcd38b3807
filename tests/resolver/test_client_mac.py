"""The EDNS client MAC (dnsmasq --add-mac) names a device on port 53, only from the
forwarders in ``[server] trust_client_mac``."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import dns.edns
import dns.message
import dns.rcode
import pytest

from mamori import config
from mamori.policy import engine, zone
from mamori.resolver.events import EventQueue
from mamori.resolver.pipeline import Pipeline
from tests.support.fake_upstream import FakeUpstream

SOA = "@ SOA ns.test. host.test. 1 3600 600 86400 60\n@ NS ns.test.\n"
UPSTREAM = "$TTL 300\n" + SOA + "ns A 192.0.2.53\nwww A 192.0.2.10\ngames A 192.0.2.11\n"
MAC = bytes.fromhex("a0b1c2d3e4f5")
KIDS_MAC = "a0:b1:c2:d3:e4:f5"
CFG = """[server]
rate_limit = 0
allow = ["127.0.0.0/8"]
{trust}
[upstream]
servers = ["127.0.0.1:9"]
[store]
queue_size = 1000
[[group]]
name = "kids"
client_ids = ["A0-B1-C2-D3-E4-F5"]
"""


def _run(tmp_path: Path, trust: str, asks: list[tuple[str, str, list[dns.edns.Option]]]
         ) -> tuple[list[int], list[str]]:  # fmt: skip
    """rcodes of the *asks* (name, client, EDNS options) and the group labels logged."""
    cfg = config.loads(CFG.format(trust=trust), Path("m.toml"))
    f = tmp_path / "kids.rpz"
    f.write_text("$TTL 60\n" + SOA + "games.test CNAME .\n")
    policy = engine.Policy.from_loaded(
        [zone.load(f, "kids.rpz.")], [engine.ZoneSettings("kids.rpz.", groups=("kids",))], 3
    )
    rcodes: list[int] = []

    async def go() -> list[str]:
        p = Pipeline(cfg, EventQueue(1000), FakeUpstream(UPSTREAM))
        p.set_policy(policy)
        answers: list[bytes] = []
        for name, client, options in asks:
            q = dns.message.make_query(name, "A", use_edns=0, options=options)
            resp = p.handle(q.to_wire(), (client, 5353), lambda r, _a: answers.append(r), False)
            for _ in range(200):
                if resp is not None:
                    break
                await asyncio.sleep(0.005)
                resp = answers.pop() if answers else None
            assert resp is not None
            rcodes.append(dns.message.from_wire(resp).rcode())
        p.close()
        return [e[11] for e in p.events.drain()]

    labels = asyncio.run(go())
    return rcodes, labels


RAW = [dns.edns.GenericOption(65001, MAC)]
TEXT = [dns.edns.GenericOption(65073, KIDS_MAC.encode())]
B64 = [dns.edns.GenericOption(65073, base64.b64encode(MAC))]
OTHER = [dns.edns.GenericOption(65001, bytes.fromhex("001122334455"))]


@pytest.mark.parametrize("options", [RAW, TEXT, B64], ids=["raw", "text", "base64"])
def test_a_trusted_forwarder_names_the_device_and_its_group_policy_applies(
    tmp_path: Path, options: list[dns.edns.Option]
) -> None:
    cookie = [dns.edns.GenericOption(10, b"12345678")]
    rcodes, labels = _run(
        tmp_path,
        'trust_client_mac = ["127.0.0.2/32"]',
        [("games.test", "127.0.0.2", cookie + options), ("www.test", "127.0.0.2", options),
         ("games.test", "127.0.0.2", OTHER), ("games.test", "127.0.0.2", [])],
    )  # fmt: skip
    assert rcodes == [dns.rcode.NXDOMAIN, dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.NOERROR]
    # the log label: groups@device (the writer splits it into client_group and device)
    assert labels == [f"kids@{KIDS_MAC}", f"kids@{KIDS_MAC}", "@00:11:22:33:44:55", ""]


def test_the_option_is_ignored_from_clients_not_trusted_and_by_default(tmp_path: Path) -> None:
    asks = [("games.test", "127.0.0.3", RAW), ("games.test", "127.0.0.3", TEXT)]
    for trust in ('trust_client_mac = ["127.0.0.2/32"]', ""):
        rcodes, labels = _run(tmp_path, trust, asks)
        assert rcodes == [dns.rcode.NOERROR, dns.rcode.NOERROR]
        assert labels == ["", ""]
