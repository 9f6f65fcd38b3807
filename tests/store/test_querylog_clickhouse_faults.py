"""The query log on a ClickHouse that is killed mid-write: nothing lost, nothing doubled.

The test runs its own Debian clickhouse-server (it is SIGKILLed and started again);
batches the writer cannot send wait in the spool on disk and go out, in order, when
the server is back.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mamori.config.clickhouse import parse_clickhouse_url
from mamori.control.writer import EventWriter
from mamori.resolver.events import Event
from mamori.resolver.query import Outcome
from mamori.store.base import QueryFilter, WriterMark
from mamori.store.ch_conn import DriverConn
from mamori.store.pdns_spool import Spool
from mamori.store.querylog_chreader import ClickHouseQueryReader
from mamori.store.querylog_clickhouse import QueryLogClickHouse
from tests.store.test_querylog_contract import T0, hits, rows
from tests.support import clickhouse
from tests.support.wait import until

pytestmark = pytest.mark.skipif(clickhouse.BINARY is None, reason=clickhouse.MISSING)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[clickhouse.ClickHouse]:
    ch = clickhouse.ClickHouse(tmp_path / "ch").start()
    yield ch
    ch.stop()


def _conn(ch: clickhouse.ClickHouse) -> DriverConn:
    return DriverConn(parse_clickhouse_url(ch.url.rsplit("/", 1)[0] + "/qlog"), timeout=2.0)


def _counts(r: ClickHouseQueryReader) -> tuple[int, int, int, int]:
    """(rows, hourly queries, hourly blocked, policy hits) as the console reads them."""
    hourly = r.hourly(0)
    return (
        len(r.queries(QueryFilter(), None, 100_000)),
        sum(q for q, _b in hourly.values()),
        sum(b for _q, b in hourly.values()),
        sum(h[3] for h in r.policy_hits()),
    )


def test_sigkill_during_writes_then_restart_loses_and_doubles_nothing(
    server: clickhouse.ClickHouse, tmp_path: Path
) -> None:
    data = rows(3000)
    batches = [data[i : i + 100] for i in range(0, len(data), 100)]
    store = QueryLogClickHouse(_conn(server), "n1", Spool(tmp_path / "spool", 1 << 30))
    run, _last = store.begin_run(1)
    sent = 0
    killed = threading.Event()

    def killer() -> None:  # SIGKILL while INSERTs are in flight
        assert until(lambda: sent >= 8, 60)
        server.kill()
        killed.set()

    t = threading.Thread(target=killer)
    t.start()
    for i, b in enumerate(batches):
        store.write_queries(b, WriterMark(run, (i + 1) * 100, (i + 1) * 100, 0), hits(b))
        sent = i + 1
        if i == 20:
            assert killed.wait(60)
            assert store.spool is not None and len(store.spool) > 0  # kept on disk
            server.start()
    t.join()
    assert until(lambda: store.drain(force=True) == 0, 30)
    reader = ClickHouseQueryReader(_conn(server), settle=0.0)
    blocked = sum(r[14] in ("blocked", "dropped") for r in data)
    assert _counts(reader) == (len(data), len(data), blocked, sum(1 for r in data if r[10]))
    ids = [r[0] for r in reader.queries(QueryFilter(), None, 100_000)]
    assert len(set(ids)) == len(ids) and max(ids) < 2**53
    store.end_run(WriterMark(run, len(data), len(data), 0))
    again = QueryLogClickHouse(_conn(server), "n1")
    last = again.last_run()
    assert last is not None and last.clean and last.committed == len(data)
    for s in (store, again, reader):
        s.close()


def test_a_batch_sent_again_after_a_lost_reply_counts_once(
    server: clickhouse.ClickHouse, tmp_path: Path
) -> None:
    store = QueryLogClickHouse(_conn(server), "n1", Spool(tmp_path / "spool", 1 << 30))
    data = rows(50, T0 + 86400 - 25 * 270.0)  # across a UTC midnight: two partitions
    batch: dict[str, Any] = {
        "id": "0f" * 16,
        "node": "n1",
        "rows": [[int(r[0] * 1e6), *r] for r in data],
        "hits": [list(h) for h in hits(data)],
        "mark": None,
    }
    assert store.spool is not None
    for _ in range(3):  # kept twice (a reply lost), and once more later
        assert store.spool.append(batch, len(data))
    assert store.drain(force=True) == 0
    reader = ClickHouseQueryReader(_conn(server), settle=0.0)
    blocked = sum(r[14] in ("blocked", "dropped") for r in data)
    assert _counts(reader) == (50, 50, blocked, sum(1 for r in data if r[10]))
    store.close()
    reader.close()


def test_a_batch_sent_again_after_the_server_merged_its_parts_counts_once(
    clickhouse_url: str, tmp_path: Path
) -> None:
    """SummingMergeTree drops rows whose sums are all 0 when it merges: a batch's marker
    must survive merges, or a batch re-sent later is counted twice in the overview."""
    conn = DriverConn(parse_clickhouse_url(clickhouse_url))
    store = QueryLogClickHouse(conn, "n1", Spool(tmp_path / "spool", 1 << 30))
    data = rows(60)
    batch: dict[str, Any] = {"id": "5e" * 16, "node": "n1", "mark": None,
                             "rows": [[int(r[0] * 1e6), *r] for r in data],
                             "hits": [list(h) for h in hits(data)]}  # fmt: skip
    assert store.spool is not None and store.spool.append(batch)
    assert store.drain(force=True) == 0
    more = rows(10, T0 + 86400 * 3)
    store.write_queries(more, None)  # another part to merge with
    for table in ("query_counts", "block_counts", "block_clients"):
        conn.query(f"OPTIMIZE TABLE {conn.database}.{table} FINAL")
    assert store.spool.append(batch) and store.drain(force=True) == 0  # sent again
    reader = ClickHouseQueryReader(DriverConn(parse_clickhouse_url(clickhouse_url)), settle=0.0)
    blocked = sum(r[14] in ("blocked", "dropped") for r in data + more)
    hourly = reader.hourly(0)
    assert sum(q for q, _b in hourly.values()) == 70
    assert sum(b for _q, b in hourly.values()) == blocked
    assert sum(n for _c, n in reader.top_blocked_clients(0, "", 100)) == blocked
    assert sum(n for _h, _z, n in reader.blocks_by_zone(0)) == blocked
    store.close()
    reader.close()


def _by_hour(conn: DriverConn) -> tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int]]]:
    """(per hour from the aggregates, per hour from the query log): (queries, blocked)."""
    db = conn.database
    agg = conn.query(
        f"SELECT hour, sum(queries), sum(blocked) FROM {db}.query_counts WHERE hour > 0"
        " GROUP BY hour"
    )
    raw = conn.query(
        f"SELECT intDiv(toUInt32(ts), 3600) * 3600 AS h, count(),"
        f" countIf(outcome IN ('blocked', 'dropped')) FROM {db}.query_log GROUP BY h"
    )
    return (
        {int(h): (int(q), int(b)) for h, q, b in agg},
        {int(h): (int(q), int(b)) for h, q, b in raw},
    )


def test_repeated_sigkills_at_random_moments_leave_the_aggregates_equal_to_the_log(
    server: clickhouse.ClickHouse, tmp_path: Path
) -> None:
    """A writer sends batches without pause while the server is SIGKILLed at random
    moments (between or inside the INSERTs of one batch) and started again, several
    times: afterwards the per-hour aggregates equal the query log grouped by hour."""
    rng = random.Random(16)
    store = QueryLogClickHouse(_conn(server), "n1", Spool(tmp_path / "spool", 1 << 30))
    stop = threading.Event()
    written = [0]

    def write() -> None:
        i = 0
        while not stop.is_set() and i < 5000:  # bounded
            n = 1 + (i * 37) % 60
            store.write_queries(rows(n, T0 + i * 97.0), None, hits(rows(n, T0 + i * 97.0)))
            written[0] += n
            i += 1

    t = threading.Thread(target=write)
    t.start()
    try:
        for _ in range(3):
            target = written[0] + rng.randrange(50, 400)  # rows: a random moment
            assert until(lambda t=target: written[0] > t, 60)
            server.kill()
            server.start()
    finally:
        stop.set()
        t.join(60)
    assert until(lambda: store.drain(force=True) == 0, 60)
    conn = _conn(server)
    agg, raw = _by_hour(conn)
    assert sum(q for q, _b in raw.values()) == written[0]
    assert agg == raw
    store.close()
    conn.close()


def test_an_idle_writer_sends_its_spool_when_the_server_is_back(
    server: clickhouse.ClickHouse, tmp_path: Path
) -> None:
    """Batches kept while the server was away go out on the writer's timer once it
    answers again, with no further query arriving."""
    store = QueryLogClickHouse(_conn(server), "n1", Spool(tmp_path / "spool", 1 << 30))
    key = b"\x04idle\x07example\x00\x00\x01\x00\x01\x00"
    pending: list[list[Event]] = []
    writer = EventWriter([lambda: pending.pop(0) if pending else []], store, 0.05, 0)
    writer.start()
    reader: ClickHouseQueryReader | None = None
    try:
        server.kill()
        pending.append([(T0 + i, "192.0.2.1", key, 0, "", 0, "", Outcome.RESOLVED.value, "",
                         False, None, "") for i in range(5)])  # fmt: skip
        assert store.spool is not None
        assert until(lambda: len(store.spool or ()) == 1 and not pending, 30)
        server.start()  # no more events from here on
        reader = ClickHouseQueryReader(_conn(server), settle=0.0)
        assert until(lambda: len(reader.queries(QueryFilter(), None, 100)) == 5, 30)
        # the rows are visible once inserted; the batch leaves the spool only after its
        # aggregates and the run's mark went in too
        assert until(lambda: len(store.spool or ()) == 0, 30)
        assert len(reader.queries(QueryFilter(), None, 100)) == 5  # sent once
    finally:
        writer.stop()
        store.close()
        if reader is not None:
            reader.close()


def test_a_batch_refused_between_its_inserts_is_kept_and_completed(
    clickhouse_url: str, tmp_path: Path
) -> None:
    """The server takes a batch's query-log rows and hourly counts, then refuses an
    aggregate's INSERT (its table swapped for one without its columns: a real refusal
    between the INSERTs of one batch): the batch is kept and completed later, so the
    aggregates equal the log."""
    conn = DriverConn(parse_clickhouse_url(clickhouse_url))
    store = QueryLogClickHouse(conn, "n1", Spool(tmp_path / "spool", 1 << 30))
    db = conn.database
    conn.query(f"RENAME TABLE {db}.block_counts TO {db}.block_counts_real")
    conn.query(f"CREATE TABLE {db}.block_counts (hour UInt32, node String) ENGINE = Log")
    data = rows(40)
    store.write_queries(data, None, hits(data))  # no exception: kept
    assert store.spool is not None and len(store.spool) == 1
    assert int(conn.query(f"SELECT count() FROM {db}.query_log")[0][0]) == 40  # half in
    assert store.drain(force=True) == 1  # refused again: kept (not set aside at once)
    conn.query(f"DROP TABLE {db}.block_counts")
    conn.query(f"RENAME TABLE {db}.block_counts_real TO {db}.block_counts")
    assert store.drain(force=True) == 0
    agg, raw = _by_hour(conn)
    assert agg == raw and sum(q for q, _b in raw.values()) == 40
    reader = ClickHouseQueryReader(DriverConn(parse_clickhouse_url(clickhouse_url)), settle=0.0)
    blocked = sum(r[14] in ("blocked", "dropped") for r in data)
    assert sum(n for _h, _z, n in reader.blocks_by_zone(0)) == blocked
    assert sum(n for _c, n in reader.top_blocked_clients(0, "", 100)) == blocked
    for c in (store, reader):
        c.close()


def test_a_writer_started_before_the_server_records_its_run_and_reports_the_crash(
    server: clickhouse.ClickHouse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A node that crashed with batches in its spool starts while ClickHouse does not
    answer yet: its writer records its run on the timer once the server answers, before
    the kept batches go, and reports the crashed run (its pid kept)."""
    import logging
    import time

    from mamori.control import writer as writer_mod

    monkeypatch.setattr(writer_mod, "BEGIN_RETRY", 0.2)
    first = QueryLogClickHouse(_conn(server), "n1", Spool(tmp_path / "spool", 1 << 30))
    run, _ = first.begin_run(4242)
    first._retry_at = time.monotonic() + 3600  # the batches wait in the spool
    first.write_queries(rows(20), WriterMark(run, 20, 20, 0))
    first.conn.close()  # the crash
    server.kill()
    store = QueryLogClickHouse(_conn(server), "n1", Spool(tmp_path / "spool", 1 << 30))
    writer = EventWriter([], store, 0.05, 0)
    with caplog.at_level(logging.WARNING, "mamori.control.writer"):
        writer.begin()
        assert writer.run_id == 0  # the server does not answer yet
        writer.start()
        try:
            server.start()
            assert until(lambda: writer.run_id == run + 1, 60)
        finally:
            writer.stop()
    text = caplog.text
    assert "the last run (pid 4242" in text and "did not stop cleanly" in text, text
    conn = _conn(server)
    got = conn.query(
        "SELECT pid, committed, clean FROM qlog.writer_runs FINAL"
        f" WHERE node = 'n1' AND run = {run}"
    )
    assert [tuple(int(x) for x in r) for r in got] == [(4242, 20, 0)], got
    conn.close()
    store.close()
