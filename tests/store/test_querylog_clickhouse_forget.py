"""``mamori store forget-client`` on a ClickHouse query log: the same rows go as on
SQLite (an address, a network for truncated rows, IPv4-mapped forms), from the query
log, the blocked clients per hour and the alerts about the client, on one server and on
every shard of a cluster; "done" means the server has carried the deletes out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mamori.cli import cli
from mamori.store.base import QueryFilter
from mamori.store.forget import forget_client, forget_client_clickhouse
from mamori.store.querylog_sqlite import SQLiteQueryReader
from mamori.store.sqlite import SQLiteStore
from tests.store.test_querylog_contract import T0, open_kind, rows, write
from tests.support import clickhouse
from tests.support.wait import until

pytestmark = pytest.mark.skipif(clickhouse.BINARY is None, reason=clickhouse.MISSING)

ALERTS = [
    (T0, "hits", "warning", "192.0.2.3", "client 192.0.2.3 asked n3.example.", "", ""),
    (T0 + 1, "hits", "warning", "192.0.2.4", "client 192.0.2.4 asked n4.example.", "", ""),
    (T0 + 2, "feeds", "critical", "192.0.2.3", "feed 192.0.2.3 failed", "", ""),
]


def _data() -> list[tuple[Any, ...]]:
    data = rows(300)
    data += [(T0 + 9000.5, "::ffff:192.0.2.5", *data[1][2:])]  # an IPv4-mapped client
    data.sort(key=lambda r: r[0])
    return data


def _view(r: Any) -> tuple[list[Any], list[Any]]:
    return [x[1:] for x in r.queries(QueryFilter(), None, 1000)], r.top_blocked_clients(0, "", 50)


@pytest.mark.parametrize("kind", ["clickhouse", "cluster"])
def test_forget_client_erases_what_sqlite_erases(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store, reader = open_kind(kind, tmp_path, request)
    lite = SQLiteStore(tmp_path / "ref.sqlite", "n1")
    data = _data()
    write(store, data)
    write(lite, data)
    for a in ALERTS:
        store.put_alert(a)
    ref = SQLiteQueryReader(tmp_path / "ref.sqlite")
    before = _view(reader)
    assert before == _view(ref)
    db, left = store.db, len(data)
    for net, gone in (("192.0.2.3", 50), ("192.0.2.4/31", 101)):  # .4, .5 and ::ffff:.5
        assert forget_client(tmp_path / "ref.sqlite", net)["ref.sqlite"] > gone
        got = forget_client_clickhouse(store, net, timeout=60)
        left -= gone
        assert got[f"{db}.query_log"] == gone
        assert len(reader.queries(QueryFilter(), None, 1000)) == left
        assert got[f"{db}.block_clients"] > 0
        assert _view(reader) == _view(ref)  # done: nothing left to wait for
    assert _view(reader) != before
    clients = {r[2] for r in reader.queries(QueryFilter(), None, 1000)}
    assert clients == {"192.0.2.0", "192.0.2.1", "192.0.2.2"}
    # the alerts about those clients go; an alert that is not about a client stays
    assert [(a[3], a[4]) for a in reader.alerts()] == [("192.0.2.3", "feed 192.0.2.3 failed")]
    with pytest.raises(ValueError):
        forget_client_clickhouse(store, "not-an-address")
    for s in (store, lite, reader):
        s.close()


def test_the_command_erases_in_clickhouse_and_says_so(clickhouse_url: str, tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[upstream]\nservers = ["127.0.0.1:5300"]\n[store]\npath = "{tmp_path / "m.db"}"\n'
        f'url = "{clickhouse_url}"\n[server]\nnode_name = "n1"\n'
    )
    from mamori import config
    from mamori.store.querylog_open import open_admin_store

    store = open_admin_store(config.load(cfg))
    store.ensure_schema()
    write(store, _data())
    store.close()
    out = CliRunner().invoke(cli, ["store", "forget-client", "192.0.2.0/30", "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    db = clickhouse_url.rsplit("/", 1)[1]
    assert f"{db}.query_log: 200 rows deleted" in out.output
    bad = CliRunner().invoke(cli, ["store", "forget-client", "192.0.2.x", "--config", str(cfg)])
    assert bad.exit_code == 2 and "not an address or a network" in bad.output


def test_the_command_erases_the_rows_waiting_in_the_nodes_spool(
    clickhouse_url: str, tmp_path: Path
) -> None:
    import time

    from mamori import config
    from mamori.store.ch_conn import DriverConn
    from mamori.store.forget import _in, parse_network
    from mamori.store.pdns_spool import Spool
    from mamori.store.querylog_clickhouse import QueryLogClickHouse
    from mamori.store.querylog_open import spool_dir

    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[upstream]\nservers = ["127.0.0.1:5300"]\n[store]\npath = "{tmp_path / "m.db"}"\n'
        f'url = "{clickhouse_url}"\n[server]\nnode_name = "n1"\n'
    )
    c = config.load(cfg)
    conn = DriverConn(c.store.url)  # type: ignore[arg-type]
    node = QueryLogClickHouse(conn, "n1", Spool(spool_dir(c), 1 << 30, "query log"))
    node._retry_at = time.monotonic() + 3600  # the server "away": the batches wait
    data = _data()
    for i in range(0, len(data), 100):
        node.write_queries(data[i : i + 100])
    assert node.spool is not None and len(node.spool) == 4
    net = parse_network("192.0.2.4/31")
    mine = sum(1 for r in data if _in(r[1], net))  # .4, .5 and ::ffff:192.0.2.5
    out = CliRunner().invoke(cli, ["store", "forget-client", "192.0.2.4/31", "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    assert f"querylog-spool: {mine} rows deleted" in out.output
    assert node.drain(force=True) == 0  # the node sends its batches afterwards
    db = conn.database
    clients = {str(r[0]) for r in conn.query(f"SELECT DISTINCT client FROM {db}.query_log")}
    assert clients and not any(_in(a, net) for a in clients), clients
    blocked = conn.query(f"SELECT DISTINCT client FROM {db}.block_clients WHERE hour > 0")
    assert blocked and not any(_in(str(a), net) for (a,) in blocked), blocked
    n = conn.query(f"SELECT count() FROM {db}.query_log")[0][0]
    assert int(n) == len(data) - mine > 0
    node.close()


def test_a_shard_down_is_named_and_a_run_again_deletes_the_rest(tmp_path: Path) -> None:
    from mamori.config.clickhouse import parse_clickhouse_url
    from mamori.errors import StoreError
    from mamori.store.ch_cluster import shard_connector
    from mamori.store.ch_conn import DriverConn
    from mamori.store.querylog_clickhouse import QueryLogClickHouse
    from tests.support.clickhouse import CLUSTER, ClickHouse

    a, b = ClickHouse(tmp_path / "a"), ClickHouse(tmp_path / "b")
    a.shards = b.shards = [("127.0.0.1", a.tcp), ("127.0.0.1", b.tcp)]
    try:
        a.start()
        b.start()
        url = parse_clickhouse_url(a.url.rsplit("/", 1)[0] + "/q")

        def store() -> QueryLogClickHouse:
            return QueryLogClickHouse(DriverConn(url, timeout=2.0), "n1", None, True, CLUSTER,
                                      shard_connector(url, ""))  # fmt: skip

        def on(ch: ClickHouse) -> int:
            conn = DriverConn(parse_clickhouse_url(ch.url.rsplit("/", 1)[0] + "/q"))
            try:
                return int(conn.query("SELECT count() FROM q.query_log_shard"
                                      " WHERE client = '192.0.2.3'")[0][0])  # fmt: skip
            finally:
                conn.close()

        s = store()
        data = _data()
        # Small batches, each to a shard chosen by its random id: written again (new ids)
        # until the client's rows are on both shards (4 batches once landed on one).
        for _ in range(10):
            write(s, data, size=10)
            if on(a) > 0 and on(b) > 0:
                break
        s.close()
        assert on(a) > 0 and on(b) > 0
        b.stop()
        s = store()
        with pytest.raises(StoreError) as e:
            forget_client_clickhouse(s, "192.0.2.3", timeout=60)
        s.close()
        text = str(e.value)
        assert f"127.0.0.1:{b.tcp}" in text and "1 of 2 shards did not answer" in text, text
        assert "shards that answered are done" in text and "run the command again" in text
        assert until(lambda: on(a) == 0, 60)
        b.start()
        assert on(b) > 0
        s = store()
        got = forget_client_clickhouse(s, "192.0.2.3", timeout=60)
        s.close()
        assert got["q.query_log"] > 0 and on(a) == on(b) == 0
    finally:
        a.stop()
        b.stop()
