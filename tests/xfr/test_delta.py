"""IXFR differences applied in place give the same rules as loading the new zone."""

from __future__ import annotations

from pathlib import Path

import dns.name
import dns.rdata
import dns.zone
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.policy import delta, zone
from mamori.xfr import zonefile
from mamori.xfr.client import RR, Delta

ORIGIN = "rpz.test."
HEAD = "$TTL 60\n@ SOA ns.rpz.test. h.rpz.test. {serial} 60 30 600 30\n@ NS localhost.\n"

OWNERS = ["a.example", "*.b.example", "c.example", "32.1.2.0.192.rpz-ip", "ns.evil.rpz-nsdname"]
ACTIONS = [
    "CNAME .",
    "CNAME *.",
    "CNAME rpz-passthru.",
    "A 192.0.2.7",
    'TXT "x"',
    "CNAME garden.example.",
]


def _text(serial: int, rules: dict[str, list[str]]) -> str:
    lines = [f"{owner} {rd}" for owner, rds in rules.items() for rd in rds]
    return HEAD.format(serial=serial) + "\n".join(lines) + "\n"


def _rrs(text: str) -> set[tuple[str, int, str]]:
    z = dns.zone.from_text(text, origin=ORIGIN, relativize=False)
    return {
        (n.to_text(), rds.rdtype, rd.to_text())
        for n, node in z.nodes.items()
        for rds in node
        for rd in rds
    }


def _as_rr(item: tuple[str, int, str]) -> RR:
    name, rdtype, text = item
    rd = dns.rdata.from_text("IN", rdtype, text, origin=dns.name.root, relativize=False)
    return dns.name.from_text(name), 60, rd


def _rules(z: zone.LoadedZone) -> set[tuple[str, str, tuple[str, ...]]]:
    return {
        (r.owner, r.action.value, tuple(sorted(x.rdata.to_text() for x in r.records)))
        for r in z.rules()
    }


def _load(tmp: Path, text: str, name: str) -> zone.LoadedZone:
    f = tmp / name
    f.write_text(text)
    return zone.load(f, ORIGIN)


rule_sets = st.dictionaries(
    st.sampled_from(OWNERS),
    st.sampled_from(ACTIONS).map(lambda a: [a]),
    max_size=len(OWNERS),
)


@settings(max_examples=60, deadline=None)
@given(before=rule_sets, after=rule_sets)
def test_delta_equals_loading_the_new_version(tmp_path_factory, before, after) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("delta")
    old_text, new_text = _text(1, before), _text(2, after)
    z = _load(tmp, old_text, "old.zone")
    old_rrs, new_rrs = _rrs(old_text), _rrs(new_text)
    deleted = [_as_rr(x) for x in sorted(old_rrs - new_rrs)]
    added = [_as_rr(x) for x in sorted(new_rrs - old_rrs)]
    delta.apply(z, deleted, added)
    expected = _load(tmp, new_text, "new.zone")
    assert z.serial == 2
    assert _rules(z) == _rules(expected)
    assert z.rule_count == expected.rule_count


def test_journal_round_trip_and_torn_batch(tmp_path: Path) -> None:
    f = tmp_path / "rpz.test.zone"
    z = _load(tmp_path, _text(1, {"a.example": ["CNAME ."]}), "rpz.test.zone")
    soa1 = _as_rr(("rpz.test.", 6, "ns.rpz.test. h.rpz.test. 1 60 30 600 30"))
    soa2 = _as_rr(("rpz.test.", 6, "ns.rpz.test. h.rpz.test. 2 60 30 600 30"))
    d = Delta(
        1,
        2,
        [soa1, _as_rr(("a.example.rpz.test.", 5, "."))],
        [soa2, _as_rr(("c.example.rpz.test.", 5, "*."))],
    )
    zonefile.append_journal(f, [d])
    with zonefile.journal_path(f).open("a") as j:
        j.write("; ixfr 2 3\n- c.example.rpz.test. 60 IN CNAME *.\n")  # torn: no "; end"
    back = zonefile.read_journal(f)
    assert len(back) == 1 and (back[0].old, back[0].new) == (1, 2)
    for d in back:
        delta.apply(z, d.deleted, d.added)
    assert {(r.owner, r.action.value) for r in z.rules()} == {("c.example", "NODATA")}


def test_saved_full_zone_loads_with_the_fast_loader(tmp_path: Path) -> None:
    text = _text(7, {o: [a] for o, a in zip(OWNERS, ACTIONS, strict=False)})
    records = [_as_rr(x) for x in sorted(_rrs(text), key=lambda x: x[1] != 6)]
    f = tmp_path / "copy.zone"
    zonefile.save_full(f, ORIGIN, records)
    loaded = zone.load(f, ORIGIN)
    assert loaded.serial == 7
    assert _rules(loaded) == _rules(_load(tmp_path, text, "orig.zone"))
