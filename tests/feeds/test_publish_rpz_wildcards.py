"""A zone compiled from a list means what the list means, under RFC 4592 matching.

A list's ``||example.com^`` (or ``*.example.com``) covers every name below
example.com; in a policy zone, BIND, Unbound and mamori stop ``*.example.com``
at any name of the zone below it. These tests compile lists to zones with
the feed compiler, load them with mamori's policy engine (the same matching
as BIND, tests/integration/test_rpz_bind_interop.py) and compare every
verdict with the list's own meaning.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import dns.name
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori import config
from mamori.config import feed_zone
from mamori.feeds import parsers, sources
from mamori.feeds.normalize import Entry
from mamori.feeds.publish import rpz as rpz_out
from mamori.policy import engine, zone

ORIGIN = "list.feeds.mamori."


def _policy(tmp: Path, entries: list[Entry], allowed: list[Entry]) -> engine.Policy:
    path = tmp / "list.rpz"
    rpz_out.write_zone(path, ORIGIN, rpz_out.rules(entries, allowed, "."))
    z = zone.load(path, ORIGIN)
    return engine.Policy.from_loaded([z], [engine.ZoneSettings(z.name)], 1)


def _verdict(p: engine.Policy, name: str) -> str | None:
    m, _ = p.check_query(None, dns.name.from_text(name).to_wire())
    return m.action.value if m else None


def _subtree(name: str) -> list[Entry]:
    """``||name^``: the name and every name below it."""
    return [Entry("domain", name), Entry("wildcard", name)]


def test_an_exact_entry_below_a_listed_subtree_opens_no_hole(tmp_path: Path) -> None:
    """The issue's case: ``||example.com^`` plus an exact ``a.b.example.com``."""
    entries = [*_subtree("example.com"), Entry("domain", "a.b.example.com")]
    p = _policy(tmp_path, entries, [])
    for name in ("example.com", "b.example.com", "c.b.example.com", "a.b.example.com"):
        assert _verdict(p, name) == "NXDOMAIN", name
    assert _verdict(p, "x.a.b.example.com") == "NXDOMAIN"
    assert _verdict(p, "example.org") is None
    # The covered entry is left out of the zone (it would hide *.example.com).
    lines = rpz_out.rules(entries, [], ".")
    assert lines == ["*.example.com CNAME .", "example.com CNAME ."]


def test_an_adblock_list_keeps_its_meaning_in_the_zone(tmp_path: Path) -> None:
    """The same from the adblock lines a user writes, through the feed parser."""
    parsed = parsers.parse("adblock", ["||example.com^", "|a.b.example.com^"])
    p = _policy(tmp_path, parsed.entries, parsed.exceptions)
    for name in ("b.example.com", "c.b.example.com", "a.b.example.com", "x.a.b.example.com"):
        assert _verdict(p, name) == "NXDOMAIN", name


def test_an_allow_rule_below_a_listed_subtree_allows_that_name_only(tmp_path: Path) -> None:
    p = _policy(tmp_path, _subtree("example.com"), [Entry("domain", "a.b.example.com")])
    assert _verdict(p, "a.b.example.com") == "PASSTHRU"
    for name in ("b.example.com", "c.b.example.com", "x.a.b.example.com", "example.com"):
        assert _verdict(p, name) == "NXDOMAIN", name
    lines = rpz_out.rules(_subtree("example.com"), [Entry("domain", "a.b.example.com")], ".")
    assert lines == [
        "*.a.b.example.com CNAME .",
        "*.b.example.com CNAME .",
        "*.example.com CNAME .",
        "a.b.example.com CNAME rpz-passthru.",
        "b.example.com CNAME .",
        "example.com CNAME .",
    ]


def test_an_allowed_subtree_below_a_listed_one(tmp_path: Path) -> None:
    p = _policy(tmp_path, _subtree("example.com"), _subtree("ok.example.com"))
    assert _verdict(p, "ok.example.com") == "PASSTHRU"
    assert _verdict(p, "a.ok.example.com") == "PASSTHRU"
    assert _verdict(p, "bad.example.com") == "NXDOMAIN"


