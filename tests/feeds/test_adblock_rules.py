"""AdGuard / adblock rules in a feed mean what AdGuard's DNS filtering syntax says.

Each case builds a real feed file, runs ``feeds.sources.update`` (parse, record,
compile the feed's RPZ zone), loads and compiles the zone into a Policy, and
asks real queries through the resolver pipeline (the upstream is the
in-process fake of tests/support): a blocked name answers NXDOMAIN (the
feed's action), anything else the upstream's answer.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import pytest
from click.testing import CliRunner

from mamori import config
from mamori.cli import cli
from mamori.feeds.parsers import parse
from mamori.feeds.sources import update
from mamori.policy import zone as zone_mod
from mamori.policy.engine import Policy, ZoneSettings
from mamori.resolver.events import EventQueue
from mamori.resolver.pipeline import Pipeline
from tests.support.fake_upstream import FakeUpstream

TYPES = ("A", "AAAA", "MX", "TXT")


def feed_config(tmp_path: Path, rules: list[str], name: str = "ag") -> config.Config:
    """A config with one adblock feed holding *rules* (written to a file)."""
    (tmp_path / f"{name}.txt").write_text("! test list\n" + "\n".join(rules) + "\n")
    text = f"""
[server]
rate_limit = 0
allow = ["127.0.0.0/8", "10.0.0.0/8", "192.168.0.0/16"]
[upstream]
servers = ["127.0.0.1:9"]
[store]
path = "{tmp_path / "store" / "m.sqlite"}"
[[feed]]
name = "{name}"
path = "{name}.txt"
format = "adblock"
"""
    (tmp_path / "m.toml").write_text(text)
    return config.load(tmp_path / "m.toml")


def feed_policy(cfg: config.Config) -> Policy:
    """Update every feed of *cfg*, then load and compile their zones as one policy."""
    zones, settings = [], []
    for feed in cfg.feeds:
        update(feed, cfg.store)
        z = config.feed_zone(feed, cfg.store)
        assert z.file is not None
        zones.append(zone_mod.load(z.file, z.name))
        settings.append(ZoneSettings(z.name))
    return Policy.from_loaded(zones, settings, 1)


def upstream_for(names: set[str]) -> FakeUpstream:
    """An upstream answering A, AAAA, MX and TXT for each of *names*."""
    lines = ["$TTL 300", "@ SOA ns.test. host.test. 1 3600 600 86400 60", "@ NS ns.test."]
    for n in sorted(names):
        lines += [
            f"{n}. A 192.0.2.1",
            f"{n}. AAAA 2001:db8::1",
            f"{n}. MX 10 mail.{n}.",
            f'{n}. TXT "up"',
        ]
    return FakeUpstream("\n".join(lines) + "\n", origin=".")


def outcomes(cfg: config.Config, queries: list[tuple[str, str, str]]) -> list[str]:
    """``blocked`` or ``resolved`` for each (name, type, client address) asked in turn."""

    async def go() -> list[str]:
        p = Pipeline(cfg, EventQueue(1000), upstream_for({q[0] for q in queries}))
        p.set_policy(feed_policy(cfg))
        got: dict[int, bytes] = {}

        def reply(resp: bytes, _addr: object) -> None:
            got[(resp[0] << 8) | resp[1]] = resp

        out = []
        for qid, (name, rdtype, client) in enumerate(queries, 1):
            q = dns.message.make_query(name, rdtype)
            q.id = qid
            resp = p.handle(q.to_wire(), (client, 40000 + qid), reply, False)
            for _ in range(400):
                if resp is not None or qid in got:
                    break
                await asyncio.sleep(0.005)
            wire = resp if resp is not None else got[qid]
            r = dns.message.from_wire(wire)
            out.append("blocked" if r.rcode() == dns.rcode.NXDOMAIN else "resolved")
        p.close()
        return out

    return asyncio.run(go())


def zone_owners(cfg: config.Config) -> list[str]:
    """The owner names of the feed's compiled zone file, one per record."""
    z = config.feed_zone(cfg.feeds[0], cfg.store)
    assert z.file is not None
    return [
        line.split()[0]
        for line in z.file.read_text().splitlines()
        if line and not line.startswith((";", "$", "@"))
    ]


# ------------------------------------------------ the reduced cases of issue 13


