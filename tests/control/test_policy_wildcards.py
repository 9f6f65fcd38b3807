"""IXFR overlays carry the empty non-terminals a change makes or removes (RFC 4592)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from mamori import config
from mamori.control.policy import PolicyManager
from mamori.policy import delta
from mamori.policy.engine import Policy
from mamori.xfr.client import Delta

SOA = "$TTL 60\n@ SOA ns.rpz. host.rpz. {serial} 3600 600 86400 60\n@ NS ns.rpz.\n"
RR = tuple[dns.name.Name, int, dns.rdata.Rdata]


def _rr(owner: str, rdtype: str, text: str) -> RR:
    rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text)
    return dns.name.from_text(owner), 60, rd


def _rule(policy: Policy | None, name: str) -> str | None:
    assert policy is not None
    match, _ = policy.check_query(None, dns.name.from_text(name).to_wire())
    return match.rule.owner if match else None


def _soa(serial: int) -> RR:
    return _rr("t.rpz.", "SOA", f"ns.rpz. host.rpz. {serial} 3600 600 86400 60")


def test_ixfr_removing_the_name_that_makes_an_empty_nonterminal_is_an_overlay(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        rules = "*.2o7.example CNAME .\nx.112.2o7.example CNAME .\n*.grow.example CNAME .\n"
        (tmp_path / "t.rpz").write_text(SOA.format(serial=1) + rules)
        cfg = config.loads(
            f'[upstream]\nservers = ["127.0.0.1:9"]\n[store]\npath = "{tmp_path}/m.db"\n'
            "[rules]\nenabled = false\n"  # zones[0] below: the [[rpz]] zone
            f'[[rpz]]\nname = "t.rpz"\nfile = "{tmp_path}/t.rpz"\nprimary = ["127.0.0.1:53"]\n',
            tmp_path / "m.toml",
        )
        m = PolicyManager(cfg)
        await m.start()
        await m.load_sources()
        zone = m.zone("t.rpz.")
        assert zone is not None
        assert _rule(m.policy, "y.112.2o7.example") is None  # 112.2o7 exists
        assert _rule(m.policy, "r.q.grow.example") == "*.grow.example"
        base = m.manifest.zones[0].path
        d = Delta(
            1,
            2,
            [_soa(1), _rr("x.112.2o7.example.t.rpz.", "CNAME", ".")],
            [_soa(2), _rr("p.q.grow.example.t.rpz.", "CNAME", "rpz-passthru.")],
        )
        delta.apply(zone, d.deleted, d.added)
        m.publish("t.rpz.", zone, [d])
        await asyncio.gather(*m._tasks)
        ref = m.manifest.zones[0]
        assert ref.path == base and ref.overlay is not None  # not compiled again
        for name in ("112.2o7.example", "y.112.2o7.example", "x.112.2o7.example"):
            assert _rule(m.policy, name) == "*.2o7.example", name
        for name in ("q.grow.example", "r.q.grow.example"):
            assert _rule(m.policy, name) is None, name  # q.grow exists now
        assert _rule(m.policy, "p.q.grow.example") == "p.q.grow.example"
        assert _rule(m.policy, "s.grow.example") == "*.grow.example"

    asyncio.run(go())


def test_ixfr_adding_a_wildcard_above_existing_names_compiles_the_zone_again(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        (tmp_path / "t.rpz").write_text(SOA.format(serial=1) + "x.a.b.example CNAME .\n")
        cfg = config.loads(
            f'[upstream]\nservers = ["127.0.0.1:9"]\n[store]\npath = "{tmp_path}/m.db"\n'
            "[rules]\nenabled = false\n"  # zones[0] below: the [[rpz]] zone
            f'[[rpz]]\nname = "t.rpz"\nfile = "{tmp_path}/t.rpz"\nprimary = ["127.0.0.1:53"]\n',
            tmp_path / "m.toml",
        )
        m = PolicyManager(cfg)
        await m.start()
        await m.load_sources()
        zone = m.zone("t.rpz.")
        assert zone is not None
        base = m.manifest.zones[0].path
        d = Delta(1, 2, [_soa(1)], [_soa(2), _rr("*.b.example.t.rpz.", "CNAME", ".")])
        delta.apply(zone, d.deleted, d.added)
        m.publish("t.rpz.", zone, [d])
        await asyncio.gather(*m._tasks)
        ref = m.manifest.zones[0]
        assert ref.path != base and ref.overlay is None  # compiled again
        assert _rule(m.policy, "c.b.example") == "*.b.example"
        assert _rule(m.policy, "y.a.b.example") is None  # a.b exists
        assert _rule(m.policy, "a.b.example") is None

    asyncio.run(go())
