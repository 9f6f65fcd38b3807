"""Crash accounting of a writer thread: what it received, committed, and lost at a crash.

A writer (the query log's, the passive DNS tap's) has one row per run in a
table of its store, updated in the same transaction as every batch it commits
(``mark``): items received (taken from its queue or waiting in it, at that
commit), committed, refused by the store (failed). Between commits it notes
the items received so far in a ``ReceivedNote`` (a small memory-mapped file:
no system call, and the page cache keeps it when the process is killed). A run
that stops normally is marked clean after its final drain. At the next start
(``begin``) a run not marked clean lost at least received - committed - failed
items; those received after its last note are not counted.
"""

from __future__ import annotations

import logging
import mmap
import sqlite3
import struct
import time
from pathlib import Path

from mamori.store.base import WriterMark, WriterRun

log = logging.getLogger(__name__)

KEEP_RUNS = 100  # rows kept per table (a few are enough to explain the last crash)


def ddl(table: str) -> str:
    """The ``CREATE TABLE IF NOT EXISTS`` statement of a runs table named *table*."""
    return f"""CREATE TABLE IF NOT EXISTS {table} (
        run         INTEGER PRIMARY KEY,
        pid         INTEGER NOT NULL,
        started     REAL    NOT NULL,  -- UNIX time
        updated     REAL    NOT NULL,  -- UNIX time of the last commit
        received    INTEGER NOT NULL DEFAULT 0,  -- items taken in or waiting, at that commit
        committed   INTEGER NOT NULL DEFAULT 0,  -- items whose data is committed
        failed      INTEGER NOT NULL DEFAULT 0,  -- items in batches the store refused
        clean       INTEGER NOT NULL DEFAULT 0,  -- 1: stopped after its final drain
        lost_before INTEGER NOT NULL DEFAULT 0   -- items the previous run lost (a crash)
    )"""


def mark(db: sqlite3.Connection, table: str, m: WriterMark, clean: bool = False) -> None:
    """Update run ``m.run`` (inside the caller's transaction)."""
    db.execute(
        f"UPDATE {table} SET updated = ?, received = ?, committed = ?, failed = ?,"
        " clean = ? WHERE run = ?",
        (time.time(), m.received, m.committed, m.failed, int(clean), m.run),
    )


def begin(
    db: sqlite3.Connection, table: str, pid: int, noted: tuple[int, int] | None
) -> tuple[int, WriterRun | None]:
    """Record a run's start; (its id, the previous run or None). *noted*: (run, received)
    from the previous run's ``ReceivedNote``, applied first. Run it inside the caller's
    transaction. Raises sqlite3.Error."""
    if noted is not None:
        db.execute(
            f"UPDATE {table} SET received = max(received, ?) WHERE run = ?",
            (noted[1], noted[0]),
        )
    row = db.execute(
        "SELECT run, pid, started, updated, received, committed, failed, clean"
        f" FROM {table} ORDER BY run DESC LIMIT 1"
    ).fetchone()
    last = None
    if row:
        run, was, started, updated, received, committed, failed, clean = row
        last = WriterRun(run, was, started, updated, received, committed, failed,
                         bool(clean))  # fmt: skip
    now = time.time()
    cur = db.execute(
        f"INSERT INTO {table} (pid, started, updated, lost_before) VALUES (?, ?, ?, ?)",
        (pid, now, now, last.lost if last else 0),
    )
    run_id = int(cur.lastrowid or 0)
    db.execute(f"DELETE FROM {table} WHERE run <= ?", (run_id - KEEP_RUNS,))
    return run_id, last


class ReceivedNote:
    """A run's items received, noted between commits in a 16-byte memory-mapped file:
    run id and count, little-endian u64 each. Stores into the mapping cost no system
    call; the page cache keeps them when the process is killed (not at a power loss:
    the count is then only lower)."""

    SIZE = 16

    def __init__(self, path: Path) -> None:
        self.path = path
        self._map: mmap.mmap | None = None

    def read(self) -> tuple[int, int] | None:
        """(run id, items received) noted by the last run, or None (no or bad file)."""
        try:
            data = self.path.read_bytes()
        except OSError:
            return None
        if len(data) != self.SIZE:
            return None
        run, received = struct.unpack("<QQ", data)
        return (run, received) if run else None

    def start(self, run: int) -> None:
        """Note for run *run* from now on (count 0). Errors are logged, not raised."""
        try:
            with self.path.open("wb") as f:
                f.write(struct.pack("<QQ", run, 0))
            with self.path.open("r+b") as f:
                self._map = mmap.mmap(f.fileno(), self.SIZE)
        except OSError as e:
            log.warning("cannot note received items in %s: %s", self.path, e)

    def update(self, received: int) -> None:
        if self._map is not None:
            struct.pack_into("<Q", self._map, 8, received)
