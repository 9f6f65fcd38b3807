"""Two Debian clickhouse-server processes as a two-shard cluster: the store writes each
shard's rows to that shard (exactly once per shard) and reads through Distributed tables;
the answers are the single-server ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mamori.config.clickhouse import parse_clickhouse_url
from mamori.store.ch_conn import DriverConn
from mamori.store.pdns_clickhouse import PdnsClickHouse
from mamori.store.pdns_keys import net_range
from mamori.store.pdns_spool import Spool
from mamori.store.pdns_sqlite import PdnsSQLite
from tests.store.test_pdns_contract import T, load
from tests.support import clickhouse

pytestmark = pytest.mark.skipif(clickhouse.BINARY is None, reason=clickhouse.MISSING)


@pytest.fixture
def cluster(clickhouse_cluster: list[clickhouse.ClickHouse]) -> list[clickhouse.ClickHouse]:
    """The session's two-shard cluster (tests/conftest.py); this module's database: ``DB``."""
    return clickhouse_cluster


DB = "pdns_cl"


def _store(server: clickhouse.ClickHouse, tmp: Path) -> PdnsClickHouse:
    url = parse_clickhouse_url(server.url.rsplit("/", 1)[0] + f"/{DB}")

    def connect(host: str, port: int) -> DriverConn:
        return DriverConn(parse_clickhouse_url(f"clickhouse://{host}:{port}/{DB}"))

    return PdnsClickHouse(DriverConn(url), Spool(tmp / "spool", 1 << 30), False,
                          clickhouse.CLUSTER, connect)  # fmt: skip


def test_two_shards_answer_as_one_server(
    cluster: list[clickhouse.ClickHouse], tmp_path: Path
) -> None:
    store = _store(cluster[0], tmp_path)
    ref = PdnsSQLite(tmp_path / "ref.sqlite")
    for s in (store, ref):
        load(s)
    per_shard = []
    for ch in cluster:
        conn = DriverConn(parse_clickhouse_url(ch.url.rsplit("/", 1)[0] + f"/{DB}"))
        sql = f"SELECT count() FROM {DB}.pdns_rrset_shard WHERE rname >= unhex('01')"
        per_shard.append(int(conn.query(sql)[0][0]))
        conn.close()
    assert all(n > 0 for n in per_shard)  # both shards hold tuples
    q: list[tuple[str, Any]] = [
        ("rrset", "www.example.com."), ("rrset", "*.example.com."), ("rrset", "www.example.*"),
        ("rdata_name", "*.example.com."),
    ]  # fmt: skip
    for method, arg in q:
        assert getattr(store, method)(arg) == getattr(ref, method)(arg)
    lo, hi = net_range("192.0.2.0/24")
    assert store.rdata_ip(lo, hi) == ref.rdata_ip(lo, hi)
    assert set(store.keyword("mizuho")) == set(ref.keyword("mizuho"))
    assert store.stats() == ref.stats()
    assert sorted(store.sensors()) == sorted(ref.sensors())
    assert store.nxdomain("nx.example.com.") == ref.nxdomain("nx.example.com.")
    # a reader on the other node sees the same
    other = _store(cluster[1], tmp_path / "other")
    assert other.rrset("*.example.com.") == ref.rrset("*.example.com.")
    assert store.compact(T) == ref.compact(T) == (1, 1)
    assert store.rrset("*.example.com.") == ref.rrset("*.example.com.")
    for s in (store, ref, other):
        s.close()


def test_a_batch_sent_twice_to_a_cluster_counts_once(
    cluster: list[clickhouse.ClickHouse], tmp_path: Path
) -> None:
    store = _store(cluster[1], tmp_path)
    tuples = [[f"n{i}.dup.example.", 1, f"198.51.100.{i}", "", 10, 20, 2] for i in range(40)]
    batch = {"id": "ab" * 16, "created": 1, "tuples": tuples, "nx": [], "sensors": [],
             "progress": None, "mark": None}  # fmt: skip
    assert store.spool is not None
    assert store.spool.append(batch) and store.spool.append(batch)
    assert store.drain(force=True) == 0
    got = store.rrset("*.dup.example.")
    assert len(got) == 40 and {r.count for r in got} == {2}
    store.close()
