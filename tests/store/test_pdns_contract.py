"""One contract for every passive DNS store: the same batches give the same answers on
SQLite, on Debian's ClickHouse server (18.16) and on a current ClickHouse engine (chdb).

SQLite is the reference: each lookup is asserted against known values and against
what SQLite answers on the same data, with the same order and the same pages.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mamori.config.clickhouse import parse_clickhouse_url
from mamori.store.pdns_base import Fences, FileProgress, Record, Tuples
from mamori.store.pdns_keys import net_range
from mamori.store.pdns_sqlite import PdnsSQLite

T = 1_700_000_000
BATCH1: Tuples = {
    ("www.example.com.", 1, "192.0.2.1", "example.com."): [T + 100, T + 200, 3],
    ("www.example.com.", 1, "192.0.2.2", ""): [T + 150, T + 150, 1],
    ("example.com.", 1, "192.0.2.3", ""): [T + 50, T + 300, 5],
    ("mail.example.com.", 15, "10 mx.example.net.", ""): [T + 10, T + 20, 2],
    ("a.b.example.com.", 5, "www.example.com.", ""): [T + 5, T + 400, 7],
    ("www.example.org.", 1, "192.0.3.1", ""): [T + 60, T + 70, 1],
    ("www.example.co.jp.", 28, "2001:db8::1", ""): [T + 80, T + 90, 4],
    ("v6.example.com.", 28, "2001:db8::2", ""): [T + 81, T + 91, 1],
    ("xn--bcher-kva.example.", 1, "198.51.100.7", ""): [T + 30, T + 31, 1],
    ("mizuho-bank.example.", 1, "198.51.100.8", ""): [T + 32, T + 33, 1],
    ("host.example.net.", 2, "ns1.example.com.", ""): [T + 40, T + 41, 1],
    ("old.example.com.", 1, "192.0.2.9", ""): [T - 5000, T - 4000, 9],
    ("txt.example.com.", 16, '"v=spf1 -all"', ""): [T + 1, T + 2, 1],
}
BATCH2: Tuples = {
    ("www.example.com.", 1, "192.0.2.1", "example.com."): [T + 50, T + 250, 2],
    ("example.com.", 1, "192.0.2.3", ""): [T + 60, T + 310, 1],
}
NX1 = {("nx.example.com.", 1): [T + 100, T + 110, 2]}
NX2 = {("nx.example.com.", 1): [T + 90, T + 95, 1], ("nx.example.com.", 28): [T, T, 1]}


def load(store: Any) -> None:
    store.write(BATCH1, NX1, {"s1": (10, T + 200)})
    store.write(BATCH2, NX2, {"s1": (5, T + 250), "s2": (1, T + 99)})


def _open(kind: str, tmp: Path, request: pytest.FixtureRequest) -> Any:
    """A new, empty store of *kind* (a database of its own on the ClickHouse servers)."""
    if kind == "sqlite":
        return PdnsSQLite(tmp / "pdns.sqlite")
    from mamori.store.pdns_clickhouse import PdnsClickHouse
    from mamori.store.pdns_spool import Spool

    spool = Spool(tmp / "spool", 1 << 30)
    db = f"t_{uuid.uuid4().hex[:12]}"
    if kind == "clickhouse":
        from mamori.store.ch_conn import DriverConn

        server = request.getfixturevalue("clickhouse_server")
        url = parse_clickhouse_url(server.url.rsplit("/", 1)[0] + "/" + db)
        return PdnsClickHouse(DriverConn(url), spool)
    from tests.support.chdb_conn import ChdbConn

    return PdnsClickHouse(ChdbConn(request.getfixturevalue("chdb_session"), db), spool)


KINDS = ["sqlite", "clickhouse", "chdb"]


@pytest.fixture(scope="module", params=KINDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """Loaded once per backend: for the tests that only read."""
    s = _open(request.param, tmp_path_factory.mktemp(request.param), request)
    load(s)
    yield s
    s.close()


@pytest.fixture(params=KINDS)
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Loaded for one test: for the tests that change the store."""
    s = _open(request.param, tmp_path, request)
    load(s)
    yield s
    s.close()


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PdnsSQLite]:
    s = PdnsSQLite(tmp_path_factory.mktemp("ref") / "ref.sqlite")
    load(s)
    yield s
    s.close()


def _keys(records: list[Record]) -> list[tuple[str, int, str]]:
    return [(r.rrname, r.rrtype, r.rdata) for r in records]


def test_exact_name_merges_batches_min_first_max_last_summed_count(store: Any, ref: Any) -> None:
    got = store.rrset("www.example.com", 1)
    assert got == [
        Record("www.example.com.", 1, "192.0.2.1", "example.com.", T + 50, T + 250, 5),
        Record("www.example.com.", 1, "192.0.2.2", "", T + 150, T + 150, 1),
    ]
    assert got == ref.rrset("www.example.com", 1)
    assert store.rrset("www.example.com.", bailiwick="example.com") == got[:1]


