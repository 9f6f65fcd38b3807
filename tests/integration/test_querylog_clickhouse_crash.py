"""``mamori serve`` with its query log in ClickHouse is SIGKILLed while the server is
stopped (its batches wait in the local spool, as ``/metrics`` shows): the next start
sends them and does not count their events as lost (``writer_runs.lost_before`` is
exact: 0)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from mamori.config.clickhouse import parse_clickhouse_url
from mamori.store.base import QueryFilter
from mamori.store.ch_conn import DriverConn
from mamori.store.pdns_spool import Spool
from mamori.store.querylog_chreader import ClickHouseQueryReader
from tests.integration.test_metrics import _scrape
from tests.integration.test_querylog_clickhouse_fleet import ZONE
from tests.support import clickhouse
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = pytest.mark.skipif(clickhouse.BINARY is None, reason=clickhouse.MISSING)


def _runs(url: Any) -> list[tuple[int, int, int]]:
    """The node's writer runs: (run, committed, lost_before), oldest first."""
    conn = DriverConn(url)
    try:
        rows = conn.query(
            "SELECT run, argMax(committed, version), argMax(lost_before, version)"
            " FROM qlog.writer_runs WHERE node = 'edge-a' GROUP BY run ORDER BY run"
        )
    finally:
        conn.close()
    return [(int(r[0]), int(r[1]), int(r[2])) for r in rows]


def _kept(spool: Path) -> int:
    """Query-log rows waiting in the spool's batches."""
    s = Spool(spool, 1 << 30)
    total = 0
    for f in s.files():
        try:
            total += len(s.read(f)["rows"])
        except (OSError, ValueError):
            continue  # being written
    return total


def test_events_kept_in_the_spool_at_a_crash_are_sent_not_counted_lost(tmp_path: Path) -> None:
    ch = clickhouse.ClickHouse(tmp_path / "ch").start()
    url = parse_clickhouse_url(ch.url.rsplit("/", 1)[0] + "/qlog")
    node = tmp_path / "node"
    node.mkdir()
    try:
        with AuthServer(ZONE, "example.test.") as up, contextlib.ExitStack() as stack:
            web = free_port()
            extra = f'[web]\nenabled = true\nlisten = "127.0.0.1:{web}"\n'
            m = MamoriProcess(node, [f"127.0.0.1:{up.port}"], extra, node_name="edge-a", workers=1)
            metrics = f"http://127.0.0.1:{web}/metrics"
            m.config.write_text(m.config.read_text().replace(
                "flush_interval = 0.05\n", f'flush_interval = 0.05\nurl = "{url}"\n'
            ))  # fmt: skip
            m.start()
            stack.callback(m.stop)
            reader = ClickHouseQueryReader(lambda: DriverConn(url, timeout=2.0), settle=0.0)
            for i in range(3):
                assert m.query(f"up{i}.example.test.").rcode() in (0, 3)
            assert until(lambda: len(reader.queries(QueryFilter(), None, 100)) == 3, 20)
            # ... and the batches are complete: a batch's rows go in first, its aggregates
            # and the run's mark last; stopped between those, the batch is kept whole
            # (then a 6th row waits in the spool: a CI failure under load)
            assert until(lambda: _runs(url)[:1] == [(1, 3, 0)], 20)  # run 1: 3 committed
            ch.stop()  # the server goes away: the next batches wait on local disk
            for i in range(5):
                assert m.query(f"down{i}.example.test.").rcode() in (0, 3)
            assert until(lambda: _kept(node / "querylog-spool") == 5, 30), m.stderr()[-2000:]
            got = _scrape(metrics)
            q = (("store", "querylog"),)
            assert got[("mamori_spool_batches", q)] >= 1 and got[("mamori_spool_bytes", q)] > 100
            assert got[("mamori_spool_dropped_total", q)] == 0
            assert m.proc is not None
            os.kill(m.proc.pid, signal.SIGKILL)  # a crash, by PID
            m.proc.wait(10)
            m.stop()
            ch.start()
            m.start()  # sends the kept batches, then counts the crashed run's loss
            try:
                assert until(lambda: len(reader.queries(QueryFilter(), None, 100)) == 8, 20)
                # the rows are visible before their batch leaves the spool and before the
                # new run's row goes in (the writer thread does both after the rows)
                assert until(lambda: _scrape(metrics)[("mamori_spool_batches", q)] == 0, 20)
                assert _scrape(metrics)[("mamori_spool_bytes", q)] == 0
                assert until(lambda: len(_runs(url)) == 2, 20)
                runs = _runs(url)
            finally:
                assert m.stop() == 0, m.stderr()[-2000:]
            assert [tuple(r) for r in runs] == [(1, 8, 0), (2, 0, 0)], runs
            assert "did not stop cleanly" in m.stderr()  # the crash is reported ...
            assert " 0 events it had received were not written" in m.stderr()  # ... exactly
    finally:
        ch.stop()
