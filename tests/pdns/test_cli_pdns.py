"""`mamori pdns query|search|stats`: dnsdbq-style options on a real SQLite store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import idna
import pytest
from click.testing import CliRunner

from mamori.cli import cli
from mamori.pdns.formats import parse_time
from mamori.store.pdns_sqlite import PdnsSQLite

NOW = int(time.time())
DAY = 86400
IDN = idna.encode("みずほ銀行-login.com", uts46=True).decode() + "."


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    c = tmp_path / "m.toml"
    c.write_text(f'[upstream]\nservers = ["127.0.0.1:53"]\n[store]\npath = "{tmp_path}/m.db"\n')
    store = PdnsSQLite(tmp_path / "pdns.sqlite")
    store.write(
        {
            ("www.mizuho-fg.co.jp.", 1, "192.0.2.10", ""): [NOW - 400 * DAY, NOW - DAY, 900],
            ("mizuho-bank-login.com.", 1, "198.51.100.66", ""): [NOW - 2 * DAY, NOW - 3600, 4],
            ("secure.mizuho-bank-login.com.", 1, "198.51.100.66", ""): [NOW - DAY, NOW, 2],
            (IDN, 1, "198.51.100.67", ""): [NOW - 3 * DAY, NOW - 2 * DAY, 1],
            ("example.org.", 1, "198.51.100.66", ""): [NOW - 30 * DAY, NOW - 20 * DAY, 7],
        }
    )
    store.close()
    return c


def _run(*args: str, code: int = 0) -> str:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == code, r.output
    return r.stdout


def test_query_by_ip_with_time_fences_and_sorting(conf: Path) -> None:
    out = _run("pdns", "query", "--config", str(conf), "-i", "198.51.100.66", "-j")
    names = {json.loads(x)["rrname"] for x in out.splitlines()}
    assert names == {"mizuho-bank-login.com.", "secure.mizuho-bank-login.com.", "example.org."}
    # -A 1w: seen in the last week (overlap) -> not example.org (last seen 20 days ago)
    out = _run("pdns", "query", "--config", str(conf), "-i", "198.51.100.0/24", "-A", "1w", "-j")
    assert "example.org." not in out and IDN in out
    # -c: the whole life inside the window
    out = _run("pdns", "query", "--config", str(conf), "-i", "198.51.100.66", "-A", "36h",
               "-c", "-j")  # fmt: skip
    assert [json.loads(x)["rrname"] for x in out.splitlines()] == ["secure.mizuho-bank-login.com."]
    out = _run("pdns", "query", "--config", str(conf), "-i", "198.51.100.66", "-k", "count", "-S",
               "--csv")  # fmt: skip
    rows = out.splitlines()
    assert rows[0].startswith("time_first,") and rows[1].split(",")[4] == "example.org."


def test_query_text_and_no_result_exit_code(conf: Path) -> None:
    out = _run("pdns", "query", "--config", str(conf), "-r", "*.mizuho-bank-login.com")
    assert ";; count: 2" in out and "secure.mizuho-bank-login.com.  A  198.51.100.66" in out
    r = CliRunner().invoke(cli, ["pdns", "query", "--config", str(conf), "-r", "none.example"])
    assert r.exit_code == 1 and "no results" in r.output
    r = CliRunner().invoke(cli, ["pdns", "query", "--config", str(conf), "-i", "not-an-ip"])
    assert r.exit_code == 2 and "not an address" in r.output


def test_brand_search_groups_by_registrable_domain_and_shows_u_labels(conf: Path) -> None:
    out = _run("pdns", "search", "mizuho", "--config", str(conf))
    lines = out.splitlines()
    assert "mizuho-bank-login.com" in lines and "mizuho-fg.co.jp" in lines
    assert any(ln.strip().startswith("secure.mizuho-bank-login.com.") for ln in lines)
    out = _run("pdns", "search", "みずほ", "--config", str(conf))
    assert "みずほ銀行-login.com." in out and f"({IDN})" in out
    docs = [json.loads(x) for x in _run("pdns", "search", "mizuho", "-j", "--config",
                                        str(conf)).splitlines()]  # fmt: skip
    assert {d["registrable"] for d in docs} == {"mizuho-bank-login.com", "mizuho-fg.co.jp"}


def test_stats(conf: Path) -> None:
    assert "5 tuples, 5 names" in _run("pdns", "stats", "--config", str(conf))


def test_time_forms() -> None:
    now = 1_800_000_000
    assert parse_time("1700000000", now) == 1700000000
    assert parse_time("-3600", now) == now - 3600
    assert parse_time("1w2d3h", now) == now - (9 * 24 + 3) * 3600
    assert parse_time("2026-11-28", now) == 1795824000
    assert parse_time("2026-11-28T09:00:00+09:00", now) == 1795824000
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday", now)


def test_compact_drops_old_tuples_and_their_names(conf: Path) -> None:
    out = _run("pdns", "compact", "--days", "10", "--config", str(conf))
    assert out.strip() == "dropped 1 tuples and 1 names not seen for 10 days"  # example.org
    assert "4 tuples, 4 names" in _run("pdns", "stats", "--config", str(conf))
    assert "mizuho-bank-login.com" in _run("pdns", "search", "mizuho", "--config", str(conf))
    r = CliRunner().invoke(cli, ["pdns", "search", "example.org", "--config", str(conf)])
    assert r.exit_code == 1  # the keyword index forgot it too


FIRST, LAST = 1_700_000_000, 1_700_086_400  # a.example.com's tuple: first and last seen


@pytest.fixture
def one_tuple(tmp_path: Path) -> Path:
    c = tmp_path / "m.toml"
    c.write_text(f'[store]\npath = "{tmp_path}/m.db"\n')  # no [upstream]: not needed here
    store = PdnsSQLite(tmp_path / "pdns.sqlite")
    store.write({("a.example.com.", 1, "192.0.2.1", ""): [FIRST, LAST, 3]})
    store.close()
    return c


@pytest.mark.parametrize(
    ("fence", "found"),
    [
        # dnsdbq: -A "on or after", -B "on or before"; the tuple's life overlaps the window
        (["-A", str(LAST)], True),  # last seen exactly at -A (issue 13)
        (["-A", "2023-11-15T22:13:20Z"], True),  # the same instant, as ISO 8601
        (["-A", str(LAST + 1)], False),
        (["-B", str(FIRST)], True),  # first seen exactly at -B
        (["-B", str(FIRST - 1)], False),
        (["-A", str(LAST), "-B", str(FIRST)], True),
        # -c: the whole life inside [-A, -B], both ends included
        (["-c", "-A", str(FIRST)], True),
        (["-c", "-A", str(FIRST + 1)], False),
        (["-c", "-B", str(LAST)], True),
        (["-c", "-B", str(LAST - 1)], False),
        (["-c", "-A", str(FIRST), "-B", str(LAST)], True),
    ],
)
def test_time_fences_include_their_exact_boundary(
    one_tuple: Path, fence: list[str], found: bool
) -> None:
    args = ["pdns", "query", "--config", str(one_tuple), "-r", "a.example.com", "-j", *fence]
    out = _run(*args, code=0 if found else 1)
    assert [json.loads(x)["rrname"] for x in out.splitlines()] == (
        ["a.example.com."] if found else []
    )
