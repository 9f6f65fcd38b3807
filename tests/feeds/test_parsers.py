"""Feed parsers on the real lists in ../shared/data/feeds (URLhaus filter, CoinBlockerLists)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mamori.dnsutil import textfile
from mamori.feeds import parsers
from mamori.feeds.normalize import Entry, RejectedError, entry, name, url_host
from mamori.feeds.parsers import FeedError, check_budget

FUZZ_REGRESSIONS = Path(__file__).resolve().parents[2] / "fuzz" / "python" / "regressions"

FEEDS = Path(__file__).resolve().parents[3] / "shared/data/feeds"
URLHAUS = FEEDS / "urlhaus-filter"
COIN = FEEDS / "CoinBlockerLists"


def _lines(path: Path) -> list[str]:
    if not path.exists():
        pytest.skip("shared data not present")
    return path.read_text(encoding="utf-8").splitlines()


def _domains(result: parsers.ParseResult) -> set[str]:
    return {e.value for e in result.entries if e.kind == "domain"}


@pytest.fixture(scope="module")
def urlhaus_domains() -> set[str]:
    """The plain list's names: every other URLhaus format must give the same names."""
    result = parsers.parse("domains", _lines(URLHAUS / "urlhaus-filter-domains.txt"))
    check_budget(result, "domains")
    return _domains(result)


@pytest.mark.parametrize(
    ("fmt", "file"),
    [
        ("hosts", "urlhaus-filter-hosts.txt"),
        ("unbound", "urlhaus-filter-unbound.conf"),
        ("bind", "urlhaus-filter-bind.conf"),
    ],
)
def test_urlhaus_formats_give_the_same_names(
    fmt: str, file: str, urlhaus_domains: set[str]
) -> None:
    result = parsers.parse(fmt, _lines(URLHAUS / file))
    check_budget(result, file)
    assert _domains(result) == urlhaus_domains
    assert len(urlhaus_domains) == 2689
    assert not result.rejected, result.rejected[:3]


def test_urlhaus_adguard_list_covers_the_names(urlhaus_domains: set[str]) -> None:
    result = parsers.parse("adblock", _lines(URLHAUS / "urlhaus-filter-ag.txt"))
    check_budget(result, "ag")
    got = _domains(result)
    # The AdGuard form lists every host of the snapshot's URLs: the names, plus 3
    # hosts whose URLs the plain list leaves out.
    assert urlhaus_domains <= got and len(got - urlhaus_domains) == 3
    assert not result.rejected, result.rejected[:3]


def test_subtree_formats_also_block_subdomains() -> None:
    result = parsers.parse("unbound", _lines(URLHAUS / "urlhaus-filter-unbound.conf"))
    assert Entry("wildcard", "0022a601.pphost.net") in result.entries
    hosts = parsers.parse("hosts", _lines(URLHAUS / "urlhaus-filter-hosts.txt"))
    assert not any(e.kind == "wildcard" for e in hosts.entries)  # hosts files are exact


def test_urlhaus_plain_list_has_names_and_addresses(urlhaus_domains: set[str]) -> None:
    result = parsers.parse("domains", _lines(URLHAUS / "urlhaus-filter-domains.txt"))
    kinds = {e.kind for e in result.entries}
    assert kinds == {"domain", "ip"}
    assert Entry("ip", "1.0.209.238") in result.entries or any(
        e.kind == "ip" for e in result.entries
    )


def test_ublock_list_skips_url_path_rules_but_keeps_names() -> None:
    result = parsers.parse("adblock", _lines(URLHAUS / "urlhaus-filter.txt"))
    assert len(result.skipped) > 100 and all("URL" in why for _n, _t, why in result.skipped)
    assert "0022a601.pphost.net" in _domains(result)
    assert not result.rejected, result.rejected[:3]


def test_urlhaus_csv_host_column() -> None:
    result = parsers.parse("csv", _lines(URLHAUS / "urlhaus-filter-splunk-online.csv"))
    check_budget(result, "csv")
    assert Entry("domain", "0022a601.pphost.net") in result.entries
    assert len(result.entries) > 1000


def test_coinblocker_hosts_domains_and_mining_ips() -> None:
    hosts = parsers.parse("hosts", _lines(COIN / "hosts"))
    listed = parsers.parse("domains", _lines(COIN / "list.txt"))
    assert _domains(hosts) == _domains(listed)
    assert "10k.suprnova.cc" in _domains(hosts)
    ips = parsers.parse("ips", _lines(COIN / "MiningServerIPList.txt"))
    check_budget(ips, "MiningServerIPList.txt")
    assert ips.entries and all(e.kind in ("ip", "cidr") for e in ips.entries)


