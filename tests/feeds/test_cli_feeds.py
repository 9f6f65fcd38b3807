"""`mamori feeds update|list|show|lookup|diff|export` on real files and SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import stix2
from click.testing import CliRunner

from mamori.cli import cli
from mamori.feeds.parsers import parse

COIN = Path(__file__).resolve().parents[3] / "shared/data/feeds/CoinBlockerLists"


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    (tmp_path / "phish.txt").write_text(
        "login-bank.example\n*.phish-kit.example\nbücher-login.example\n198.51.100.0/24\n"
        "# a comment\nnot a name!\n"
    )
    (tmp_path / "cc.csv").write_text(
        "host,threat,urlhaus_link\nc2.example,botnet_cc,https://urlhaus.abuse.ch/url/9/\n"
    )
    text = f"""
[upstream]
servers = ["127.0.0.1:53"]
[store]
path = "{tmp_path / "store" / "m.sqlite"}"
[[feed]]
name = "phish"
path = "phish.txt"
format = "domains"
category = "phishing"
max_bad = 0.5
[[feed]]
name = "cc"
path = "cc.csv"
format = "csv"
category = "botnet-cc"
[[feed]]
name = "coin"
path = "{COIN / "list.txt"}"
format = "domains"
category = "cryptominer"
[[dataset]]
name = "all"
feeds = ["phish", "cc", "coin"]
"""
    (tmp_path / "m.toml").write_text(text)
    return tmp_path / "m.toml"


def _run(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.stdout


def test_update_show_lookup(conf: Path) -> None:
    out = _run("feeds", "update", "--config", str(conf))
    assert "phish: 4 entries, +4 -0, 0 allow rules, 1 rejected" in out
    assert "dataset all:" in out and "serial 1, changed" in out
    out = _run("feeds", "list", "--config", str(conf))
    assert "phish [phishing, domains, enforced]" in out and "dataset all [not enforced]" in out
    out = _run("feeds", "show", "phish", "--config", str(conf))
    assert "entries: 4" in out and "line 6: more than one token" in out and " ok " in out
    out = _run("feeds", "lookup", "https://C2.example/gate.php", "--config", str(conf))
    assert "c2.example [list] feed cc: listed" in out
    assert "reason: botnet_cc; reference: https://urlhaus.abuse.ch/url/9/" in out
    out = _run("feeds", "lookup", "Bücher-Login.example", "--config", str(conf))
    assert "xn--bcher-login-thb.example" in out
    r = CliRunner().invoke(cli, ["feeds", "lookup", "clean.example", "--config", str(conf)])
    assert r.exit_code == 1 and "not listed by any feed" in r.output


def test_diff_shows_what_an_update_would_change_and_writes_nothing(conf: Path) -> None:
    _run("feeds", "update", "--config", str(conf), "phish")
    (conf.parent / "phish.txt").write_text("login-bank.example\nnew-phish.example\n")
    out = _run("feeds", "diff", "phish", "--config", str(conf))
    assert out.splitlines()[0] == "phish (file): +1 -3, 1 unchanged"
    assert "+ new-phish.example" in out and "- *.phish-kit.example" in out
    out = _run("feeds", "diff", "phish", "--config", str(conf))
    assert "+1 -3" in out  # nothing was recorded


@pytest.mark.parametrize("fmt", ["hosts", "domains", "adblock", "rpz", "csv"])
def test_exports_parse_back_to_the_same_entries(conf: Path, tmp_path: Path, fmt: str) -> None:
    _run("feeds", "update", "--config", str(conf))
    out = tmp_path / f"all.{fmt}"
    _run("feeds", "export", "all", "--format", fmt, "-o", str(out), "--config", str(conf))
    lines = out.read_text().splitlines()
    back = parse({"rpz": "rpz"}.get(fmt, fmt), lines)
    got = {(e.kind, e.value) for e in back.entries}
    assert not back.rejected
    coin = {e.value for e in parse("domains", (COIN / "list.txt").read_text().splitlines()).entries}
    names = {("domain", "login-bank.example"), ("domain", "c2.example")}
    names |= {("domain", "xn--bcher-login-thb.example")}
    if fmt == "hosts":  # no wildcards, no networks in a hosts file
        assert names <= got and ("wildcard", "phish-kit.example") not in got
    else:
        assert names | {("wildcard", "phish-kit.example")} <= got
    assert {v for k, v in got if k == "domain"} >= coin
    wild = {v for k, v in got if k == "wildcard"}  # exact names stay exact (adblock "|x^")
    assert wild == (set() if fmt == "hosts" else {"phish-kit.example"})
    if fmt in ("domains", "rpz", "csv"):
        assert ("cidr", "198.51.100.0/24") in got


def test_csv_export_has_provenance(conf: Path, tmp_path: Path) -> None:
    _run("feeds", "update", "--config", str(conf))
    text = _run("feeds", "export", "cc", "--format", "csv", "--config", str(conf))
    header, row = text.splitlines()[:2]
    assert header == "value,kind,category,feeds,first_listed,last_seen,reason,reference"
    assert row.startswith("c2.example,domain,botnet-cc,cc,20")
    assert row.endswith(",botnet_cc,https://urlhaus.abuse.ch/url/9/")


def test_stix_export_is_valid_stix_and_round_trips(conf: Path, tmp_path: Path) -> None:
    _run("feeds", "update", "--config", str(conf), "phish", "cc")
    out = tmp_path / "phish.json"
    _run("feeds", "export", "phish", "--format", "stix", "-o", str(out), "--config", str(conf))
    bundle = stix2.parse(out.read_text(), allow_custom=False)  # the OASIS library validates
    kinds = [o.type for o in bundle.objects]
    assert kinds.count("indicator") == 4 and kinds[0] == "identity"
    back = parse("stix", out.read_text().splitlines())
    assert {(e.kind, e.value) for e in back.entries} == {
        ("domain", "login-bank.example"),
        ("wildcard", "phish-kit.example"),
        ("domain", "xn--bcher-login-thb.example"),
        ("cidr", "198.51.100.0/24"),
    }
    ids = {o["id"] for o in json.loads(out.read_text())["objects"]}
    out2 = tmp_path / "again.json"
    _run("feeds", "export", "phish", "--format", "stix", "-o", str(out2), "--config", str(conf))
    assert ids == {o["id"] for o in json.loads(out2.read_text())["objects"]}  # stable ids
