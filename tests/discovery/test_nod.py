"""Newly observed domains over a real SQLite passive DNS store: what is new, warm-up,
the DNSBL's age codes, the zone's rules, "continue", and the [nod] config's errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mamori.cli import cli
from mamori.config import loads
from mamori.discovery.nod import NewDomain, find_new, registrable, zone_lines
from mamori.discovery.nod_publish import allow, allowed_until, refresh
from mamori.errors import ConfigError
from mamori.store.pdns_sqlite import PdnsSQLite

H = 3600
NOW = 1_800_000_000
CONFIG = '[upstream]\nservers = ["127.0.0.1:53"]\n[store]\npath = "{tmp}/mamori.db"\n'


def _store(tmp_path: Path, seen: dict[str, int]) -> PdnsSQLite:
    """A store where each name was first seen *hours ago* (and again just now)."""
    store = PdnsSQLite(tmp_path / "pdns.sqlite")
    tuples = {
        (name, 1, "192.0.2.1", "test."): [NOW - int(hours * H), NOW - 60, 3]
        for name, hours in seen.items()
    }
    store.write(tuples)
    return store


def test_domains_first_seen_inside_the_window_are_new_older_ones_are_not(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path, {
        "www.old.example.": 72,  # the store began three days ago: warm-up is over
        "fresh.shop.co.jp.": 3,  # a new registrable domain below a public suffix
        "www.shop.co.jp.": 2.5,
        "brand-new.example.": 0.2,
        "login.old.example.": 0.5,  # a new name below an old domain: not a new domain
        "site.github.io.": 30,  # older than the 24-hour window
        "4.3.2.1.in-addr.arpa.": 1,  # reverse mapping: never a domain
    })  # fmt: skip
    view = find_new(store, 24 * H, 24 * H, NOW)
    assert not view.warming
    assert [(d.domain, d.first_seen, d.names) for d in view.domains] == [
        ("shop.co.jp.", NOW - 3 * H, 2),
        ("brand-new.example.", NOW - int(0.2 * H), 1),
    ]
    assert [d.code(NOW) for d in view.domains] == ["127.0.2.4", "127.0.2.2"]


def test_a_young_store_warms_up_and_its_baseline_never_becomes_new(tmp_path: Path) -> None:
    started = NOW - 30 * H
    store = _store(tmp_path, {"first.example.": 30, "during.example.": 20, "after.example.": 2})
    # an hour after the store's first observation: nothing is new, not even the newest
    view = find_new(store, 24 * H, 24 * H, started + H)
    assert view.warming and view.domains == () and view.warm_until == started + 24 * H
    # 30 hours in: during.example was first seen 20 hours ago (inside the window) but
    # during the warm-up: baseline; after.example came after the warm-up: new
    view = find_new(store, 24 * H, 24 * H, NOW)
    assert [d.domain for d in view.domains] == ["after.example."]
    # a shorter warm-up ([nod] warmup = "6h") makes during.example new as well
    view = find_new(store, 24 * H, 6 * H, NOW)
    assert [d.domain for d in view.domains] == ["during.example.", "after.example."]


def test_an_empty_store_is_warming_up(tmp_path: Path) -> None:
    view = find_new(PdnsSQLite(tmp_path / "pdns.sqlite"), 24 * H, 24 * H, NOW)
    assert view.warming and view.warm_until is None and view.domains == ()


@pytest.mark.parametrize(
    ("age", "code"),
    [(0, "127.0.2.2"), (H - 1, "127.0.2.2"), (2 * H - 1, "127.0.2.2"), (2 * H, "127.0.2.3"),
     (int(4.5 * H), "127.0.2.5"), (24 * H - 1, "127.0.2.24"), (400 * H, "127.0.2.254")],
)  # fmt: skip
def test_dnsbl_code_says_hours_since_first_seen(age: int, code: str) -> None:
    assert NewDomain("a.example.", NOW - age, 1).code(NOW) == code


@pytest.mark.parametrize(
    ("name", "domain"),
    [("www.Example.CO.JP.", "example.co.jp."), ("a.b.someone.github.io", "someone.github.io."),
     ("co.jp.", None), ("1.2.0.192.in-addr.arpa.", None), ("bad name.example.", None),
     ("xn--bcher-kva.example.", "xn--bcher-kva.example.")],
)  # fmt: skip
def test_registrable_domain(name: str, domain: str | None) -> None:
    assert registrable(name) == domain


def test_zone_rules_per_action() -> None:
    assert zone_lines(["b.example.", "a.example."], "block") == [
        "a.example CNAME .", "*.a.example CNAME .", "b.example CNAME .", "*.b.example CNAME .",
    ]  # fmt: skip
    assert zone_lines(["a.example."], "warn", "2001:db8::53") == [
        "a.example AAAA 2001:db8::53", "*.a.example AAAA 2001:db8::53",
    ]  # fmt: skip


def test_continue_takes_the_domain_out_of_the_zone_until_it_expires(tmp_path: Path) -> None:
    text = CONFIG.format(tmp=tmp_path) + (
        '[blockpage]\nenabled = true\naddress = "192.0.2.53"\n'
        '[nod]\nenabled = true\naction = "warn"\ncontinue_for = "2h"\n'
    )
    cfg = loads(text, tmp_path / "mamori.toml")
    store = _store(tmp_path, {"old.example.": 72, "new.example.": 1, "other.example.": 1})
    zone = tmp_path / "nod" / "nod.mamori.rpz"
    _view, changed = refresh(cfg, store, NOW)
    assert changed and "www" not in zone.read_text()
    assert "\nnew.example A 192.0.2.53\n*.new.example A 192.0.2.53\n" in zone.read_text()
    assert allow(cfg, "www.old.example", "192.0.2.7", NOW) is None  # not new: no exception
    assert allow(cfg, "login.new.example.", "192.0.2.7", NOW) == NOW + 2 * H
    assert "new.example A" not in zone.read_text() and "other.example A" in zone.read_text()
    assert allowed_until(cfg, "new.example", NOW + H) == NOW + 2 * H
    _view, changed = refresh(cfg, store, NOW + 60)
    assert not changed  # still allowed: the zone stays as it was
    _view, changed = refresh(cfg, store, NOW + 2 * H)  # expired, and still new: back
    assert changed and "new.example A" in zone.read_text()
    entries = (tmp_path / "nod" / "nod.entries").read_text().splitlines()
    assert entries[1:] == [
        "domain\tnew.example\tnod-4", "wildcard\tnew.example\tnod-4",
        "domain\tother.example\tnod-4", "wildcard\tother.example\tnod-4",
    ]  # fmt: skip


def test_a_renamed_zone_gets_a_file_of_its_own_and_a_load_never_sees_the_old_one(
    tmp_path: Path,
) -> None:
    from mamori.config.sections import nod_zone
    from mamori.policy.zone import load

    base = CONFIG.format(tmp=tmp_path) + '[nod]\nenabled = true\naction = "block"\n'
    store = _store(tmp_path, {"old.example.": 72, "new.example.": 1})
    refresh(loads(base, tmp_path / "mamori.toml"), store, NOW)
    cfg = loads(base + 'zone = "nod.example."\n', tmp_path / "mamori.toml")
    (rpz,) = nod_zone(cfg)
    assert rpz.file == tmp_path / "nod" / "nod.example.rpz" and not rpz.file.exists()
    _view, changed = refresh(cfg, store, NOW + 60)  # same domains, another zone: written
    assert changed
    text = rpz.file.read_text()
    assert "$ORIGIN nod.example.\n" in text and "\nnew.example CNAME .\n" in text
    assert load(rpz.file, "nod.example.") is not None  # its own origin: loads


@pytest.mark.parametrize(
    ("extra", "line", "key", "message"),
    [('[nod]\nenabled = true\naction = "warn"\n', 7, "nod.action", "[blockpage]"),
     ('[nod]\nenabled = true\nwindow = "24x"\n', 7, "nod.window", 'like "24h"'),
     ('[nod]\nwindow = "10s"\n', 6, "nod.window", "between 60 and"),
     ('[nod]\nenabled = true\ndnsbl_zone = "nod.bl.example."\n', 7, "nod.dnsbl_listen",
      "both"),
     ('[nod]\nenabled = true\nzone = "x.feeds.mamori."\n', 7, "nod.zone", "mamori's"),
     ('[nod]\nenabled = true\n[[rpz]]\nname = "nod.mamori."\nfile = "z.rpz"\n', 8, "rpz.name",
      "[nod] zone")],
)  # fmt: skip
def test_config_errors_name_file_line_and_key(
    tmp_path: Path, extra: str, line: int, key: str, message: str
) -> None:
    path = tmp_path / "mamori.toml"
    with pytest.raises(ConfigError) as e:
        loads(CONFIG.format(tmp=tmp_path) + extra, path)
    assert (e.value.path, e.value.line, e.value.key) == (str(path), line, key), str(e.value)
    assert message in str(e.value)


def test_nod_zone_comes_last_and_log_only_is_disabled_policy(tmp_path: Path) -> None:
    text = CONFIG.format(tmp=tmp_path) + (
        '[nod]\nenabled = true\nwindow = "12h"\n'
        'dnsbl_zone = "nod.bl.example."\ndnsbl_listen = ["127.0.0.1:5353"]\n'
    )
    cfg = loads(text, tmp_path / "mamori.toml")
    last = cfg.rpz[-1]
    assert (last.name, last.policy, last.managed) == ("nod.mamori.", "disabled", True)
    assert cfg.nod.window == 12 * H and cfg.nod.warmup_seconds == 12 * H
    bl = cfg.dnsbl[-1]
    assert (bl.zone, bl.kind, bl.files) == ("nod.bl.example.", "domain",
                                            (tmp_path / "nod" / "nod.entries",))  # fmt: skip


def test_nod_list_says_until_when_a_young_store_warms_up(tmp_path: Path) -> None:
    config = tmp_path / "mamori.toml"
    config.write_text(CONFIG.format(tmp=tmp_path) + '[nod]\nwindow = "2h"\n')
    now = int(time.time())
    store = PdnsSQLite(tmp_path / "pdns.sqlite")
    store.write({("www.a.example.", 1, "192.0.2.1", "example."): [now - 600, now, 1]})
    store.close()
    r = CliRunner().invoke(cli, ["nod", "list", "--config", str(config)])
    assert r.exit_code == 0 and r.output.startswith("warming up until 20"), r.output
    r = CliRunner().invoke(cli, ["nod", "list", "--config", str(config), "--since", "bogus"])
    assert r.exit_code != 0 and "--since: not a time" in r.output


def test_turned_off_by_a_reload_its_dnsbl_answers_nothing(tmp_path: Path) -> None:
    """A DNSBL listener stays until a restart; its entries must not keep ages that no
    longer move."""
    import asyncio

    from mamori.discovery.nod_publish import run_nod

    on = CONFIG.format(tmp=tmp_path) + (
        '[nod]\nenabled = true\ndnsbl_zone = "nod.bl.example."\ndnsbl_listen = ["127.0.0.1:1"]\n'
    )
    store = _store(tmp_path, {"old.example.": 72, "new.example.": 1})
    refresh(loads(on, tmp_path / "mamori.toml"), store, NOW)
    entries = tmp_path / "nod" / "nod.entries"
    assert "new.example" in entries.read_text()
    off = loads(CONFIG.format(tmp=tmp_path) + "[nod]\nenabled = false\n", tmp_path / "m.toml")

    async def one_round() -> None:
        async def nothing() -> None:
            return None

        task = asyncio.create_task(run_nod(lambda: off, lambda: store, nothing))
        for _ in range(200):  # bounded: up to 2 s
            await asyncio.sleep(0.01)
            if entries.read_text() == "":
                break
        task.cancel()

    asyncio.run(one_round())
    assert entries.read_text() == ""


@pytest.mark.parametrize(
    ("text", "seconds"), [("24h", 86_400), ("1h30m", 5_400), ("1d12h", 129_600)]
)
def test_window_takes_durations_with_several_units(tmp_path: Path, text: str, seconds: int) -> None:
    cfg = loads(CONFIG.format(tmp=tmp_path) + f'[nod]\nwindow = "{text}"\n', tmp_path / "m.toml")
    assert cfg.nod.window == seconds
