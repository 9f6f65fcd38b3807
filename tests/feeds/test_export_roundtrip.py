"""Every export parses back, whatever its entries' names and provenance hold (property tests).

Random entries (names with IDN labels, wildcards, IPv4/IPv6 addresses and
networks) with reasons and references full of commas, quotes, line breaks,
control and non-ASCII characters are recorded as a feed's update, exported
in each format and read back by the feed reader of that format
(``sources.read``, the path a feed update takes).

What each format carries (and is checked for):

- ``domains``, ``rpz``: every entry (kind and value);
- ``hosts``: exact names (wildcards and addresses are left out, and counted);
- ``adblock``: exact names and wildcards (addresses left out, counted);
- ``csv``: every entry, its reason and its reference, exactly;
- ``stix``: every entry; the reason when there is one (else the indicator's
  name, "CATEGORY VALUE"); the reference when it is an http(s) URL (else the
  indicator's id);
- the feed's policy zone (what ``[publish]`` serves by AXFR/IXFR): every entry
  and every allow rule;
- DNSBL: every entry listed with its category's code and its feed in the TXT
  (RFC 5782's test points, 127.0.0.1/2 and ::ffff:7f00:1/2, answer as RFC 5782
  says whatever is listed).
"""

from __future__ import annotations

import ipaddress
import json
import tempfile
from pathlib import Path

import dns.message
import dns.rdatatype
import pytest
import stix2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori.config import FeedConfig
from mamori.config.feeds import CATEGORIES, DnsblConfig
from mamori.feeds.dataset import FeedDB
from mamori.feeds.normalize import Entry, RejectedError, entry
from mamori.feeds.publish import lists
from mamori.feeds.publish import rpz as rpz_out
from mamori.feeds.publish.dnsbl import TEST_IPS, Responder
from mamori.feeds.publish.dnsbl_data import IP_CODES, NAME_CODES
from mamori.feeds.sources import read, write_entries
from mamori.policy import zone

LABEL = st.from_regex(r"[a-zA-Z0-9_](?:[a-zA-Z0-9_-]{0,6}[a-zA-Z0-9_])?", fullmatch=True)
U_LABEL = st.text(alphabet="aäöüßéçñжд日本語εz", min_size=1, max_size=5)
LAST = st.sampled_from(
    ["example", "test", "co.uk", "xn--p1ai", "1", "rpz-ip", "rpz-nsdname", "rpz-client-ip",
     "rpz-nsip", "rpz-passthru", "in-addr.arpa"]
) | LABEL  # fmt: skip
NAME = st.builds(
    lambda labels, last: ".".join([*labels, last]),
    st.lists(LABEL | U_LABEL, min_size=1, max_size=3),
    LAST,
)
NETWORK = st.builds(
    lambda a, bits: f"{a}/{bits % (33 if a.version == 4 else 129)}",
    st.ip_addresses(),
    st.integers(0, 128),
)
TOKEN = NAME | NAME.map(lambda n: "*." + n) | st.ip_addresses().map(str) | NETWORK
TRICKY = st.sampled_from(
    [",", '"', "\n", "\r", "\r\n", 'a,"b"\nc', " padded ", "日本語, «quotes»", "\u2028",
     "\x85", "\x00", "#not a comment", "'", "\\", "\t"]
)  # fmt: skip
TEXT = st.lists(
    TRICKY | st.text(st.characters(blacklist_categories=("Cs",)), max_size=8), max_size=4
).map("".join)
REFERENCE = TEXT | TEXT.map(lambda t: "https://ref.example/" + t)


def _entry(token: str, reason: str, reference: str) -> Entry | None:
    try:
        return entry(token, reason, reference)
    except RejectedError:
        return None


ENTRY = st.builds(_entry, TOKEN, TEXT, REFERENCE).filter(lambda e: e is not None)
ENTRIES = st.lists(ENTRY, min_size=1, max_size=12, unique_by=lambda e: (e.kind, e.value))  # type: ignore[union-attr]

PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)
CARRIED = {
    "domains": ("domain", "wildcard", "ip", "cidr"),
    "rpz": ("domain", "wildcard", "ip", "cidr"),
    "csv": ("domain", "wildcard", "ip", "cidr"),
    "stix": ("domain", "wildcard", "ip", "cidr"),
    "hosts": ("domain",),
    "adblock": ("domain", "wildcard", "ip"),
}


