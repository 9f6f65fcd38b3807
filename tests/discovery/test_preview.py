"""Feed impact preview in process: a real SQLite query log, real compiled zones, the real
policy engine; the CLI's refusals of bad input; ``enforce = "preview"`` in the config;
the REST endpoint and the console page."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mamori import config as cfgmod
from mamori.cli import cli
from mamori.control.writer import EventWriter
from mamori.discovery import candidate as cand
from mamori.discovery import preview as preview_mod
from mamori.discovery.preview import Candidate, Options, QueryLog, Report, ZoneSpec, run_preview
from mamori.errors import ConfigError
from mamori.policy.compiled import CompiledZone, compile_zone
from mamori.policy.engine import ZoneSettings
from mamori.policy.zone import load
from mamori.resolver.query import Outcome
from mamori.store.pdns_sqlite import PdnsSQLite
from mamori.store.sqlite import SQLiteStore
from tests.support.console import Client, ConsoleServer, write_config

NOW = 1_790_000_000.0
DAY = 86400


def row(name: str, client: str, answer: str = "", group: str = "", ts: float = NOW - 60) -> tuple:  # type: ignore[type-arg]  # fmt: skip
    return (ts, client, name, 1, 0, answer, 0, "", False, "udp", "", "", "", "", "resolved",
            "", group, "")  # fmt: skip


def zone(tmp: Path, name: str, body: str, **settings: object) -> ZoneSpec:
    path = tmp / f"{name}zone"
    path.write_text(f"$TTL 300\n@ SOA localhost. root.localhost. 1 3600 600 86400 60\n"
                    f"@ NS localhost.\n{body}")  # fmt: skip
    return CompiledZone(compile_zone(load(path, name))), ZoneSettings(name, **settings)  # type: ignore[arg-type]


def preview(
    tmp: Path, rows: list[tuple], feed: str, fmt: str, before: list[ZoneSpec] = (),  # type: ignore[assignment,type-arg]
    after: list[ZoneSpec] = (), pdns: PdnsSQLite | None = None, days: float = 7,  # type: ignore[assignment]
) -> Report:  # fmt: skip
    store = SQLiteStore(tmp / "m.db")
    store.write_queries(rows)
    store.close()
    path = tmp / "feed.txt"
    path.write_text(feed)

    def build() -> Candidate:
        return cand.from_file(path, fmt)

    log = QueryLog(tmp / "m.db")
    try:
        opts = Options(days=days, now=NOW)
        return run_preview(build, lambda _c: (before, after), log, pdns, opts)
    finally:
        log.close()


def test_an_earlier_zone_decides_first_and_only_the_feeds_own_blocks_count(
    tmp_path: Path,
) -> None:
    local = zone(tmp_path, "local.", "old.example CNAME .\nok.bad.example CNAME rpz-passthru.\n")
    rows = [row("a.bad.example.", "192.0.2.1"), row("a.bad.example.", "192.0.2.2"),
            row("old.example.", "192.0.2.1"), row("ok.bad.example.", "192.0.2.3"),
            row("www.example.", "192.0.2.1"),
            row("a.bad.example.", "192.0.2.9", ts=NOW - 8 * DAY)]  # fmt: skip  # outside the window
    r = preview(tmp_path, rows, "*.bad.example\nold.example\n", "wildcards", [local])
    assert (r.blocked_queries, r.blocked_names, r.blocked_clients) == (2, 1, 2)
    assert r.already_blocked_by == {"local.": 1} and r.allowed_earlier == 1
    assert r.top_names == [("a.bad.example.", 2, 2)] and r.queries == 5 and r.clients_seen == 3


def test_response_ip_and_cname_targets_are_decided_from_the_logged_answer(
    tmp_path: Path,
) -> None:
    rows = [row("shop.example.", "192.0.2.1", "A 198.51.100.7"),
            row("cdn.example.", "192.0.2.1", "CNAME edge.example.;A 203.0.113.5"),
            row("fine.example.", "192.0.2.1", "A 203.0.113.9")]  # fmt: skip
    (tmp_path / "ip").mkdir()
    (tmp_path / "cname").mkdir()
    r = preview(tmp_path / "ip", rows, "198.51.100.0/24\n", "ips")
    assert [n for n, _q, _c in r.top_names] == ["shop.example."]
    r = preview(tmp_path / "cname", rows, "edge.example\n", "domains")
    assert [n for n, _q, _c in r.top_names] == ["cdn.example."]


def test_a_group_zone_decides_only_for_its_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first pass in a child process, as for a big log
    monkeypatch.setattr(preview_mod, "PROCESS_ROWS", 1)
    kids = zone(tmp_path, "kids.", "game.example CNAME .\n", groups=("kids",))
    rows = [row("game.example.", "192.0.2.1", group="kids"), row("game.example.", "192.0.2.2")]
    r = preview(tmp_path, rows, "game.example\n", "domains", [kids])
    assert r.blocked_queries == 1 and r.top_clients == [("192.0.2.2", 1)]
    assert r.already_blocked_by == {"kids.": 1}


def test_warnings_popular_long_history_and_allowed_by_a_later_zone(tmp_path: Path) -> None:
    later = zone(tmp_path, "allow.", "bank.example CNAME rpz-passthru.\n")
    pdns = PdnsSQLite(tmp_path / "pdns.sqlite")
    old = int(NOW - 400 * DAY)
    new = int(NOW - DAY)
    pdns.write({("old.example.", 1, "192.0.2.80", "example."): [old, int(NOW), 5],
                ("new.example.", 1, "192.0.2.81", "example."): [new, int(NOW), 1]})  # fmt: skip
    clients = [f"192.0.2.{i}" for i in range(1, 9)]
    rows = [row("bank.example.", c) for c in clients[:2]] + [
        row("cdn.example.", c) for c in clients
    ]
    rows += [row("old.example.", "192.0.2.1"), row("new.example.", "192.0.2.1")]
    feed = "bank.example\ncdn.example\nold.example\nnew.example\n"
    r = preview(tmp_path, rows, feed, "domains", after=[later], pdns=pdns)
    pdns.close()
    got = {w.name: w.reasons for w in r.warnings}
    assert got == {"cdn.example.": ("popular",), "old.example.": ("long-history",),
                   "bank.example.": ("allowlisted",)}  # fmt: skip
    assert r.blocked_names == 4


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(f'[store]\npath = "{tmp_path}/m.db"\n')
    SQLiteStore(tmp_path / "m.db").close()
    return path


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nosuchfeed", "no feed, dataset or policy zone named nosuchfeed, and no file"),
        ("{tmp}/missing.txt", "{tmp}/missing.txt: no such file"),
        ("{tmp}", "{tmp}: not a file"),
        ("{tmp}/garbage.txt", "no usable entry in 2 lines"),
        ("{tmp}/binary.bin", "no usable entry"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(conf: Path, target: str, message: str) -> None:
    tmp = conf.parent
    (tmp / "garbage.txt").write_text("<html>\nnot a list at all\n")
    (tmp / "binary.bin").write_bytes(bytes(range(256)) * 4)
    out = CliRunner().invoke(cli, ["feeds", "preview", "--config", str(conf),
                                   target.format(tmp=tmp), "--format", "domains"])  # fmt: skip
    assert out.exit_code == 2
    assert message.format(tmp=tmp) in out.output


def test_no_query_log_yet_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(f'[store]\npath = "{tmp_path}/none/m.db"\n')
    (tmp_path / "l.txt").write_text("bad.example\n")
    out = CliRunner().invoke(cli, ["feeds", "preview", "--config", str(path),
                                   str(tmp_path / "l.txt")])  # fmt: skip
    assert out.exit_code == 2 and "no query log" in out.output


def test_enforce_preview_is_a_log_only_zone_and_other_values_name_the_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.toml"
    table = f'[store]\npath = "{tmp_path}/m.db"\n[[feed]]\nname = "f"\npath = "/x"\n'
    path.write_text(table + 'format = "domains"\nenforce = "preview"\n')
    cfg = cfgmod.load(path, resolver=False)
    z = next(z for z in cfg.rpz if z.name == "f.feeds.mamori.")
    assert z.apply and z.policy == "disabled" and cfg.feeds[0].preview
    path.write_text(table + 'format = "domains"\nenforce = "maybe"\n')
    with pytest.raises(ConfigError) as e:
        cfgmod.load(path, resolver=False)
    assert e.value.line == 7 and e.value.key == "feed.enforce" and '"preview"' in str(e.value)


def test_api_and_console_page_show_the_cli_numbers(tmp_path: Path) -> None:
    feed = tmp_path / "cand.txt"
    feed.write_text("bad.example\n")
    cfg = write_config(
        tmp_path, f'[[feed]]\nname = "cand"\npath = "{feed}"\nformat = "domains"\nenforce = false\n'
    )
    store = SQLiteStore(cfg.store.path)
    now = time.time()
    store.write_queries([row("bad.example.", "192.0.2.1", ts=now - 5),
                         row("bad.example.", "192.0.2.2", ts=now - 5),
                         row("www.example.", "192.0.2.1", ts=now - 5)])  # fmt: skip
    store.close()
    cli_out = CliRunner().invoke(cli, ["feeds", "preview", "--config", str(cfg.path), "cand"])
    assert "would block: 2 queries, 1 names, 2 clients" in cli_out.output, cli_out.output
    with ConsoleServer(cfg) as srv:
        c = Client(srv.base)
        assert c.json("/api/v1/feeds/cand/preview")[0] == 401
        c.login()
        status, doc = c.json("/api/v1/feeds/cand/preview?days=1")
        assert status == 200 and doc["blocked"] == {"queries": 2, "names": 1, "clients": 2}
        assert doc["notes"][0].startswith("not updated yet: read from its source")
        assert c.json("/api/v1/feeds/nosuch/preview")[0] == 404
        status, doc = c.json("/api/v1/feeds/cand/preview?days=abc")
        assert status == 422 and doc["field"] == "days"
        status, page = c.get("/feeds")
        assert 'action="/feeds/cand/preview"' in page
        status, page = c.get("/feeds/cand/preview?days=1")
        assert (
            status == 200
            and 'id="blocked-queries">2<' in page
            and 'id="blocked-clients">2<' in page
        )


def test_writer_shows_a_log_only_match_on_the_answer_no_rule_changed(tmp_path: Path) -> None:
    """enforce = "preview": the log-only (disabled) match goes on its query's row; a row
    whose answer a rule changed keeps that rule; a log-only match is no row itself."""
    store = SQLiteStore(tmp_path / "q.db")
    w = EventWriter([], store, 0.01, retention_days=0)
    key = b"\x03bad\x07example\x00\x00\x01\x00\x01\x00"
    would = ("cand.feeds.mamori.", "bad.example.cand.feeds.mamori", "QNAME", "disabled", False)
    block = ("local.", "bad.example.local", "QNAME", "NXDOMAIN", False)

    def event(client: str, outcome: Outcome, hit: tuple[object, ...] | None) -> tuple[object, ...]:
        return (NOW, client, key, 0, "A 192.0.2.1", 0, "", outcome, "", False, hit, "")

    w.flush([event("192.0.2.1", Outcome.LOG_ONLY, would),
             event("192.0.2.1", Outcome.RESOLVED, None),
             event("192.0.2.2", Outcome.LOG_ONLY, would),
             event("192.0.2.2", Outcome.BLOCKED, block),
             event("192.0.2.3", Outcome.RESOLVED, None)])  # type: ignore[list-item]  # fmt: skip
    rows = store.db.execute(
        "SELECT client, policy_zone, policy_action, outcome FROM query_log ORDER BY id"
    ).fetchall()
    store.close()
    assert rows == [("192.0.2.1", "cand.feeds.mamori.", "disabled", "resolved"),
                    ("192.0.2.2", "local.", "NXDOMAIN", "blocked"),
                    ("192.0.2.3", "", "", "resolved")]  # fmt: skip
