"""The passive DNS tap's crash accounting on a ClickHouse a fleet shares: runs are per
sensor (each node's tap sees its own last run, a crash is reported to the sensor that
crashed), also in a ``pdns_tap_runs`` created before the table had a ``sensor`` column."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from mamori.config.clickhouse import parse_clickhouse_url
from mamori.store.base import WriterMark
from mamori.store.ch_conn import DriverConn
from mamori.store.pdns_clickhouse import PdnsClickHouse, run_base
from mamori.store.pdns_spool import Spool
from tests.support import clickhouse

ANSWER = {("www.example.test.", 1, "192.0.2.1", "example.test."): [1_700_000_000] * 2 + [1]}
# the table as stores created before runs were per sensor have it
OLD_RUNS = (
    "CREATE TABLE {db}.{table} (run UInt64, pid UInt32, started Float64, updated Float64,"
    " received UInt64, committed UInt64, failed UInt64, clean UInt8, lost_before UInt64,"
    " version UInt64) ENGINE = ReplacingMergeTree(version) ORDER BY run"
)


def _tap(url: str, tmp: Path, sensor: str) -> PdnsClickHouse:
    """A tap's store of node *sensor* (its own spool, as each node has)."""
    conn = DriverConn(parse_clickhouse_url(url))
    return PdnsClickHouse(conn, Spool(tmp / f"spool-{sensor}", 1 << 30), sensor=sensor)


def _crash(store: PdnsClickHouse, pid: int) -> int:
    """A run that committed a batch (10 answers received, 4 committed) and was never
    ended (killed): its id."""
    run, _last = store.begin_run(pid)
    store.write(dict(ANSWER), mark=WriterMark(run, 10, 4, 0))
    return run


def _clean(store: PdnsClickHouse, pid: int) -> int:
    run, _last = store.begin_run(pid)
    store.end_run(WriterMark(run, 3, 3, 0))
    return run


def _each_sensor_its_own_runs(url: str, tmp: Path) -> None:
    a, b = _tap(url, tmp, "resolver:fw-1"), _tap(url, tmp, "resolver:fw-2")
    a1 = _clean(a, 101)
    b1 = _crash(b, 202)
    assert a1 != b1
    a.close()
    b.close()
    # fw-1 restarts: its own clean run, not fw-2's crash
    a = _tap(url, tmp, "resolver:fw-1")
    a2, last = a.begin_run(103)
    assert last is not None and (last.run, last.pid, last.clean) == (a1, 101, True)
    # fw-2 restarts: its crash, with what it lost
    b = _tap(url, tmp, "resolver:fw-2")
    b2, last = b.begin_run(204)
    assert last is not None and (last.run, last.pid, last.clean) == (b1, 202, False)
    assert last.lost == 6
    # fw-1 (running, not ended) is not a crash of fw-2: fw-2's next start sees its own run
    b.end_run(WriterMark(b2, 0, 0, 0))
    b.close()
    b = _tap(url, tmp, "resolver:fw-2")
    _b3, last = b.begin_run(205)
    assert last is not None and (last.run, last.pid, last.clean) == (b2, 204, True)
    assert a2 == a1 + 1 and b2 == b1 + 1  # ids count per sensor
    a.close()
    b.close()


def test_each_sensor_sees_only_its_own_runs(clickhouse_url: str, tmp_path: Path) -> None:
    _each_sensor_its_own_runs(clickhouse_url, tmp_path)


