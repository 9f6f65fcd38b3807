"""Policy versions built from compiled files mapped with mmap (what every worker does)."""

from __future__ import annotations

import marshal
from pathlib import Path

import dns.name
import pytest

from mamori.policy import zone as zone_mod
from mamori.policy.compiled import compile_zone
from mamori.policy.engine import ZoneSettings
from mamori.resolver.policymap import Manifest, PolicyMapError, PolicyMapper, ZoneRef

SOA = "$TTL 60\n@ SOA ns.rpz. host.rpz. 1 3600 600 86400 60\n@ NS ns.rpz.\n"


def _compiled(tmp_path: Path, name: str, body: str) -> str:
    src = tmp_path / f"{name}zone"
    src.write_text(SOA + body)
    out = tmp_path / f"{name}cz"
    out.write_bytes(compile_zone(zone_mod.load(src, name)))
    return str(out)


def _wire(name: str) -> bytes:
    return dns.name.from_text(name).to_wire() or b""


def test_manifest_round_trips_through_marshal_and_maps_in_zone_order(tmp_path: Path) -> None:
    first = _compiled(tmp_path, "a.rpz.", "x.example CNAME rpz-passthru.\n")
    second = _compiled(tmp_path, "b.rpz.", "x.example CNAME .\ny.example CNAME .\n")
    m = Manifest(
        7,
        (
            ZoneRef(ZoneSettings("a.rpz."), first),
            ZoneRef(ZoneSettings("b.rpz.", groups=("kids", "guests")), second),
        ),
    )
    again = Manifest.from_wire(marshal.loads(marshal.dumps(m.to_wire())))
    assert again == m
    policy = PolicyMapper().build(again)
    assert policy.version == 7 and [z.name for z in policy.zones] == ["a.rpz.", "b.rpz."]
    x, _ = policy.check_query(None, _wire("x.example"))
    y, _ = policy.check_query(None, _wire("y.example"))
    assert x is not None and x.hit[:2] == ("a.rpz.", "x.example.a.rpz")  # the first zone wins
    assert y is not None and y.hit[3] == "NXDOMAIN"


def test_a_file_mapped_once_is_shared_by_later_versions(tmp_path: Path) -> None:
    path = _compiled(tmp_path, "a.rpz.", "x.example CNAME .\n")
    mapper = PolicyMapper()
    ref = ZoneRef(ZoneSettings("a.rpz."), path)
    one = mapper.build(Manifest(1, (ref,)))
    two = mapper.build(Manifest(2, (ref,)))
    assert one.zones[0] is two.zones[0]


def test_a_missing_or_damaged_file_is_an_error_naming_it(tmp_path: Path) -> None:
    mapper = PolicyMapper()
    missing = str(tmp_path / "gone.cz")
    with pytest.raises(PolicyMapError, match=r"gone\.cz"):
        mapper.build(Manifest(1, (ZoneRef(ZoneSettings("a.rpz."), missing),)))
    bad = tmp_path / "bad.cz"
    bad.write_bytes(b"not a compiled zone at all" * 10)
    with pytest.raises(PolicyMapError, match=r"bad\.cz"):
        mapper.build(Manifest(1, (ZoneRef(ZoneSettings("a.rpz."), str(bad)),)))