def test_important_block_beats_a_plain_exception(tmp_path: Path) -> None:
    cfg = feed_config(tmp_path, ["||a.example.org^$important", "@@||a.example.org^"])
    asked = [("a.example.org", "A", "127.0.0.1"), ("x.a.example.org", "AAAA", "127.0.0.1")]
    assert outcomes(cfg, asked) == ["blocked", "blocked"]
    owners = zone_owners(cfg)
    assert len(owners) == len(set(owners)), f"two records at one owner: {owners}"


def test_dnstype_blocks_only_the_types_it_names(tmp_path: Path) -> None:
    cfg = feed_config(tmp_path, ["||b.example.org^$dnstype=AAAA"])
    asked = [(n, t, "127.0.0.1") for n in ("b.example.org", "s.b.example.org") for t in TYPES]
    assert outcomes(cfg, asked) == ["resolved", "blocked", "resolved", "resolved"] * 2


def test_html_filtering_rule_is_not_a_dns_rule(tmp_path: Path) -> None:
    cfg = feed_config(tmp_path, ['c.example.org$$script[data-src="x"]', "||d.example.org^"])
    asked = [("c.example.org", "A", "127.0.0.1"), ("d.example.org", "A", "127.0.0.1")]
    assert outcomes(cfg, asked) == ["resolved", "blocked"]
    result = update(cfg.feeds[0], cfg.store)
    assert result.skipped == 1


# -------------------------------- the conformance table of docs/reference/feeds.md

DOC = Path(__file__).resolve().parents[2] / "docs/reference/feeds.md"


