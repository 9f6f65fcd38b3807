"""Writer runs (crash accounting, ``store.runs``) kept in a ClickHouse table.

A ``ReplacingMergeTree(version)`` table with one row per (owner, run) version: the
query log's ``writer_runs`` (owner column ``node``) and passive DNS's
``pdns_tap_runs`` (owner column ``sensor``). Every change of a run inserts a new
version; reads take each column's latest version (``argMax``), so they are exact
before the server merges.
"""

from __future__ import annotations

import time

from mamori.store.base import WriterRun
from mamori.store.ch_conn import Conn, lit

COLUMNS = ("pid", "started", "updated", "received", "committed", "failed", "clean",
           "lost_before")  # fmt: skip


def read_run(
    conn: Conn, table: str, owner: str, key: str, run: int | None = None
) -> tuple[WriterRun, int] | None:
    """Run *run* of *key* (None: its latest) in *table* (``db.name``), whose owner column
    is *owner*: (the run, its ``lost_before``), or None when it has no row. Raises
    StoreError."""
    where = f"{owner} = {lit(key)}" + ("" if run is None else f" AND run = {int(run)}")
    cols = ", ".join(f"argMax({c}, version)" for c in COLUMNS)
    rows = conn.query(
        f"SELECT run, {cols} FROM {table} WHERE {where} GROUP BY run ORDER BY run DESC LIMIT 1"
    )
    if not rows:
        return None
    r = rows[0]
    run_row = WriterRun(int(r[0]), int(r[1]), float(r[2]), float(r[3]), int(r[4]), int(r[5]),
                        int(r[6]), bool(r[7]))  # fmt: skip
    return run_row, int(r[8])


def put_run(conn: Conn, table: str, owner: str, key: str, r: WriterRun, lost_before: int) -> None:
    """A new version of run *r* of *key* in *table* (a local table name). Raises
    StoreError."""
    conn.insert(
        table,
        [owner, "run", *COLUMNS, "version"],
        [(key, r.run, r.pid, r.started, r.updated, r.received, r.committed, r.failed,
          int(r.clean), lost_before, time.time_ns())],
    )  # fmt: skip


def with_noted(last: WriterRun, noted: tuple[int, int] | None) -> WriterRun | None:
    """*last* with the events its writer noted after its last commit (``runs.ReceivedNote``:
    (run, received)) when they are more than it recorded; None when the note adds
    nothing."""
    if noted is None or noted[0] != last.run or noted[1] <= last.received:
        return None
    return WriterRun(last.run, last.pid, last.started, last.updated, noted[1], last.committed,
                     last.failed, last.clean)  # fmt: skip