def test_adblock_syntax() -> None:
    result = parsers.parse(
        "adblock",
        [
            "! comment",
            "||evil.example^",
            "||tracker.example^$third-party,important",  # a browser modifier: ignored whole
            "@@||good.evil.example^",
            "||shop.example^$domain=news.example",  # page-specific: not for DNS
            "example.org##.banner",  # cosmetic
            "||cdn.example/ads/*",  # URL path
            "plain.example",
        ],
    )
    assert set(result.entries) == {
        Entry("domain", "evil.example"),
        Entry("wildcard", "evil.example"),
        Entry("domain", "plain.example"),
    }
    assert result.exceptions == [
        Entry("domain", "good.evil.example"),
        Entry("wildcard", "good.evil.example"),
    ]
    assert [why for _n, _t, why in result.skipped] == [
        "$third-party: not a DNS modifier",
        "$domain: a rule for some web pages only (not for DNS)",
        "element hiding rule (##)",
        "URL rule with a path (not a DNS rule)",
    ]


def test_dnsmasq_lines() -> None:
    result = parsers.parse(
        "dnsmasq", ["address=/ads.example/0.0.0.0", "server=/a.example/b.example/", "bogus"]
    )
    assert _domains(result) == {"ads.example", "a.example", "b.example"}
    assert [r[0] for r in result.rejected] == [3]


def test_normalisation() -> None:
    assert name("Bücher.Example.") == "xn--bcher-kva.example"
    assert entry("HTTPS://User@Host.Example:8443/path?q=1") == Entry("domain", "host.example")
    assert url_host("http://[2001:db8::1]:80/x") == "2001:db8::1"
    assert entry("*.Evil.Example") == Entry("wildcard", "evil.example")
    assert entry("192.0.2.0/24") == Entry("cidr", "192.0.2.0/24")
    assert entry("192.0.2.7/32") == Entry("ip", "192.0.2.7")
    for bad in ("com", "a..b", "-x.example", "x" * 64 + ".example", "ex ample.com"):
        with pytest.raises(RejectedError):
            entry(bad)
    # A URL without a host (found by fuzzing: an IndexError, not a rejection)
    for hostless in ("http://", "https:///path", "http://user@/x", "http://.", "http://[]/"):
        with pytest.raises(RejectedError):
            entry(hostless)


def test_a_mostly_garbage_feed_is_refused_with_line_numbers() -> None:
    result = parsers.parse("domains", ["good.example", "not a name", "also bad!", "???"])
    with pytest.raises(FeedError, match=r"3 of 4 entries rejected .*line 2"):
        check_budget(result, "feed.txt")
    few_bad = parsers.parse("domains", [f"n{i}.example" for i in range(20)] + ["bad name"])
    check_budget(few_bad, "feed.txt")  # 1 bad of 21: reported, the rest used
    assert few_bad.rejected == [(21, "bad name", "more than one token on the line")]
    with pytest.raises(FeedError, match="no usable entry"):
        check_budget(parsers.parse("domains", ["# only comments"]), "empty.txt")


def test_rpz_feed_file(urlhaus_domains: set[str]) -> None:
    result = parsers.parse("rpz", _lines(URLHAUS / "urlhaus-filter-rpz.conf"))
    check_budget(result, "rpz")
    assert _domains(result) == urlhaus_domains
    mixed = parsers.parse(
        "rpz",
        [
            "$TTL 60",
            "@ SOA ns. h. 1 60 60 60 60",
            "@ NS localhost.",
            "*.evil.example CNAME .",
            "ok.evil.example CNAME rpz-passthru.",
            "24.0.2.0.192.rpz-ip CNAME .",
            "32.1.2.0.192.rpz-client-ip CNAME .",
        ],
    )
    assert set(mixed.entries) == {
        Entry("wildcard", "evil.example"),
        Entry("cidr", "192.0.2.0/24"),
        Entry("client", "192.0.2.1/32"),
    }
    assert mixed.exceptions == [Entry("domain", "ok.evil.example")]
    assert not mixed.skipped


def test_rpz_feed_cannot_include_local_files(tmp_path: Path) -> None:
    """A feed is text from elsewhere: `$INCLUDE` (a BIND feature for the admin's own
    zone files) must not read this machine's files into it (nor hang on /dev/zero)."""
    secret = tmp_path / "secret.txt"
    secret.write_text("leaked.example CNAME .\n")
    text = (
        "$TTL 300\n@ SOA ns. h. 1 3600 600 86400 60\n@ NS ns.\n"
        f"$INCLUDE {secret}\n$INCLUDE /dev/zero\n"
        '"quoted".example TXT "x"\nbad.example CNAME .\n'
    )
    r = parsers.parse("rpz", text.splitlines())
    assert Entry("domain", "leaked.example") not in r.entries
    assert any("$INCLUDE is not allowed" in why for _no, _text, why in r.rejected), r.rejected


def test_rpz_feed_with_a_bad_line_that_cannot_be_left_out_fails_fast() -> None:
    """Found by fuzzing: a record the skip mode cannot leave out was re-parsed 1,000
    times (seconds per small file, minutes for a large feed); now refused at once."""
    data = (FUZZ_REGRESSIONS / "zone" / "skip-without-progress").read_bytes()
    r = parsers.parse("rpz", textfile.lines(textfile.decode(data)))
    assert not r.entries
    assert len(r.rejected) == 1 and "more than 1000" not in r.rejected[0][2], r.rejected
    assert "feed:174: A DNS label is empty" in r.rejected[0][2]
