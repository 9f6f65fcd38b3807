"""Policy views per set of client groups (Policy.view) and the group classifier."""

from __future__ import annotations

from pathlib import Path

from mamori.dnsutil import wire
from mamori.policy import engine, zone
from mamori.policy.groups import GroupClassifier, group_label

SOA = "@ SOA ns.example. host.example. 1 3600 600 86400 60\n@ NS ns.example.\n"


def _zone(tmp_path: Path, name: str, body: str) -> zone.LoadedZone:
    f = tmp_path / f"{name}zone"
    f.write_text("$TTL 300\n" + SOA + body)
    return zone.load(f, name)


def _policy(tmp_path: Path, *zones: tuple[str, str, tuple[str, ...]]) -> engine.Policy:
    loaded = [_zone(tmp_path, name, body) for name, body, _ in zones]
    settings = [engine.ZoneSettings(name, groups=groups) for name, _, groups in zones]
    return engine.Policy.from_loaded(loaded, settings, 7)


def _zone_of(p: engine.Policy, qname: str) -> str | None:
    m, _ = p.check_query(None, wire.text_to_name(qname).lower())
    return m.rule.zone if m else None


def test_no_groups_every_view_is_the_policy_itself(tmp_path: Path) -> None:
    p = _policy(tmp_path, ("a.rpz.", "x.example CNAME .\n", ()))
    assert not p.has_groups
    assert p.view(()) is p and p.view(("kids",)) is p and p.base is p


def test_view_keeps_ungrouped_zones_and_those_of_its_groups_in_order(tmp_path: Path) -> None:
    p = _policy(
        tmp_path,
        ("allow.rpz.", "ok.example CNAME rpz-passthru.\n", ()),
        ("kids.rpz.", "games.example CNAME .\nok.example CNAME .\n", ("kids",)),
        ("guests.rpz.", "social.example CNAME .\n", ("guests", "visitors")),
        ("all.rpz.", "bad.example CNAME .\n", ()),
    )
    assert p.has_groups
    none = p.view(())
    kids = p.view(("kids",))
    both = p.view(("kids", "guests"))
    visitors = p.view(("visitors", "unknown"))
    assert [s.name for s in none.settings] == ["allow.rpz.", "all.rpz."]
    assert [s.name for s in kids.settings] == ["allow.rpz.", "kids.rpz.", "all.rpz."]
    assert [s.name for s in visitors.settings] == ["allow.rpz.", "guests.rpz.", "all.rpz."]
    assert both is p  # every zone applies: the policy itself
    assert _zone_of(none, "games.example") is None
    assert _zone_of(kids, "games.example") == "kids.rpz."
    assert _zone_of(kids, "social.example") is None
    assert _zone_of(visitors, "social.example") == "guests.rpz."
    # the order of zones stays the configured one: the passthru zone first wins
    assert _zone_of(kids, "ok.example") == "allow.rpz."
    assert _zone_of(both, "bad.example") == _zone_of(none, "bad.example") == "all.rpz."


def test_views_are_built_once_share_zones_and_have_their_own_versions(tmp_path: Path) -> None:
    p = _policy(
        tmp_path,
        ("kids.rpz.", "games.example CNAME .\n", ("kids",)),
        ("guests.rpz.", "social.example CNAME .\n", ("guests",)),
    )
    kids = p.view(("kids",))
    assert p.view(["kids", "other"]) is kids  # same zones, same view (and memos)
    assert kids.zones[0] is p.zones[0]  # the compiled (mapped) zone is shared
    assert kids.base is p
    versions = {p.version, kids.version, p.view(()).version, p.view(("guests",)).version}
    assert len(versions) == 4  # a memo made for one view never serves another
    assert all(v < 0 for v in versions - {p.version})


def test_classifier_finds_every_group_of_a_client() -> None:
    c = GroupClassifier(
        [("kids", ["192.0.2.0/28", "2001:db8::/64"]), ("guests", ["192.0.2.8/29", "10.0.0.1"])]
    )
    assert c.groups_of("192.0.2.1") == ("kids",)
    assert c.groups_of("192.0.2.9") == ("kids", "guests")
    assert c.groups_of("::ffff:10.0.0.1") == ("guests",)
    assert c.groups_of("2001:db8::5") == ("kids",)
    assert c.groups_of("fe80::1%eth0") == ()
    assert c.groups_of("198.51.100.1") == ()
    assert c.groups_of("not-an-address") == ()
    assert not GroupClassifier([]) and GroupClassifier([]).groups_of("192.0.2.1") == ()
    assert group_label(("kids", "guests")) == "kids,guests" and group_label(()) == ""