@pytest.mark.parametrize(
    "name",
    ["*.example.com.", "*.example.com", "www.example.*", "www.example.*.", "example.com."],
)
def test_wildcards_left_and_right_match_the_reference(store: Any, ref: Any, name: str) -> None:
    assert store.rrset(name) == ref.rrset(name)


def test_left_wildcard_is_strictly_below_the_name(store: Any) -> None:
    names = {r.rrname for r in store.rrset("*.example.com.")}
    assert "example.com." not in names
    assert {"www.example.com.", "a.b.example.com.", "mail.example.com."} <= names


@pytest.mark.parametrize(
    ("net", "expected"),
    [
        ("192.0.2.1", {"192.0.2.1"}),
        ("192.0.2.0/24", {"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.9"}),
        ("192.0.2.2-192.0.3.1", {"192.0.2.2", "192.0.2.3", "192.0.2.9", "192.0.3.1"}),
        ("2001:db8::/64", {"2001:db8::1", "2001:db8::2"}),
        ("203.0.113.0/24", set()),
    ],
)
def test_address_network_and_range(store: Any, ref: Any, net: str, expected: set[str]) -> None:
    lo, hi = net_range(*net.split("-")) if "-" in net else net_range(net)
    got = store.rdata_ip(lo, hi)
    assert {r.rdata for r in got} == expected
    assert got == ref.rdata_ip(lo, hi)


@pytest.mark.parametrize(
    ("name", "rrtype"),
    [("www.example.com", None), ("mx.example.net.", 15), ("*.example.com.", None),
     ("*.example.net", None), ("nothing.example.", None)],
)  # fmt: skip
def test_rdata_names(store: Any, ref: Any, name: str, rrtype: int | None) -> None:
    assert store.rdata_name(name, rrtype) == ref.rdata_name(name, rrtype)
    if name == "*.example.com.":
        assert _keys(store.rdata_name(name)) == [
            ("a.b.example.com.", 5, "www.example.com."),
            ("host.example.net.", 2, "ns1.example.com."),
        ]


@pytest.mark.parametrize(
    ("word", "expected"),
    [("mizuho", {"mizuho-bank.example."}), ("bücher", {"xn--bcher-kva.example."}),
     ("xn--bch", {"xn--bcher-kva.example."}), ("example.co", None), ("zzzz", set())],
)  # fmt: skip
def test_keyword_in_a_label_and_u_label_form(
    store: Any, ref: Any, word: str, expected: set[str] | None
) -> None:
    got = set(store.keyword(word))
    assert got == set(ref.keyword(word))
    if expected is not None:
        assert got == expected


def test_keyword_needs_three_characters(store: Any) -> None:
    with pytest.raises(ValueError, match="3 characters"):
        store.keyword("ab")


@pytest.mark.parametrize(
    "fences",
    [Fences(first_before=T + 50), Fences(first_after=T + 50), Fences(last_before=T + 200),
     Fences(last_after=T + 250), Fences(last_after=T + 60, first_before=T + 80),
     Fences(first_after=T + 10, last_before=T + 91)],
)  # fmt: skip
def test_time_fences_are_inclusive(store: Any, ref: Any, fences: Fences) -> None:
    got = store.rrset("*.example.com.", fences=fences)
    assert got == ref.rrset("*.example.com.", fences=fences)
    lo, hi = net_range("0.0.0.0/0")
    assert store.rdata_ip(lo, hi, fences) == ref.rdata_ip(lo, hi, fences)


def test_pages_are_the_same_on_every_backend(store: Any, ref: Any) -> None:
    whole = store.rrset("*.example.com.")
    assert whole == ref.rrset("*.example.com.")
    pages = [store.rrset("*.example.com.", limit=2, offset=o) for o in range(0, len(whole), 2)]
    assert [r for p in pages for r in p] == whole
    assert [r.time_last for r in whole] == sorted((r.time_last for r in whole), reverse=True)


def test_names_first_last_stats_sensors_nxdomain(store: Any, ref: Any) -> None:
    names = ["www.example.com.", "example.com.", "nothing.example."]
    assert store.names_first_last(names) == ref.names_first_last(names)
    assert store.names_first_last(names)["www.example.com."] == (T + 50, T + 250, 6)
    assert store.stats() == ref.stats() == (13, 12)
    assert (
        sorted(store.sensors())
        == sorted(ref.sensors())
        == [
            ("s1", 15, T + 250),
            ("s2", 1, T + 99),
        ]
    )
    assert (
        store.nxdomain("nx.example.com")
        == ref.nxdomain("nx.example.com")
        == [
            ("nx.example.com.", 1, T + 90, T + 110, 3),
            ("nx.example.com.", 28, T, T, 1),
        ]
    )


