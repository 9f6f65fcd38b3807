"""AdGuard / adblock rules in a feed mean what AdGuard's DNS filtering syntax says.

Each case builds a real feed file, runs ``feeds.sources.update`` (parse, record,
compile the feed's RPZ zone), loads and compiles the zone into a Policy, and
asks real queries through the resolver pipeline (the upstream is the
in-process fake of tests/support): a blocked name answers NXDOMAIN (the
feed's action), anything else the upstream's answer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import dns.message
import dns.rcode

from mamori import config
from mamori.feeds.sources import update
from mamori.policy import zone as zone_mod
from mamori.policy.engine import Policy, ZoneSettings
from mamori.resolver.events import EventQueue
from mamori.resolver.pipeline import Pipeline
from tests.support.fake_upstream import FakeUpstream

TYPES = ("A", "AAAA", "MX", "TXT")


def feed_config(tmp_path: Path, rules: list[str], name: str = "ag") -> config.Config:
    """A config with one adblock feed holding *rules* (written to a file)."""
    (tmp_path / f"{name}.txt").write_text("! test list\n" + "\n".join(rules) + "\n")
    text = f"""
[server]
rate_limit = 0
allow = ["127.0.0.0/8", "10.0.0.0/8", "192.168.0.0/16"]
[upstream]
servers = ["127.0.0.1:9"]
[store]
path = "{tmp_path / "store" / "m.sqlite"}"
[[feed]]
name = "{name}"
path = "{name}.txt"
format = "adblock"
"""
    (tmp_path / "m.toml").write_text(text)
    return config.load(tmp_path / "m.toml")


def feed_policy(cfg: config.Config) -> Policy:
    """Update every feed of *cfg*, then load and compile their zones as one policy."""
    zones, settings = [], []
    for feed in cfg.feeds:
        update(feed, cfg.store)
        z = config.feed_zone(feed, cfg.store)
        assert z.file is not None
        zones.append(zone_mod.load(z.file, z.name))
        settings.append(ZoneSettings(z.name))
    return Policy.from_loaded(zones, settings, 1)


def upstream_for(names: set[str]) -> FakeUpstream:
    """An upstream answering A, AAAA, MX and TXT for each of *names*."""
    lines = ["$TTL 300", "@ SOA ns.test. host.test. 1 3600 600 86400 60", "@ NS ns.test."]
    for n in sorted(names):
        lines += [
            f"{n}. A 192.0.2.1",
            f"{n}. AAAA 2001:db8::1",
            f"{n}. MX 10 mail.{n}.",
            f'{n}. TXT "up"',
        ]
    return FakeUpstream("\n".join(lines) + "\n", origin=".")


def outcomes(cfg: config.Config, queries: list[tuple[str, str, str]]) -> list[str]:
    """``blocked`` or ``resolved`` for each (name, type, client address) asked in turn."""

    async def go() -> list[str]:
        p = Pipeline(cfg, EventQueue(1000), upstream_for({q[0] for q in queries}))
        p.set_policy(feed_policy(cfg))
        got: dict[int, bytes] = {}

        def reply(resp: bytes, _addr: object) -> None:
            got[(resp[0] << 8) | resp[1]] = resp

        out = []
        for qid, (name, rdtype, client) in enumerate(queries, 1):
            q = dns.message.make_query(name, rdtype)
            q.id = qid
            resp = p.handle(q.to_wire(), (client, 40000 + qid), reply, False)
            for _ in range(400):
                if resp is not None or qid in got:
                    break
                await asyncio.sleep(0.005)
            wire = resp if resp is not None else got[qid]
            r = dns.message.from_wire(wire)
            out.append("blocked" if r.rcode() == dns.rcode.NXDOMAIN else "resolved")
        p.close()
        return out

    return asyncio.run(go())


def zone_owners(cfg: config.Config) -> list[str]:
    """The owner names of the feed's compiled zone file, one per record."""
    z = config.feed_zone(cfg.feeds[0], cfg.store)
    assert z.file is not None
    return [
        line.split()[0]
        for line in z.file.read_text().splitlines()
        if line and not line.startswith((";", "$", "@"))
    ]


# ------------------------------------------------ the reduced cases of issue 13


def test_important_block_beats_a_plain_exception(tmp_path: Path) -> None:
    cfg = feed_config(tmp_path, ["||a.example.org^$important", "@@||a.example.org^"])
    asked = [("a.example.org", "A", "127.0.0.1"), ("x.a.example.org", "AAAA", "127.0.0.1")]
    assert outcomes(cfg, asked) == ["blocked", "blocked"]
    owners = zone_owners(cfg)
    assert len(owners) == len(set(owners)), f"two records at one owner: {owners}"


def test_dnstype_blocks_only_the_types_it_names(tmp_path: Path) -> None:
    cfg = feed_config(tmp_path, ["||b.example.org^$dnstype=AAAA"])
    asked = [(n, t, "127.0.0.1") for n in ("b.example.org", "s.b.example.org") for t in TYPES]
    assert outcomes(cfg, asked) == ["resolved", "blocked", "resolved", "resolved"] * 2


def test_html_filtering_rule_is_not_a_dns_rule(tmp_path: Path) -> None:
    cfg = feed_config(tmp_path, ['c.example.org$$script[data-src="x"]', "||d.example.org^"])
    asked = [("c.example.org", "A", "127.0.0.1"), ("d.example.org", "A", "127.0.0.1")]
    assert outcomes(cfg, asked) == ["resolved", "blocked"]
    result = update(cfg.feeds[0], cfg.store)
    assert result.skipped == 1
