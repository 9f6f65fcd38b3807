"""The query log on a two-shard cluster of Debian's clickhouse-server (``[store] cluster``):
each batch goes whole to one shard, exactly once, and the Distributed tables read the
sum. (The contract reads on the cluster: ``test_querylog_contract``, kind "cluster".)"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from mamori import config
from mamori.config.clickhouse import parse_clickhouse_url
from mamori.errors import ConfigError
from mamori.store.base import QueryFilter
from mamori.store.ch_cluster import shard_connector
from mamori.store.ch_conn import DriverConn
from mamori.store.pdns_spool import Spool
from mamori.store.querylog_chreader import ClickHouseQueryReader
from mamori.store.querylog_clickhouse import QueryLogClickHouse
from tests.store.test_querylog_contract import hits, rows
from tests.support import clickhouse

pytestmark = pytest.mark.skipif(clickhouse.BINARY is None, reason=clickhouse.MISSING)


def _url(server: clickhouse.ClickHouse, db: str) -> Any:
    return parse_clickhouse_url(server.url.rsplit("/", 1)[0] + "/" + db)


def test_batches_spread_over_both_shards_and_a_resent_batch_counts_once(
    clickhouse_cluster: list[clickhouse.ClickHouse], tmp_path: Path
) -> None:
    db = f"c_{uuid.uuid4().hex[:12]}"
    url = _url(clickhouse_cluster[0], db)
    store = QueryLogClickHouse(DriverConn(url), "n1", Spool(tmp_path / "spool", 1 << 30), True,
                               clickhouse.CLUSTER, shard_connector(url, ""))  # fmt: skip
    data = rows(600)
    for i in range(0, 600, 50):
        store.write_queries(data[i : i + 50], None, hits(data[i : i + 50]))
    # a batch whose reply was lost is sent again: found on its shard, not counted twice
    again = {"id": "ab" * 16, "node": "n1", "hits": hits(data[:7]), "mark": None,
             "rows": [[10**15 + i, *r] for i, r in enumerate(data[:7])]}  # fmt: skip
    assert store.spool is not None
    assert store.spool.append(again) and store.spool.append(again)
    assert store.drain(force=True) == 0
    per_shard = []
    for server in clickhouse_cluster:
        conn = DriverConn(_url(server, db))
        per_shard.append(int(conn.query(f"SELECT count() FROM {db}.query_log_shard")[0][0]))
        conn.close()
    assert sum(per_shard) == 607 and all(n > 0 for n in per_shard)
    reader = ClickHouseQueryReader(DriverConn(_url(clickhouse_cluster[1], db)), settle=0.0)
    assert len(reader.queries(QueryFilter(), None, 10_000)) == 607
    assert sum(q for q, _b in reader.hourly(0).values()) == 607
    assert sum(h[3] for h in reader.policy_hits()) == sum(h[3] for h in hits(data)) + sum(
        h[3] for h in hits(data[:7])
    )
    reader.close()
    store.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('cluster = "c1"\n', "needs store.url"),
        ('url = "clickhouse://h/db"\ncluster = "no-dash"\n', "must be a cluster name"),
    ],
)
def test_store_cluster_errors_name_file_line_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    p = tmp_path / "m.toml"
    p.write_text('[upstream]\nservers = ["127.0.0.1:5300"]\n[store]\n' + text)
    with pytest.raises(ConfigError) as e:
        config.load(p)
    assert e.value.key == "store.cluster" and message in e.value.message
    assert str(e.value).startswith(f"{p}:")


def test_a_node_configured_with_store_cluster_checks_writes_and_accounts_its_runs(
    clickhouse_cluster: list[clickhouse.ClickHouse], tmp_path: Path
) -> None:
    from mamori.store.base import WriterMark
    from mamori.store.querylog_open import check, open_query_reader, open_query_store

    db = f"c_{uuid.uuid4().hex[:12]}"
    p = tmp_path / "m.toml"
    p.write_text(
        f'[upstream]\nservers = ["127.0.0.1:5300"]\n[server]\nnode_name = "edge-a"\n'
        f'[store]\npath = "{tmp_path / "m.db"}"\nurl = "clickhouse://127.0.0.1:'
        f'{clickhouse_cluster[1].tcp}/{db}"\ncluster = "{clickhouse.CLUSTER}"\n'
    )
    cfg = config.load(p)
    lines = check(cfg)
    # 16 objects (9 local, 7 Distributed) on each of the two shards (this node is one)
    assert lines[1] == "  schema:  0 tables present, 32 created"
    assert check(cfg)[1] == "  schema:  16 tables present, 0 created"
    store: Any = open_query_store(cfg)
    run, last = store.begin_run(4242)
    assert (run, last) == (1, None)
    data = rows(100)
    store.write_queries(data, WriterMark(run, 100, 100, 0), hits(data))
    store.end_run(WriterMark(run, 100, 100, 0))
    store.close()
    again: Any = open_query_store(cfg)
    run2, last = again.begin_run(4343)
    assert run2 == 2 and last is not None and last.clean and last.committed == 100
    assert (last.pid, last.lost) == (4242, 0)
    again.close()
    reader = open_query_reader(cfg)
    assert reader.nodes() == ["edge-a"] and reader.count(0, 2e9) == 100
    reader.close()
