"""One contract for every query-log store: the same rows written through ``write_queries``
give the same reads on SQLite, on Debian's ClickHouse server (18.16) and on a current
ClickHouse engine (chdb), and on a two-shard cluster of Debian's servers (``[store]
cluster``: local tables per shard, reads through Distributed tables). SQLite is the
reference; row ids differ by backend (SQLite's rowid, ClickHouse's microsecond ids), so
rows are compared without them, in order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mamori.config.clickhouse import parse_clickhouse_url
from mamori.store.base import QueryFilter
from mamori.store.querylog_sqlite import SQLiteQueryReader
from mamori.store.sqlite import SQLiteStore

H = 3600
T0 = 1_700_000_000 - 1_700_000_000 % H  # an hour's start
NOW = T0 + 30 * H
ZONES = ("", "botnet.rpz.", "ads.rpz.", "")
OUTCOMES = ("resolved", "blocked", "dropped", "cached", "resolved")
ANSWERS = ("A 192.0.2.1", "CNAME t.example.;A 192.0.2.9", "AAAA 2001:db8::1", "", "MX 10 m.")


def rows(n: int = 400, start: float = T0) -> list[tuple[Any, ...]]:
    """*n* rows over ~30 hours, in time order: zones, outcomes, groups, devices, answers."""
    out = []
    for i in range(n):
        zone = ZONES[i % 4]
        outcome = OUTCOMES[i % 5] if zone else ("resolved", "cached")[i % 2]
        out.append((
            start + i * 270.0 + (i % 3) * 0.25, f"192.0.2.{i % 6}", f"n{i % 9}.example.",
            (1, 28, 5)[i % 3], (0, 3)[i % 2], ANSWERS[i % 5], i, "" if i % 2 else "192.0.2.53",
            outcome == "cached", "udp", zone, f"n{i % 9}.example.{zone}" if zone else "",
            "QNAME" if zone else "", "NXDOMAIN" if zone else "", outcome, "",
            ("kids", "", "kids,staff", "")[i % 4], ("tv", "")[i % 2],
        ))  # fmt: skip
    return out


def hits(batch: list[tuple[Any, ...]]) -> list[tuple[str, str, str, int, float, float]]:
    out: dict[tuple[str, str, str], list[float]] = {}
    for r in batch:
        if r[10]:
            c = out.setdefault((r[10], r[12], r[13]), [0, r[0], r[0]])
            c[0] += 1
            c[2] = r[0]
    return [(z, t, a, int(n), f, la) for (z, t, a), (n, f, la) in out.items()]


def write(store: Any, data: list[tuple[Any, ...]], size: int = 90) -> None:
    for i in range(0, len(data), size):  # batches, as the writer commits them
        store.write_queries(data[i : i + size], None, hits(data[i : i + size]))


def open_kind(kind: str, tmp: Path, request: pytest.FixtureRequest, node: str = "n1") -> Any:
    """(writer store, reader) of *kind*, empty (a database of its own on ClickHouse)."""
    if kind == "sqlite":
        return SQLiteStore(tmp / "store.sqlite", node), SQLiteQueryReader(tmp / "store.sqlite")
    from mamori.store.pdns_spool import Spool
    from mamori.store.querylog_chreader import ClickHouseQueryReader
    from mamori.store.querylog_clickhouse import QueryLogClickHouse

    db = f"q_{uuid.uuid4().hex[:12]}"
    if kind == "cluster":
        from mamori.store.ch_cluster import shard_connector
        from mamori.store.ch_conn import DriverConn
        from tests.support.clickhouse import CLUSTER

        servers = request.getfixturevalue("clickhouse_cluster")
        url = parse_clickhouse_url(servers[0].url.rsplit("/", 1)[0] + "/" + db)
        store = QueryLogClickHouse(DriverConn(url), node, Spool(tmp / f"spool-{node}", 1 << 30),
                                   True, CLUSTER, shard_connector(url, ""))  # fmt: skip
        other = parse_clickhouse_url(servers[1].url.rsplit("/", 1)[0] + "/" + db)
        return store, ClickHouseQueryReader(DriverConn(other), settle=0.0)  # the other node
    if kind == "clickhouse":
        from mamori.store.ch_conn import DriverConn

        server = request.getfixturevalue("clickhouse_server")
        url = parse_clickhouse_url(server.url.rsplit("/", 1)[0] + "/" + db)
        conn, rconn = DriverConn(url), DriverConn(url)
    else:
        from tests.support.chdb_conn import ChdbConn

        session = request.getfixturevalue("chdb_session")
        conn, rconn = ChdbConn(session, db), ChdbConn(session, db)
    store = QueryLogClickHouse(conn, node, Spool(tmp / f"spool-{node}", 1 << 30))
    return store, ClickHouseQueryReader(rconn, settle=0.0)


KINDS = ["sqlite", "clickhouse", "chdb", "cluster"]


@pytest.fixture(scope="module", params=KINDS)
def reader(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    store, r = open_kind(request.param, tmp_path_factory.mktemp(request.param), request)
    write(store, rows())
    yield r
    store.close()
    r.close()


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteQueryReader]:
    tmp = tmp_path_factory.mktemp("ref")
    store = SQLiteStore(tmp / "ref.sqlite", "n1")
    write(store, rows())
    yield SQLiteQueryReader(tmp / "ref.sqlite")
    store.close()


def _noid(rs: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(r[1:]) for r in rs]


FILTERS = [
    QueryFilter(),
    QueryFilter(action="blocked"),
    QueryFilter(action="allowed"),
    QueryFilter(action="NXDOMAIN", zone="botnet.rpz"),
    QueryFilter(client="192.0.2.3", name="N4.EXAM"),
    QueryFilter(device="TV", since=T0 + 5 * H, until=T0 + 20 * H),
    QueryFilter(node="n1", name="n1"),
    QueryFilter(node="other"),
    QueryFilter(name="%_"),
]


def test_overview_figures_equal_the_reference(reader: Any, ref: Any) -> None:
    start = T0 + 6 * H
    assert reader.hourly(start) == ref.hourly(start) and len(ref.hourly(start)) == 24
    assert sorted(reader.blocks_by_zone(start)) == sorted(ref.blocks_by_zone(start))
    assert [(q, n) for q, _z, n in reader.top_blocked_names(start)] == [
        (q, n) for q, _z, n in ref.top_blocked_names(start)
    ]
    assert reader.top_blocked_clients(start) == ref.top_blocked_clients(start)
    assert reader.top_queried(start, 100) == ref.top_queried(start, 100)
    assert reader.top_queried(start, 50_000, "n1") == ref.top_queried(start, 50_000)
    got = reader.infected(["botnet.rpz."], start)
    want = ref.infected(["botnet.rpz."], start)
    assert [(c, n, t, set(q.split(","))) for c, n, t, q in got] == [
        (c, n, t, set(q.split(","))) for c, n, t, q in want
    ] and want
    assert reader.hourly(start, "other") == {} and reader.blocks_by_zone(start, "other") == []
    assert reader.nodes() == ["n1"]


@pytest.mark.parametrize("f", FILTERS, ids=range(len(FILTERS)))
def test_pages_by_id_equal_the_reference(reader: Any, ref: Any, f: QueryFilter) -> None:
    def pages(r: Any) -> list[tuple[Any, ...]]:
        out, before = [], None
        while True:
            page = r.queries(f, before, 37)
            out += page
            if len(page) < 37:
                return out
            before = page[-1][0]

    got = pages(reader)
    assert _noid(got) == _noid(pages(ref))
    assert [r[0] for r in got] == sorted((r[0] for r in got), reverse=True)
    assert _noid(list(reader.queries_csv(f, 1000))) == _noid(got)


def test_live_tail_and_last_id(reader: Any, ref: Any) -> None:
    f = QueryFilter(action="blocked")
    everything = reader.queries_after(f, 0, 1000)
    assert _noid(everything) == _noid(ref.queries_after(f, 0, 1000))
    half = everything[len(everything) // 2][0]
    assert (
        _noid(reader.queries_after(f, half, 5)) == _noid(everything)[len(everything) // 2 + 1 :][:5]
    )
    last = reader.last_id()
    assert last == reader.queries(QueryFilter(), None, 1)[0][0]
    assert reader.queries_after(QueryFilter(), last) == []


def test_policy_hits_and_blocks_by_country_buckets(reader: Any, ref: Any) -> None:
    assert reader.policy_hits() == ref.policy_hits() and ref.policy_hits()
    assert reader.policy_hits("n1") == ref.policy_hits()
    assert reader.policy_hits("other") == []
    for bucket in (H, 86400):
        got = sorted(reader.blocks_by_bucket(T0 + 2 * H, bucket))
        assert got == sorted(ref.blocks_by_bucket(T0 + 2 * H, bucket)) and got


def test_replay_and_brand_reads(reader: Any, ref: Any) -> None:
    a, b = T0 + 3 * H, T0 + 17 * H
    assert reader.count(a, b) == ref.count(a, b) > 100
    assert reader.distinct_clients(a, b) == ref.distinct_clients(a, b) == 6
    assert reader.names(a, b) == ref.names(a, b)
    assert reader.answers(a, b) == ref.answers(a, b)
    assert reader.answers(a, b, cname_only=True) == ref.answers(a, b, cname_only=True)
    assert sorted(reader.clients(a, b)) == sorted(ref.clients(a, b))
    args = (a, b, {"n1.example.", "n2.example."}, {"AAAA 2001:db8::1"}, {"192.0.2.5"})
    got = sorted(reader.grouped(*args))
    assert got == sorted(ref.grouped(*args)) and got
    assert sorted(reader.name_clients(b)) == sorted(ref.name_clients(b))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "groups", [{}, {"kids": None, "staff": T0 + 2 * H}], ids=["days", "groups"]
)
def test_retention_with_group_cutoffs(
    kind: str, groups: dict[str, float | None], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store, r = open_kind(kind, tmp_path, request)
    lite = SQLiteStore(tmp_path / "ref.sqlite", "n1")
    data = rows(600, T0 - 86400 - 5 * H)  # from the day before
    write(store, data)
    write(lite, data)
    before = T0 + 10 * H  # without groups: the day before goes whole (a partition)
    assert store.prune_queries(before, groups) == lite.prune_queries(before, groups) > 100
    if kind != "sqlite":
        assert store.wait_mutations()
    want = SQLiteQueryReader(tmp_path / "ref.sqlite")
    assert _noid(r.queries(QueryFilter(), None, 1000)) == _noid(
        want.queries(QueryFilter(), None, 1000)
    )
    assert r.hourly(0) == want.hourly(0)
    assert sorted(r.blocks_by_zone(0)) == sorted(want.blocks_by_zone(0))
    assert r.top_blocked_clients(0, "", 100) == want.top_blocked_clients(0, "", 100)
    assert r.policy_hits() == want.policy_hits()  # kept whatever the retention
    store.close()
    lite.close()
    r.close()


def test_sqlite_alerts_are_this_nodes_and_filter_by_node(tmp_path: Path) -> None:
    import sqlite3

    store = SQLiteStore(tmp_path / "store.sqlite", "n1")
    write(store, rows(20))
    with sqlite3.connect(tmp_path / "alerts.sqlite") as db:
        db.execute(  # as alerts/engine.py keeps the history
            "CREATE TABLE alerts (time REAL, rule TEXT, severity TEXT, subject TEXT,"
            " message TEXT, delivered TEXT, failed TEXT)"
        )
        db.execute("INSERT INTO alerts VALUES (1.0, 'hits', 'warning', 's', 'm', '', '')")
    r = SQLiteQueryReader(tmp_path / "store.sqlite", tmp_path / "alerts.sqlite")
    want = [(1.0, "hits", "warning", "s", "m", "", "", "")]
    assert r.alerts() == r.alerts(node="n1") == want
    assert r.alerts(node="other") == []
    store.close()