def test_a_table_of_before_gets_the_column_and_keeps_sensors_apart(
    clickhouse_url: str, tmp_path: Path
) -> None:
    db = clickhouse_url.rsplit("/", 1)[1]
    conn = DriverConn(parse_clickhouse_url(clickhouse_url))
    conn.query(f"CREATE DATABASE {db}")
    conn.query(OLD_RUNS.format(db=db, table="pdns_tap_runs"))
    conn.insert("pdns_tap_runs", ["run", "pid", "clean", "version"], [(1, 77, 0, 1)])
    _each_sensor_its_own_runs(clickhouse_url, tmp_path)
    # ordered by run only: the rows of two sensors would be merged if they shared an id
    conn.query(f"OPTIMIZE TABLE {db}.pdns_tap_runs FINAL")
    rows = conn.query(f"SELECT sensor, run, pid FROM {db}.pdns_tap_runs FINAL ORDER BY pid")
    assert [(str(s), int(r), int(p)) for s, r, p in rows] == [
        ("", 1, 77),  # the row of before, as it was
        ("resolver:fw-1", run_base("resolver:fw-1") + 1, 101),
        ("resolver:fw-1", run_base("resolver:fw-1") + 2, 103),
        ("resolver:fw-2", run_base("resolver:fw-2") + 1, 202),
        ("resolver:fw-2", run_base("resolver:fw-2") + 2, 204),
        ("resolver:fw-2", run_base("resolver:fw-2") + 3, 205),
    ]
    conn.close()


def test_run_ids_of_sensors_differ_and_fit() -> None:
    bases = {run_base(f"resolver:fw-{i}") for i in range(1000)}
    assert len(bases) == 1000
    assert all(1 << 32 <= b < 1 << 63 for b in bases)
    assert run_base("") == 0  # a store opened without a sensor: the ids of before


def test_a_cluster_of_before_gets_the_column_on_every_node(
    clickhouse_cluster: list[Any], tmp_path: Path
) -> None:
    db = f"t_{uuid.uuid4().hex[:12]}"
    for ch in clickhouse_cluster:  # the runs tables of before, on both nodes
        conn = DriverConn(parse_clickhouse_url(ch.url.rsplit("/", 1)[0] + f"/{db}"))
        conn.query(f"CREATE DATABASE {db}")
        conn.query(OLD_RUNS.format(db=db, table="pdns_tap_runs_shard"))
        conn.query(
            f"CREATE TABLE {db}.pdns_tap_runs AS {db}.pdns_tap_runs_shard"
            f" ENGINE = Distributed({clickhouse.CLUSTER}, {db}, pdns_tap_runs_shard, rand())"
        )
        conn.close()

    def tap(ch: Any, sensor: str) -> PdnsClickHouse:
        def connect(host: str, port: int) -> DriverConn:
            return DriverConn(parse_clickhouse_url(f"clickhouse://{host}:{port}/{db}"))

        url = parse_clickhouse_url(ch.url.rsplit("/", 1)[0] + f"/{db}")
        spool = Spool(tmp_path / f"spool-{sensor}", 1 << 30)
        return PdnsClickHouse(DriverConn(url), spool, False, clickhouse.CLUSTER, connect,
                              sensor)  # fmt: skip

    # two nodes, each reading through its own server
    a, b = tap(clickhouse_cluster[0], "fw-1"), tap(clickhouse_cluster[1], "fw-2")
    _clean(a, 11)
    b1 = _crash(b, 22)
    a.close()
    b.close()
    a, b = tap(clickhouse_cluster[0], "fw-1"), tap(clickhouse_cluster[1], "fw-2")
    _run, last = a.begin_run(12)
    assert last is not None and (last.pid, last.clean) == (11, True)
    _run, last = b.begin_run(23)
    assert last is not None and (last.run, last.pid, last.clean, last.lost) == (b1, 22, False, 6)
    a.close()
    b.close()


def test_a_replayed_mark_of_an_earlier_run_keeps_its_pid_and_start(
    clickhouse_url: str, tmp_path: Path
) -> None:
    """A batch a crashed run left in the spool, sent by the next process, updates that
    run's counts; its pid and start stay as the run recorded them (not 0)."""
    a = _tap(clickhouse_url, tmp_path, "resolver:fw-7")
    run, _last = a.begin_run(707)
    started = a._runs[run][1]
    a.close()
    b = _tap(clickhouse_url, tmp_path / "b", "resolver:fw-7")  # another process
    b.write(dict(ANSWER), mark=WriterMark(run, 9, 9, 0))  # the kept batch, sent now
    b.close()
    c = _tap(clickhouse_url, tmp_path / "c", "resolver:fw-7")
    _run, last = c.begin_run(708)
    assert last is not None
    assert (last.run, last.pid, last.started, last.committed) == (run, 707, started, 9)
    c.close()
