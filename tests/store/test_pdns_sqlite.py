"""The passive DNS store on SQLite (schema 2): every lookup kind on a real store, the
contract's result order, exact round trips of what rdata is stored in another form, and
the migration of a store written by schema 1."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mamori.store.pdns_base import Fences, Record
from mamori.store.pdns_keys import net_range
from mamori.store.pdns_sqlite import SCHEMA_VERSION, PdnsSQLite

T = 1_700_000_000
BUCHER = "xn--bcher-kva.example."  # bücher.example.
TUPLES = {
    ("www.example.com.", 1, "192.0.2.1", ""): [T, T + 50, 3],
    ("www.example.com.", 1, "10.0.0.2", ""): [T, T + 50, 1],
    ("www.example.com.", 1, "9.0.0.1", ""): [T, T + 50, 1],
    ("www.example.com.", 28, "2001:db8::1", ""): [T + 5, T + 40, 2],
    ("www.example.com.", 28, "2001:DB8::2", ""): [T + 5, T + 40, 2],  # not canonical
    ("www.example.com.", 28, "::ffff:192.0.2.9", ""): [T + 5, T + 40, 1],
    ("example.com.", 2, "ns1.dns.example.net.", "com."): [T, T + 90, 9],
    ("example.com.", 15, "10 mx.example.com.", ""): [T, T + 80, 4],
    ("example.com.", 15, "20 Mail.Example.COM.", ""): [T, T + 70, 4],  # mixed case
    ("example.com.", 15, ".", ""): [T, T + 60, 1],  # null MX: no target
    ("_sip._tcp.example.com.", 33, "0 5 5060 sip.example.com.", ""): [T, T + 30, 1],
    ("alias.example.com.", 5, "WWW.Example.com.", ""): [T, T + 20, 5],
    ("alias2.example.com.", 5, "www.example.com.", ""): [T, T + 20, 5],
    ("a.b.example.com.", 16, '"v=spf1 -all"', ""): [T, T + 10, 1],
    ("www.example.org.", 1, "192.0.2.1", ""): [T + 100, T + 200, 8],
    ("www.example.co.jp.", 1, "198.51.100.7", ""): [T, T + 300, 8],
    ("_sip.xtcp.example.com.", 1, "198.51.100.8", ""): [T, T + 30, 8],  # LIKE's "_" is "x"
    (BUCHER, 1, "203.0.113.5", ""): [T, T + 10, 1],
    ("com.", 2, "a.gtld-servers.net.", ""): [T, T + 10, 1],
}


def _records(tuples: dict[tuple[str, int, str, str], list[int]]) -> list[Record]:
    return [Record(*k, *v) for k, v in tuples.items()]


@pytest.fixture
def store(tmp_path: Path) -> PdnsSQLite:
    s = PdnsSQLite(tmp_path / "pdns.sqlite")
    items = list(TUPLES.items())
    s.write(dict(items[:9]))  # two batches: names and tuples added to a store with data
    s.write(dict(items[9:]))
    return s


def _keys(records: list[Record]) -> list[tuple[str, int, str]]:
    return [(r.rrname, r.rrtype, r.rdata) for r in records]


@pytest.mark.parametrize(
    ("query", "rrtype", "expected"),
    [
        ("www.example.com", 1, ["10.0.0.2", "192.0.2.1", "9.0.0.1"]),  # rdata in text order
        ("WWW.example.com.", 28, ["2001:DB8::2", "2001:db8::1", "::ffff:192.0.2.9"]),
        ("example.com", 15, ["10 mx.example.com.", "20 Mail.Example.COM.", "."]),
        ("nothing.example.com", None, []),
    ],
)
def test_exact_name_gives_rdata_as_written(
    store: PdnsSQLite, query: str, rrtype: int | None, expected: list[str]
) -> None:
    assert [r.rdata for r in store.rrset(query, rrtype)] == expected


def test_below_a_name_excludes_the_name_and_lookalikes(store: PdnsSQLite) -> None:
    names = {r.rrname for r in store.rrset("*.example.com")}
    assert names == {
        "www.example.com.",
        "_sip._tcp.example.com.",
        "alias.example.com.",
        "alias2.example.com.",
        "a.b.example.com.",
        "_sip.xtcp.example.com.",
    }
    assert {r.rrname for r in store.rrset("*.b.example.com.")} == {"a.b.example.com."}
    assert {r.rrname for r in store.rrset("*._tcp.example.com")} == {"_sip._tcp.example.com."}
    assert {r.rrname for r in store.rrset("*.com")} >= {"example.com.", "www.example.com."}
    assert "com." not in {r.rrname for r in store.rrset("*.com")}


def test_right_hand_wildcard_matches_whole_labels(store: PdnsSQLite) -> None:
    names = {r.rrname for r in store.rrset("www.example.*")}
    assert names == {"www.example.com.", "www.example.org.", "www.example.co.jp."}


def test_bailiwick_and_fences_filter(store: PdnsSQLite) -> None:
    assert _keys(store.rrset("example.com", bailiwick="com")) == [
        ("example.com.", 2, "ns1.dns.example.net.")
    ]
    late = store.rrset("*.example.com", fences=Fences(last_after=T + 45))
    assert {r.time_last for r in late} == {T + 50}


@pytest.mark.parametrize(
    ("net", "expected"),
    [
        ("192.0.2.1", {("www.example.com.", "192.0.2.1"), ("www.example.org.", "192.0.2.1")}),
        (
            "192.0.2.0/24",
            {
                ("www.example.com.", "192.0.2.1"),
                ("www.example.org.", "192.0.2.1"),
                ("www.example.com.", "::ffff:192.0.2.9"),
            },
        ),
        (
            "2001:db8::/32",
            {("www.example.com.", "2001:db8::1"), ("www.example.com.", "2001:DB8::2")},
        ),
        ("8.0.0.0-10.0.0.2", {("www.example.com.", "9.0.0.1"), ("www.example.com.", "10.0.0.2")}),
        ("203.0.113.0/24", {(BUCHER, "203.0.113.5")}),
        ("100.64.0.0/10", set()),
    ],
)
def test_address_cidr_and_range(store: PdnsSQLite, net: str, expected: set[object]) -> None:
    lo, _, hi = net.partition("-")
    got = store.rdata_ip(*net_range(lo, hi or None))
    assert {(r.rrname, r.rdata) for r in got} == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("www.example.com", {("alias.example.com.", 5), ("alias2.example.com.", 5)}),
        ("mx.example.com.", {("example.com.", 15)}),
        ("mail.example.com", {("example.com.", 15)}),  # written Mail.Example.COM.
        ("sip.example.com", {("_sip._tcp.example.com.", 33)}),
        ("ns1.dns.example.net", {("example.com.", 2)}),
        (
            "*.example.com",
            {
                ("alias.example.com.", 5),
                ("alias2.example.com.", 5),
                ("example.com.", 15),
                ("_sip._tcp.example.com.", 33),
            },
        ),
        ("example.com", set()),
    ],
)
def test_rdata_names(store: PdnsSQLite, name: str, expected: set[object]) -> None:
    assert {(r.rrname, r.rrtype) for r in store.rdata_name(name)} == expected


def test_keyword_in_a_label_and_u_label_form(store: PdnsSQLite) -> None:
    assert store.keyword("bücher") == [BUCHER]
    assert store.keyword("bcher-kva") == [BUCHER]
    assert set(store.keyword("example.c")) == {
        "www.example.com.",
        "example.com.",
        "_sip._tcp.example.com.",
        "alias.example.com.",
        "alias2.example.com.",
        "a.b.example.com.",
        "www.example.co.jp.",
        "_sip.xtcp.example.com.",
    }
    assert store.keyword("_tcp") == ["_sip._tcp.example.com."]  # "_" is not a wildcard
    with pytest.raises(ValueError, match="3 characters"):
        store.keyword("ex")


def test_pages_follow_the_contract_order(store: PdnsSQLite) -> None:
    every = store.rrset("*.com", limit=100)
    order = [(-r.time_last, r.rrname, r.rrtype, r.rdata, r.bailiwick) for r in every]
    assert order == sorted(order)
    pages = [r for o in range(0, len(every), 3) for r in store.rrset("*.com", limit=3, offset=o)]
    assert pages == every


def test_writes_merge_and_nxdomain_and_stats(store: PdnsSQLite) -> None:
    store.write(
        {("www.example.com.", 1, "192.0.2.1", ""): [T - 10, T + 20, 2]},
        nx={("gone.example.", 1): [T, T, 3]},
    )
    (r,) = store.rrset("www.example.com", 1, limit=1, offset=1)
    assert (r.rdata, r.time_first, r.time_last, r.count) == ("192.0.2.1", T - 10, T + 50, 5)
    assert store.nxdomain("GONE.example") == [("gone.example.", 1, T, T, 3)]
    assert store.stats() == (len(TUPLES), len({k[0] for k in TUPLES}))
    assert store.names_first_last(["example.com.", "nope."]) == {"example.com.": (T, T + 90, 18)}


def test_compact_drops_old_tuples_and_their_names(store: PdnsSQLite) -> None:
    assert store.compact(T + 25) == (5, 5)
    assert store.keyword("alias") == [] and store.rrset("a.b.example.com") == []
    store.write({("alias.example.com.", 5, "x.example.", ""): [T, T + 99, 1]})
    assert store.keyword("alias") == ["alias.example.com."]


def test_export_gives_back_exactly_what_was_written(store: PdnsSQLite, tmp_path: Path) -> None:
    exported = list(store.export_records())
    assert sorted(exported, key=lambda r: (r.rrname, r.rrtype, r.rdata)) == exported
    assert sorted(exported, key=str) == sorted(_records(TUPLES), key=str)
    copy = PdnsSQLite(tmp_path / "copy.sqlite")
    assert copy.import_records(iter(exported), batch=4) == len(TUPLES)
    assert list(copy.export_records()) == exported
    copy.import_records(exported)
    assert [r.count for r in copy.export_records()] == [2 * r.count for r in exported]


# The schema 1 DDL as version 1 of this module created it (the tables that hold tuples).
SCHEMA_1 = """
CREATE TABLE rrset (id INTEGER PRIMARY KEY, rrname TEXT NOT NULL, rrtype INTEGER NOT NULL,
    rdata TEXT NOT NULL, bailiwick TEXT NOT NULL DEFAULT '', rname TEXT NOT NULL, rkey BLOB,
    rdname TEXT, time_first INTEGER NOT NULL, time_last INTEGER NOT NULL,
    count INTEGER NOT NULL, UNIQUE (rrname, rrtype, rdata, bailiwick));
