"""The query-log writer's crash accounting against a real SQLite file (store/runs.py)."""

from __future__ import annotations

import time
from pathlib import Path

from mamori.control.writer import EventWriter, queue_source
from mamori.resolver.events import Event, EventQueue
from mamori.resolver.query import Outcome
from mamori.store.runs import ReceivedNote
from mamori.store.sqlite import SQLiteStore

KEY = b"\x03www\x07example\x00\x00\x01\x00\x01\x00"


def _event(i: int) -> Event:
    return (time.time(), f"192.0.2.{i % 250}", KEY, 0, "A 192.0.2.1", 5, "127.0.0.1:53",
            Outcome.RESOLVED, "", False, None, "")  # fmt: skip


def _writer(store: SQLiteStore, q: EventQueue, note: Path) -> EventWriter:
    return EventWriter([queue_source(q)], store, 0.01, 7, backlog=lambda: len(q.items),
                       received_path=note)  # fmt: skip


def test_a_clean_stop_loses_nothing_and_says_so(tmp_path: Path) -> None:
    store, q, note = SQLiteStore(tmp_path / "q.db"), EventQueue(100), tmp_path / "q.db-events"
    w = _writer(store, q, note)
    w.begin()
    w.start()
    for i in range(30):
        q.put(_event(i))
    w.stop()
    again = _writer(store, EventQueue(100), note)
    again.begin()
    assert again.lost_at_last_crash == 0
    (clean, received, committed) = store.db.execute(
        "SELECT clean, received, committed FROM writer_runs ORDER BY run LIMIT 1"
    ).fetchone()
    assert (clean, received, committed) == (1, 30, 30)
    store.close()


def test_events_waiting_at_a_crash_are_counted_at_the_next_start(tmp_path: Path) -> None:
    """A run that never stops (the crash) with one batch committed, 7 events waiting at
    that commit and 5 more noted after it: the next start counts 12 lost."""
    store, q, note = SQLiteStore(tmp_path / "q.db"), EventQueue(100), tmp_path / "q.db-events"
    w = _writer(store, q, note)
    w.begin()
    w.flush([_event(i) for i in range(10)])  # committed, with 7 still waiting:
    for i in range(7):
        q.put(_event(i))
    w.flush([_event(0)])  # (commits with received = 10 + 1 + 7 waiting)
    assert w.received_note is not None
    w.received_note.update(w.received + len(q.items) + 5)  # 5 more noted since
    # ... and the process is killed here: no stop, no final drain
    after = _writer(store, EventQueue(100), note)
    after.begin()
    assert after.lost_at_last_crash == 12
    (lost_before,) = store.db.execute(
        "SELECT lost_before FROM writer_runs ORDER BY run DESC LIMIT 1"
    ).fetchone()
    assert lost_before == 12
    store.close()


def test_a_torn_or_missing_note_is_ignored(tmp_path: Path) -> None:
    assert ReceivedNote(tmp_path / "none").read() is None
    (tmp_path / "short").write_bytes(b"\x01\x00\x00")
    assert ReceivedNote(tmp_path / "short").read() is None
