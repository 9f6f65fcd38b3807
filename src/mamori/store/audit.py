"""The audit log: every change made through the console, the REST API or the CLI to
what mamori enforces (local rules, groups, feeds): who, when, what, from where.

One SQLite file (``<store dir>/audit.sqlite``, WAL), append-only: rows are
never changed or deleted by mamori.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,       -- UNIX time (seconds)
    actor TEXT NOT NULL,      -- "user:NAME", "key:NAME", "cli:USER"
    address TEXT NOT NULL,    -- the client address of the request ("" from the CLI)
    action TEXT NOT NULL,     -- e.g. "rule.add", "rule.remove", "group.update", "feed.disable"
    target TEXT NOT NULL,     -- what it was done to (a name, a group, a feed)
    detail TEXT NOT NULL      -- JSON object: the values given
);
CREATE INDEX IF NOT EXISTS audit_target ON audit (target);
"""


@dataclass(frozen=True)
class AuditEntry:
    """One change. *time*: UNIX seconds; *detail*: the values given (JSON object)."""

    id: int
    time: float
    actor: str
    address: str
    action: str
    target: str
    detail: dict[str, Any]


def audit_path(store_dir: Path) -> Path:
    return store_dir / "audit.sqlite"


class AuditLog:
    """Append and read the audit log (thread-safe; one connection, serialised)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=10, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        self.lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    def record(
        self,
        actor: str,
        address: str,
        action: str,
        target: str,
        detail: dict[str, Any] | None = None,
        db: sqlite3.Connection | None = None,
    ) -> int:
        """Append one entry (committed before returning); its id.

        *db*: write in that connection's open transaction instead: a store that
        keeps its tables in this same file (``self.db``) commits a change and its
        audit entry together (hold ``self.lock``; the caller commits).
        """
        row = (time.time(), actor, address, action, target, json.dumps(detail or {}))
        sql = (
            "INSERT INTO audit (time, actor, address, action, target, detail) VALUES (?,?,?,?,?,?)"
        )
        if db is not None:
            return int(db.execute(sql, row).lastrowid or 0)
        with self.lock, self.db:
            return int(self.db.execute(sql, row).lastrowid or 0)

    def entries(
        self, limit: int = 100, before: int | None = None, search: str = ""
    ) -> list[AuditEntry]:
        """Newest first; *before*: only ids below it (paging); *search*: a substring of
        the target, action or actor."""
        where: list[str] = []
        args: list[object] = []
        if before is not None:
            where.append("id < ?")
            args.append(before)
        if search:
            where.append("(instr(target, ?) OR instr(action, ?) OR instr(actor, ?))")
            args += [search, search, search]
        sql = "SELECT id, time, actor, address, action, target, detail FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self.lock:
            rows = self.db.execute(sql, (*args, limit)).fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]