CREATE INDEX rrset_rname ON rrset (rname);
CREATE INDEX rrset_rkey ON rrset (rkey) WHERE rkey IS NOT NULL;
CREATE INDEX rrset_rdname ON rrset (rdname) WHERE rdname IS NOT NULL;
CREATE TABLE names (id INTEGER PRIMARY KEY, rrname TEXT NOT NULL UNIQUE, uname TEXT NOT NULL);
CREATE VIRTUAL TABLE names_fts USING fts5 (rrname, uname, content='names',
    content_rowid='id', tokenize='trigram');
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE nxdomain (rrname TEXT NOT NULL, rrtype INTEGER NOT NULL,
    time_first INTEGER NOT NULL, time_last INTEGER NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (rrname, rrtype)) WITHOUT ROWID;
CREATE TABLE pdns_ingest (file TEXT PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL,
    messages INTEGER NOT NULL, complete INTEGER NOT NULL, updated INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE sensors (sensor TEXT PRIMARY KEY, observations INTEGER NOT NULL,
    last_seen INTEGER NOT NULL) WITHOUT ROWID;
PRAGMA user_version = 1;
"""


def _schema_1_store(path: Path) -> None:
    """A store as version 1 wrote it: text keys (rname/rkey/rdname left NULL or '': the
    migration must not need them) and its names in the keyword index."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    with db:
        for name in sorted({k[0] for k in TUPLES}):
            db.execute(
                "INSERT INTO names (rrname, uname) VALUES (?, ?)",
                (name, "bücher.example." if name == BUCHER else ""),
            )
        db.executemany(
            "INSERT INTO rrset (rrname, rrtype, rdata, bailiwick, rname, time_first,"
            " time_last, count) VALUES (?, ?, ?, ?, '', ?, ?, ?)",
            [(*k, *v) for k, v in TUPLES.items()],
        )
        db.execute("INSERT INTO names_fts (names_fts) VALUES ('rebuild')")
        db.execute("INSERT INTO nxdomain VALUES ('gone.example.', 1, 5, 6, 7)")
        db.execute("INSERT INTO pdns_ingest VALUES ('abc', '/x.pcap', 10, 4, 1, 0)")
    db.close()


def test_a_schema_1_store_opens_migrated_and_answers_the_same(
    store: PdnsSQLite, tmp_path: Path
) -> None:
    old = tmp_path / "v1.sqlite"
    _schema_1_store(old)
    migrated = PdnsSQLite(old, readonly=True)
    assert migrated.db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert migrated.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert migrated.db.execute("PRAGMA freelist_count").fetchone() == (0,)  # vacuumed
    assert list(migrated.export_records()) == list(store.export_records())
    for ask in ("www.example.com", "*.example.com", "www.example.*", "example.com"):
        assert migrated.rrset(ask) == store.rrset(ask)
    assert migrated.rdata_ip(*net_range("0.0.0.0/0")) == store.rdata_ip(*net_range("0.0.0.0/0"))
    assert migrated.rdata_name("mail.example.com") == store.rdata_name("mail.example.com")
    assert migrated.keyword("bücher") == [BUCHER]
    assert migrated.nxdomain("gone.example") == [("gone.example.", 1, 5, 6, 7)]
    assert migrated.ingested("abc") == (4, True)
    # the compatibility view shows the tuples as schema 1 stored them
    view = migrated.db.execute(
        "SELECT rrname, rrtype, rdata, bailiwick, time_first, time_last, count FROM rrset"
    ).fetchall()
    assert sorted(view) == sorted((*k, *v) for k, v in TUPLES.items())
    migrated.write({("new.example.", 1, "192.0.2.77", ""): [T, T, 1]})
    assert migrated.keyword("new.ex") == ["new.example."]