def _export(fmt: str, entries: list[Entry], d: Path, category: str = "phishing") -> Path:
    """Record *entries* as feed ``src``'s update, export them as ``mamori feeds export``
    does (a UTF-8 file); the file."""
    with FeedDB(d / "feeds.sqlite") as db:
        db.record("src", entries, now=1_700_000_000)
        out = d / f"export.{fmt}"
        with open(out, "w", encoding="utf-8") as f:
            written, left = lists.write(fmt, "src", category, db.rows(["src"]), f)
    carried = [e for e in entries if e.kind in CARRIED[fmt]]
    # adblock writes rules: a name and its subtree are one rule (``||name^``)
    rules = len({(e.kind == "ip", e.value) for e in carried}) if fmt == "adblock" else None
    assert (written, left) == (rules or len(carried), len(entries) - len(carried))
    return out


def _read_back(fmt: str, path: Path) -> list[Entry]:
    result, _source = read(FeedConfig(name="back", path=path, format=fmt), path.parent / "cache")
    assert not result.rejected, result.rejected[:3]
    assert not result.skipped, result.skipped[:3]
    return result.entries


@pytest.mark.parametrize("fmt", ["domains", "rpz", "hosts", "adblock"])
@given(entries=ENTRIES)
@PROPERTY
def test_list_exports_parse_back_to_the_same_entries(fmt: str, entries: list[Entry]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        back = _read_back(fmt, _export(fmt, entries, Path(tmp)))
    assert {(e.kind, e.value) for e in back} == {
        (e.kind, e.value) for e in entries if e.kind in CARRIED[fmt]
    }


@given(entries=ENTRIES)
@PROPERTY
def test_csv_export_parses_back_with_reasons_and_references(entries: list[Entry]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        back = _read_back("csv", _export("csv", entries, Path(tmp)))
    assert sorted((e.kind, e.value, e.reason, e.reference) for e in back) == sorted(
        (e.kind, e.value, e.reason, e.reference) for e in entries
    )


@given(entries=ENTRIES)
@PROPERTY
def test_stix_export_is_valid_stix_and_parses_back(entries: list[Entry]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _export("stix", entries, Path(tmp))
        stix2.parse(path.read_text(encoding="utf-8"), allow_custom=False)  # OASIS validation
        back = {(e.kind, e.value): e for e in _read_back("stix", path)}
    assert set(back) == {(e.kind, e.value) for e in entries}
    for e in entries:
        got = back[(e.kind, e.value)]
        assert got.reason == (e.reason or f"phishing {e.value}")
        if e.reference.startswith("http"):
            assert got.reference == e.reference
        else:
            assert got.reference.startswith("indicator--")


@given(entries=ENTRIES, allowed=ENTRIES)
@PROPERTY
def test_the_feeds_policy_zone_parses_back(entries: list[Entry], allowed: list[Entry]) -> None:
    """The zone ``mamori feeds update`` writes (and ``[publish]`` serves) as an RPZ feed,
    and as a policy zone: the same entries and allow rules.

    A name both listed and allowed is left out here: which of the two wins is the
    adblock modifiers' precedence (``$important``), tested with the adblock parser.
    """
    keys = {(e.kind, e.value) for e in entries}
    allowed = [e for e in allowed if (e.kind, e.value) not in keys]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "src.feed.rpz"
        rpz_out.write_zone(path, "src.feeds.mamori.", rpz_out.rules(entries, allowed, "."))
        result, _ = read(FeedConfig(name="back", path=path, format="rpz"), Path(tmp) / "cache")
        loaded = zone.load(path, "src.feeds.mamori.")
    assert not result.rejected and not result.skipped
    assert {(e.kind, e.value) for e in result.entries} == {(e.kind, e.value) for e in entries}
    assert {(e.kind, e.value) for e in result.exceptions} == {(e.kind, e.value) for e in allowed}
    assert len(list(loaded.rules())) == len(entries) + len(allowed)


def _ask(r: Responder, qname: str, qtype: str) -> dns.message.Message:
    wire = r.handle(dns.message.make_query(qname, qtype).to_wire(), None, None, True)
    assert wire is not None
    return dns.message.from_wire(wire)


def _below(e: Entry) -> list[str]:
    """Keys a DNSBL is asked for that the entry lists (names without the zone)."""
    if e.kind == "domain":
        return [e.value]
    if e.kind == "wildcard":
        return [f"below.{e.value}"]
    net = ipaddress.ip_network(e.value)
    addrs = {net.network_address, net.broadcast_address} - set(TEST_IPS)  # RFC 5782's own
    return [a.reverse_pointer.rsplit(".", 2)[0] for a in addrs]


@given(entries=ENTRIES, category=st.sampled_from(CATEGORIES))
@PROPERTY
def test_dnsbl_lists_every_entry_with_its_category_and_feed(
    entries: list[Entry], category: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "src.entries"
        write_entries(path, FeedConfig(name="src", category=category), entries)
        for kind, codes in (("ip", IP_CODES), ("domain", NAME_CODES)):
            r = Responder(DnsblConfig(zone="bl.test.", kind=kind), [path])
            for e in entries:
                if (e.kind in ("ip", "cidr")) != (kind == "ip"):
                    continue
                for key in _below(e):
                    a = _ask(r, f"{key}.bl.test.", "A")
                    assert [rd.to_text() for rrs in a.answer for rd in rrs] == [codes[category]]
                    txt = _ask(r, f"{key}.bl.test.", "TXT").answer[0][0]
                    text = b"".join(txt.strings).decode()
                    assert text.endswith(f"listed by mamori: {category} (feeds: src)")
                    assert txt.rdtype == dns.rdatatype.TXT


# The reduced cases the properties found, one each.


def test_names_ending_in_an_rpz_trigger_label_and_slash_zero_are_rejected() -> None:
    """``a.rpz-nsdname CNAME .`` in a feed's zone would be an NSDNAME rule, ``1.a.rpz-ip``
    a Response-IP one; RPZ has no ``/0`` prefix (``0.0.0.0.0.rpz-ip`` does not load)."""
    for token in ("a.rpz-nsdname", "1.a.rpz-ip", "x.rpz-client-ip", "*.ns.rpz-nsip"):
        with pytest.raises(RejectedError, match="RPZ trigger label"):
            entry(token)
    for token in ("0.0.0.0/0", "::/0"):
        with pytest.raises(RejectedError, match="every address"):
            entry(token)
    assert entry("rpz-ip.example") == Entry("domain", "rpz-ip.example")


@pytest.mark.parametrize(
    ("entries", "text"),
    [
        ([Entry("wildcard", "a.example")], "||*.a.example^\n"),  # not a.example itself
        ([Entry("domain", "a.example")], "|a.example^\n"),
        ([Entry("domain", "a.example"), Entry("wildcard", "a.example")], "||a.example^\n"),
    ],
)
def test_adblock_export_of_names_and_wildcards(entries: list[Entry], text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _export("adblock", entries, Path(tmp))
        rules = [ln for ln in path.read_text().splitlines(keepends=True) if not ln.startswith("!")]
        assert "".join(rules) == text
        assert set(_read_back("adblock", path)) == set(entries)


def test_csv_export_quotes_a_carriage_return() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _export("csv", [Entry("domain", "a.example", "one\rtwo", "x,y")], Path(tmp))
        assert path.read_bytes().endswith(b',"one\rtwo","x,y"\n')
        assert [(e.reason, e.reference) for e in _read_back("csv", path)] == [("one\rtwo", "x,y")]


def test_stix_export_of_a_wildcard_with_an_underscore() -> None:
    """``_`` is one character in LIKE: ``LIKE '%.a_b.example'`` would also match
    ``x.aXb.example`` (and our reader skips it)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = _export("stix", [Entry("wildcard", "a_b.example")], Path(tmp))
        text = json.loads(path.read_text())["objects"][1]["pattern"]
        assert text == r"[domain-name:value MATCHES '^.+\\.a_b\\.example$']"  # STIX escapes
        assert _read_back("stix", path) == [Entry("wildcard", "a_b.example")]
