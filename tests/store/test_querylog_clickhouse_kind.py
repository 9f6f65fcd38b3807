"""A ``[store] url`` database made for a cluster (``Distributed`` query-log tables) but
no ``[store] cluster`` in the config, or the reverse: refused as a configuration error
naming ``store.cluster``, nothing created (``mamori check`` fails, a node spools)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from mamori.config.clickhouse import parse_clickhouse_url
from mamori.store.ch_cluster import shard_connector
from mamori.store.ch_conn import ChRefused, DriverConn
from mamori.store.querylog_clickhouse import QueryLogClickHouse
from tests.support import clickhouse
from tests.support.clickhouse import CLUSTER

pytestmark = pytest.mark.skipif(clickhouse.BINARY is None, reason=clickhouse.MISSING)


def _tables(conn: DriverConn) -> set[str]:
    rows = conn.query(f"SELECT name FROM system.tables WHERE database = '{conn.database}'")
    return {str(r[0]) for r in rows}


def test_a_cluster_database_without_store_cluster_and_the_reverse_are_refused(
    clickhouse_cluster: Any,
) -> None:
    base = clickhouse_cluster[0].url.rsplit("/", 1)[0]
    fleet = parse_clickhouse_url(f"{base}/f_{uuid.uuid4().hex[:10]}")
    QueryLogClickHouse(DriverConn(fleet), "n1", None, True, CLUSTER,
                       shard_connector(fleet, "")).close()  # fmt: skip
    conn = DriverConn(fleet)
    before = _tables(conn)
    lone = QueryLogClickHouse(DriverConn(fleet), "n1", None, False)
    with pytest.raises(ChRefused, match=r"store\.cluster is not set"):
        lone.ensure_schema()
    lone.close()
    assert _tables(conn) == before  # no policy_hits_in / _mv created beside the cluster's
    conn.close()

    single = parse_clickhouse_url(f"{base}/s_{uuid.uuid4().hex[:10]}")
    QueryLogClickHouse(DriverConn(single), "n1", None, True).close()
    wrong = QueryLogClickHouse(DriverConn(single), "n1", None, False, CLUSTER,
                               shard_connector(single, ""))  # fmt: skip
    with pytest.raises(ChRefused, match=r"store\.cluster = 'mamori_test' is set"):
        wrong.ensure_schema()
    wrong.close()
    other = DriverConn(parse_clickhouse_url(clickhouse_cluster[1].url))
    known = other.query(f"SELECT count() FROM system.databases WHERE name = '{single.database}'")
    assert int(known[0][0]) == 0  # refused before anything was created on the other shard
    other.close()