def _table_rows() -> list[tuple[str, list[str], list[str], list[tuple[str, str, str, str]]]]:
    """(number, rules, skipped reasons expected, queries) of each row of the table."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### Conformance with AdGuard's documentation", 1)[1]
    rows = []
    for line in section.splitlines():
        if not re.match(r"^\| \d+ \|", line):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        number, rules_cell, _doc, mamori, queries_cell = cells
        rules = re.findall(r"`([^`]+)`", rules_cell)
        skipped = [p.strip()[len("skipped: ") :] for p in mamori.split(";") if "skipped: " in p]
        queries = []
        for q, expected in re.findall(r"`([^`]+)`\s+(blocked|resolved)", queries_cell):
            qname, qtype, *client = q.split()
            queries.append((qname, qtype, client[0] if client else "127.0.0.1", expected))
        rows.append((number, rules, skipped, queries))
    return rows


ROWS = _table_rows()


def test_the_table_has_every_row() -> None:
    assert [r[0] for r in ROWS] == [str(i) for i in range(1, len(ROWS) + 1)]
    assert len(ROWS) >= 40 and all(r[1] and r[3] for r in ROWS)


@pytest.mark.parametrize(("number", "rules", "skipped", "queries"), ROWS, ids=[r[0] for r in ROWS])
def test_conformance_row(
    tmp_path: Path,
    number: str,
    rules: list[str],
    skipped: list[str],
    queries: list[tuple[str, str, str, str]],
) -> None:
    # A feed with no usable entry is refused whole: one unrelated rule keeps it in use.
    cfg = feed_config(tmp_path, [*rules, "||filler.example^"])
    got = outcomes(cfg, [q[:3] for q in queries])
    assert got == [q[3] for q in queries], f"row {number}: {rules}"
    result = update(cfg.feeds[0], cfg.store)
    assert not result.rejected, result.rejected
    reasons = [why for _no, _text, why in parse("adblock", rules).skipped]
    assert len(reasons) == len(skipped), reasons
    for want in skipped:
        assert any(why.startswith(want) for why in reasons), (want, reasons)
    owners = zone_owners(cfg)
    assert len(owners) == len(set(owners)), f"two records at one owner: {owners}"


# ------------------------------------------------------------ exports, feeds show

MIXED = [
    "||a.example.org^$important",
    "@@||a.example.org^",
    "||b.example.org^$dnstype=AAAA",
    "||c.example.org^",
    "@@||ok.c.example.org^",
    "|d.example.org^",
    "||*.e.example.org^",
    "@@||*^$client=10.1.0.0/16,important",
    "||192.0.2.9^",
    "example.org##.ad",
    "example.net#@#.ad",
]


def _cli(*args: str) -> tuple[str, str]:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.stdout, r.stderr


def test_adblock_export_is_the_rules_in_force_and_reads_back_the_same(tmp_path: Path) -> None:
    cfg = feed_config(tmp_path, MIXED)
    conf = str(tmp_path / "m.toml")
    _cli("feeds", "update", "--config", conf)
    text, err = _cli("feeds", "export", "ag", "--format", "adblock", "--config", conf)
    rules = [ln for ln in text.splitlines() if not ln.startswith("!")]
    assert sorted(rules) == sorted([ln for ln in MIXED if "#" not in ln]), (
        "the exceptions, modifiers and anchors as listed"
    )
    back, again = parse("adblock", text.splitlines()), parse("adblock", MIXED)
    assert set(back.entries) == set(again.entries)
    assert set(back.exceptions) == set(again.exceptions)
    assert "ag: 9 entries written" in err
    asked = [("a.example.org", "A", "127.0.0.1"), ("b.example.org", "AAAA", "127.0.0.1")]
    assert outcomes(cfg, asked) == ["blocked", "blocked"]


def test_rpz_export_is_the_enforced_zone_allow_and_per_type_rules_included(
    tmp_path: Path,
) -> None:
    cfg = feed_config(tmp_path, MIXED)
    conf = str(tmp_path / "m.toml")
    _cli("feeds", "update", "--config", conf)
    text, _err = _cli("feeds", "export", "ag", "--format", "rpz", "--config", conf)
    exported = [ln for ln in text.splitlines() if ln and not ln.startswith((";", "$", "@"))]
    assert exported == [
        ln
        for ln in config.feed_zone(cfg.feeds[0], cfg.store).file.read_text().splitlines()  # type: ignore[union-attr]
        if ln and not ln.startswith((";", "$", "@"))
    ]
    assert "ok.c.example.org CNAME rpz-passthru." in exported
    assert "16.0.0.1.10.rpz-client-ip CNAME rpz-passthru." in exported
    assert "b.example.org.mamori-qtype TXT AAAA=. *=-" in exported
    assert "; NAME.mamori-qtype" in text  # said in the file
    f = tmp_path / "export.rpz"
    f.write_text(text)
    z = zone_mod.load(f, "ag.")
    p = Policy.from_loaded([z], [ZoneSettings("ag.")], 1)
    for qname, qtype, want in [("b.example.org", 28, "NXDOMAIN"), ("b.example.org", 1, None)]:
        m, _ = p.check_query_typed(None, dns.name.from_text(qname).to_wire(), qtype)
        assert (m.action.value if m else None) == want


def test_domains_and_hosts_exports_list_what_blocks_every_type(tmp_path: Path) -> None:
    feed_config(tmp_path, MIXED)
    conf = str(tmp_path / "m.toml")
    _cli("feeds", "update", "--config", conf)
    text, err = _cli("feeds", "export", "ag", "--format", "domains", "--config", conf)
    assert set(text.split()) == {
        "c.example.org",  # not *.c.example.org: ok.c.example.org is an exception below it
        "a.example.org",
        "*.a.example.org",
        "d.example.org",
        "*.e.example.org",
        "192.0.2.9",
    }
    assert "left out (not expressible in domains)" in err
    hosts, _ = _cli("feeds", "export", "ag", "--format", "hosts", "--config", conf)
    assert set(hosts.splitlines()) == {
        "0.0.0.0 a.example.org",
        "0.0.0.0 c.example.org",
        "0.0.0.0 d.example.org",
    }


def test_domains_export_leaves_out_a_subtree_with_a_carve_out_below(tmp_path: Path) -> None:
    """``$denyallow`` or an exception below a blocked subtree: ``*.name`` in a domains
    list would block the names mamori answers (found by a fresh-eyes review)."""
    feed_config(tmp_path, ["||deny.example.org^$denyallow=keep.deny.example.org"])
    conf = str(tmp_path / "m.toml")
    _cli("feeds", "update", "--config", conf)
    text, err = _cli("feeds", "export", "ag", "--format", "domains", "--config", conf)
    assert text.split() == ["deny.example.org"]
    # left out: *.deny.example.org, and keep.deny.example.org's carve-out (as itself
    # and as its subtree)
    assert "ag: 1 entries written, 3 left out (not expressible in domains)" in err


def test_feeds_show_counts_skipped_lines_by_reason(tmp_path: Path) -> None:
    feed_config(tmp_path, [*MIXED, "||x.example.org^$third-party", "z.example$$div"])
    conf = str(tmp_path / "m.toml")
    out, _ = _cli("feeds", "update", "--config", conf)
    assert "4 skipped" in out
    out, _ = _cli("feeds", "show", "ag", "--config", conf)
    assert "skipped lines, not applied (last good update): 4" in out
    assert "1 element hiding rule (##) (first: line 11: example.org##.ad)" in out
    assert "1 element hiding exception (#@#)" in out
    assert "1 $third-party: not a DNS modifier" in out
    assert "1 HTML filtering rule ($$)" in out
