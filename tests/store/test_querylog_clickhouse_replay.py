"""A node crashes with batches in its query-log spool and comes back while its ClickHouse
does not answer yet: the kept batches go out on the writer's timer, before its run is
recorded. The crashed run keeps its pid and start in ``writer_runs`` and is not marked
clean; the crash is reported once the run is recorded, with the twin hint."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from mamori.config.clickhouse import parse_clickhouse_url
from mamori.control.writer import EventWriter
from mamori.store.base import WriterMark
from mamori.store.ch_conn import DriverConn
from mamori.store.pdns_spool import Spool
from mamori.store.querylog_clickhouse import QueryLogClickHouse
from tests.store.test_querylog_contract import rows


def _store(url: str, spool: Path) -> QueryLogClickHouse:
    return QueryLogClickHouse(DriverConn(parse_clickhouse_url(url)), "fw-2", Spool(spool, 1 << 30))


def test_a_replayed_batch_keeps_its_crashed_runs_pid_and_the_crash_is_reported(
    clickhouse_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _store(clickhouse_url, tmp_path / "spool")
    run, _ = first.begin_run(4242)
    started = first._runs[run][1]
    first._retry_at = time.monotonic() + 3600  # the server "away": the batches are kept
    data = rows(50)
    first.write_queries(data[:25], WriterMark(run, 25, 25, 0))
    first.write_queries(data[25:], WriterMark(run, 50, 50, 0))
    assert first.spool is not None and len(first.spool) == 2
    first.conn.close()  # the crash: no end_run, the spool stays

    second = _store(clickhouse_url, tmp_path / "spool")
    assert second.drain(force=True) == 0  # the timer's send, before the run is recorded
    conn = DriverConn(parse_clickhouse_url(clickhouse_url))
    db = conn.database
    got = conn.query(
        f"SELECT pid, started, committed, clean FROM {db}.writer_runs FINAL"
        f" WHERE node = 'fw-2' AND run = {run}"
    )
    assert [(int(p), float(s), int(c), int(k)) for p, s, c, k in got] == [
        (4242, pytest.approx(started, abs=1e-3), 50, 0)
    ], got
    assert conn.query(f"SELECT count() FROM {db}.query_log")[0][0] == 50
    writer = EventWriter([], second, 1.0, 0)
    with caplog.at_level(logging.WARNING, "mamori.control.writer"):
        writer.begin()
    text = caplog.text
    assert "the last run (pid 4242" in text and "did not stop cleanly" in text, text
    assert " 0 events it had received were not written" in text  # replayed: committed
    assert "or another node is running with node_name fw-2" in text
    assert "another node may be running" not in text  # the spool was this node's
    assert writer.run_id == run + 1
    conn.close()
    second.close()
