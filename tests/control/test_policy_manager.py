"""The control plane's policy: compiled once, reused at start, changed by overlays."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from mamori import config
from mamori.control.policy import PolicyManager, changed_keys
from mamori.errors import StartupError
from mamori.policy import delta
from mamori.policy.engine import Policy
from mamori.resolver.policymap import Manifest
from mamori.xfr.client import Delta

SOA = "$TTL 60\n@ SOA ns.rpz. host.rpz. {serial} 3600 600 86400 60\n@ NS ns.rpz.\n"


def _cfg(tmp_path: Path, body: str, serial: int = 1) -> config.Config:
    (tmp_path / "local.rpz").write_text(SOA.format(serial=serial) + body)
    return config.loads(
        f'[upstream]\nservers = ["127.0.0.1:9"]\n[store]\npath = "{tmp_path}/m.db"\n'
        "[rules]\nenabled = false\n"  # zones[0] below: the [[rpz]] zone
        f'[[rpz]]\nname = "local.rpz"\nfile = "{tmp_path}/local.rpz"\n',
        tmp_path / "m.toml",
    )


def _blocked(policy: Policy | None, name: str) -> bool:
    assert policy is not None
    match, _ = policy.check_query(None, dns.name.from_text(name).to_wire() or b"")
    return match is not None


def test_versions_reach_listeners_and_a_restart_reuses_the_compiled_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "mamori.rpz")

    async def go() -> None:
        cfg = _cfg(tmp_path, "bad.example CNAME .\n")
        seen: list[Manifest] = []
        m = PolicyManager(cfg)
        m.listeners.append(lambda manifest, _p: seen.append(manifest))
        await m.start()
        assert [v.version for v in seen] == [1] and _blocked(m.policy, "bad.example")
        path = seen[0].zones[0].path
        again = PolicyManager(cfg)
        await again.start()
        assert again.manifest.zones[0].path == path
        assert "compiled form of" in caplog.text and "reused" in caplog.text
        (tmp_path / "local.rpz").write_text(SOA.format(serial=2) + "new.example CNAME .\n")
        await again.reload(cfg)
        assert again.version == 2 and again.manifest.zones[0].path != path
        assert _blocked(again.policy, "new.example") and not _blocked(again.policy, "bad.example")

    asyncio.run(go())


def test_a_broken_zone_file_keeps_the_previous_version_serving(tmp_path: Path) -> None:
    async def go() -> None:
        cfg = _cfg(tmp_path, "bad.example CNAME .\n")
        m = PolicyManager(cfg)
        await m.start()
        (tmp_path / "local.rpz").write_text(SOA.format(serial=2) + "x.example A 999.1.1.1\n")
        await m.reload(cfg)
        assert _blocked(m.policy, "bad.example")

    asyncio.run(go())


def test_a_broken_zone_at_start_is_refused_naming_file_and_line(tmp_path: Path) -> None:
    async def go() -> None:
        await PolicyManager(_cfg(tmp_path, "x.example A 999.1.1.1\n")).start()

    with pytest.raises(StartupError, match=r"local\.rpz:4"):
        asyncio.run(go())


def _rr(owner: str, rdtype: str, text: str) -> tuple[dns.name.Name, int, dns.rdata.Rdata]:
    rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text)
    return dns.name.from_text(owner), 60, rd


def test_ixfr_changes_become_an_overlay_without_recompiling(tmp_path: Path) -> None:
    """A transferred zone changed in place: the version names the same file plus an overlay."""

    async def go() -> None:
        (tmp_path / "t.rpz").write_text(SOA.format(serial=1) + "old.example CNAME .\n")
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
        assert zone is not None and _blocked(m.policy, "old.example")
        base = m.manifest.zones[0].path
        soa1 = _rr("t.rpz.", "SOA", "ns.rpz. host.rpz. 1 3600 600 86400 60")
        soa2 = _rr("t.rpz.", "SOA", "ns.rpz. host.rpz. 2 3600 600 86400 60")
        d = Delta(1, 2, [soa1, _rr("old.example.t.rpz.", "CNAME", ".")],
                  [soa2, _rr("*.new.example.t.rpz.", "CNAME", ".")])  # fmt: skip
        delta.apply(zone, d.deleted, d.added)
        m.publish("t.rpz.", zone, [d])
        await asyncio.gather(*m._tasks)
        ref = m.manifest.zones[0]
        assert ref.path == base and ref.overlay is not None
        assert _blocked(m.policy, "a.new.example") and not _blocked(m.policy, "old.example")
        assert m.policy is not None and m.policy.zones[0].serial == 2

    asyncio.run(go())


def test_changed_keys_are_qname_index_keys_and_other_triggers_refuse_an_overlay() -> None:
    d = Delta(1, 2, [_rr("a.example.z.", "CNAME", ".")], [_rr("*.b.example.z.", "CNAME", ".")])
    assert changed_keys("z.", [d]) == {
        (b"\x01a\x07example\x00", False),
        (b"\x01b\x07example\x00", True),
    }
    ip = Delta(1, 2, [], [_rr("32.1.2.0.192.rpz-ip.z.", "CNAME", ".")])
    assert changed_keys("z.", [ip]) is None
