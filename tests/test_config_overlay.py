"""The console's overlay (<store dir>/console.toml) merged by the config loader."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mamori import config
from mamori.config import overlay
from mamori.config.load import load_effective
from mamori.errors import ConfigError

USER = """# my settings
[upstream]
servers = ["127.0.0.1:53"]
[store]
path = "{store}/m.db"

[[group]]
name = "office"
clients = ["10.1.0.0/16"]

[[feed]]   # mine
name = "mine"
path = "list.txt"
format = "domains"
"""


def _conf(tmp_path: Path, overlay_text: str | None = None) -> Path:
    conf = tmp_path / "m.toml"
    conf.write_text(USER.format(store=tmp_path))
    if overlay_text is not None:
        (tmp_path / "console.toml").write_text(overlay_text)
    return conf


def test_overlay_entries_are_appended_and_overrides_applied(tmp_path: Path) -> None:
    conf = _conf(tmp_path, overlay.dumps({
        "feed": [{"name": "added", "url": "https://example.org/l.txt", "format": "hosts",
                  "groups": ["kids"]}],
        "group": [{"name": "kids", "clients": ["192.168.5.0/24"]}],
        "override": {"feed": {"mine": {"enabled": False}}},
    }))  # fmt: skip
    cfg, prov = load_effective(conf)
    assert [f.name for f in cfg.feeds] == ["mine", "added"]
    assert [g.name for g in cfg.groups] == ["office", "kids"]
    assert not cfg.feeds[0].enabled and prov.overrides == {"mine": False}
    # the local rules' zones first (one per group, the overlay's included), then the feeds
    assert [z.name for z in cfg.rpz] == [
        "rules.mamori.",
        "office.rules.mamori.",
        "kids.rules.mamori.",
        "added.feeds.mamori.",
    ]  # mine is off
    assert cfg.rpz[3].groups == ("kids",) and cfg.rpz[2].groups == ("kids",)
    assert str(prov.origins[("feed", "mine")]) == f"{conf}:11"
    assert str(prov.origins[("group", "kids")]) == f"{tmp_path / 'console.toml'}:11 (console)"
    assert config.load(conf) == cfg


def test_the_users_toml_wins_a_shadowed_name(tmp_path: Path) -> None:
    conf = _conf(tmp_path, overlay.dumps({
        "feed": [{"name": "mine", "url": "https://example.org/l.txt", "format": "hosts"}],
        "group": [{"name": "office", "clients": ["192.168.5.0/24"]}],
    }))  # fmt: skip
    cfg, prov = load_effective(conf)
    assert cfg.feeds[0].format == "domains" and cfg.groups[0].clients == ("10.1.0.0/16",)
    assert [(k, n) for k, n, _o in prov.shadowed] == [("group", "office"), ("feed", "mine")]


def test_an_overlay_error_is_logged_and_ignored_or_raised_when_strict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = overlay.HEADER + '\n[[group]]\nname = "kids"\nclients = ["nonsense"]\n'
    conf = _conf(tmp_path, text)
    with caplog.at_level(logging.ERROR):
        cfg, prov = load_effective(conf)
    assert [g.name for g in cfg.groups] == ["office"]
    where = f"{tmp_path / 'console.toml'}:7: group.clients: 'nonsense' is not an IP prefix"
    assert str(prov.error) == where and where in caplog.text
    with pytest.raises(ConfigError) as e:
        load_effective(conf, strict=True)
    assert e.value.key == "group.clients" and e.value.line == 7
    for bad, key in [
        ("[[feed]]\nname = 1\n", "feed.name"),
        ('[server]\nworkers = 2\n', "server"),
        ("[override.feed.mine]\nenabled = 1\n", "override.feed.mine.enabled"),
        ("[override.feed.mine]\ncategory = \"spam\"\n", "override.feed.mine"),
        ('[[feed]]\nname = "x"\nurl = "https://a/"\nformat = "hosts"\ngroups = ["no"]\n',
         "feed.groups"),
        ('[[group]]\nname = "k"\nclient_ids = ["a"]\n[[group]]\nname = "j"\n'
         'client_ids = ["a"]\n', "group.client_ids"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError) as e:
            load_effective(conf, overlay_text=bad, strict=True)
        assert e.value.key == key and e.value.path == str(tmp_path / "console.toml"), bad
    with pytest.raises(ConfigError) as e:
        load_effective(conf, overlay_text="[[feed]\n", strict=True)
    assert e.value.line == 1 and "TOML syntax error" in str(e.value)


def test_the_users_own_errors_are_still_fatal(tmp_path: Path) -> None:
    conf = _conf(tmp_path, overlay.dumps({"group": [{"name": "k", "clients": ["::1"]}]}))
    conf.write_text(conf.read_text() + "[cache]\nmin_ttl = -1\n")
    with pytest.raises(ConfigError) as e:
        config.load(conf)
    assert e.value.path == str(conf) and e.value.key == "cache.min_ttl"


def test_dumps_round_trips_and_writes_atomically(tmp_path: Path) -> None:
    doc = {
        "feed": [{"name": "a", "url": 'https://x/"q"\\', "refresh": 60, "max_bad": 0.5,
                  "enabled": False, "groups": ["g", "h"]}],
        "override": {"feed": {"b": {"enabled": True}}},
    }  # fmt: skip
    path = tmp_path / "sub" / "console.toml"
    overlay.write_doc(path, doc)
    assert overlay.read_doc(path) == doc
    assert [p.name for p in path.parent.iterdir()] == ["console.toml"]  # no temporary left
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    with pytest.raises(ValueError):
        overlay.dumps({"feed": [{"name": {"nested": 1}}]})


def test_check_shows_where_each_feed_and_group_comes_from(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("a.example\n")
    conf = _conf(tmp_path, overlay.dumps({
        "feed": [{"name": "mine", "url": "https://example.org/l.txt", "format": "hosts"}],
        "group": [{"name": "kids", "clients": ["192.168.5.0/24"]}],
        "override": {"feed": {"gone": {"enabled": False}}},
    }))  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "mamori", "check", "--config", str(conf)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    ov = tmp_path / "console.toml"
    assert f"  feed:      mine domains custom, from {conf}:11\n" in r.stdout
    assert f"  group:     office: 10.1.0.0/16, from {conf}:7\n" in r.stdout
    assert f"  group:     kids: 192.168.5.0/24, from {ov}:10 (console)\n" in r.stdout
    assert f"  shadowed:  feed mine of {ov}:5 (console) is not used: {conf}:11 defines it\n" in (
        r.stdout
    )
    assert f"  ignored:   {ov}: override of feed gone, which is not in the file\n" in r.stdout
    assert f"  overlay:   {ov} (edits from the console and the REST API)\n" in r.stdout
