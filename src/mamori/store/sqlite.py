"""SQLite store: one file, WAL journal, one writer thread, batched transactions."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from mamori.errors import StoreError
from mamori.store import base, runs
from mamori.store.base import HitCount, QueryRowTuple, WriterMark, WriterRun

SCHEMA_VERSION = 6

_MIGRATIONS = {
    1: """
    CREATE TABLE query_log (
        id          INTEGER PRIMARY KEY,
        ts          REAL    NOT NULL,
        client      TEXT    NOT NULL,
        qname       TEXT    NOT NULL,
        qtype       INTEGER NOT NULL,
        rcode       INTEGER NOT NULL,
        answer      TEXT    NOT NULL DEFAULT '',
        latency_us  INTEGER NOT NULL DEFAULT 0,
        upstream    TEXT    NOT NULL DEFAULT '',
        cache_hit   INTEGER NOT NULL DEFAULT 0,
        transport   TEXT    NOT NULL DEFAULT 'udp'
    );
    CREATE INDEX query_log_ts ON query_log (ts);
    """,
    2: """
    ALTER TABLE query_log ADD COLUMN policy_zone TEXT NOT NULL DEFAULT '';
    ALTER TABLE query_log ADD COLUMN policy_rule TEXT NOT NULL DEFAULT '';
    ALTER TABLE query_log ADD COLUMN policy_trigger TEXT NOT NULL DEFAULT '';
    ALTER TABLE query_log ADD COLUMN policy_action TEXT NOT NULL DEFAULT '';
    """,
    3: """
    CREATE TABLE policy_hits (
        zone        TEXT    NOT NULL,
        trigger     TEXT    NOT NULL,
        action      TEXT    NOT NULL,
        hits        INTEGER NOT NULL,
        first_hit   REAL    NOT NULL,
        last_hit    REAL    NOT NULL,
        PRIMARY KEY (zone, trigger, action)
    ) WITHOUT ROWID;
    """,
    4: """
    CREATE INDEX query_log_client ON query_log (client, ts);
    CREATE INDEX query_log_zone ON query_log (policy_zone, ts) WHERE policy_zone != '';
    """,
    5: """
    CREATE TABLE query_counts (
        hour        INTEGER PRIMARY KEY,  -- UNIX time of the hour's start
        queries     INTEGER NOT NULL,
        blocked     INTEGER NOT NULL
    );
    INSERT INTO query_counts
        SELECT cast(ts / 3600 AS INTEGER) * 3600, count(*), sum(policy_zone != '')
        FROM query_log GROUP BY 1;
    """,
    6: """
    ALTER TABLE query_log ADD COLUMN outcome TEXT NOT NULL DEFAULT '';
    ALTER TABLE query_log ADD COLUMN reason TEXT NOT NULL DEFAULT '';
    UPDATE query_log SET outcome = CASE
        WHEN policy_action IN ('NXDOMAIN', 'NODATA', 'Local-Data', 'TCP-ONLY') THEN 'blocked'
        WHEN policy_action = 'DROP' THEN 'dropped'
        WHEN rcode = 5 THEN 'refused'
        WHEN rcode IN (1, 4, 16) THEN 'error'
        WHEN answer LIKE 'stale:%' THEN 'stale'
        WHEN cache_hit THEN 'cached'
        WHEN rcode = 2 AND upstream = '' THEN 'error'
        ELSE 'resolved' END;
    UPDATE query_counts SET blocked = (
        SELECT count(*) FROM query_log
        WHERE ts >= hour AND ts < hour + 3600 AND outcome IN ('blocked', 'dropped'));
    """,
}

# Columns added when missing, after the numbered migrations (merge-friendly: no version).
_ADDED_COLUMNS = (
    # the client's [[group]] names, comma-joined ("" for none)
    ("query_log", "client_group", "TEXT NOT NULL DEFAULT ''"),
    # the device's name (DoH path, DoT/DoQ server name, EDNS client MAC; "" for none)
    ("query_log", "device", "TEXT NOT NULL DEFAULT ''"),
    # the [server] node_name of the node that logged the row ("" before nodes were named)
    ("query_log", "node", "TEXT NOT NULL DEFAULT ''"),
)

# Tables added when missing, after the numbered migrations (merge-friendly: no version).
_ADDED_TABLES = (
    # one row per run of the query-log writer (control/writer.py), updated in the same
    # transaction as the rows it commits: what a crash lost is known at the next start
    runs.ddl("writer_runs"),
    # the nodes that wrote here ([server] node_name) and when last: the console's node list
    "CREATE TABLE IF NOT EXISTS nodes (node TEXT PRIMARY KEY, last REAL NOT NULL) WITHOUT ROWID",
)

# Blocks per hour, kept with each batch of rows (the console's overview reads these, not
# the query log: at tens of millions of rows a scan took seconds and held the WAL open).
# Created and filled from the query log when missing (a store of an older mamori).
_BLOCK_TABLES = (
    (
        "block_counts",
        """CREATE TABLE block_counts (
            hour    INTEGER NOT NULL,  -- UNIX time of the hour's start
            zone    TEXT NOT NULL,  -- policy zone
            qname   TEXT NOT NULL,
            n       INTEGER NOT NULL,  -- queries blocked
            PRIMARY KEY (hour, zone, qname)
        ) WITHOUT ROWID""",
        "INSERT INTO block_counts SELECT cast(ts / 3600 AS INTEGER) * 3600, policy_zone, qname,"
        " count(*) FROM query_log WHERE policy_zone != '' AND outcome IN ('blocked', 'dropped')"
        " GROUP BY 1, 2, 3",
    ),
    (
        "block_clients",
        """CREATE TABLE block_clients (
            hour    INTEGER NOT NULL,
            zone    TEXT NOT NULL,
            client  TEXT NOT NULL,  -- as the query log keeps it ([store] client_addresses)
            client_group TEXT NOT NULL,  -- retention goes by it, as for the query log
            n       INTEGER NOT NULL,
            last    REAL NOT NULL,  -- UNIX time of the client's last block in that hour
            PRIMARY KEY (hour, zone, client, client_group)
        ) WITHOUT ROWID""",
        "INSERT INTO block_clients SELECT cast(ts / 3600 AS INTEGER) * 3600, policy_zone,"
        " client, client_group, count(*), max(ts) FROM query_log WHERE policy_zone != ''"
        " AND outcome IN ('blocked', 'dropped') GROUP BY 1, 2, 3, 4",
    ),
)

BLOCKED_OUTCOMES = base.BLOCKED_OUTCOMES


_NODE = "(SELECT value FROM temp.node)"  # the writer's node, beside each row's values


class SQLiteStore:
    """The embedded store. Not shared across threads: the writer owns it. *node*: the
    ``[server] node_name`` its query-log rows are tagged with."""

    def __init__(self, path: Path, node: str = "") -> None:
        self.path = path
        self.node = node
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
            self.db.execute("CREATE TEMP TABLE node (value TEXT NOT NULL)")
            self.db.execute("INSERT INTO temp.node VALUES (?)", (node,))
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"{path}: cannot open store: {e}") from e
        self._lock = threading.Lock()

    def _migrate(self) -> None:
        (version,) = self.db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} is newer than"
                f" this mamori supports ({SCHEMA_VERSION})"
            )
        for v in range(version + 1, SCHEMA_VERSION + 1):
            self.db.executescript(f"BEGIN; {_MIGRATIONS[v]} PRAGMA user_version = {v}; COMMIT;")
        for ddl in _ADDED_TABLES:
            self.db.execute(ddl)
        for table, column, decl in _ADDED_COLUMNS:
            have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        for table, ddl, fill in _BLOCK_TABLES:
            if not self.db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone():
                self.db.executescript(f"BEGIN; {ddl}; {fill}; COMMIT;")

    def write_queries(
        self,
        rows: Sequence[QueryRowTuple],
        mark: WriterMark | None = None,
        hits: Sequence[HitCount] = (),
    ) -> None:
        """Append *rows* in one transaction, with the writer's *mark* (its counts as of
        this commit) and the batch's policy *hits* in the same one. Raises sqlite3.Error."""
        with self._lock:
            self.db.execute("BEGIN")
            try:
                self.db.executemany(
                    "INSERT INTO query_log (ts, client, qname, qtype, rcode, answer, latency_us,"
                    " upstream, cache_hit, transport, policy_zone, policy_rule, policy_trigger,"
                    " policy_action, outcome, reason, client_group, device, node)"
                    f" VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,{_NODE})",
                    rows,
                )
                if rows:
                    self.db.execute(
                        "INSERT INTO nodes VALUES (?, ?) ON CONFLICT DO UPDATE SET"
                        " last = max(last, excluded.last)",
                        (self.node, max(r[0] for r in rows)),
                    )
                hours: dict[int, list[int]] = {}
                for r in rows:  # hourly totals: the console's charts without a scan
                    h = hours.setdefault(int(r[0] // 3600) * 3600, [0, 0])
                    h[0] += 1
                    h[1] += r[14] in BLOCKED_OUTCOMES
                self.db.executemany(
                    "INSERT INTO query_counts VALUES (?, ?, ?) ON CONFLICT (hour) DO UPDATE SET"
                    " queries = queries + excluded.queries, blocked = blocked + excluded.blocked",
                    [(h, q, b) for h, (q, b) in hours.items()],
                )
                self._count_blocks(rows)
                if hits:
                    self._add_hits(hits)
                if mark is not None:
                    runs.mark(self.db, "writer_runs", mark)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _count_blocks(self, rows: Sequence[QueryRowTuple]) -> None:
        """Add the blocks among *rows* to block_counts and block_clients (in the caller's
        transaction)."""
        names: dict[tuple[int, str, str], int] = {}
        clients: dict[tuple[int, str, str, str], list[float]] = {}
        for r in rows:
            if r[10] and r[14] in BLOCKED_OUTCOMES:  # policy_zone, outcome
                hour = int(r[0] // 3600) * 3600
                k = (hour, r[10], r[2])
                names[k] = names.get(k, 0) + 1
                c = clients.get((hour, r[10], r[1], r[16]))
                if c is None:
                    clients[(hour, r[10], r[1], r[16])] = [1, r[0]]
                else:
                    c[0] += 1
                    c[1] = max(c[1], r[0])
        if names:
            self.db.executemany(
                "INSERT INTO block_counts VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
                " n = n + excluded.n",
                [(*k, n) for k, n in names.items()],
            )
            self.db.executemany(
                "INSERT INTO block_clients VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
                " n = n + excluded.n, last = max(last, excluded.last)",
                [(*k, n, last) for k, (n, last) in clients.items()],
            )

    def begin_run(
        self, pid: int, noted: tuple[int, int] | None = None
    ) -> tuple[int, WriterRun | None]:
        """Record the start of a writer run; (its run id, the previous run or None).
        *noted*: the previous run's (run, received) noted after its last commit.
        Raises sqlite3.Error."""
        with self._lock:
            self.db.execute("BEGIN")
            try:
                out = runs.begin(self.db, "writer_runs", pid, noted)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
            return out

    def end_run(self, mark: WriterMark) -> None:
        """The writer stopped cleanly after its final drain (nothing waiting was lost)."""
        with self._lock:
            runs.mark(self.db, "writer_runs", mark, clean=True)

    def _add_hits(self, counts: Sequence[HitCount]) -> None:
        self.db.executemany(
            "INSERT INTO policy_hits (zone, trigger, action, hits, first_hit, last_hit)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT (zone, trigger, action) DO UPDATE SET"
            " hits = hits + excluded.hits,"
            " first_hit = min(first_hit, excluded.first_hit),"
            " last_hit = max(last_hit, excluded.last_hit)",
            counts,
        )

    def add_policy_hits(self, counts: Sequence[HitCount]) -> None:
        with self._lock:
            self.db.execute("BEGIN")
            try:
                self._add_hits(counts)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def policy_hits(self) -> list[HitCount]:
        with self._lock:
            return self.db.execute(
                "SELECT zone, trigger, action, hits, first_hit, last_hit FROM policy_hits"
                " ORDER BY zone, hits DESC"
            ).fetchall()

    def prune_queries(self, before: float, groups: Mapping[str, float | None] | None = None) -> int:
        """Delete query log rows older than *before*; *groups*: per-group retention.

        A row whose client was in groups (``client_group`` "a,b") is kept as long
        as the longest of its groups' retentions: *groups* maps a group name to
        its own cutoff (None: kept forever); a group not in it, and rows of
        clients in no group, use *before*.
        The hourly totals and the blocked names per hour follow *before*; the blocked
        clients per hour follow their rows' retention (an hour goes once it is all older).
        """
        with self._lock:
            if not groups:
                cur = self.db.execute("DELETE FROM query_log WHERE ts < ?", (before,))
                n = cur.rowcount
                self.db.execute("DELETE FROM block_clients WHERE hour + 3600 <= ?", (before,))
            else:
                n = 0
                self.db.execute("BEGIN")
                try:
                    for label, cutoff in self._group_cutoffs(before, groups).items():
                        if cutoff is not None:
                            cur = self.db.execute(
                                "DELETE FROM query_log WHERE ts < ? AND client_group = ?",
                                (cutoff, label),
                            )
                            n += cur.rowcount
                            self.db.execute(
                                "DELETE FROM block_clients WHERE hour + 3600 <= ?"
                                " AND client_group = ?",
                                (cutoff, label),
                            )
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")
            self.db.execute("DELETE FROM query_counts WHERE hour + 3600 <= ?", (before,))
            self.db.execute("DELETE FROM block_counts WHERE hour + 3600 <= ?", (before,))
            return n

    def _group_cutoffs(
        self, before: float, groups: Mapping[str, float | None]
    ) -> dict[str, float | None]:
        cut = max_cut(before, groups)
        labels = self.db.execute(
            "SELECT client_group FROM query_log WHERE ts < ?"
            " UNION SELECT client_group FROM block_clients WHERE hour < ?",
            (cut, cut),
        )
        return label_cutoffs((label for (label,) in labels), before, groups)

    def close(self) -> None:
        with self._lock:
            self.db.close()


def max_cut(before: float, groups: Mapping[str, float | None]) -> float:
    """The latest cutoff of all: no row at or after it is deleted."""
    return max([before, *(c for c in groups.values() if c is not None)])


def label_cutoffs(
    labels: Iterable[str], before: float, groups: Mapping[str, float | None]
) -> dict[str, float | None]:
    """The cutoff of each group label ("a,b": a client in groups a and b): the most
    lenient of its groups' (None: kept forever); "" and groups not in *groups*: *before*."""
    out: dict[str, float | None] = {}
    for label in labels:
        if not label:
            out[label] = before
            continue
        own = [groups.get(g, before) for g in label.split(",")]
        out[label] = None if None in own else min(c for c in own if c is not None)
    return out
