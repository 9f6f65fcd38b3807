"""A batch's exactly-once markers on ClickHouse go with the retention: one marker row per
batch and table would otherwise pile up forever (a node flushing every half second
writes ~170,000 batches a day)."""

from __future__ import annotations

import time

import pytest

from mamori.config.clickhouse import parse_clickhouse_url
from mamori.store import querylog_clickhouse as qc
from mamori.store.ch_conn import DriverConn
from mamori.store.querylog_clickhouse import QueryLogClickHouse
from tests.store.test_querylog_contract import hits, rows
from tests.support import clickhouse

pytestmark = pytest.mark.skipif(clickhouse.BINARY is None, reason=clickhouse.MISSING)

DAY = 86400


def _markers(conn: DriverConn) -> dict[str, int]:
    db = conn.database
    out = {}
    for table, where in (("query_counts", "hour = 0"), ("block_counts", "hour = 0"),
                         ("block_clients", "hour = 0"), ("policy_hits", "zone = ''")):  # fmt: skip
        out[table] = int(conn.query(f"SELECT count() FROM {db}.{table} WHERE {where}")[0][0])
    return out


def test_markers_older_than_the_retention_are_deleted_and_newer_ones_kept(
    clickhouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = DriverConn(parse_clickhouse_url(clickhouse_url))
    store = QueryLogClickHouse(conn, "edge-a")
    made = qc.batch_id
    now = time.time()
    batch = rows(40, now - 3600)  # blocked rows of several zones and clients, with hits
    for age in (40, 10, 0):  # batches made 40 days, 10 days and just now
        monkeypatch.setattr(qc, "batch_id", lambda t, age=age: made(t - age * DAY))
        store.write_queries(batch, None, hits(batch))
    assert _markers(conn) == dict.fromkeys(_markers(conn), 3)
    store.prune_queries(now - 7 * DAY)  # the log keeps 7 days
    assert store.wait_mutations(60)
    # the aggregates' markers of the 10- and 40-day-old batches are gone; the policy
    # hits' (kept forever) go after 30 days: the 40-day-old one
    assert _markers(conn) == {
        "query_counts": 1, "block_counts": 1, "block_clients": 1, "policy_hits": 2,
    }  # fmt: skip
    # the new batch is still exactly-once: its rows and counts are there once
    (queries,) = conn.query(
        f"SELECT sum(queries) FROM {conn.database}.query_counts WHERE hour > 0"
    )[0]
    assert int(queries) == 3 * len(batch)  # all three batches' rows are in the window
    store.close()
