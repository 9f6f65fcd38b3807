"""Per-group retention of the query log, and the group column added to old logs."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from mamori.control.writer import EventWriter
from mamori.store.sqlite import SQLiteStore


def test_per_group_retention_deletes_only_that_groups_rows(tmp_path: Path) -> None:
    """[[group]] query_log_days: the rows of that group's clients go after that long;
    the others after [store] query_log_days; a client in two groups, the longer."""
    store = SQLiteStore(tmp_path / "q.db")
    now = time.time()
    day = 86400.0

    def row(age_days: float, group: str) -> tuple[object, ...]:
        return (now - age_days * day, "192.0.2.1", f"{group or 'none'}-{age_days}.example.",
                1, 0, "", 0, "", False, "udp", "", "", "", "", "resolved", "", group,
                "")  # fmt: skip

    rows = [row(a, g) for a in (0.5, 2, 10, 40) for g in ("", "kids", "guests", "kids,guests")]
    store.write_queries(rows)  # type: ignore[arg-type]
    # [store] 7 days; kids 1 day; guests forever
    w = EventWriter([], store, 1.0, 7, group_days={"kids": 1, "guests": 0})
    w.prune(now)
    left = {r[0] for r in store.db.execute("SELECT qname FROM query_log")}
    store.close()
    assert left == {
        "none-0.5.example.", "none-2.example.",
        "kids-0.5.example.",
        "guests-0.5.example.", "guests-2.example.", "guests-10.example.", "guests-40.example.",
        "kids,guests-0.5.example.", "kids,guests-2.example.", "kids,guests-10.example.",
        "kids,guests-40.example.",
    }  # fmt: skip


def test_old_query_log_gains_the_group_column(tmp_path: Path) -> None:
    """A query log made before groups existed is migrated: ALTER TABLE ADD COLUMN."""
    db = tmp_path / "q.db"
    SQLiteStore(db).close()
    with sqlite3.connect(db) as c:
        c.execute("ALTER TABLE query_log DROP COLUMN client_group")
        c.execute(
            "INSERT INTO query_log (ts, client, qname, qtype, rcode) VALUES (1, 'c', 'a.', 1, 0)"
        )
    store = SQLiteStore(db)
    assert store.db.execute("SELECT client_group FROM query_log").fetchall() == [("",)]
    store.close()