def test_compact_drops_what_was_last_seen_before(fresh: Any, tmp_path: Path) -> None:
    store, ref = fresh, PdnsSQLite(tmp_path / "ref2.sqlite")
    load(ref)
    assert store.compact(T) == ref.compact(T) == (1, 1)
    assert store.rrset("old.example.com.") == []
    lo, hi = net_range("192.0.2.9")
    assert store.rdata_ip(lo, hi) == []
    assert store.stats() == (12, 11)
    assert store.rrset("*.example.com.") == ref.rrset("*.example.com.")
    ref.close()


def test_capture_progress(fresh: Any) -> None:
    store = fresh
    assert store.ingested("abc") == (0, False)
    store.write({}, progress=FileProgress("abc", "/x.pcap", 10, 500, False))
    assert store.ingested("abc") == (500, False)
    store.write({}, progress=FileProgress("abc", "/x.pcap", 10, 900, True))
    assert store.ingested("abc") == (900, True)


def test_export_then_import_into_an_empty_store_is_exact(
    store: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if not hasattr(store, "export_records"):
        pytest.skip("PdnsSQLite has no export_records yet (the SQLite footprint rework adds it)")
    exported = list(store.export_records())
    assert len(exported) == 13
    assert [r.rrname for r in exported] == sorted(r.rrname for r in exported)
    (tmp_path / "target").mkdir()
    target = _open(request.node.callspec.params["store"], tmp_path / "target", request)
    try:
        assert target.import_records(iter(exported), batch=5) == 13
        assert list(target.export_records()) == exported
    finally:
        target.close()


def test_newly_observed_domain_reads_match_the_reference(store: Any, ref: Any) -> None:
    """names_first_seen_since, earliest_below, observed_since (``[nod]``)."""
    got = store.names_first_seen_since(T + 40)
    assert got == ref.names_first_seen_since(T + 40)
    assert ("host.example.net.", T + 40) in got and ("v6.example.com.", T + 81) in got
    assert all(first >= T + 40 for _n, first in got)
    assert store.names_first_seen_since(T + 40, limit=2) == got[:2]
    assert store.names_first_seen_since(T + 10_000) == []
    for domain in ("example.com.", "EXAMPLE.COM", "b.example.com.", "example.org.", "nx.test."):
        assert store.earliest_below(domain) == ref.earliest_below(domain), domain
    assert store.earliest_below("example.com") == T - 5000  # old.example.com
    assert store.earliest_below("nx.example.com.") is None  # an NXDOMAIN answer only
    assert store.observed_since() == ref.observed_since() == T - 5000


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_store_was_never_observed(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    s = _open(kind, tmp_path, request)
    try:
        assert s.observed_since() is None and s.earliest_below("example.com.") is None
        assert s.names_first_seen_since(0) == []
    finally:
        s.close()


# rdata as capture decoders, imports and exports write it, and malformed values: the
# ClickHouse views derive the pivot key in SQL; it must be the key Python derives
PIVOT_CASES = [
    (1, "192.0.2.1"), (1, "0.0.0.0"), (1, "255.255.255.255"), (1, "01.2.3.4"),
    (1, "1.2.3"), (1, "256.1.1.1"), (1, "not-an-address"), (1, ""),
    (28, "2001:db8::1"), (28, "::"), (28, "::ffff:192.0.2.1"), (28, "2001:DB8::A"),
    (28, "1::2::3"), (28, "12345::"), (28, "192.0.2.7"),
    (5, "Www.Example.COM."), (5, "www.example.com"), (5, "."), (2, "ns1..example.com."),
    (12, "1.2.0.192.in-addr.arpa."), (39, "example.net."), (15, "10 mx.example.net."),
    (15, "10"), (15, "10  MX.example.net."), (33, "0 5 5060 sip.example.com."),
    (33, "0 5 5060"), (16, '"v=spf1 -all"'), (6, "ns. host. 1 2 3 4 5"),
]  # fmt: skip


@pytest.mark.parametrize("kind", ["clickhouse", "chdb"])
def test_pivot_keys_derived_by_clickhouse_equal_the_python_keys(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from mamori.store.pdns_clickhouse import _pkey

    s = _open(kind, tmp_path, request)
    try:
        s.write({(f"h{i}.example.", t, rd, ""): [T, T, 1] for i, (t, rd) in enumerate(PIVOT_CASES)})
        rows = s.conn.query(f"SELECT rname, hex(pkey) FROM {s.dbname}.pdns_rdata WHERE rrtype != 0")
        got = {str(r[0]): bytes.fromhex(str(r[1])) for r in rows}
        want = {}
        for i, (t, rd) in enumerate(PIVOT_CASES):
            key = _pkey(t, rd)
            if key is not None:
                want[f"example.h{i}."] = key if isinstance(key, bytes) else key.encode()
        assert got == want
    finally:
        s.close()
