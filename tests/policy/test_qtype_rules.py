"""Rules by query type (``NAME.mamori-qtype TXT "TYPES=TARGET"``), mamori's one RPZ extension."""

from __future__ import annotations

from pathlib import Path

import dns.name
import dns.rdatatype
import dns.rrset
import pytest

from mamori.policy import delta, engine, zone
from mamori.xfr.render import zone_rrs

SOA = "$TTL 300\n@ SOA ns.example. host.example. 1 3600 600 86400 60\n@ NS ns.example.\n"
BODY = """\
*.example CNAME .
b.example.mamori-qtype TXT AAAA=. *=-
*.b.example.mamori-qtype TXT A|MX=rpz-passthru. *=.
g.example.mamori-qtype TXT AAAA=garden.example. TXT=*. *=-
"""
A, AAAA, MX, TXT = 1, 28, 15, 16


def _load(
    tmp_path: Path, body: str, loader: str = "fast", name: str = "rpz.test."
) -> zone.LoadedZone:
    f = tmp_path / f"{name}zone"
    f.write_text(SOA + body)
    if loader == "fast":
        return zone.load(f, name)
    return zone.load_with_dnspython(f.read_text(), name, f, "refuse")


def _ask(p: engine.Policy, qname: str, qtype: int) -> tuple[str, str] | None:
    m, _ = p.check_query_typed(None, dns.name.from_text(qname).to_wire().lower(), qtype)
    return (m.action.value, m.rule.owner) if m else None


@pytest.mark.parametrize("loader", ["fast", "dnspython"])
@pytest.mark.parametrize(
    ("qname", "qtype", "expected"),
    [
        ("b.example", AAAA, ("NXDOMAIN", "b.example.mamori-qtype")),
        ("b.example", A, None),  # no branch for A: the zone has no rule (not *.example)
        ("x.b.example", A, ("PASSTHRU", "*.b.example.mamori-qtype")),
        ("x.b.example", MX, ("PASSTHRU", "*.b.example.mamori-qtype")),
        ("x.b.example", TXT, ("NXDOMAIN", "*.b.example.mamori-qtype")),
        ("g.example", AAAA, ("Local-Data", "g.example.mamori-qtype")),
        ("g.example", TXT, ("NODATA", "g.example.mamori-qtype")),
        ("g.example", A, None),
        ("c.example", A, ("NXDOMAIN", "*.example")),
    ],
)
def test_branch_by_query_type(
    tmp_path: Path, loader: str, qname: str, qtype: int, expected: object
) -> None:
    p = engine.Policy.from_loaded(
        [_load(tmp_path, BODY, loader)], [engine.ZoneSettings("rpz.test.")], 1
    )
    assert _ask(p, qname, qtype) == expected


def test_a_type_without_a_branch_goes_on_to_the_next_zone(tmp_path: Path) -> None:
    first = _load(tmp_path, "b.example.mamori-qtype TXT AAAA=rpz-passthru.\n", name="one.")
    second = _load(tmp_path, "b.example CNAME .\n", name="two.")
    p = engine.Policy.from_loaded(
        [first, second], [engine.ZoneSettings("one."), engine.ZoneSettings("two.")], 1
    )
    assert _ask(p, "b.example", AAAA) == ("PASSTHRU", "b.example.mamori-qtype")
    assert _ask(p, "b.example", A) == ("NXDOMAIN", "b.example")
    found, _ = p.check_query(None, dns.name.from_text("b.example").to_wire())
    assert found is not None and found.typed  # the type-blind check says "look closer"


def test_the_garden_branch_rewrites_to_its_name(tmp_path: Path) -> None:
    p = engine.Policy.from_loaded([_load(tmp_path, BODY)], [engine.ZoneSettings("rpz.test.")], 1)
    m, _ = p.check_query_typed(None, dns.name.from_text("g.example").to_wire(), AAAA)
    assert m is not None and [r.rdata.to_text() for r in m.rule.records] == ["garden.example."]


@pytest.mark.parametrize(
    "body",
    [
        "b.example.mamori-qtype CNAME .\n",
        "b.example.mamori-qtype TXT AAAA\n",
        "b.example.mamori-qtype TXT NOSUCHTYPE=.\n",
        "b.example.mamori-qtype TXT A=. A=rpz-passthru.\n",
        "b.example.mamori-qtype A 192.0.2.1\n",
        "b.example CNAME .\nb.example.mamori-qtype TXT A=.\n",
    ],
)
@pytest.mark.parametrize("loader", ["fast", "dnspython"])
def test_a_bad_qtype_rule_is_an_error_naming_the_owner(
    tmp_path: Path, body: str, loader: str
) -> None:
    with pytest.raises(zone.ZoneError, match=r"b\.example"):
        _load(tmp_path, body, loader)


def test_qtype_rules_render_back_to_their_owner_for_transfers(tmp_path: Path) -> None:
    z = _load(tmp_path, BODY)
    origin = dns.name.from_text("rpz.test.")
    got = set()
    for wire in zone_rrs(z):
        owner, end = dns.name.from_wire(wire, 0)
        rdtype = int.from_bytes(wire[end : end + 2], "big")
        got.add((owner.relativize(origin).to_text(), dns.rdatatype.to_text(rdtype)))
    assert ("b.example.mamori-qtype", "TXT") in got
    assert ("*.b.example.mamori-qtype", "TXT") in got
    assert ("*.example", "CNAME") in got
    assert not any(o in ("b.example", "g.example") for o, _t in got)


def test_an_ixfr_delta_changes_a_qtype_rule_in_place(tmp_path: Path) -> None:
    z = _load(tmp_path, BODY)
    owner = dns.name.from_text("b.example.mamori-qtype.rpz.test.")
    old = dns.rrset.from_text(owner, 300, "IN", "TXT", "AAAA=. *=-")
    new = dns.rrset.from_text(owner, 300, "IN", "TXT", "A=. *=-")
    delta.apply(z, [(owner, 300, old[0])], [(owner, 300, new[0])])
    p = engine.Policy.from_loaded([z], [engine.ZoneSettings("rpz.test.")], 2)
    assert _ask(p, "b.example", A) == ("NXDOMAIN", "b.example.mamori-qtype")
    assert _ask(p, "b.example", AAAA) is None
    plain = dns.name.from_text("b.example.rpz.test.")
    cname = dns.rrset.from_text(plain, 300, "IN", "CNAME", ".")
    with pytest.raises(delta.DeltaError, match="mamori-qtype"):
        delta.apply(z, [], [(plain, 300, cname[0])])
