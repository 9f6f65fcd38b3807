"""The local rules' store: validation, zone files written from the table, one transaction
with the audit entry, serials that always increase, wildcards that mean what a list means."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from mamori import config
from mamori.control.zoneload import load_policy
from mamori.dnsutil import serial as rfc1982
from mamori.dnsutil import wire
from mamori.store import rules as rules_mod
from mamori.store.rules import RuleError, check_rule, ensure_zones, open_store, read_zone, rule_name


def _cfg(tmp_path: Path, extra: str = "") -> config.Config:
    return config.loads(
        f'[store]\npath = "{tmp_path}/m.db"\n'
        '[[group]]\nname = "kids"\nclients = ["192.0.2.0/24"]\n' + extra,
        tmp_path / "m.toml",
        resolver=False,
    )


def _add(store: rules_mod.RuleStore, name: str, **kw: object) -> rules_mod.Rule:
    fields = check_rule({"name": name, **kw}, {"kids"})
    return store.add(fields, "key:test", "192.0.2.7")[0]


def _verdict(cfg: config.Config, name: str) -> str | None:
    policy, _ = load_policy(cfg.rpz)
    assert policy is not None
    found, _ = policy.check_query(None, wire.text_to_name(name).lower())
    return None if found is None else f"{found.rule.zone} {found.hit[3]}"


def test_names_are_checked_and_normalised() -> None:
    assert rule_name("Bücher.Example.") == "xn--bcher-kva.example"
    assert rule_name("  ads.example.com ") == "ads.example.com"
    assert rule_name("localhost") == "localhost"
    for bad in (
        "",
        "*.a.example",
        "a..example",
        "a b.example",
        "x" * 64 + ".example",
        ("a" * 63 + ".") * 4 + "example",
        "32.1.2.0.192.rpz-ip",
        7,
    ):
        with pytest.raises(RuleError) as e:
            rule_name(bad)
        assert e.value.field == "name"


def test_fields_are_checked_naming_the_field() -> None:
    ok = check_rule({"name": "a.example", "groups": ["kids", "kids"]}, {"kids"})
    assert ok == {
        "name": "a.example",
        "action": "block",
        "subdomains": False,
        "comment": "",
        "groups": ("kids",),
    }
    for doc, field in [
        ({"name": "a.example", "extra": 1}, "extra"),
        ({}, "name"),
        ({"name": "a.example", "action": "BLOCK"}, "action"),
        ({"name": "a.example", "subdomains": 1}, "subdomains"),
        ({"name": "a.example", "comment": None}, "comment"),
        ({"name": "a.example", "comment": "c" * 501}, "comment"),
        ({"name": "a.example", "groups": None}, "groups"),
        ({"name": "a.example", "groups": [1]}, "groups"),
        ({"name": "a.example", "groups": ["adults"]}, "groups"),
    ]:
        with pytest.raises(RuleError) as e:
            check_rule(doc, {"kids"})
        assert e.value.field == field, doc


def test_rules_zones_come_first_one_per_group(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, f'[[rpz]]\nname = "local.rpz"\nfile = "{tmp_path}/l.rpz"\n')
    names = [z.name for z in cfg.rpz]
    assert names == ["rules.mamori.", "kids.rules.mamori.", "local.rpz."]
    assert cfg.rpz[1].groups == ("kids",) and cfg.rpz[0].groups == ()
    off = _cfg(tmp_path, "[rules]\nenabled = false\n")
    assert [z.name for z in off.rpz] == []
    with pytest.raises(Exception, match="managed by mamori"):
        _cfg(tmp_path, f'[[rpz]]\nname = "rules.mamori"\nfile = "{tmp_path}/l.rpz"\n')
    with pytest.raises(Exception, match=r"rules\.publish_keys"):
        _cfg(tmp_path, '[rules]\npublish_keys = ["nokey"]\n')


def test_allow_beats_a_later_zone_and_subdomains_add_the_wildcard(tmp_path: Path) -> None:
    (tmp_path / "l.rpz").write_text(
        "$TTL 60\n@ SOA a. b. 1 1 1 1 1\n@ NS a.\nads.example CNAME .\n*.ads.example CNAME .\n"
    )
    cfg = _cfg(tmp_path, f'[[rpz]]\nname = "local.rpz"\nfile = "{tmp_path}/l.rpz"\n')
    store = open_store(cfg)
    assert _verdict(cfg, "ok.ads.example") == "local.rpz. NXDOMAIN"
    _add(store, "ok.ads.example", action="allow")
    assert _verdict(cfg, "ok.ads.example") == "rules.mamori. PASSTHRU"
    assert _verdict(cfg, "x.ok.ads.example") == "local.rpz. NXDOMAIN"  # exact only
    _add(store, "tracker.example", subdomains=True)
    assert _verdict(cfg, "tracker.example") == "rules.mamori. NXDOMAIN"
    assert _verdict(cfg, "a.b.tracker.example") == "rules.mamori. NXDOMAIN"
    # an exact allow below a blocked wildcard: names below it stay blocked (list meaning)
    _add(store, "good.tracker.example", action="allow")
    assert _verdict(cfg, "good.tracker.example") == "rules.mamori. PASSTHRU"
    assert _verdict(cfg, "x.good.tracker.example") == "rules.mamori. NXDOMAIN"
    _add(store, "kidsonly.example", groups=["kids"])
    _, lines = read_zone(tmp_path / "rules" / "kids.rules.mamori.zone")
    assert lines == ["kidsonly.example CNAME ."]
    assert store.remove("ok.ads.example", "key:test", "") != []
    assert _verdict(cfg, "ok.ads.example") == "local.rpz. NXDOMAIN"
    store.audit.close()


def test_change_and_audit_commit_together_and_a_failed_zone_write_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(tmp_path)
    store = open_store(cfg)
    _add(store, "a.example")
    entries = store.audit.entries()
    assert [(e.action, e.target, e.actor, e.address) for e in entries] == [
        ("rule.add", "a.example", "key:test", "192.0.2.7")
    ]

    def broken(*_a: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rules_mod, "write_zone_file", broken)
    with pytest.raises(OSError):
        _add(store, "b.example")
    with pytest.raises(OSError):
        store.remove("a.example", "key:test", "")
    assert [r.name for r in store.search()[0]] == ["a.example"]
    assert len(store.audit.entries()) == 1
    store.audit.close()


def test_serials_always_increase_and_a_lost_zone_is_rebuilt(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    store = open_store(cfg)
    zone = tmp_path / "rules" / "rules.mamori.zone"
    serials = []
    for i in range(3):  # several changes within one second
        _add(store, f"n{i}.example")
        serials.append(read_zone(zone)[0])
    assert all(rfc1982.gt(b, a) for a, b in itertools.pairwise(serials))
    store.audit.close()
    zone.unlink()
    ensure_zones(cfg)
    serial, lines = read_zone(zone)
    assert lines == [f"n{i}.example CNAME ." for i in range(3)]
    assert rfc1982.gt(serial, serials[-1])  # never backwards, even for a lost file
    zone.write_text(zone.read_text().replace("n1.example CNAME .\n", ""))  # stale
    ensure_zones(cfg)
    assert read_zone(zone)[1] == [f"n{i}.example CNAME ." for i in range(3)]


def test_same_name_and_groups_replaces_and_search_pages(tmp_path: Path) -> None:
    store = open_store(_cfg(tmp_path))
    _add(store, "a.example", comment="first")
    _add(store, "a.example", action="allow", comment="second")
    _add(store, "a.example", groups=["kids"])
    rules, total = store.search("a.example")
    assert total == 2
    assert [(r.action, r.groups) for r in rules] == [("allow", ()), ("block", ("kids",))]
    assert store.search("second")[1] == 1
    assert [r.name for r in store.search(limit=1, offset=1)[0]] == ["a.example"]
    assert len(store.remove("a.example", "cli:me", "", ("kids",))) == 1
    assert store.search()[1] == 1
    store.audit.close()
