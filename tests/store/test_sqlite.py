from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from mamori.errors import StoreError
from mamori.resolver.events import EventQueue, EventWriter, deque_source
from mamori.store.sqlite import SCHEMA_VERSION, SQLiteStore

KEY = b"\x03www\x07example\x00\x00\x01\x00\x01\x00"


def test_writer_batches_events_into_wal_sqlite(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    q = EventQueue(100)
    w = EventWriter(deque_source(q), store, 0.01, 7)
    w.start()
    for i in range(10):
        q.put(
            (
                time.time(),
                f"192.0.2.{i}",
                KEY,
                0,
                "A 192.0.2.1",
                5,
                "127.0.0.1:53",
                False,
                i % 2 == 1,
                None,
            )
        )
    w.stop()
    db = sqlite3.connect(tmp_path / "q.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = db.execute(
        "SELECT client, qname, qtype, transport FROM query_log ORDER BY id"
    ).fetchall()
    assert len(rows) == 10 and w.written == 10
    assert rows[0] == ("192.0.2.0", "www.example.", 1, "udp") and rows[1][3] == "tcp"
    store.close()


def test_retention_prunes_old_rows(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    now = time.time()
    old = (
        now - 8 * 86400,
        "192.0.2.1",
        "old.example.",
        1,
        0,
        "",
        0,
        "",
        False,
        "udp",
        "",
        "",
        "",
        "",
    )
    new = (now - 60, "192.0.2.1", "new.example.", 1, 0, "", 0, "", False, "udp", "", "", "", "")
    store.write_queries([old, new])
    w = EventWriter(lambda _t: [], store, 0.01, retention_days=7)
    w._maybe_prune()
    names = [r[0] for r in store.db.execute("SELECT qname FROM query_log")]
    assert names == ["new.example."]
    store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "q.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(tmp_path / "q.db")


def test_unwritable_store_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open store"):
        SQLiteStore(blocker / "sub" / "q.db")


def test_policy_hit_counters_add_up_across_batches(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    q = EventQueue(100)
    w = EventWriter(deque_source(q), store, 0.01, 7)
    w.start()
    hit = ("rpz.local.", "bad.test.rpz.local", "QNAME", "NXDOMAIN", False)
    for i in range(5):
        q.put((1000.0 + i, "192.0.2.1", KEY, 3, "", 0, "", True, False, hit))
        time.sleep(0.03)  # several batches
    q.put((2000.0, "192.0.2.1", KEY, 0, "", 0, "", True, False, None))
    w.stop()
    assert store.policy_hits() == [("rpz.local.", "QNAME", "NXDOMAIN", 5, 1000.0, 1004.0)]
    assert w.zone_hits == {"rpz.local.": 5}
    store.close()


def test_hourly_counts_follow_the_query_log(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    row = (0.0, "192.0.2.1", "a.example.", 1, 0, "", 0, "", False, "udp", "", "", "", "")
    blocked = (0.0, "192.0.2.1", "b.example.", 1, 3, "", 0, "", False, "udp",
               "z.rpz.", "b.example.z.rpz", "QNAME", "NXDOMAIN")  # fmt: skip
    store.write_queries([(7200.5, *row[1:]), (7300.0, *blocked[1:]), (10900.0, *row[1:])])
    store.write_queries([(7201.0, *blocked[1:])])
    counts = store.db.execute("SELECT * FROM query_counts ORDER BY hour").fetchall()
    assert counts == [(7200, 3, 2), (10800, 1, 0)]
    store.prune_queries(10800.0)
    assert store.db.execute("SELECT * FROM query_counts").fetchall() == [(10800, 1, 0)]
    store.close()
