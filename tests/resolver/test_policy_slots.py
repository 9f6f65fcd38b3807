"""Policy slots per set of client groups: the view each client record keeps."""

from __future__ import annotations

from pathlib import Path

from mamori.policy import engine, zone
from mamori.policy.groups import GroupClassifier
from mamori.resolver.acl import ClientTable
from mamori.resolver.active_policy import PolicySlots

SOA = "@ SOA ns.example. host.example. 1 3600 600 86400 60\n@ NS ns.example.\n"


def _policy(tmp_path: Path, version: int, kids_groups: tuple[str, ...]) -> engine.Policy:
    zones, settings = [], []
    for name, groups in (("all.rpz.", ()), ("kids.rpz.", kids_groups)):
        f = tmp_path / f"{name}{version}"
        f.write_text("$TTL 300\n" + SOA + "x.example CNAME .\n")
        zones.append(zone.load(f, name))
        settings.append(engine.ZoneSettings(name, groups=groups))
    return engine.Policy.from_loaded(zones, settings, version)


def test_client_records_keep_the_slot_of_their_groups(tmp_path: Path) -> None:
    slots = PolicySlots()
    slots.set_policy(_policy(tmp_path, 1, ("kids",)))
    groups = GroupClassifier([("kids", ["192.0.2.0/28"]), ("guests", ["192.0.2.8/29"])])
    table = ClientTable(("0.0.0.0/0",), 10, slots, groups)
    none, kid, both = (table.lookup(ip, 0.0) for ip in ("192.0.2.100", "192.0.2.1", "192.0.2.9"))
    guest = table.lookup("192.0.2.20", 0.0)
    assert none.slot is slots.default and none.slot.label == ""
    assert kid.slot.label == "kids" and both.slot.label == "kids,guests"
    assert guest.slot is none.slot or guest.slot.label == ""
    assert none.slot.active is not None and kid.slot.active is not None
    assert [s.name for s in none.slot.active.policy.settings] == ["all.rpz."]
    assert [s.name for s in kid.slot.active.policy.settings] == ["all.rpz.", "kids.rpz."]
    # "kids" and "kids,guests" see the same zones: one view, one set of memos
    assert both.slot.active is kid.slot.active
    assert kid.slot.active.version != none.slot.active.version
    # a new version (here: kids.rpz now for everyone) reaches every slot, views rebuilt
    slots.set_policy(_policy(tmp_path, 2, ()))
    assert kid.slot.active is none.slot.active is both.slot.active
    assert none.slot.active.version == 2
    slots.set_policy(None)
    assert kid.slot.active is None and none.slot.active is None


def test_without_groups_every_client_shares_one_slot(tmp_path: Path) -> None:
    slots = PolicySlots()
    slots.set_policy(_policy(tmp_path, 1, ()))
    table = ClientTable(("0.0.0.0/0",), 10, slots, GroupClassifier([]))
    a, b = table.lookup("192.0.2.1", 0.0), table.lookup("198.51.100.1", 0.0)
    assert a.slot is b.slot is slots.default
    assert table.groups is None  # no classification at all