def test_a_zone_without_wildcards_is_written_as_before() -> None:
    entries = [Entry("domain", "a.b.example.com"), Entry("domain", "example.com")]
    entries.append(Entry("ip", "192.0.2.1"))
    assert rpz_out.rules(entries, [Entry("domain", "c.example.com")], ".") == [
        "32.1.2.0.192.rpz-ip CNAME .",
        "a.b.example.com CNAME .",
        "c.example.com CNAME rpz-passthru.",
        "example.com CNAME .",
    ]


LABELS = ["a", "b", "c"]
names = st.lists(st.sampled_from(LABELS), min_size=1, max_size=3).map(
    lambda labels: ".".join(labels) + ".example"
)
# (kind, name) -> listed (True) or allowed (False); one rule per owner
lists = st.dictionaries(st.tuples(st.sampled_from(["domain", "wildcard"]), names), st.booleans())


def _list_meaning(rules: dict[tuple[str, str], bool], name: str) -> str | None:
    """The list's own meaning, as AdGuard's DNS filtering rules say (feeds.precedence):
    of the rules for the name itself and for the wildcards above it, an allow rule
    (exception) beats a block, however specific either is; none: no rule."""
    parts = name.split(".")
    found = [rules[("domain", name)]] if ("domain", name) in rules else []
    found += [
        rules[("wildcard", w)]
        for i in range(1, len(parts))
        if ("wildcard", w := ".".join(parts[i:])) in rules
    ]
    if not found:
        return None
    return "NXDOMAIN" if all(found) else "PASSTHRU"


@settings(max_examples=150, deadline=None)
@given(lists)
def test_compiled_zone_means_what_the_list_means(rules: dict[tuple[str, str], bool]) -> None:
    entries = [Entry(kind, value) for (kind, value), listed in rules.items() if listed]
    allowed = [Entry(kind, value) for (kind, value), listed in rules.items() if not listed]
    with tempfile.TemporaryDirectory() as d:
        p = _policy(Path(d), entries, allowed)
    queries = {"example", "x.example"}
    for _kind, value in rules:
        queries |= {value, f"x.{value}", f"y.x.{value}", value.split(".", 1)[1]}
        queries |= {f"{lb}.{value}" for lb in LABELS}
    for q in sorted(queries):
        assert _verdict(p, q) == _list_meaning(rules, q), q


def test_feed_zones_written_by_an_older_compiler_are_rewritten_at_start(tmp_path: Path) -> None:
    """``compile_feeds`` (run by ``mamori serve`` at start) rewrites a feed's zone from its
    stored entries, so a zone from before RFC 4592 matching has no hole until the
    feed's next update."""
    (tmp_path / "ads.txt").write_text("||example.com^\n|a.b.example.com^\n")
    (tmp_path / "m.toml").write_text(
        f'[upstream]\nservers = ["127.0.0.1:53"]\n[store]\npath = "{tmp_path / "m.sqlite"}"\n'
        '[[feed]]\nname = "ads"\npath = "ads.txt"\nformat = "adblock"\ncategory = "adware"\n'
    )
    cfg = config.load(tmp_path / "m.toml")
    [feed] = cfg.feeds
    assert sources.update(feed, cfg.store).serial == 1
    zone_file = feed_zone(feed, cfg.store).file
    assert zone_file is not None
    # As the previous compiler wrote it: the exact entry hides *.example.com below it.
    old = ["*.example.com CNAME .", "a.b.example.com CNAME .", "example.com CNAME ."]
    assert rpz_out.write_zone(zone_file, "ads.feeds.mamori.", old) == (2, True)
    assert sources.compile_feeds(cfg) == [("ads", 3, True, 3)]
    z = zone.load(zone_file, "ads.feeds.mamori.")
    p = engine.Policy.from_loaded([z], [engine.ZoneSettings(z.name)], 1)
    assert _verdict(p, "c.b.example.com") == "NXDOMAIN"
    assert sources.compile_feeds(cfg) == [("ads", 3, False, 3)]  # nothing changed since
