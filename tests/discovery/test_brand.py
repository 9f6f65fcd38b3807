"""The brand watch's parts: what each kind of look-alike is reported as, the one-edit
index against a naive Levenshtein model, registrable domains against the Public Suffix
List library, the config's errors, matches detected once, the query log as a source,
and the alert a new match raises."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest
from publicsuffixlist import PublicSuffixList

from mamori import config
from mamori.alerts.engine import AlertEngine
from mamori.discovery.brand import Brand, BrandIndex, levenshtein
from mamori.discovery.brand_store import BrandMatches, brand_db_path
from mamori.discovery.brand_watch import BrandWatcher, run_pass
from mamori.discovery.suffixes import Suffixes
from mamori.errors import ConfigError
from mamori.store.base import QueryRow
from mamori.store.sqlite import SQLiteStore
from tests.support.receivers import Webhook

BRANDS = [
    Brand("Mizuho", ("mizuho.co.jp", "mizuhobank.co.jp"), ("mizuho",)),
    Brand("PayPal", ("paypal.com",), ("paypal",)),
]


@pytest.fixture(scope="module")
def index() -> BrandIndex:
    return BrandIndex(BRANDS)


@pytest.mark.parametrize(
    ("name", "brand", "kind"),
    [
        ("mlzuho.co.jp.", "Mizuho", "homoglyph"),  # l for i (the examples)
        ("rnizuho.com", "Mizuho", "homoglyph"),  # rn for m
        ("mizuh0.co.jp", "Mizuho", "homoglyph"),
        ("mizu-ho.co.jp", "Mizuho", "hyphenation"),
        ("mizuho.co", "Mizuho", "tld-swap"),
        ("mizuho.com", "Mizuho", "tld-swap"),
        ("MIZUHOBANK.NET", "Mizuho", "tld-swap"),
        ("mizuhobnak.co.jp", "Mizuho", "transposition"),
        ("mizuhobak.co.jp", "Mizuho", "omission"),
        ("miizuho.co.jp", "Mizuho", "repetition"),
        ("mizuhobank-login.co.jp", "Mizuho", "dictionary"),
        ("mi.zuho.co.jp", "Mizuho", "subdomain"),
        ("www.mi.zuho.co.jp", "Mizuho", "subdomain"),
        ("xn--mizuh-vce.co.jp", "Mizuho", "idn-homograph"),  # Greek omicron
        ("xn--mizuhbank-42h.com", "Mizuho", "idn-homograph"),  # Cyrillic o, another suffix
        ("mizuhqbank.co.jp", "Mizuho", "edit-distance"),  # q for o: no fuzzer makes it
        ("secure-mizuho.example.net", "Mizuho", "keyword"),
        ("paypa1.com", "PayPal", "homoglyph"),
        ("paypal.com.evil.example", "PayPal", "keyword"),
        ("xn--pypal-4ve.com", "PayPal", "idn-homograph"),  # Cyrillic a
    ],
)
def test_each_kind_of_lookalike_is_reported_as_such(
    index: BrandIndex, name: str, brand: str, kind: str
) -> None:
    [m] = index.match([name])
    assert (m.brand, m.kind) == (brand, kind), m
    assert m.name == name.rstrip(".").lower()


@pytest.mark.parametrize(
    "name",
    ["www.mizuho.co.jp", "mizuhobank.co.jp.", "paypal.com", "example.com", "co.jp", "jp",
     "mizu.com", "yahoo.co.jp", "xn--wgv71a119e.jp"],
)  # fmt: skip
def test_the_brands_own_names_and_unrelated_names_are_not(index: BrandIndex, name: str) -> None:
    assert index.match([name]) == []


def test_one_edit_index_agrees_with_naive_levenshtein() -> None:
    """Every label one edit from a brand label (any letter, any place) is reported, under
    any suffix; labels further away are reported only by another kind."""
    idx = BrandIndex([Brand("B", ("kuroneko.jp",), ())])
    rng = random.Random(5)
    alphabet = string.ascii_lowercase + string.digits
    labels: set[str] = set()
    for _ in range(3000):
        s = list("kuroneko")
        for _edit in range(rng.choice((1, 1, 2, 3))):
            op, i = rng.randrange(3), rng.randrange(len(s) + 1)
            if op == 0 and i < len(s):
                s[i] = rng.choice(alphabet)
            elif op == 1:
                s.insert(i, rng.choice(alphabet))
            elif i < len(s):
                del s[i]
        labels.add("".join(s))
    labels.discard("kuroneko")
    got = {m.registrable.split(".")[0]: m.kind for m in idx.match(f"{x}.net" for x in labels)}
    for label in labels:
        if levenshtein(label, "kuroneko") <= 1:
            assert label in got, label
        elif label in got:
            assert got[label] != "edit-distance", label


def test_registrable_domains_agree_with_the_public_suffix_list() -> None:
    psl, sfx = PublicSuffixList(), Suffixes()
    names = ["www.example.co.uk", "a.b.c.ck", "www.ck", "x.y.compute.amazonaws.com",
             "foo.blogspot.com", "a.city.kawasaki.jp", "b.kawasaki.jp", "foo.bar.xn--p1ai",
             "deep.er.still.example.com", "x.s3.dualstack.us-east-1.amazonaws.com",
             "q.unknowntld", "com", "example.com"]  # fmt: skip
    for name in names:
        split = sfx.split(name)
        assert (None if split is None else ".".join(split)) == psl.privatesuffix(name), name


def _toml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "q.db"}"\n{body}')
    return path


@pytest.mark.parametrize(
    ("body", "line", "key", "says"),
    [
        ('[[brand]]\nname = "A"\ndomains = ["www.a.com"]\n', 5, "brand.domains", "below a.com"),
        ('[[brand]]\nname = "A"\ndomains = ["co.jp"]\n', 5, "brand.domains", "public suffix"),
        ('[[brand]]\nname = "A"\ndomains = ["a.com"]\nkeywords = ["ab"]\n', 6,
         "brand.keywords", "3-63 characters"),
        ('[[brand]]\nname = "A"\n', 3, "brand.domains", "list domains"),
        ('[[brand]]\nname = "A"\ndomains = ["a.com"]\ncolour = 1\n', 6, "brand.colour",
         "unknown key"),
        ('[[brand]]\nname = "A"\ndomains = ["a.com"]\n[[brand]]\nname = "A"\n'
         'domains = ["b.com"]\n', 7, "brand.name", "listed twice"),
        ('[[brand]]\nname = "Mizuho"\ndomains = ["a.com"]\n[[brand]]\nname = "MIZUHO"\n'
         'domains = ["b.com"]\n', 7, "brand.name",
         "brand MIZUHO is listed twice (as Mizuho: names ignore case)"),
    ],
)  # fmt: skip
def test_config_errors_name_file_line_and_key(
    tmp_path: Path, body: str, line: int, key: str, says: str
) -> None:
    path = _toml(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        config.load(path, resolver=False)
    assert (e.value.path, e.value.line, e.value.key) == (str(path), line, key)
    assert says in e.value.message


def test_idn_domains_and_default_keywords(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[[brand]]\nname = "Bank"\ndomains = ["みずほ.jp", "abc.com"]\n')
    cfg = config.load(path, resolver=False)
    [b] = cfg.brands
    assert b.domains == ("xn--98j6ck.jp", "abc.com") and b.words() == ("みずほ",)


def test_a_match_is_new_once_and_the_query_log_names_its_clients(tmp_path: Path) -> None:
    qlog = tmp_path / "q.db"
    store = SQLiteStore(qlog)
    row = QueryRow(1_790_000_100.0, "192.0.2.7", "rnizuho.com.", 1, 0, "A 203.0.113.5", 900,
                   "up", False, "udp", "", "", "", "", "resolved", "", "", "")  # fmt: skip
    store.write_queries([row, row._replace(client="192.0.2.8", ts=1_790_000_200.0)])
    store.close()
    matches = BrandMatches(brand_db_path(qlog))
    idx = BrandIndex(BRANDS)
    first = run_pass(idx, matches, None, qlog, now=1_790_000_300.0)
    [new] = first.new
    doc = new.as_json()
    assert (doc["name"], doc["sources"], doc["clients"]) == (
        "rnizuho.com", ["querylog"], ["192.0.2.7", "192.0.2.8"])  # fmt: skip
    assert (doc["time_first"], doc["time_last"]) == (1_790_000_100, 1_790_000_200)
    again = run_pass(idx, matches, None, qlog, full=True, now=1_790_000_400.0)
    assert again.matched == 1 and again.new == []
    [kept], total = matches.search("Mizuho", None, 10, 0)
    assert total == 1 and kept.detected == 1_790_000_300.0
    matches.close()


def test_lookalikes_passive_dns_saw_only_as_nxdomain_are_matched(tmp_path: Path) -> None:
    from mamori.store.pdns_sqlite import PdnsSQLite

    t = 1_790_000_000
    store = PdnsSQLite(tmp_path / "pdns.sqlite")
    store.write(
        {("mizuh0.co.jp.", 1, "203.0.113.9", ""): [t, t + 50, 3]},
        nx={("rnizuho.com.", 1): [t + 10, t + 90, 4], ("rnizuho.com.", 28): [t + 5, t + 20, 1],
            ("mizuh0.co.jp.", 28): [t, t, 1], ("example.org.", 1): [t, t, 1]},
    )  # fmt: skip
    matches = BrandMatches(tmp_path / "brand.sqlite")
    try:
        result = run_pass(BrandIndex(BRANDS), matches, store, None, now=t + 100.0)
        got = {m.match.name: m.as_json() for m in result.new}
        assert sorted(got) == ["mizuh0.co.jp", "rnizuho.com"]
        nx = got["rnizuho.com"]
        assert (nx["sources"], nx["addresses"], nx["time_first"], nx["time_last"]) == (
            ["pdns-nxdomain"], [], t + 5, t + 90)  # fmt: skip
        assert got["mizuh0.co.jp"]["sources"] == ["pdns"]  # resolved: its tuples tell
        again = run_pass(BrandIndex(BRANDS), matches, store, None, now=t + 200.0)
        assert again.new == []
    finally:
        matches.close()
        store.close()


def test_a_new_match_raises_a_brand_alert_once(tmp_path: Path) -> None:
    hook = Webhook()
    try:
        body = (
            '[[brand]]\nname = "Mizuho"\ndomains = ["mizuho.co.jp"]\n'
            '[[alert]]\nname = "lookalike"\nwhen = "brand"\nseverity = "critical"\n'
            f'[[alert_sink]]\nname = "hook"\ntype = "webhook"\nurl = "{hook.url}"\n'
        )
        path = _toml(tmp_path, body)
        cfg = config.load(path, resolver=False)
        qlog = tmp_path / "q.db"
        store = SQLiteStore(qlog)
        row = QueryRow(1_790_000_100.0, "192.0.2.7", "mizuh0.co.jp.", 1, 0, "", 0, "", False,
                       "udp", "", "", "", "", "resolved", "", "", "")  # fmt: skip
        store.write_queries([row])
        store.close()
        engine = AlertEngine(cfg)
        engine.db = None  # no history file needed here
        watch = BrandWatcher(lambda: cfg, None, BrandMatches(brand_db_path(qlog)), qlog)
        watch.listeners.append(engine._brand)
        watch.run_once()
        watch.run_once()  # nothing new: no second alert
        [alert] = hook.received
        assert (alert["alert"], alert["severity"], alert["subject"]) == (
            "lookalike", "critical", "mizuh0.co.jp")  # fmt: skip
        assert alert["details"]["kind"] == "homoglyph" and "mizuho.co.jp" in alert["message"]
    finally:
        hook.close()


def test_names_a_feed_lists_are_matched_with_the_feed_as_source(tmp_path: Path) -> None:
    from mamori.discovery.brand_watch import feed_names
    from mamori.feeds.publish.rpz import write_zone

    (tmp_path / "list.txt").write_text("rnizuho.com\n")
    body = f'[[feed]]\nname = "phish"\npath = "{tmp_path / "list.txt"}"\nformat = "domains"\n'
    cfg = config.load(_toml(tmp_path, body), resolver=False)
    lines = ["rnizuho.com CNAME .", "*.paypa1.com CNAME .", "24.0.2.0.192.rpz-ip CNAME .",
             "example.org CNAME rpz-passthru."]  # fmt: skip
    write_zone(tmp_path / "feeds" / "phish.rpz", "phish.feeds.mamori.", lines)
    assert sorted(feed_names(cfg)) == [("phish", "paypa1.com"), ("phish", "rnizuho.com")]
    matches = BrandMatches(tmp_path / "brand.sqlite")
    result = run_pass(BrandIndex(BRANDS), matches, None, None, feeds=feed_names(cfg))
    got = sorted((m.match.name, m.seen.sources) for m in result.new)
    assert got == [("paypa1.com", ("feed:phish",)), ("rnizuho.com", ("feed:phish",))]
    matches.close()


def test_forget_client_erases_it_from_the_matches(tmp_path: Path) -> None:
    from mamori.discovery.brand_store import Observed
    from mamori.store.forget import forget_client

    matches = BrandMatches(brand_db_path(tmp_path / "q.db"))
    [m] = BrandIndex(BRANDS).match(["rnizuho.com"])
    seen = Observed(1, 2, ("querylog",), (), ("192.0.2.7", "198.51.100.1"))
    assert len(matches.merge([(m, seen)], 10.0)) == 1
    assert forget_client(tmp_path / "q.db", "192.0.2.0/24") == {"brand.sqlite": 1}
    [kept], _ = matches.search()
    assert kept.seen.clients == ("198.51.100.1",) and kept.match == m
    matches.close()


def test_report_filters_and_formats(tmp_path: Path) -> None:
    import csv
    import io
    import json

    import stix2
    from click.testing import CliRunner

    from mamori.cli import cli

    body = (
        '[[brand]]\nname = "Mizuho"\ndomains = ["mizuho.co.jp"]\n'
        '[[brand]]\nname = "PayPal"\ndomains = ["paypal.com"]\n'
    )
    conf = str(_toml(tmp_path, body))
    store = SQLiteStore(tmp_path / "q.db")
    rows = [QueryRow(1_790_000_000.0 + i, "192.0.2.7", name, 1, 0, "", 0, "", False, "udp", "",
                     "", "", "", "resolved", "", "", "")
            for i, name in enumerate(["rnizuho.com.", "paypa1.com.", "example.org."])]  # fmt: skip
    store.write_queries(rows)
    store.close()

    def report(*args: str) -> tuple[int, str]:
        r = CliRunner().invoke(cli, ["brand", "report", "--config", conf, *args])
        return r.exit_code, r.output

    code, out = report("--json")
    assert code == 0 and {json.loads(x)["name"] for x in out.splitlines() if x[0] == "{"} == {
        "rnizuho.com", "paypa1.com"}  # fmt: skip
    code, out = report("--no-scan", "--csv", "--brand", "PayPal")
    rows_out = list(csv.DictReader(io.StringIO(out[out.index("brand,") :])))
    assert code == 0 and [r["name"] for r in rows_out] == ["paypa1.com"]
    assert rows_out[0]["clients"] == "192.0.2.7" and rows_out[0]["kind"] == "homoglyph"
    code, out = report("--no-scan", "--stix")
    bundle = stix2.parse(out[out.index("{") :], allow_custom=False)
    assert sorted(o.pattern for o in bundle.objects) == [
        "[domain-name:value = 'paypa1.com']", "[domain-name:value = 'rnizuho.com']"]  # fmt: skip
    assert report("--no-scan", "--since", "2100-01-01")[0] == 1  # nothing that recent
    assert report("--no-scan", "--since", "yesterday")[0] == 2
    assert report("--brand", "Nope")[0] == 2
