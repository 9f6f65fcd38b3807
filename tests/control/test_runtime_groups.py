"""The control plane answers for a client: Runtime.policy_for, Runtime.explain with groups."""

from __future__ import annotations

from pathlib import Path

from mamori import config
from mamori.control.view import Runtime
from mamori.policy import engine, zone

SOA = "$TTL 60\n@ SOA ns.example. host.example. 1 3600 600 86400 60\n@ NS ns.example.\n"


def test_policy_for_and_explain_use_the_clients_groups(tmp_path: Path) -> None:
    cfg = config.loads(
        '[upstream]\nservers = ["127.0.0.1:53"]\n'
        '[[group]]\nname = "kids"\nclients = ["192.0.2.0/28"]\n'
        '[[group]]\nname = "guests"\nclients = ["192.0.2.8/29"]\n',
        tmp_path / "m.toml",
    )
    zones, settings = [], []
    for name, body, groups in (
        ("all.rpz.", "bad.example CNAME .\n", ()),
        ("kids.rpz.", "games.example CNAME .\n", ("kids",)),
    ):
        f = tmp_path / name
        f.write_text(SOA + body)
        zones.append(zone.load(f, name))
        settings.append(engine.ZoneSettings(name, groups=groups))
    policy = engine.Policy.from_loaded(zones, settings, 4)
    rt = Runtime()
    rt.config_source = lambda: cfg
    rt.policy_source = lambda: policy
    assert rt.policy_for(None) is policy
    assert rt.groups_of("192.0.2.9") == ("kids", "guests")
    assert rt.groups_of("198.51.100.1") == ()
    assert [s.name for s in rt.policy_for("198.51.100.1").settings] == ["all.rpz."]  # type: ignore[union-attr]
    kid = rt.explain("games.example", "192.0.2.1")
    assert kid["groups"] == ["kids"] and kid["zones"] == ["all.rpz.", "kids.rpz."]
    assert (kid["zone"], kid["rule"], kid["action"]) == (
        "kids.rpz.", "games.example.kids.rpz", "NXDOMAIN"
    )  # fmt: skip
    other = rt.explain("games.example", "198.51.100.1")
    assert other["groups"] == [] and other["zones"] == ["all.rpz."] and other["zone"] == ""
    assert rt.explain("bad.example")["zone"] == "all.rpz."  # no client: the whole policy
